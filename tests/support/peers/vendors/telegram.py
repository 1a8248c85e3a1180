"""telegram: Telegram Bot API sendMessage (core.telegram.org/bots/api),
`POST /bot<token>/sendMessage` (method names are case-insensitive), JSON,
form or query parameters.

chat_id an integer, a numeric string or "@username"; text 1-4096
characters after entity parsing; parse_mode HTML, MarkdownV2, Markdown (any
case) or none; disable_web_page_preview a bool, link_preview_options an
object. With HTML, the text is parsed as tdlib's parse_html does
(td/telegram/MessageEntity.cpp): only the tags of the "HTML style" section,
`<` only as a tag (a stray `&` or `>` is text, as tdlib reads it), and its
messages ("Unsupported start tag "x" at byte offset N", "Can't find end
tag corresponding to start tag "b"", ...). Markdown modes are not
parsed.

A token that is not `<digits>:<secret>` gets 404 {"ok": false,
"error_code": 404, "description": "Not Found"}, another token than
--api-key 401 "Unauthorized"; refusals 400 {"ok": false, "error_code": 400,
"description": "Bad Request: ..."}; accepted: 200 {"ok": true, "result":
{"message_id": N, "from", "chat", "date", "text"}}.
"""

import json
import re
import time
import urllib.parse

from .common import Answer, read_json


SPEC = {
    "path": re.compile(r"/bot([^/]*)/([A-Za-z]+)"),
    "token": re.compile(r"(\d+):[A-Za-z0-9_-]+"),
    "method": "sendmessage",
    "text": 4096,
    "parse_modes": ("", "html", "markdown", "markdownv2"),
    # The "HTML style" section of the Bot API's formatting options.
    "tags": ("a", "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler",
             "tg-emoji", "tg-time", "code", "pre", "blockquote"),
    "entities": {b"lt": "<", b"gt": ">", b"amp": "&", b"quot": '"'},
    "chat": re.compile(r"-?\d+|@[A-Za-z0-9_]+"),
}


class ParseError(Exception):
    pass


def is_space(c):
    # tdlib's is_space, which counts the terminating NUL as space
    return c in b" \t\r\n\0\v\f"


def decode_entity(data, i):
    """tdlib's decode_html_entity: (the character, the index after it), or (None, i)."""
    end = i + 1
    if data[end:end + 1] == b"#":
        end += 1
        hexadecimal = data[end:end + 1] == b"x"
        end += hexadecimal
        digits = b"0123456789abcdefABCDEF" if hexadecimal else b"0123456789"
        start = end
        while data[end] in digits and data[end] != 0:
            end += 1
        if start == end:
            return None, i
        code = int(data[start:end], 16 if hexadecimal else 10)
        if code == 0 or code >= 0x10FFFF or end - i >= 10:
            return None, i
        char = chr(code)
    else:
        while chr(data[end]).isalpha() and data[end] < 128:
            end += 1
        char = SPEC["entities"].get(data[i + 1:end])
        if char is None:
            return None, i
    return char, end + (data[end:end + 1] == b";")


def parse_html(text):
    """The text Telegram shows for `text` in HTML mode (tdlib's parse_html), or ParseError."""
    data = text.encode("utf-8", "surrogatepass") + b"\0"
    size = len(data) - 1
    shown = bytearray()
    opened = []  # [tag, argument]
    i = 0
    while i < size:
        c = data[i]
        if c == ord("&"):
            char, after = decode_entity(data, i)
            if char is not None:
                shown += char.encode("utf-8", "surrogatepass")
                i = after
                continue
        if c != ord("<"):
            shown.append(c)
            i += 1
            continue
        begin = i
        i += 1
        if data[i] != ord("/"):
            while not is_space(data[i]) and data[i] != ord(">"):
                i += 1
            if data[i] == 0:
                raise ParseError(f"Unclosed start tag at byte offset {begin}")
            tag = data[begin + 1:i].decode("utf-8", "replace").lower()
            if tag not in SPEC["tags"]:
                raise ParseError(f'Unsupported start tag "{tag}" at byte offset {begin}')
            argument = ""
            while data[i] != ord(">"):
                while data[i] != 0 and is_space(data[i]):
                    i += 1
                if data[i] == ord(">"):
                    break
                name_begin = i
                while not is_space(data[i]) and data[i] not in b"=>":
                    i += 1
                name = data[name_begin:i].decode("utf-8", "replace")
                if not name:
                    raise ParseError(f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
                while data[i] != 0 and is_space(data[i]):
                    i += 1
                if data[i] != ord("="):
                    if data[i] == 0:
                        raise ParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                    if tag == "blockquote" and name == "expandable":
                        argument = "1"
                    continue
                i += 1
                while data[i] != 0 and is_space(data[i]):
                    i += 1
                if data[i] == 0:
                    raise ParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if data[i] not in b"'\"":
                    token_begin = i
                    while chr(data[i]).isalnum() and data[i] < 128 or data[i] in b".-" and data[i] != 0:
                        i += 1
                    value = data[token_begin:i].decode().lower()
                    if not is_space(data[i]) and data[i] != ord(">"):
                        raise ParseError(f"Unexpected end of name token at byte offset {token_begin}")
                else:
                    quote = data[i]
                    i += 1
                    raw = bytearray()
                    while data[i] != quote and data[i] != 0:
                        if data[i] == ord("&"):
                            char, after = decode_entity(data, i)
                            if char is not None:
                                raw += char.encode("utf-8", "surrogatepass")
                                i = after
                                continue
                        raw.append(data[i])
                        i += 1
                    if data[i] == quote:
                        i += 1
                    value = raw.decode("utf-8", "replace")
                if data[i] == 0:
                    raise ParseError(f"Unclosed start tag at byte offset {begin}")
                if (tag, name) in (("a", "href"), ("tg-emoji", "emoji-id")):
                    argument = value
                elif (tag, name) == ("code", "class") and value.startswith("language-"):
                    argument = value[len("language-"):]
                elif (tag, name) == ("span", "class") and value.startswith("tg-"):
                    argument = value[len("tg-"):]
            if tag == "span" and argument != "spoiler":
                raise ParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
            opened.append((tag, argument))
            i += 1
        else:
            if not opened:
                raise ParseError(f"Unexpected end tag at byte offset {begin}")
            while not is_space(data[i]) and data[i] != ord(">"):
                i += 1
            end_tag = data[begin + 2:i].decode("utf-8", "replace")
            while data[i] != 0 and is_space(data[i]):
                i += 1
            if data[i] != ord(">"):
                raise ParseError(f"Unclosed end tag at byte offset {begin}")
            tag, argument = opened.pop()
            if end_tag and end_tag.lower() != tag:
                raise ParseError(f'Unmatched end tag at byte offset {begin}, expected "</{tag}>", '
                                         f'found "</{end_tag}>"')
            if tag == "tg-emoji" and not (argument.isdigit() and 0 < int(argument) < 2 ** 63):
                raise ParseError("Invalid custom emoji identifier specified")
            i += 1
    if opened:
        raise ParseError(f'Can\'t find end tag corresponding to start tag "{opened[-1][0]}"')
    try:
        return shown.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("Text contains invalid Unicode characters after decoding HTML entities, "
                                 "check for unmatched surrogate code units") from None


def refusal(status, description):
    return Answer(status, {"ok": False, "error_code": status, "description": description})


def read_params(request):
    """The parameters of a Bot API call: query string, then a form or JSON body."""
    params = {k: v[-1] for k, v in request.query.items()}
    content_type = request.headers.get("Content-Type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        params.update({k: v[-1] for k, v in urllib.parse.parse_qs(request.body.decode("utf-8", "replace")).items()})
    elif content_type.startswith("application/json"):
        body, _ = read_json(request.body)
        if isinstance(body, dict):
            params.update(body)
    return params


def is_bool(value):
    return isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false", "1", "0"))


def shown_text(params):
    """(the text Telegram would show, None) or (None, the refusal)."""
    parse_mode = params.get("parse_mode", "")
    if not isinstance(parse_mode, str) or parse_mode.lower() not in SPEC["parse_modes"]:
        return None, "Bad Request: unsupported parse_mode"
    text = params.get("text")
    if text is None:
        return None, "Bad Request: message text is empty"
    text = text if isinstance(text, str) else json.dumps(text)
    if parse_mode.lower() == "html":
        try:
            text = parse_html(text)
        except ParseError as e:
            return None, f"Bad Request: can't parse entities: {e}"
    if not text.strip():
        return None, "Bad Request: message text is empty"
    if len(text.strip()) > SPEC["text"]:
        return None, "Bad Request: message is too long"
    return text.strip(), None


def check(request, state):
    route = SPEC["path"].fullmatch(request.route)
    if route is None or SPEC["token"].fullmatch(route.group(1)) is None:
        return refusal(404, "Not Found")
    if state.api_key is not None and route.group(1) != state.api_key:
        return refusal(401, "Unauthorized")
    if route.group(2).lower() != SPEC["method"]:
        return refusal(404, "Not Found: method not found")
    params = read_params(request)
    chat = params.get("chat_id")
    chat = "" if chat is None else str(chat).strip() if not isinstance(chat, bool) else "?"
    if not chat:
        return refusal(400, "Bad Request: chat_id is empty")
    if SPEC["chat"].fullmatch(chat) is None:
        return refusal(400, "Bad Request: chat not found")
    for name in ("disable_web_page_preview", "disable_notification", "protect_content"):
        if name in params and not is_bool(params[name]):
            return refusal(400, f"Bad Request: invalid parameter value of {name}")
    if "link_preview_options" in params and not isinstance(params["link_preview_options"], dict):
        return refusal(400, "Bad Request: can't parse link preview options JSON object")
    _, description = shown_text(params)
    return None if description is None else refusal(400, description)


def accept(request, state):
    params = read_params(request)
    text, _ = shown_text(params)
    bot_id = int(SPEC["token"].fullmatch(SPEC["path"].fullmatch(request.route).group(1)).group(1))
    chat = str(params["chat_id"]).strip()
    if chat.startswith("@"):
        chat = {"id": -1000000000000 - len(chat), "title": chat[1:], "username": chat[1:], "type": "channel"}
    else:
        chat = {"id": int(chat), "type": "private" if int(chat) > 0 else "supergroup"}
    return Answer(200, {"ok": True, "result": {
        "message_id": state.next_id(),
        "from": {"id": bot_id, "is_bot": True, "first_name": "velonotify stand-in", "username": "velonotify_bot"},
        "chat": chat, "date": int(time.time()), "text": text}})


def fail(status):
    if status == 429:
        return Answer(429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
                            "parameters": {"retry_after": 1}})
    reasons = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
    return refusal(status, reasons.get(status, "Internal Server Error"))

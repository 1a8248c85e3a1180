"""discord: Discord "Execute Webhook" (discord-api-docs,
docs/resources/webhook.mdx; embed limits from message.mdx), `POST
/api[/v10]/webhooks/{id}/{token}` with JSON.

At least one of content, embeds, components, poll (else 400 {"message":
"Cannot send an empty message", "code": 50006}); content <= 2000
characters, username 1-80, embeds <= 10 (title 256, description 4096, <= 25
fields of name 256 / value 1024, footer.text 2048, author.name 256, 6000 in
all), allowed_mentions an object (parse among roles/users/everyone, not
both parse "users" and users: [...]), tts a bool.

Refusals: 400 {"message": "Invalid Form Body", "code": 50035, "errors":
{field: {"_errors": [{code, message}]}}} (messages as the discord-api-types
mock writes them), 400 50109 for a body that is not JSON, 401 {"message":
"Invalid Webhook Token", "code": 50027} for another token than --api-key.
Accepted: 204 No Content, or 200 and the message with ?wait=true.
"""

import datetime
import json
import re

from .common import Answer, is_int, now_ms, read_json


SPEC = {
    "path": re.compile(r"/api(?:/v\d+)?/webhooks/(\d+)/([A-Za-z0-9_.-]+)"),
    "content": 2000, "username": (1, 80), "embeds": 10, "embed_total": 6000, "embed_fields": 25,
    "embed": {"title": 256, "description": 4096},
    "embed_field": {"name": 256, "value": 1024},
    "footer": ("text", 2048), "author": ("name", 256),
    "mention_types": ("roles", "users", "everyone"), "mention_ids": 100,
    "epoch": 1420070400000,  # the Discord epoch of snowflakes
}


def error(code, message):
    return {"code": code, "message": message}


def max_length(limit):
    return error("BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def required_error():
    return error("BASE_TYPE_REQUIRED", "This field is required")


def not_string(value):
    return error("STRING_TYPE_CONVERT", f'Could not interpret "{value}" as string.')


def put(errors, path, error):
    """Files `error` under errors[path...]["_errors"], as Discord nests form errors."""
    node = errors
    for key in path:
        node = node.setdefault(str(key), {})
    node.setdefault("_errors", []).append(error)


def check_text(errors, path, value, limit, required=False):
    """Checks a text field; returns its length."""
    if value is None:
        if required:
            put(errors, path, required_error())
        return 0
    if not isinstance(value, str):
        put(errors, path, not_string(value))
        return 0
    if len(value.strip()) > limit:
        put(errors, path, max_length(limit))
    return len(value.strip())


def embed_errors(errors, i, embed):
    """Checks one embed; returns its text length (toward the 6000 of all embeds)."""
    path = ("embeds", i)
    if not isinstance(embed, dict):
        put(errors, path, error("MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType"))
        return 0
    total = sum(check_text(errors, path + (name,), embed.get(name), limit)
                for name, limit in SPEC["embed"].items())
    for part in ("footer", "author"):
        key, limit = SPEC[part]
        if embed.get(part) is not None:
            total += check_text(errors, path + (part, key), (embed[part] or {}).get(key)
                                  if isinstance(embed[part], dict) else None, limit, required=True)
    fields = embed.get("fields")
    if fields is not None:
        if not isinstance(fields, list):
            put(errors, path + ("fields",), error("BASE_TYPE_ARRAY", "Must be an array."))
            return total
        if len(fields) > SPEC["embed_fields"]:
            put(errors, path + ("fields",), max_length(SPEC["embed_fields"]))
        for j, field in enumerate(fields):
            field = field if isinstance(field, dict) else {}
            for name, limit in SPEC["embed_field"].items():
                total += check_text(errors, path + ("fields", j, name), field.get(name), limit, required=True)
            if field.get("inline") is not None and not isinstance(field["inline"], bool):
                put(errors, path + ("fields", j, "inline"),
                            error("BASE_TYPE_BOOLEAN", "Must be either true or false."))
    color = embed.get("color")
    if color is not None and (not is_int(color) or not 0 <= color <= 0xFFFFFF):
        put(errors, path + ("color",), error("NUMBER_TYPE_MAX", "int value should be less than or equal to 16777215."))
    stamp = embed.get("timestamp")
    if stamp is not None:
        try:
            datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            put(errors, path + ("timestamp",), error("DATE_TIME_TYPE_PARSE", f"Could not parse {stamp}. Should be ISO8601."))
    return total


def mention_errors(errors, mentions):
    if not isinstance(mentions, dict):
        put(errors, ("allowed_mentions",), error("MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType"))
        return
    parse = mentions.get("parse", [])
    if not isinstance(parse, list):
        parse = [parse]
    for i, kind in enumerate(parse):
        if kind not in SPEC["mention_types"]:
            put(errors, ("allowed_mentions", "parse", i), error(
                "BASE_TYPE_CHOICES", f"Value must be one of ({', '.join(SPEC['mention_types'])})."))
    for kind in ("roles", "users"):
        ids = mentions.get(kind)
        if ids is None:
            continue
        if not isinstance(ids, list):
            put(errors, ("allowed_mentions", kind), error("BASE_TYPE_ARRAY", "Must be an array."))
        elif len(ids) > SPEC["mention_ids"]:
            put(errors, ("allowed_mentions", kind), max_length(SPEC["mention_ids"]))
        elif ids and kind in parse:
            put(errors, ("allowed_mentions",), error(
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE", f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.'))
    if mentions.get("replied_user") is not None and not isinstance(mentions["replied_user"], bool):
        put(errors, ("allowed_mentions", "replied_user"), error("BASE_TYPE_BOOLEAN", "Must be either true or false."))


def form_errors(message):
    errors = {}
    content = message.get("content")
    if content is not None and not isinstance(content, (str, int, float)):
        put(errors, ("content",), not_string(content))
    elif content is not None and len(str(content)) > SPEC["content"]:
        put(errors, ("content",), max_length(SPEC["content"]))
    username = message.get("username")
    if username is not None:
        low, high = SPEC["username"]
        if not isinstance(username, str):
            put(errors, ("username",), not_string(username))
        elif not low <= len(username.strip()) <= high:
            put(errors, ("username",), error("BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length."))
    if message.get("tts") is not None and not isinstance(message["tts"], bool):
        put(errors, ("tts",), error("BASE_TYPE_BOOLEAN", "Must be either true or false."))
    embeds = message.get("embeds")
    if embeds is not None:
        if not isinstance(embeds, list):
            put(errors, ("embeds",), error("BASE_TYPE_ARRAY", "Must be an array."))
        elif len(embeds) > SPEC["embeds"]:
            put(errors, ("embeds",), max_length(SPEC["embeds"]))
        else:
            total = sum(embed_errors(errors, i, embed) for i, embed in enumerate(embeds))
            if total > SPEC["embed_total"]:
                put(errors, ("embeds",), error(
                    "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {SPEC['embed_total']}"))
    if message.get("allowed_mentions") is not None:
        mention_errors(errors, message["allowed_mentions"])
    return errors


def check(request, state):
    route = SPEC["path"].fullmatch(request.route)
    if route is None:
        return Answer(404, {"message": "404: Not Found", "code": 0})
    if state.api_key is not None and route.group(2) != state.api_key:
        return Answer(401, {"message": "Invalid Webhook Token", "code": 50027})
    message, complaint = read_json(request.body)
    if complaint is not None or not request.headers.get("Content-Type", "").startswith("application/json"):
        return Answer(400, {"message": "The request body contains invalid JSON.", "code": 50109})
    if not isinstance(message, dict):
        return Answer(400, {"message": "Invalid Form Body", "code": 50035, "errors": {
            "_errors": [error("MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")]}})
    errors = form_errors(message)
    if errors:
        return Answer(400, {"message": "Invalid Form Body", "code": 50035, "errors": errors})
    if not (message.get("content") not in (None, "") or message.get("embeds") or message.get("components")
            or message.get("poll")):
        return Answer(400, {"message": "Cannot send an empty message", "code": 50006})
    return None


def snowflake(state):
    return str(((now_ms() - SPEC["epoch"]) << 22) | (state.next_id() & 0xFFF))


def accept(request, state):
    if request.query.get("wait", ["false"])[-1].lower() not in ("true", "1"):
        return Answer(204)
    message = json.loads(request.body)
    webhook_id = SPEC["path"].fullmatch(request.route).group(1)
    return Answer(200, {
        "id": snowflake(state), "type": 0, "content": str(message.get("content") or ""),
        "channel_id": str(int(webhook_id) + 1),
        "author": {"bot": True, "id": webhook_id, "username": message.get("username") or "Captain Hook",
                   "avatar": None, "discriminator": "0000"},
        "attachments": [], "embeds": message.get("embeds") or [], "mentions": [], "mention_roles": [],
        "pinned": False, "mention_everyone": False, "tts": bool(message.get("tts")),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(), "edited_timestamp": None,
        "flags": 0, "components": [], "webhook_id": webhook_id,
    })


def fail(status):
    if status == 429:
        return Answer(429, {"message": "You are being rate limited.", "retry_after": 1.0, "global": False},
                      (("Retry-After", "1"),))
    return Answer(status, {"message": f"{status}: {'Internal Server Error' if status == 500 else 'Server Error'}",
                           "code": 0})

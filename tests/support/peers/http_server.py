#!/usr/bin/env python3
"""A real HTTP(S) server for velonotify's webhook tests.

It answers POSTs with the status codes of --responses in turn (the last one
repeats), records each request as a line of --log (method, path, headers in lower case,
body, final status), serves HTTPS when given a certificate, writes --ready-file once it
listens, and runs until it is killed.

With --vendor, it stands in for that vendor's endpoint and first checks
each request against the vendor's documented schema, answering a refusal
in the vendor's words when it does not hold. A refusal always wins; else a
scheduled 200 gets the vendor's success answer and a scheduled error (e.g.
503) is answered in the vendor's error shape (teams-workflow and pagerduty
keep their plain-text "server error"). --api-key, when given, is the only
key/token the vendor accepts; --indexes a,b limits splunk-hec's indexes.

- teams-workflow: a Microsoft Teams Workflows webhook ("Post to a channel
  when a webhook request is received"). The body must be a message whose
  attachments are Adaptive Cards (Microsoft: "Workflows support Adaptive
  Cards only"; a MessageCard gets 400 "Property 'type' must be
  'AdaptiveCard'"); accepted requests get 202, as Workflows answer.
- pagerduty: PagerDuty's Events API v2 (`POST /v2/enqueue`, "Send an Alert
  Event"): a 32-character routing_key, event_action trigger, acknowledge or
  resolve, a dedup_key of at most 255 characters (required but for
  trigger), and for a trigger a payload with summary (1 to 1024
  characters), source and severity (critical, error, warning or info),
  timestamp in ISO 8601 when given, component/group/class strings,
  custom_details an object; links [{href, text}]. Accepted: 202
  {"status": "success", "message": "Event processed", "dedup_key"};
  refused: 400 {"status": "invalid event", "message": "Event object is
  invalid", "errors": [...]}.
- thehive: TheHive 5 "Create alert", `POST /api/v1/alert` with
  `Authorization: Bearer <key>`. Fields from TheHive4py's InputAlert
  (thehive4py/types/alert.py, observable.py: the typed API of TheHive 5) and
  TheHive's dto/v1/Alert.scala: type, source, sourceRef, title, description
  required strings (non-empty: asked for by velonotify, not a documented
  TheHive rule); severity 1-4, date (epoch ms), tags [str], flag bool, tlp
  0-4, pap 0-3 (TheHive 5's TLP 2.0 / PAP levels), externalLink, summary,
  caseTemplate strings, customFields (object or [{name, value, order}]),
  observables [{dataType, data, message, tags, ioc, sighted, tlp, pap,
  ...}] whose dataType is one of TheHive's default observable types
  (ObservableTypeSrv.initialValues; "file" needs an attachment a JSON body
  cannot carry). Errors are ScalliGraph's (ErrorHandler.scala, Errors.scala):
  401 {"type": "AuthenticationError", "message"}, 400 {"type":
  "AttributeCheckingError", "message": "[...]", "errors": [{"name", "type":
  "MissingAttributeError" | "InvalidFormatAttributeError", ...}]}, 400
  {"type": "BadRequest", "message": "Invalid Json: ..."} for a body that is
  not JSON, 404 {"type": "NotFoundError"} for an unknown observable type
  (getOrFail). (type, source, sourceRef) is unique per organisation
  (AlertSrv.create): a second accepted alert with the same triple gets 400
  {"type": "CreateError", "message": "Alert <type>:<source>:<sourceRef>
  already exist in organisation <org>"} (only alerts answered 201 count;
  under a scheduled error TheHive is "down" and checks nothing more). Accepted: 201 with the created
  alert (OutputAlert: "_id": "~N", "_type": "Alert", type lower-cased as in
  docs.thehive-project.org's create-alert example, ...).
- iris: DFIR-IRIS 2.x "Add an alert", `POST /alerts/add` with
  `Authorization: Bearer <key>`, as iris-web's alerts_add_route checks it
  (source/app/blueprints/alerts/alerts_routes.py): a JSON object, else 400
  "No JSON data provided"; alert_iocs loaded with IocSchema, then
  alert_assets with CaseAssetsSchema, then the rest with AlertSchema
  (source/app/schema/marshables.py over source/app/models/alerts.py):
  alert_title (string), alert_severity_id, alert_status_id,
  alert_customer_id (integers) required; alert_description, alert_source,
  alert_source_ref, alert_source_link, alert_note, alert_tags (a
  comma-separated string) strings; alert_source_event_time an ISO 8601
  time; alert_classification_id an integer; alert_source_content and
  alert_context any JSON; IOCs need ioc_value (1+ characters), integer
  ioc_type_id/ioc_tlp_id, string ioc_description/ioc_tags; assets need
  asset_name and an integer asset_type_id, strings asset_description,
  asset_ip, asset_domain, asset_tags. The route answers any failure with
  app/util.py's response_error(str(e)): 400 {"status": "error", "message":
  "{'field': ['marshmallow message']}", "data": []}; 401 {"status":
  "error", "message": "Authentication required", "data": []}
  (ac_api_requires). Accepted: 200 {"status": "success", "message": "",
  "data": {the dumped alert with "alert_id": N}} (response_success(data=)).
  Ids are not checked against IRIS's tables (the stand-in has none).
- splunk-hec: Splunk's HTTP Event Collector ("Format events for HTTP Event
  Collector", "HTTP Event Collector REST API endpoints"): `POST
  /services/collector`, `/services/collector/event` or
  `.../event/1.0`, `Authorization: Splunk <token>` (or Basic with the token
  as password); the body one or more concatenated JSON event objects, each
  with a non-blank `event`, `time` epoch seconds (a number or numeric
  string), host/source/sourcetype/index strings, `fields` a flat object
  (values a string, number or list of strings). Answers are the codes of
  "Troubleshoot HTTP Event Collector" (as listed in gjanders/SplunkAdmins'
  hec reply code lookup): 200 {"text": "Success", "code": 0}; 401 "Token is
  required" 2 / "Invalid authorization" 3; 403 "Invalid token" 4; 400 "No
  data" 5, "Invalid data format" 6, "Incorrect index" 7, "Event field is
  required" 12, "Event field cannot be blank" 13, "Error in handling indexed
  fields" 15 (a bad time or nested fields), with "invalid-event-number" (0
  based) for an event's fault; 500 8 and 503 9 for scheduled errors.
- discord: Discord "Execute Webhook" (discord-api-docs,
  docs/resources/webhook.mdx; embed limits from message.mdx), `POST
  /api[/v10]/webhooks/{id}/{token}` with JSON: at least one of content,
  embeds, components, poll (else 400 {"message": "Cannot send an empty
  message", "code": 50006}); content <= 2000 characters, username 1-80,
  embeds <= 10 (title 256, description 4096, <= 25 fields of name 256 /
  value 1024, footer.text 2048, author.name 256, 6000 in all),
  allowed_mentions an object (parse among roles/users/everyone, not both
  parse "users" and users: [...]), tts a bool. Refusals: 400 {"message":
  "Invalid Form Body", "code": 50035, "errors": {field: {"_errors": [{code,
  message}]}}} (messages as the discord-api-types mock writes them), 400
  50109 for a body that is not JSON, 401 {"message": "Invalid Webhook
  Token", "code": 50027} for another token than --api-key. Accepted: 204
  No Content, or 200 and the message with ?wait=true.
- telegram: Telegram Bot API sendMessage (core.telegram.org/bots/api),
  `POST /bot<token>/sendMessage` (method names are case-insensitive),
  JSON, form or query parameters: chat_id an integer, a numeric string or
  "@username"; text 1-4096 characters after entity parsing; parse_mode
  HTML, MarkdownV2, Markdown (any case) or none; disable_web_page_preview a
  bool, link_preview_options an object. With HTML, the text is parsed as
  tdlib's parse_html does (td/telegram/MessageEntity.cpp): only the tags of
  the "HTML style" section, `<` only as a tag (a stray `&` or `>` is text,
  as tdlib reads it), and its messages ("Unsupported start tag \"x\" at byte
  offset N", "Can't find end tag corresponding to start tag \"b\"", ...).
  Markdown modes are not parsed. A token that is not `<digits>:<secret>`
  gets 404 {"ok": false, "error_code": 404, "description": "Not Found"},
  another token than --api-key 401 "Unauthorized"; refusals 400 {"ok":
  false, "error_code": 400, "description": "Bad Request: ..."}; accepted:
  200 {"ok": true, "result": {"message_id": N, "from", "chat", "date",
  "text"}}.
"""

import argparse
import base64
import datetime
import json
import pathlib
import re
import ssl
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, NamedTuple, Optional


class Answer(NamedTuple):
    """What the stand-in answers: a status, a JSON body (None: plain text,
    or nothing for 204) and extra headers."""
    status: int
    body: Any = None
    headers: tuple = ()


class Request(NamedTuple):
    path: str
    headers: Any
    body: bytes

    @property
    def route(self):
        return urllib.parse.urlsplit(self.path).path

    @property
    def query(self):
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)


class State:
    """What the stand-in remembers between requests (used under the lock)."""

    def __init__(self, api_key, indexes):
        self.api_key = api_key
        self.indexes = indexes
        self.counter = 0
        self.thehive_alerts = set()

    def next_id(self):
        self.counter += 1
        return self.counter


class Vendor(NamedTuple):
    check: Callable[[Request, State], Optional[Answer]]  # refusal, or None
    accept: Callable[[Request, State], Answer]  # the answer to a scheduled 200
    fail: Optional[Callable[[int], Answer]] = None  # the answer to a scheduled error


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--ready-file", required=True)
    p.add_argument("--responses", default="200")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--vendor", choices=list(VENDORS))
    p.add_argument("--api-key", help="the only key or token the vendor accepts")
    p.add_argument("--indexes", help="splunk-hec: the indexes the token may write to, a,b")
    args = p.parse_args()
    statuses = [int(s) for s in args.responses.split(",")]
    vendor = VENDORS.get(args.vendor)
    state = State(args.api_key, set(filter(None, args.indexes.split(","))) if args.indexes else None)
    lock = threading.Lock()
    seen = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            request = Request(self.path, self.headers, body)
            refusal = vendor.check(request, state) if vendor else None
            with lock:
                scheduled = statuses[min(seen[0], len(statuses) - 1)]
                seen[0] += 1
                if refusal is not None:
                    answer = refusal
                elif vendor and scheduled == 200:
                    answer = vendor.accept(request, state)
                elif vendor and vendor.fail and scheduled >= 400:
                    answer = vendor.fail(scheduled)
                else:
                    answer = Answer(scheduled)
                with open(args.log, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"method": "POST", "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                        "body": body.decode("utf-8", "replace"), "status": answer.status}) + "\n")
            self.send_response(answer.status)
            if answer.body is not None:
                payload = json.dumps(answer.body).encode()
                self.send_header("Content-Type", "application/json")
            elif answer.status == 204:
                payload = b""
            else:
                payload = b"ok" if answer.status < 400 else b"server error"
                self.send_header("Content-Type", "text/plain")
            for name, value in answer.headers:
                self.send_header(name, value)
            if answer.status != 204:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    pathlib.Path(args.ready_file).write_text("ready")
    server.serve_forever()


def read_json(body):
    """(value, None) or (None, the parser's complaint)."""
    try:
        return json.loads(body), None
    except ValueError as e:
        return None, str(e)


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def bearer_key(headers):
    """The key of `Authorization: Bearer <key>`, "" for another scheme, None without the header."""
    auth = headers.get("Authorization")
    if auth is None:
        return None
    return auth[len("Bearer "):] if auth.startswith("Bearer ") else ""


def now_ms():
    return int(time.time() * 1000)


# --- Microsoft Teams Workflows ------------------------------------------------

def teams_refusal(message):
    return {"error": {"code": "InvalidRequestContent", "message": message}}


def check_teams_workflow(headers, body):
    if not headers.get("Content-Type", "").startswith("application/json"):
        return teams_refusal("The request content type must be 'application/json'.")
    try:
        message = json.loads(body)
    except ValueError as e:
        return teams_refusal(f"The request content is not valid JSON: {e}")
    # The template posts each attachment's card: a body without them (a
    # connector's MessageCard) has no card to post.
    attachments = message.get("attachments") if isinstance(message, dict) else None
    if not isinstance(attachments, list) or not attachments:
        return teams_refusal("Property 'type' must be 'AdaptiveCard': the body carries no Adaptive Card "
                             "attachment (Workflows support Adaptive Cards only).")
    for attachment in attachments:
        if not isinstance(attachment, dict):
            return teams_refusal("An attachment must be an object.")
        if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
            return teams_refusal("Property 'contentType' must be 'application/vnd.microsoft.card.adaptive'.")
        card = attachment.get("content")
        if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
            return teams_refusal("Property 'type' must be 'AdaptiveCard'.")
        version = card.get("version")
        if not isinstance(version, str) or not version.replace(".", "").isdigit():
            return teams_refusal("Property 'version' must be a version string such as '1.4'.")
        blocks = card.get("body")
        if not isinstance(blocks, list):
            return teams_refusal("Property 'body' must be an array.")
        for block in blocks:
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                return teams_refusal("Every element of 'body' must have a 'type'.")
            if block["type"] == "TextBlock" and not isinstance(block.get("text"), str):
                return teams_refusal("A TextBlock must have a 'text' string.")
    return None


def teams_check(request, state):
    refusal = check_teams_workflow(request.headers, request.body)
    return None if refusal is None else Answer(400, refusal)


# --- PagerDuty Events API v2 ---------------------------------------------------

PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")


def pagerduty_errors(path, headers, body):
    if path.split("?")[0] != "/v2/enqueue":
        return [f"unknown endpoint {path}"]
    if not headers.get("Content-Type", "").startswith("application/json"):
        return ["Content-Type must be application/json"]
    try:
        event = json.loads(body)
    except ValueError as e:
        return [f"body is not JSON: {e}"]
    if not isinstance(event, dict):
        return ["event must be an object"]
    errors = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("'routing_key' must be a 32 character integration key")
    action = event.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        errors.append("'event_action' must be one of trigger, acknowledge or resolve")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not 0 < len(dedup) <= 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and dedup is None:
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return errors + ["'payload' is required for trigger"]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not 0 < len(summary) <= 1024:
            errors.append("'payload.summary' must be 1 to 1024 characters")
        if not isinstance(payload.get("source"), str) or not payload["source"]:
            errors.append("'payload.source' is required")
        if payload.get("severity") not in PAGERDUTY_SEVERITIES:
            errors.append("'payload.severity' must be one of critical, error, warning or info")
        if "timestamp" in payload:
            try:
                datetime.datetime.fromisoformat(str(payload["timestamp"]).replace("Z", "+00:00"))
            except ValueError:
                errors.append("'payload.timestamp' must be an ISO 8601 time")
        for field in ("component", "group", "class"):
            if field in payload and not isinstance(payload[field], str):
                errors.append(f"'payload.{field}' must be a string")
        if "custom_details" in payload and not isinstance(payload["custom_details"], (dict, str)):
            errors.append("'payload.custom_details' must be an object")
    for link in event.get("links", []):
        if not isinstance(link, dict) or not isinstance(link.get("href"), str):
            errors.append("each of 'links' must have an 'href'")
    return errors


def pagerduty_check(request, state):
    errors = pagerduty_errors(request.path, request.headers, request.body)
    if errors:
        return Answer(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})
    return None


def pagerduty_accept(request, state):
    event = json.loads(request.body)
    return Answer(202, {"status": "success", "message": "Event processed", "dedup_key": event.get("dedup_key")})


# --- TheHive 5 ---------------------------------------------------------------

THEHIVE = {
    "path": "/api/v1/alert",
    "organisation": "velonotify",  # the stand-in's one organisation
    "user": "velonotify@thehive.local",
    "required": ("type", "source", "sourceRef", "title", "description"),
    "strings": ("externalLink", "summary", "caseTemplate", "status", "assignee"),
    "severity": {1: "LOW", 2: "MEDIUM", 3: "HIGH", 4: "CRITICAL"},
    "tlp": {0: "CLEAR", 1: "GREEN", 2: "AMBER", 3: "AMBER+STRICT", 4: "RED"},
    "pap": {0: "CLEAR", 1: "GREEN", 2: "AMBER", 3: "RED"},
    # ObservableTypeSrv.initialValues; "file" is an attachment type.
    "data_types": ("url", "other", "user-agent", "regexp", "mail-subject", "registry", "mail",
                   "autonomous-system", "domain", "ip", "uri_path", "filename", "hash", "file",
                   "fqdn", "hostname"),
    "attachment_types": ("file",),
}


def thehive_field(value):
    """A JSON value as ScalliGraph's Field prints it (FString(x), FNumber(1), ...)."""
    if isinstance(value, bool):
        return f"FBoolean({str(value).lower()})"
    if isinstance(value, str):
        return f"FString({value})"
    if isinstance(value, (int, float)):
        return f"FNumber({value})"
    if isinstance(value, list):
        return "FSeq(" + ", ".join(thehive_field(v) for v in value) + ")"
    if isinstance(value, dict):
        return "FObject(" + ", ".join(f"{k} -> {thehive_field(v)}" for k, v in value.items()) + ")"
    return "FNull"


def thehive_missing(name):
    return {"name": name, "type": "MissingAttributeError"}, f"Attribute {name} is missing"


def thehive_invalid(name, fmt, value, accepted=()):
    error = {"name": name, "format": fmt, "acceptedInput": list(accepted), "field": value,
             "type": "InvalidFormatAttributeError"}
    return error, f"Invalid format for {name}: {thehive_field(value)}, expected {fmt} ({','.join(accepted)})"


def thehive_level(name, value, levels):
    if value is not None and (not is_int(value) or value not in levels):
        return [thehive_invalid(name, "int", value, [str(k) for k in levels])]
    return []


def thehive_string_list(name, value):
    if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
        return [thehive_invalid(name, "seq of string", value)]
    return []


def thehive_observable_errors(i, observable):
    name = f"observables[{i}]"
    if not isinstance(observable, dict):
        return [thehive_invalid(name, "object", observable)]
    errors = []
    data_type = observable.get("dataType")
    if data_type is None:
        errors.append(thehive_missing(f"{name}.dataType"))
    elif not isinstance(data_type, str):
        errors.append(thehive_invalid(f"{name}.dataType", "string", data_type))
    elif data_type in THEHIVE["attachment_types"]:
        errors.append(thehive_missing(f"{name}.attachment"))
    data = observable.get("data")
    if data_type not in THEHIVE["attachment_types"]:
        if data is None:
            errors.append(thehive_missing(f"{name}.data"))
        elif not isinstance(data, str) or not data.strip():
            errors.append(thehive_invalid(f"{name}.data", "string", data))
    if observable.get("message") is not None and not isinstance(observable["message"], str):
        errors.append(thehive_invalid(f"{name}.message", "string", observable["message"]))
    errors += thehive_string_list(f"{name}.tags", observable.get("tags"))
    for flag in ("ioc", "sighted", "ignoreSimilarity"):
        if observable.get(flag) is not None and not isinstance(observable[flag], bool):
            errors.append(thehive_invalid(f"{name}.{flag}", "boolean", observable[flag]))
    for date in ("startDate", "sightedAt"):
        if observable.get(date) is not None and (not is_int(observable[date]) or observable[date] < 0):
            errors.append(thehive_invalid(f"{name}.{date}", "date", observable[date]))
    errors += thehive_level(f"{name}.tlp", observable.get("tlp"), THEHIVE["tlp"])
    errors += thehive_level(f"{name}.pap", observable.get("pap"), THEHIVE["pap"])
    return errors


def thehive_errors(alert):
    errors = []
    for name in THEHIVE["required"]:
        value = alert.get(name)
        if value is None:
            errors.append(thehive_missing(name))
        elif not isinstance(value, str) or not value.strip():
            errors.append(thehive_invalid(name, "string", value))
    for name in THEHIVE["strings"]:
        if alert.get(name) is not None and not isinstance(alert[name], str):
            errors.append(thehive_invalid(name, "string", alert[name]))
    errors += thehive_level("severity", alert.get("severity"), THEHIVE["severity"])
    errors += thehive_level("tlp", alert.get("tlp"), THEHIVE["tlp"])
    errors += thehive_level("pap", alert.get("pap"), THEHIVE["pap"])
    if alert.get("date") is not None and (not is_int(alert["date"]) or alert["date"] < 0):
        errors.append(thehive_invalid("date", "date", alert["date"]))
    errors += thehive_string_list("tags", alert.get("tags"))
    if alert.get("flag") is not None and not isinstance(alert["flag"], bool):
        errors.append(thehive_invalid("flag", "boolean", alert["flag"]))
    fields = alert.get("customFields")
    if fields is not None and not isinstance(fields, dict) and not (
            isinstance(fields, list) and all(isinstance(f, dict) and isinstance(f.get("name"), str) for f in fields)):
        errors.append(thehive_invalid("customFields", "object", fields))
    observables = alert.get("observables")
    if observables is not None:
        if not isinstance(observables, list):
            errors.append(thehive_invalid("observables", "seq of object", observables))
        else:
            for i, observable in enumerate(observables):
                errors += thehive_observable_errors(i, observable)
    return errors


def thehive_check(request, state):
    if request.route != THEHIVE["path"]:
        return Answer(404, {"type": "NotFound", "message": f"No route for POST {request.route}"})
    key = bearer_key(request.headers)
    if key is None:
        return Answer(401, {"type": "AuthenticationError", "message": "Authentication header not found"})
    if not key or (state.api_key is not None and key != state.api_key):
        return Answer(401, {"type": "AuthenticationError", "message": "Authentication failure"})
    alert, complaint = read_json(request.body)
    if complaint is not None:
        return Answer(400, {"type": "BadRequest", "message": f"Invalid Json: {complaint}"})
    if not isinstance(alert, dict):
        return Answer(400, {"type": "BadRequest", "message": "Invalid Json: an alert must be an object"})
    errors = thehive_errors(alert)
    if errors:
        return Answer(400, {"type": "AttributeCheckingError",
                            "message": "".join(f"[{message}]" for _, message in errors),
                            "errors": [error for error, _ in errors]})
    for observable in alert.get("observables") or []:
        if observable["dataType"] not in THEHIVE["data_types"]:
            return Answer(404, {"type": "NotFoundError", "message": f"ObservableType {observable['dataType']} not found"})
    return None


def thehive_accept(request, state):
    alert = json.loads(request.body)
    alert_type = alert["type"].lower()
    triple = (alert_type, alert["source"], alert["sourceRef"])
    if triple in state.thehive_alerts:
        return Answer(400, {"type": "CreateError", "message": f"Alert {':'.join(triple)} already exist in "
                                                              f"organisation {THEHIVE['organisation']}"})
    state.thehive_alerts.add(triple)
    created = now_ms()
    severity, tlp, pap = alert.get("severity", 2), alert.get("tlp", 2), alert.get("pap", 2)
    output = {
        "_id": f"~{state.next_id()}", "_type": "Alert", "_createdBy": THEHIVE["user"], "_createdAt": created,
        "type": alert_type, "source": alert["source"], "sourceRef": alert["sourceRef"],
        "externalLink": alert.get("externalLink"), "title": alert["title"], "description": alert["description"],
        "severity": severity, "severityLabel": THEHIVE["severity"][severity],
        "date": alert.get("date", created), "tags": alert.get("tags", []),
        "tlp": tlp, "tlpLabel": THEHIVE["tlp"][tlp], "pap": pap, "papLabel": THEHIVE["pap"][pap],
        "follow": True, "customFields": [], "caseTemplate": alert.get("caseTemplate"),
        "observableCount": len(alert.get("observables") or []), "status": "New", "stage": "New",
        "summary": alert.get("summary"), "extraData": {}, "newDate": created, "timeToDetect": 0,
    }
    return Answer(201, {k: v for k, v in output.items() if v is not None})


def thehive_fail(status):
    return Answer(status, {"type": "InternalError", "message": f"TheHive answered {status}"})


# --- DFIR-IRIS 2.x -------------------------------------------------------------

IRIS = {
    "path": "/alerts/add",
    # AlertSchema's fields from the Alert model: (name, kind, required, nullable)
    "alert": (("alert_title", "string", True, False), ("alert_description", "string", False, True),
              ("alert_source", "string", False, True), ("alert_source_ref", "string", False, True),
              ("alert_source_link", "string", False, True), ("alert_source_content", "raw", False, True),
              ("alert_severity_id", "integer", True, False), ("alert_status_id", "integer", True, False),
              ("alert_context", "raw", False, True), ("alert_source_event_time", "datetime", False, False),
              ("alert_note", "string", False, True), ("alert_tags", "string", False, True),
              ("alert_owner_id", "integer", False, True), ("alert_customer_id", "integer", True, False),
              ("alert_classification_id", "integer", False, True),
              ("alert_resolution_status_id", "integer", False, True)),
    "ioc": (("ioc_value", "string", True, False), ("ioc_type_id", "integer", False, True),
            ("ioc_description", "string", False, True), ("ioc_tags", "string", False, True),
            ("ioc_tlp_id", "integer", False, True), ("ioc_enrichment", "raw", False, True)),
    "asset": (("asset_name", "string", True, False), ("asset_description", "string", False, True),
              ("asset_domain", "string", False, True), ("asset_ip", "string", False, True),
              ("asset_info", "string", False, True), ("asset_compromise_status_id", "integer", False, True),
              ("asset_type_id", "integer", True, False), ("asset_tags", "string", False, True),
              ("analysis_status_id", "integer", False, True)),
    # marshmallow's messages
    "missing": "Missing data for required field.",
    "null": "Field may not be null.",
    "invalid": {"string": "Not a valid string.", "integer": "Not a valid integer.",
                "datetime": "Not a valid datetime."},
}


def iris_refusal(message, status=400):
    return Answer(status, {"status": "error", "message": message, "data": []})


def iris_integer(value):
    """marshmallow's Integer (not strict): an int, an integral float or a numeric string, not a bool."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return True
    return isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value) is not None


def iris_datetime(value):
    if not isinstance(value, str):
        return False
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


IRIS_KINDS = {"string": lambda v: isinstance(v, str), "integer": iris_integer, "datetime": iris_datetime,
              "raw": lambda v: True}


def iris_field_errors(data, fields):
    """marshmallow's load errors for one object: {field: [message]}."""
    errors = {}
    for name, kind, required, nullable in fields:
        if name not in data:
            if required:
                errors[name] = [IRIS["missing"]]
        elif data[name] is None:
            if not nullable:
                errors[name] = [IRIS["null"]]
        elif not IRIS_KINDS[kind](data[name]):
            errors[name] = [IRIS["invalid"][kind]]
    return errors


def iris_int_like(value):
    """app/util.py's assert_type_mml(type=int) lets through what int() takes."""
    try:
        int(value)
        return True
    except (TypeError, ValueError):
        return False


def iris_tags_fault(value):
    """The pre_load hooks split tags on commas: anything but a string raises."""
    if value and not isinstance(value, str):
        return f"'{type(value).__name__}' object has no attribute 'split'"
    return None


def iris_many_errors(items, fields, pre_load):
    """Schema(many=True).load: a pre_load fault first, then field errors by index."""
    if not isinstance(items, list):
        return str({"_schema": ["Invalid input type."]})
    for item in items:
        if not isinstance(item, dict):
            return f"'{type(item).__name__}' object has no attribute 'get'"
        fault = pre_load(item)
        if fault:
            return fault
    errors = {i: e for i, e in ((i, iris_field_errors(item, fields)) for i, item in enumerate(items)) if e}
    return str(errors) if errors else None


def iris_ioc_pre_load(ioc):
    for name in ("ioc_type_id", "ioc_tlp_id"):
        if ioc.get(name) and not iris_int_like(ioc[name]):
            return str({name: ["Invalid data type"]})
    return iris_tags_fault(ioc.get("ioc_tags"))


def iris_asset_pre_load(asset):
    if asset.get("asset_type_id") is None:
        return str({"asset_type_id": ["Invalid data - non null expected"]})
    if not iris_int_like(asset["asset_type_id"]):
        return str({"asset_type_id": ["Invalid data type"]})
    if asset.get("analysis_status_id") is not None and not iris_int_like(asset["analysis_status_id"]):
        return str({"analysis_status_id": ["Invalid data type"]})
    return iris_tags_fault(asset.get("asset_tags"))


def iris_check(request, state):
    if request.route != IRIS["path"]:
        return iris_refusal("Resource not found", 404)
    key = bearer_key(request.headers)
    if not key or (state.api_key is not None and key != state.api_key):
        return iris_refusal("Authentication required", 401)
    data, _ = read_json(request.body)
    if not data or not request.headers.get("Content-Type", "").startswith("application/json"):
        return iris_refusal("No JSON data provided")
    if not isinstance(data, dict):
        return iris_refusal(f"'{type(data).__name__}' object has no attribute 'pop'")
    fault = (iris_many_errors(data.get("alert_iocs", []), IRIS["ioc"], iris_ioc_pre_load)
             or iris_many_errors(data.get("alert_assets", []), IRIS["asset"], iris_asset_pre_load)
             or iris_tags_fault(data.get("alert_tags")))
    if fault:
        return iris_refusal(fault)
    rest = {k: v for k, v in data.items() if k not in ("alert_iocs", "alert_assets")}
    errors = iris_field_errors(rest, IRIS["alert"])
    return iris_refusal(str(errors)) if errors else None


def iris_accept(request, state):
    data = json.loads(request.body)
    alert_id = state.next_id()
    created = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")
    dumped = {name: data.get(name) for name, *_ in IRIS["alert"]}
    dumped.update({
        "alert_id": alert_id, "alert_uuid": str(uuid.uuid4()), "alert_creation_time": created,
        "alert_source_event_time": data.get("alert_source_event_time") or created,
        "iocs": [dict(ioc, ioc_id=alert_id * 100 + i) for i, ioc in enumerate(data.get("alert_iocs", []))],
        "assets": [dict(asset, asset_id=alert_id * 100 + i) for i, asset in enumerate(data.get("alert_assets", []))],
        "modification_history": {}, "cases": [], "comments": [],
    })
    return Answer(200, {"status": "success", "message": "", "data": dumped})


def iris_fail(status):
    return iris_refusal(f"IRIS answered {status}", status)


# --- Splunk HTTP Event Collector ---------------------------------------------

SPLUNK_HEC = {
    "paths": ("/services/collector", "/services/collector/event", "/services/collector/event/1.0"),
    "metadata": ("host", "source", "sourcetype", "index"),
    # "Troubleshoot HTTP Event Collector": code -> (HTTP status, text)
    "codes": {0: (200, "Success"), 2: (401, "Token is required"), 3: (401, "Invalid authorization"),
              4: (403, "Invalid token"), 5: (400, "No data"), 6: (400, "Invalid data format"),
              7: (400, "Incorrect index"), 8: (500, "Internal server error"), 9: (503, "Server is busy"),
              12: (400, "Event field is required"), 13: (400, "Event field cannot be blank"),
              15: (400, "Error in handling indexed fields")},
}


def splunk_answer(code, event_number=None):
    status, text = SPLUNK_HEC["codes"][code]
    body = {"text": text, "code": code}
    if event_number is not None:
        body["invalid-event-number"] = event_number
    return Answer(status, body)


def splunk_token(headers):
    """(token, None) or (None, the refusal code)."""
    auth = headers.get("Authorization")
    if auth is None:
        return None, 2
    scheme, _, credentials = auth.partition(" ")
    if scheme == "Splunk" and credentials.strip():
        return credentials.strip(), None
    if scheme == "Basic":
        try:
            _, _, password = base64.b64decode(credentials).decode().partition(":")
            if password:
                return password, None
        except ValueError:
            pass
    return None, 3


def splunk_events(body):
    """The concatenated JSON values of a batch, or the index of the first unreadable one."""
    text = body.decode("utf-8", "replace")
    decoder, events, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return events, None
        try:
            event, at = decoder.raw_decode(text, at)
        except ValueError:
            return events, len(events)
        events.append(event)


def splunk_time(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return value >= 0
    return isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value) is not None


def splunk_fields(value):
    def flat(v):
        return isinstance(v, (str, int, float)) and not isinstance(v, bool)
    return isinstance(value, dict) and all(
        flat(v) or (isinstance(v, list) and all(isinstance(x, str) for x in v)) for v in value.values())


def splunk_event_fault(event, indexes):
    """The refusal code for one event, or None."""
    if not isinstance(event, dict):
        return 6
    if "event" not in event:
        return 12
    if event["event"] is None or event["event"] == "":
        return 13
    if any(name in event and not isinstance(event[name], str) for name in SPLUNK_HEC["metadata"]):
        return 6
    if indexes is not None and "index" in event and event["index"] not in indexes:
        return 7
    if "time" in event and not splunk_time(event["time"]):
        return 15
    if "fields" in event and not splunk_fields(event["fields"]):
        return 15
    return None


def splunk_hec_check(request, state):
    if request.route.rstrip("/") not in SPLUNK_HEC["paths"]:
        return Answer(404, {"text": "The requested URL was not found on this server.", "code": 404})
    token, code = splunk_token(request.headers)
    if code is not None:
        return splunk_answer(code)
    if state.api_key is not None and token != state.api_key:
        return splunk_answer(4)
    if not request.body.strip():
        return splunk_answer(5)
    events, unreadable = splunk_events(request.body)
    for number, event in enumerate(events):
        code = splunk_event_fault(event, state.indexes)
        if code is not None:
            return splunk_answer(code, number)
    return None if unreadable is None else splunk_answer(6, unreadable)


def splunk_hec_accept(request, state):
    return splunk_answer(0)


def splunk_hec_fail(status):
    code = {500: 8, 503: 9}.get(status)
    if code is not None:
        return splunk_answer(code)
    return Answer(status, {"text": "Server error", "code": status})


# --- Discord webhooks ---------------------------------------------------------

DISCORD = {
    "path": re.compile(r"/api(?:/v\d+)?/webhooks/(\d+)/([A-Za-z0-9_.-]+)"),
    "content": 2000, "username": (1, 80), "embeds": 10, "embed_total": 6000, "embed_fields": 25,
    "embed": {"title": 256, "description": 4096},
    "embed_field": {"name": 256, "value": 1024},
    "footer": ("text", 2048), "author": ("name", 256),
    "mention_types": ("roles", "users", "everyone"), "mention_ids": 100,
    "epoch": 1420070400000,  # the Discord epoch of snowflakes
}


def discord_error(code, message):
    return {"code": code, "message": message}


def discord_max(limit):
    return discord_error("BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def discord_required():
    return discord_error("BASE_TYPE_REQUIRED", "This field is required")


def discord_not_string(value):
    return discord_error("STRING_TYPE_CONVERT", f'Could not interpret "{value}" as string.')


def discord_put(errors, path, error):
    """Files `error` under errors[path...]["_errors"], as Discord nests form errors."""
    node = errors
    for key in path:
        node = node.setdefault(str(key), {})
    node.setdefault("_errors", []).append(error)


def discord_text(errors, path, value, limit, required=False):
    """Checks a text field; returns its length."""
    if value is None:
        if required:
            discord_put(errors, path, discord_required())
        return 0
    if not isinstance(value, str):
        discord_put(errors, path, discord_not_string(value))
        return 0
    if len(value.strip()) > limit:
        discord_put(errors, path, discord_max(limit))
    return len(value.strip())


def discord_embed_errors(errors, i, embed):
    """Checks one embed; returns its text length (toward the 6000 of all embeds)."""
    path = ("embeds", i)
    if not isinstance(embed, dict):
        discord_put(errors, path, discord_error("MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType"))
        return 0
    total = sum(discord_text(errors, path + (name,), embed.get(name), limit)
                for name, limit in DISCORD["embed"].items())
    for part in ("footer", "author"):
        key, limit = DISCORD[part]
        if embed.get(part) is not None:
            total += discord_text(errors, path + (part, key), (embed[part] or {}).get(key)
                                  if isinstance(embed[part], dict) else None, limit, required=True)
    fields = embed.get("fields")
    if fields is not None:
        if not isinstance(fields, list):
            discord_put(errors, path + ("fields",), discord_error("BASE_TYPE_ARRAY", "Must be an array."))
            return total
        if len(fields) > DISCORD["embed_fields"]:
            discord_put(errors, path + ("fields",), discord_max(DISCORD["embed_fields"]))
        for j, field in enumerate(fields):
            field = field if isinstance(field, dict) else {}
            for name, limit in DISCORD["embed_field"].items():
                total += discord_text(errors, path + ("fields", j, name), field.get(name), limit, required=True)
            if field.get("inline") is not None and not isinstance(field["inline"], bool):
                discord_put(errors, path + ("fields", j, "inline"),
                            discord_error("BASE_TYPE_BOOLEAN", "Must be either true or false."))
    color = embed.get("color")
    if color is not None and (not is_int(color) or not 0 <= color <= 0xFFFFFF):
        discord_put(errors, path + ("color",), discord_error("NUMBER_TYPE_MAX", "int value should be less than or equal to 16777215."))
    stamp = embed.get("timestamp")
    if stamp is not None:
        try:
            datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            discord_put(errors, path + ("timestamp",), discord_error("DATE_TIME_TYPE_PARSE", f"Could not parse {stamp}. Should be ISO8601."))
    return total


def discord_mention_errors(errors, mentions):
    if not isinstance(mentions, dict):
        discord_put(errors, ("allowed_mentions",), discord_error("MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType"))
        return
    parse = mentions.get("parse", [])
    if not isinstance(parse, list):
        parse = [parse]
    for i, kind in enumerate(parse):
        if kind not in DISCORD["mention_types"]:
            discord_put(errors, ("allowed_mentions", "parse", i), discord_error(
                "BASE_TYPE_CHOICES", f"Value must be one of ({', '.join(DISCORD['mention_types'])})."))
    for kind in ("roles", "users"):
        ids = mentions.get(kind)
        if ids is None:
            continue
        if not isinstance(ids, list):
            discord_put(errors, ("allowed_mentions", kind), discord_error("BASE_TYPE_ARRAY", "Must be an array."))
        elif len(ids) > DISCORD["mention_ids"]:
            discord_put(errors, ("allowed_mentions", kind), discord_max(DISCORD["mention_ids"]))
        elif ids and kind in parse:
            discord_put(errors, ("allowed_mentions",), discord_error(
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE", f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.'))
    if mentions.get("replied_user") is not None and not isinstance(mentions["replied_user"], bool):
        discord_put(errors, ("allowed_mentions", "replied_user"), discord_error("BASE_TYPE_BOOLEAN", "Must be either true or false."))


def discord_form_errors(message):
    errors = {}
    content = message.get("content")
    if content is not None and not isinstance(content, (str, int, float)):
        discord_put(errors, ("content",), discord_not_string(content))
    elif content is not None and len(str(content)) > DISCORD["content"]:
        discord_put(errors, ("content",), discord_max(DISCORD["content"]))
    username = message.get("username")
    if username is not None:
        low, high = DISCORD["username"]
        if not isinstance(username, str):
            discord_put(errors, ("username",), discord_not_string(username))
        elif not low <= len(username.strip()) <= high:
            discord_put(errors, ("username",), discord_error("BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length."))
    if message.get("tts") is not None and not isinstance(message["tts"], bool):
        discord_put(errors, ("tts",), discord_error("BASE_TYPE_BOOLEAN", "Must be either true or false."))
    embeds = message.get("embeds")
    if embeds is not None:
        if not isinstance(embeds, list):
            discord_put(errors, ("embeds",), discord_error("BASE_TYPE_ARRAY", "Must be an array."))
        elif len(embeds) > DISCORD["embeds"]:
            discord_put(errors, ("embeds",), discord_max(DISCORD["embeds"]))
        else:
            total = sum(discord_embed_errors(errors, i, embed) for i, embed in enumerate(embeds))
            if total > DISCORD["embed_total"]:
                discord_put(errors, ("embeds",), discord_error(
                    "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {DISCORD['embed_total']}"))
    if message.get("allowed_mentions") is not None:
        discord_mention_errors(errors, message["allowed_mentions"])
    return errors


def discord_check(request, state):
    route = DISCORD["path"].fullmatch(request.route)
    if route is None:
        return Answer(404, {"message": "404: Not Found", "code": 0})
    if state.api_key is not None and route.group(2) != state.api_key:
        return Answer(401, {"message": "Invalid Webhook Token", "code": 50027})
    message, complaint = read_json(request.body)
    if complaint is not None or not request.headers.get("Content-Type", "").startswith("application/json"):
        return Answer(400, {"message": "The request body contains invalid JSON.", "code": 50109})
    if not isinstance(message, dict):
        return Answer(400, {"message": "Invalid Form Body", "code": 50035, "errors": {
            "_errors": [discord_error("MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")]}})
    errors = discord_form_errors(message)
    if errors:
        return Answer(400, {"message": "Invalid Form Body", "code": 50035, "errors": errors})
    if not (message.get("content") not in (None, "") or message.get("embeds") or message.get("components")
            or message.get("poll")):
        return Answer(400, {"message": "Cannot send an empty message", "code": 50006})
    return None


def discord_snowflake(state):
    return str(((now_ms() - DISCORD["epoch"]) << 22) | (state.next_id() & 0xFFF))


def discord_accept(request, state):
    if request.query.get("wait", ["false"])[-1].lower() not in ("true", "1"):
        return Answer(204)
    message = json.loads(request.body)
    webhook_id = DISCORD["path"].fullmatch(request.route).group(1)
    return Answer(200, {
        "id": discord_snowflake(state), "type": 0, "content": str(message.get("content") or ""),
        "channel_id": str(int(webhook_id) + 1),
        "author": {"bot": True, "id": webhook_id, "username": message.get("username") or "Captain Hook",
                   "avatar": None, "discriminator": "0000"},
        "attachments": [], "embeds": message.get("embeds") or [], "mentions": [], "mention_roles": [],
        "pinned": False, "mention_everyone": False, "tts": bool(message.get("tts")),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(), "edited_timestamp": None,
        "flags": 0, "components": [], "webhook_id": webhook_id,
    })


def discord_fail(status):
    if status == 429:
        return Answer(429, {"message": "You are being rate limited.", "retry_after": 1.0, "global": False},
                      (("Retry-After", "1"),))
    return Answer(status, {"message": f"{status}: {'Internal Server Error' if status == 500 else 'Server Error'}",
                           "code": 0})


# --- Telegram Bot API ----------------------------------------------------------

TELEGRAM = {
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


class TelegramParseError(Exception):
    pass


def telegram_space(c):
    # tdlib's is_space, which counts the terminating NUL as space
    return c in b" \t\r\n\0\v\f"


def telegram_entity(data, i):
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
        char = TELEGRAM["entities"].get(data[i + 1:end])
        if char is None:
            return None, i
    return char, end + (data[end:end + 1] == b";")


def telegram_parse_html(text):
    """The text Telegram shows for `text` in HTML mode (tdlib's parse_html), or TelegramParseError."""
    data = text.encode("utf-8", "surrogatepass") + b"\0"
    size = len(data) - 1
    shown = bytearray()
    opened = []  # [tag, argument]
    i = 0
    while i < size:
        c = data[i]
        if c == ord("&"):
            char, after = telegram_entity(data, i)
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
            while not telegram_space(data[i]) and data[i] != ord(">"):
                i += 1
            if data[i] == 0:
                raise TelegramParseError(f"Unclosed start tag at byte offset {begin}")
            tag = data[begin + 1:i].decode("utf-8", "replace").lower()
            if tag not in TELEGRAM["tags"]:
                raise TelegramParseError(f'Unsupported start tag "{tag}" at byte offset {begin}')
            argument = ""
            while data[i] != ord(">"):
                while data[i] != 0 and telegram_space(data[i]):
                    i += 1
                if data[i] == ord(">"):
                    break
                name_begin = i
                while not telegram_space(data[i]) and data[i] not in b"=>":
                    i += 1
                name = data[name_begin:i].decode("utf-8", "replace")
                if not name:
                    raise TelegramParseError(f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
                while data[i] != 0 and telegram_space(data[i]):
                    i += 1
                if data[i] != ord("="):
                    if data[i] == 0:
                        raise TelegramParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                    if tag == "blockquote" and name == "expandable":
                        argument = "1"
                    continue
                i += 1
                while data[i] != 0 and telegram_space(data[i]):
                    i += 1
                if data[i] == 0:
                    raise TelegramParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if data[i] not in b"'\"":
                    token_begin = i
                    while chr(data[i]).isalnum() and data[i] < 128 or data[i] in b".-" and data[i] != 0:
                        i += 1
                    value = data[token_begin:i].decode().lower()
                    if not telegram_space(data[i]) and data[i] != ord(">"):
                        raise TelegramParseError(f"Unexpected end of name token at byte offset {token_begin}")
                else:
                    quote = data[i]
                    i += 1
                    raw = bytearray()
                    while data[i] != quote and data[i] != 0:
                        if data[i] == ord("&"):
                            char, after = telegram_entity(data, i)
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
                    raise TelegramParseError(f"Unclosed start tag at byte offset {begin}")
                if (tag, name) in (("a", "href"), ("tg-emoji", "emoji-id")):
                    argument = value
                elif (tag, name) == ("code", "class") and value.startswith("language-"):
                    argument = value[len("language-"):]
                elif (tag, name) == ("span", "class") and value.startswith("tg-"):
                    argument = value[len("tg-"):]
            if tag == "span" and argument != "spoiler":
                raise TelegramParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
            opened.append((tag, argument))
            i += 1
        else:
            if not opened:
                raise TelegramParseError(f"Unexpected end tag at byte offset {begin}")
            while not telegram_space(data[i]) and data[i] != ord(">"):
                i += 1
            end_tag = data[begin + 2:i].decode("utf-8", "replace")
            while data[i] != 0 and telegram_space(data[i]):
                i += 1
            if data[i] != ord(">"):
                raise TelegramParseError(f"Unclosed end tag at byte offset {begin}")
            tag, argument = opened.pop()
            if end_tag and end_tag.lower() != tag:
                raise TelegramParseError(f'Unmatched end tag at byte offset {begin}, expected "</{tag}>", '
                                         f'found "</{end_tag}>"')
            if tag == "tg-emoji" and not (argument.isdigit() and 0 < int(argument) < 2 ** 63):
                raise TelegramParseError("Invalid custom emoji identifier specified")
            i += 1
    if opened:
        raise TelegramParseError(f'Can\'t find end tag corresponding to start tag "{opened[-1][0]}"')
    try:
        return shown.decode("utf-8")
    except UnicodeDecodeError:
        raise TelegramParseError("Text contains invalid Unicode characters after decoding HTML entities, "
                                 "check for unmatched surrogate code units") from None


def telegram_refusal(status, description):
    return Answer(status, {"ok": False, "error_code": status, "description": description})


def telegram_params(request):
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


def telegram_bool(value):
    return isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false", "1", "0"))


def telegram_shown_text(params):
    """(the text Telegram would show, None) or (None, the refusal)."""
    parse_mode = params.get("parse_mode", "")
    if not isinstance(parse_mode, str) or parse_mode.lower() not in TELEGRAM["parse_modes"]:
        return None, "Bad Request: unsupported parse_mode"
    text = params.get("text")
    if text is None:
        return None, "Bad Request: message text is empty"
    text = text if isinstance(text, str) else json.dumps(text)
    if parse_mode.lower() == "html":
        try:
            text = telegram_parse_html(text)
        except TelegramParseError as e:
            return None, f"Bad Request: can't parse entities: {e}"
    if not text.strip():
        return None, "Bad Request: message text is empty"
    if len(text.strip()) > TELEGRAM["text"]:
        return None, "Bad Request: message is too long"
    return text.strip(), None


def telegram_check(request, state):
    route = TELEGRAM["path"].fullmatch(request.route)
    if route is None or TELEGRAM["token"].fullmatch(route.group(1)) is None:
        return telegram_refusal(404, "Not Found")
    if state.api_key is not None and route.group(1) != state.api_key:
        return telegram_refusal(401, "Unauthorized")
    if route.group(2).lower() != TELEGRAM["method"]:
        return telegram_refusal(404, "Not Found: method not found")
    params = telegram_params(request)
    chat = params.get("chat_id")
    chat = "" if chat is None else str(chat).strip() if not isinstance(chat, bool) else "?"
    if not chat:
        return telegram_refusal(400, "Bad Request: chat_id is empty")
    if TELEGRAM["chat"].fullmatch(chat) is None:
        return telegram_refusal(400, "Bad Request: chat not found")
    for name in ("disable_web_page_preview", "disable_notification", "protect_content"):
        if name in params and not telegram_bool(params[name]):
            return telegram_refusal(400, f"Bad Request: invalid parameter value of {name}")
    if "link_preview_options" in params and not isinstance(params["link_preview_options"], dict):
        return telegram_refusal(400, "Bad Request: can't parse link preview options JSON object")
    _, refusal = telegram_shown_text(params)
    return None if refusal is None else telegram_refusal(400, refusal)


def telegram_accept(request, state):
    params = telegram_params(request)
    text, _ = telegram_shown_text(params)
    bot_id = int(TELEGRAM["token"].fullmatch(TELEGRAM["path"].fullmatch(request.route).group(1)).group(1))
    chat = str(params["chat_id"]).strip()
    if chat.startswith("@"):
        chat = {"id": -1000000000000 - len(chat), "title": chat[1:], "username": chat[1:], "type": "channel"}
    else:
        chat = {"id": int(chat), "type": "private" if int(chat) > 0 else "supergroup"}
    return Answer(200, {"ok": True, "result": {
        "message_id": state.next_id(),
        "from": {"id": bot_id, "is_bot": True, "first_name": "velonotify stand-in", "username": "velonotify_bot"},
        "chat": chat, "date": int(time.time()), "text": text}})


def telegram_fail(status):
    if status == 429:
        return Answer(429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
                            "parameters": {"retry_after": 1}})
    reasons = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
    return telegram_refusal(status, reasons.get(status, "Internal Server Error"))


VENDORS = {
    "teams-workflow": Vendor(teams_check, lambda request, state: Answer(202)),
    "pagerduty": Vendor(pagerduty_check, pagerduty_accept),
    "thehive": Vendor(thehive_check, thehive_accept, thehive_fail),
    "iris": Vendor(iris_check, iris_accept, iris_fail),
    "splunk-hec": Vendor(splunk_hec_check, splunk_hec_accept, splunk_hec_fail),
    "discord": Vendor(discord_check, discord_accept, discord_fail),
    "telegram": Vendor(telegram_check, telegram_accept, telegram_fail),
}


if __name__ == "__main__":
    main()

"""splunk-hec: Splunk's HTTP Event Collector ("Format events for HTTP Event
Collector", "HTTP Event Collector REST API endpoints").

`POST /services/collector`, `/services/collector/event` or
`.../event/1.0`, `Authorization: Splunk <token>` (or Basic with the token as
password); the body one or more concatenated JSON event objects, each with
a non-blank `event`, `time` epoch seconds (a number or numeric string),
host/source/sourcetype/index strings, `fields` a flat object (values a
string, number or list of strings); --indexes a,b limits the indexes.

Answers are the codes of "Troubleshoot HTTP Event Collector" (as listed in
gjanders/SplunkAdmins' hec reply code lookup): 200 {"text": "Success",
"code": 0}; 401 "Token is required" 2 / "Invalid authorization" 3; 403
"Invalid token" 4; 400 "No data" 5, "Invalid data format" 6, "Incorrect
index" 7, "Event field is required" 12, "Event field cannot be blank" 13,
"Error in handling indexed fields" 15 (a bad time or nested fields), with
"invalid-event-number" (0 based) for an event's fault; 500 8 and 503 9 for
scheduled errors.
"""

import base64
import json
import re

from .common import Answer


SPEC = {
    "paths": ("/services/collector", "/services/collector/event", "/services/collector/event/1.0"),
    "metadata": ("host", "source", "sourcetype", "index"),
    # "Troubleshoot HTTP Event Collector": code -> (HTTP status, text)
    "codes": {0: (200, "Success"), 2: (401, "Token is required"), 3: (401, "Invalid authorization"),
              4: (403, "Invalid token"), 5: (400, "No data"), 6: (400, "Invalid data format"),
              7: (400, "Incorrect index"), 8: (500, "Internal server error"), 9: (503, "Server is busy"),
              12: (400, "Event field is required"), 13: (400, "Event field cannot be blank"),
              15: (400, "Error in handling indexed fields")},
}


def answer(code, event_number=None):
    status, text = SPEC["codes"][code]
    body = {"text": text, "code": code}
    if event_number is not None:
        body["invalid-event-number"] = event_number
    return Answer(status, body)


def read_token(headers):
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


def read_events(body):
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


def is_time(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return value >= 0
    return isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value) is not None


def is_flat_fields(value):
    def flat(v):
        return isinstance(v, (str, int, float)) and not isinstance(v, bool)
    return isinstance(value, dict) and all(
        flat(v) or (isinstance(v, list) and all(isinstance(x, str) for x in v)) for v in value.values())


def event_fault(event, indexes):
    """The refusal code for one event, or None."""
    if not isinstance(event, dict):
        return 6
    if "event" not in event:
        return 12
    if event["event"] is None or event["event"] == "":
        return 13
    if any(name in event and not isinstance(event[name], str) for name in SPEC["metadata"]):
        return 6
    if indexes is not None and "index" in event and event["index"] not in indexes:
        return 7
    if "time" in event and not is_time(event["time"]):
        return 15
    if "fields" in event and not is_flat_fields(event["fields"]):
        return 15
    return None


def check(request, state):
    if request.route.rstrip("/") not in SPEC["paths"]:
        return Answer(404, {"text": "The requested URL was not found on this server.", "code": 404})
    token, code = read_token(request.headers)
    if code is not None:
        return answer(code)
    if state.api_key is not None and token != state.api_key:
        return answer(4)
    if not request.body.strip():
        return answer(5)
    events, unreadable = read_events(request.body)
    for number, event in enumerate(events):
        code = event_fault(event, state.indexes)
        if code is not None:
            return answer(code, number)
    return None if unreadable is None else answer(6, unreadable)


def accept(request, state):
    return answer(0)


def fail(status):
    code = {500: 8, 503: 9}.get(status)
    if code is not None:
        return answer(code)
    return Answer(status, {"text": "Server error", "code": status})

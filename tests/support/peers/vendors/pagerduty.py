"""pagerduty: PagerDuty's Events API v2 (`POST /v2/enqueue`, "Send an Alert
Event").

A 32-character routing_key, event_action trigger, acknowledge or resolve, a
dedup_key of at most 255 characters (required but for trigger), and for a
trigger a payload with summary (1 to 1024 characters), source and severity
(critical, error, warning or info), timestamp in ISO 8601 when given,
component/group/class strings, custom_details an object; links [{href,
text}]. Accepted: 202 {"status": "success", "message": "Event processed",
"dedup_key"}; refused: 400 {"status": "invalid event", "message": "Event
object is invalid", "errors": [...]}. A scheduled error keeps the
plain-text "server error".
"""

import datetime
import json

from .common import Answer


SEVERITIES = ("critical", "error", "warning", "info")


def event_errors(path, headers, body):
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
        if payload.get("severity") not in SEVERITIES:
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


def check(request, state):
    errors = event_errors(request.path, request.headers, request.body)
    if errors:
        return Answer(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})
    return None


def accept(request, state):
    event = json.loads(request.body)
    return Answer(202, {"status": "success", "message": "Event processed", "dedup_key": event.get("dedup_key")})

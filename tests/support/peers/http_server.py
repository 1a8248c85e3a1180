#!/usr/bin/env python3
"""A real HTTP(S) server for velonotify's webhook tests.

It answers POSTs with the status codes of --responses in turn (the last one
repeats), records each request as a line of --log (method, path, headers in lower case,
body), serves HTTPS when given a certificate, writes --ready-file once it
listens, and runs until it is killed.

With --vendor, it stands in for that vendor's endpoint and first checks
each request against the vendor's documented schema, answering a refusal
in the vendor's words when it does not hold:

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
"""

import argparse
import datetime
import json
import pathlib
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--ready-file", required=True)
    p.add_argument("--responses", default="200")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--vendor", choices=["teams-workflow", "pagerduty"])
    args = p.parse_args()
    statuses = [int(s) for s in args.responses.split(",")]
    lock = threading.Lock()
    seen = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            refusal = check(args.vendor, self.path, self.headers, body)
            accepted = None
            with lock:
                status = statuses[min(seen[0], len(statuses) - 1)]
                seen[0] += 1
                if refusal is not None:
                    status = 400
                elif args.vendor in ("teams-workflow", "pagerduty") and status == 200:
                    status = 202
                    if args.vendor == "pagerduty":
                        event = json.loads(body)
                        accepted = {"status": "success", "message": "Event processed",
                                    "dedup_key": event.get("dedup_key")}
                with open(args.log, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"method": "POST", "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                        "body": body.decode("utf-8", "replace"), "status": status}) + "\n")
            self.send_response(status)
            if refusal is not None or accepted is not None:
                answer = json.dumps(refusal if refusal is not None else accepted).encode()
                self.send_header("Content-Type", "application/json")
            else:
                answer = b"ok" if status < 400 else b"server error"
                self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    pathlib.Path(args.ready_file).write_text("ready")
    server.serve_forever()


def check(vendor, path, headers, body):
    """None when the request is what `vendor` takes, else its refusal."""
    if vendor == "teams-workflow":
        return check_teams_workflow(headers, body)
    if vendor == "pagerduty":
        errors = pagerduty_errors(path, headers, body)
        if errors:
            return {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
    return None


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


if __name__ == "__main__":
    main()

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

What each vendor checks, and the documentation it comes from, is in the
package beside this script: vendors/teams_workflow.py, pagerduty.py,
thehive.py, iris.py, splunk_hec.py, discord.py and telegram.py, with the
VENDORS table in vendors/__init__.py.
"""

import argparse
import json
import pathlib
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from vendors import VENDORS, Answer, Request, State


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


if __name__ == "__main__":
    main()

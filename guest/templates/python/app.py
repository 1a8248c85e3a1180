"""__MODULE_NAME__: a velonotify rule module in Python.

It alerts when a file whose name matches FileRegex is accessed. Change
`handle` to your rule; `velonotify test` checks it against the rows in
__STEM__.selftest.jsonl (see README.md).
"""

from velonotify import Param, Rule, alert, export, interest, matches


class MyRule(Rule):
    name = "__MODULE_NAME__"
    version = "0.1.0"
    description = "Alerts when a file whose name matches FileRegex is accessed."
    params = [
        Param.string("Queue", "Linux.Detection.Honeyfiles", "The event queue to watch."),
        Param.regex("FileRegex", r"passw|secret", "Names of the files to alert on (the FileName column)."),
        Param.int("Dedup", 300, "Seconds during which the same alert is raised once."),
    ]

    def queues_for(self, p):
        return [p.Queue]

    def interests(self):
        # The host tests FileName itself and spares the rule the other rows.
        return [interest(self.p.Queue, FileName=matches(self.p.FileRegex.pattern))]

    def handle(self, row, event):
        file_name = str(row.get("FileName") or "")
        if not self.p.FileRegex.search(file_name):
            return []
        name = f'Honey file "{file_name}" accessed'
        return [alert(name, row, self.p.Dedup, client_id=row.get("ClientId"), artifact=self.p.Queue)]


WitWorld = export(MyRule)

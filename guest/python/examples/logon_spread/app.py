"""Custom.Detection.LogonSpread: one account logging on to more hosts than
it should within a few minutes (a sign of lateral movement), from the 4624
logons `Windows.Events.Trackaccount` reports (TargetUserName, LogonType,
IpAddress, ...) on each client.

The hosts an account was seen on are kept in the host's state, per
account, so the count survives restarts and hot swaps of the module.
"""

from velonotify import Param, Rule, alert, export, log, now_us, state


class LogonSpread(Rule):
    name = "Custom.Detection.LogonSpread"
    version = "0.1.0"
    description = "Alerts when an account logs on to more than MaxHosts hosts within WindowMinutes."
    params = [
        Param.string("Queue", "Windows.Events.Trackaccount", "The event queue of logons."),
        Param.string("UserColumn", "TargetUserName", "The column naming the account."),
        Param.string("HostColumn", "ClientId", "The column naming the host logged on to."),
        Param.int("MaxHosts", 3, "More distinct hosts than this within the window raise an alert."),
        Param.int("WindowMinutes", 10, "The window, in minutes."),
        Param.regex(
            "IgnoreUsers",
            r"\$$|^(SYSTEM|LOCAL SERVICE|NETWORK SERVICE|ANONYMOUS LOGON|DWM-\d+|UMFD-\d+)$",
            "Accounts never counted (machine accounts end in $).",
        ),
        Param.int("Dedup", 3600, "Seconds during which the alert for one account is raised once."),
    ]

    def configure(self):
        for name, most in (("MaxHosts", 10_000), ("WindowMinutes", 1440)):
            if not 0 < getattr(self.p, name) <= most:
                error = ValueError(f"must be between 1 and {most}")
                error.param = name
                raise error

    def queues_for(self, p):
        return [p.Queue]

    def handle(self, row, event):
        user = str(row.get(self.p.UserColumn) or "")
        host = str(row.get(self.p.HostColumn) or "")
        if not user or not host or self.p.IgnoreUsers.search(user):
            return []
        now = now_us()
        window_us = self.p.WindowMinutes * 60 * 1_000_000
        key = f"hosts/{user.lower()}"
        seen = state.get_json(key, {})
        seen = {h: t for h, t in seen.items() if now - t < window_us}
        seen[host] = now
        # Bounded: the newest hosts are enough to say "more than MaxHosts".
        if len(seen) > self.p.MaxHosts + 1:
            seen = dict(sorted(seen.items(), key=lambda item: item[1])[-(self.p.MaxHosts + 1) :])
        # The entry lives as long as the window: an idle account is forgotten.
        state.put_json(key, seen, ttl_seconds=self.p.WindowMinutes * 60)
        if len(seen) <= self.p.MaxHosts:
            log.debug(f"{user}: {len(seen)} host(s) within {self.p.WindowMinutes} min")
            return []
        account = user.lower()
        context = {
            "User": account,
            "Hosts": sorted(seen),
            "HostCount": len(seen),
            "WindowMinutes": self.p.WindowMinutes,
            "LastLogon": row,
            "Severity": "high",
        }
        # Stable for the account (the host deduplicates by name): the count
        # is in the context.
        name = f"Account {account} logged on to more than {self.p.MaxHosts} hosts within {self.p.WindowMinutes} minutes"
        return [alert(name, context, self.p.Dedup)]


WitWorld = export(LogonSpread)

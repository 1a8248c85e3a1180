"""The vendors http_server.py can stand in for (--vendor NAME): one module
each, with what it checks and the documentation that comes from.

A vendor is a Vendor(check, accept, fail): `check` answers a refusal in the
vendor's words (or None when the request holds), `accept` the answer to a
scheduled 200, `fail` (when given) the answer to a scheduled error.
--api-key, when given, is the only key/token the vendor accepts.
"""

from . import discord, iris, pagerduty, splunk_hec, telegram, teams_workflow, thehive
from .common import Answer, Request, State, Vendor

__all__ = ["VENDORS", "Answer", "Request", "State", "Vendor"]

VENDORS = {
    "teams-workflow": Vendor(teams_workflow.check, teams_workflow.accept),
    "pagerduty": Vendor(pagerduty.check, pagerduty.accept),
    "thehive": Vendor(thehive.check, thehive.accept, thehive.fail),
    "iris": Vendor(iris.check, iris.accept, iris.fail),
    "splunk-hec": Vendor(splunk_hec.check, splunk_hec.accept, splunk_hec.fail),
    "discord": Vendor(discord.check, discord.accept, discord.fail),
    "telegram": Vendor(telegram.check, telegram.accept, telegram.fail),
}

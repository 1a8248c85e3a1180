"""Write velonotify rule modules in Python.

A rule is a class: it names itself, declares its parameters the way the
Velociraptor artifacts declare theirs, lists the queues it reads and turns a
row (a dict) into actions. `export(MyRule)` makes the class that
componentize-py turns into a component of the `rule-module` world
(wit/world.wit):

    from velonotify import Rule, Param, alert, export

    class Honeyfiles(Rule):
        name = "Custom.Honeyfiles"
        version = "0.1.0"
        description = "Alerts when a honey file is opened."
        params = [Param.regex("FileRegex", r"passw|secret", "Files that are bait.")]
        queues = ["Linux.Detection.Honeyfiles"]

        def handle(self, row, event):
            if self.p.FileRegex.search(str(row.get("FileName", ""))):
                return [alert("Honey file accessed", row, dedup_seconds=3600)]
            return []

    WitWorld = export(Honeyfiles)

Build it with `componentize-py -d wit -w rule-module componentize app -o rule.wasm`
(with this directory on the path: `-p guest/python`).
"""

import csv
import html as _html
import io
import json
import re
import traceback
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone

from componentize_py_types import Err
from wit_world.imports import actions as _actions
from wit_world.imports import clock as _clock
from wit_world.imports import links as _links
from wit_world.imports import log as _log
from wit_world.imports import lookups as _lookups
from wit_world.imports import state as _state
from wit_world.imports import types as _types

__all__ = [
    "BadEvent",
    "Param",
    "Rule",
    "alert",
    "email",
    "export",
    "interest",
    "label",
    "log",
    "lookups",
    "matches",
    "not_matches",
    "one_of",
    "now_us",
    "silence_link",
    "state",
    "user_message",
    "webhook",
]


class BadEvent(Exception):
    """Raise from `handle` when a row cannot be used: the host logs and skips it."""


class _BadConfig(Exception):
    def __init__(self, param, message):
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


# ---------------------------------------------------------------------------
# Parameters, parsed as the Rust modules parse them (wit/types.wit, param-kind)

_TRUE = {"Y", "YES", "TRUE", "OK"}
_FALSE = {"N", "NO", "FALSE", ""}
# VQL's `=~` matches everything with these.
_MATCH_ALL = {"", ".", ".*"}


def _quoted(text):
    """Text quoted as the Rust modules quote it in their messages."""
    return json.dumps(text, ensure_ascii=False)


def _parse_bool(text):
    word = text.strip().upper()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected a boolean (Y, N, TRUE, FALSE, YES, NO), got {_quoted(text)}")


# The range of an int parameter, as the Rust modules' default: a billion
# either way.
_INT_RANGE = (-1_000_000_000, 1_000_000_000)


def _parse_int(text):
    trimmed = text.strip()
    if trimmed == "":
        return 0
    # ASCII digits only: not Python's `1_000` or other scripts' digits.
    if not re.fullmatch(r"[+-]?[0-9]+", trimmed):
        raise ValueError(f"expected an integer, got {_quoted(text)}")
    value = int(trimmed, 10)
    low, high = _INT_RANGE
    if not low <= value <= high:
        raise ValueError(f"{trimmed} is out of range ({low} to {high})")
    return value


def _parse_regex(text):
    # Case-insensitive and unanchored, like VQL's `=~`. Python's `re`
    # syntax is close to Go's RE2 for the patterns artifacts use.
    pattern = "" if text in _MATCH_ALL else text
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as e:
        raise ValueError(f"the regex does not compile: {e}") from None


def _parse_csv(text):
    """Rows as dicts of text, read as the Rust modules read a CSV table:
    names trimmed, spaces after a comma dropped, blank rows skipped, a
    missing cell empty and an extra one ignored."""
    stripped = text.strip()
    if stripped.startswith("["):
        rows = json.loads(stripped)
        if not all(isinstance(r, dict) for r in rows):
            raise ValueError("a JSON table must be an array of objects")
        return rows
    if stripped == "":
        return []
    lines = csv.reader(io.StringIO(stripped), skipinitialspace=True)
    header = [name.strip() for name in next(lines)]
    rows = []
    for cells in lines:
        if not any(cell.strip() for cell in cells):
            continue
        cells = cells + [""] * (len(header) - len(cells))
        rows.append(dict(zip(header, cells)))
    return rows


def _parse_json_array(text):
    value = json.loads(text) if text.strip() else []
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON array, got {_quoted(text)}")
    return value


class Param:
    """One parameter: its name, kind, default (as Velociraptor writes it)
    and description. Make them with the constructors below."""

    def __init__(self, name, kind, default, description, choices=()):
        self.name = name
        self.kind = kind
        # Written as Velociraptor writes it: `Y`, not Python's True.
        self.default = ("Y" if default else "N") if isinstance(default, bool) else str(default)
        self.description = description
        self.choices = list(choices)

    @classmethod
    def bool(cls, name, default, description):
        return cls(name, _types.ParamKind.BOOL, default, description)

    @classmethod
    def int(cls, name, default, description):
        return cls(name, _types.ParamKind.INT, str(default), description)

    @classmethod
    def string(cls, name, default, description):
        return cls(name, _types.ParamKind.STRING, default, description)

    @classmethod
    def regex(cls, name, default, description):
        return cls(name, _types.ParamKind.REGEX, default, description)

    @classmethod
    def csv(cls, name, default, description):
        return cls(name, _types.ParamKind.CSV, default, description)

    @classmethod
    def json_array(cls, name, default, description):
        return cls(name, _types.ParamKind.JSON_ARRAY, default, description)

    @classmethod
    def choices(cls, name, default, description, choices):
        return cls(name, _types.ParamKind.CHOICES, default, description, choices)

    @classmethod
    def multichoice(cls, name, default, description, choices):
        return cls(name, _types.ParamKind.MULTICHOICE, default, description, choices)

    def parse(self, text):
        kind = self.kind
        if kind == _types.ParamKind.BOOL:
            return _parse_bool(text)
        if kind == _types.ParamKind.INT:
            return _parse_int(text)
        if kind == _types.ParamKind.REGEX:
            return _parse_regex(text)
        if kind == _types.ParamKind.CSV:
            return _parse_csv(text)
        if kind == _types.ParamKind.JSON_ARRAY:
            return _parse_json_array(text)
        if kind == _types.ParamKind.CHOICES and text not in self.choices:
            raise ValueError(f"{_quoted(text)} is not one of {', '.join(self.choices)}")
        if kind == _types.ParamKind.MULTICHOICE:
            chosen = _parse_json_array(text)
            unknown = [c for c in chosen if c not in self.choices]
            if unknown:
                raise ValueError(f"{_quoted(unknown[0])} is not one of {', '.join(self.choices)}")
            return chosen
        return text

    def _wit(self):
        return _types.Param(self.name, self.kind, self.default, self.description, self.choices)


class Params:
    """The configured values, as attributes named like the parameters."""

    def __init__(self, declared, given):
        known = {p.name: p for p in declared}
        values = {p.name: p.default for p in declared}
        for name, text in given:
            if name not in known:
                close = [k for k in known if k.lower() == name.lower()]
                if close:
                    message = f"unknown parameter (names are case-sensitive: did you mean {close[0]}?)"
                else:
                    message = f"unknown parameter (this module accepts: {', '.join(known)})"
                raise _BadConfig(name, message)
            values[name] = text
        for name, text in values.items():
            try:
                setattr(self, name, known[name].parse(text))
            except (ValueError, json.JSONDecodeError) as e:
                raise _BadConfig(name, str(e)) from None


# ---------------------------------------------------------------------------
# What a rule can ask for


def alert(name, context, dedup_seconds=None, client_id=None, artifact=None, artifact_type=None, flow_id=None):
    """Raises an alert, as VQL's `alert()` does; the Alerts, webhook and
    user-message modules deliver it. `context` is a dict (the event data)."""
    return _actions.Action_Alert(
        _actions.Alert(
            name=str(name),
            dedup_seconds=dedup_seconds,
            event_data=json.dumps(context, default=str),
            client_id=client_id,
            artifact=artifact,
            artifact_type=artifact_type,
            flow_id=flow_id,
        )
    )


def webhook(url, body, headers=()):
    """POSTs `body` (bytes, text, or anything JSON) to `url`."""
    if isinstance(body, str):
        data = body.encode()
    elif isinstance(body, (bytes, bytearray)):
        data = bytes(body)
    else:
        data = json.dumps(body, default=str).encode()
    return _actions.Action_Webhook(_actions.Webhook(url=url, headers=list(headers), body=data))


def user_message(user, message):
    """A message in a Velociraptor user's notifications."""
    return _actions.Action_UserMessage(_actions.UserMessage(user=user, message=message))


def label(client_id, labels, remove=False):
    """Sets (or removes) labels on a client."""
    op = _actions.LabelOp.REMOVE if remove else _actions.LabelOp.SET
    return _actions.Action_Label(_actions.LabelChange(client_id=client_id, op=op, labels=list(labels)))


def email(recipients, subject, text, html=None, sender="", secret=None, send_interval_seconds=0, link=None):
    """An e-mail built with Python's `email` package (text, and HTML as an
    alternative). An empty sender takes the server's default. When the host
    serves velonotify's silence page, the e-mail ends with its link."""
    silence = silence_link()
    if silence is not None:
        text = f"{text.rstrip()}\n\n{SILENCE_LINK_TEXT}: {silence}\n"
        if html is not None:
            footer = f'<p><a href="{_html.escape(silence)}">{SILENCE_LINK_TEXT}</a></p>'
            at = html.rfind("</body>")
            html = html[:at] + footer + html[at:] if at >= 0 else html + footer
    message = EmailMessage(policy=SMTP)
    message["From"] = sender or _lookups.server().default_sender
    message["To"] = ", ".join(recipients)
    # The host refuses line breaks in headers; so does the policy.
    message["Subject"] = subject.replace("\r", " ").replace("\n", " ")
    message["Date"] = format_datetime(datetime.fromtimestamp(now_us() / 1e6, timezone.utc))
    message["Message-ID"] = make_msgid(domain="velonotify.invalid")
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return _actions.Action_Email(
        _actions.Email(
            secret=secret,
            sender=str(message["From"]),
            recipients=list(recipients),
            subject=str(message["Subject"]),
            message=message.as_bytes(),
            send_interval_seconds=send_interval_seconds,
            link=link,
        )
    )


# ---------------------------------------------------------------------------
# Interests: the rows a rule may act on, tested by the host (wit/types.wit)


def matches(pattern):
    """The column matches the regex (read by the host as VQL's `=~`, in
    Rust regex syntax: a pattern it cannot compile sets the interests aside)."""
    return _types.ValueTest_Matches(pattern)


def not_matches(pattern):
    return _types.ValueTest_NotMatches(pattern)


def one_of(*texts):
    """The column is one of these texts, exactly."""
    return _types.ValueTest_OneOf(list(texts))


def interest(queue, **columns):
    """Rows of `queue` whose columns pass every test, e.g.
    `interest("Linux.Detection.Honeyfiles", FileName=matches("passw"))`."""
    return _types.Interest(queue, [_types.ColumnTest(name, test) for name, test in columns.items()])


# ---------------------------------------------------------------------------
# What the host offers


def now_us():
    """The host's clock (virtual during a replay), microseconds."""
    return _clock.now_us()


SILENCE_LINK_TEXT = "Silence similar for 2 h"


def silence_link():
    """The signed address of velonotify's page that silences notifications
    like the one this call makes, or None (no `[server] velonotify_url`).
    `email()` adds it by itself."""
    return _links.silence_similar()


class _Log:
    def debug(self, message):
        _log.log(_log.LogLevel.DEBUG, str(message))

    def info(self, message):
        _log.log(_log.LogLevel.INFO, str(message))

    def warn(self, message):
        _log.log(_log.LogLevel.WARN, str(message))

    def error(self, message):
        _log.log(_log.LogLevel.ERROR, str(message))

    def debug_enabled(self):
        """Whether debug lines are kept (a replay explains; `run` does not)."""
        return _log.enabled(_log.LogLevel.DEBUG)


log = _Log()


class _State:
    """The module's state in the host: it survives restarts and swaps."""

    def get(self, key):
        return _state.get(key)

    def put(self, key, value, ttl_seconds=0):
        _state.put(key, bytes(value), ttl_seconds)

    def get_json(self, key, default=None):
        raw = _state.get(key)
        return default if raw is None else json.loads(raw)

    def put_json(self, key, value, ttl_seconds=0):
        _state.put(key, json.dumps(value).encode(), ttl_seconds)


state = _State()


class _LookupFailed(Exception):
    pass


def _answer(call, *args):
    try:
        return call(*args)
    except Err as e:
        raise _LookupFailed(str(getattr(e.value, "value", e.value))) from None


def _one(text):
    return None if text is None else json.loads(text)


class _Lookups:
    """Velociraptor's answers, as dicts (None when unknown). A lookup that
    fails ends the call with a `lookup` failure: the host tries the event
    again later."""

    def server(self):
        return _lookups.server()

    def client_info(self, client_id):
        return _one(_answer(_lookups.client_info, client_id))

    def client_metadata(self, client_id):
        return _one(_answer(_lookups.client_metadata, client_id))

    def clients(self, label=None):
        return [json.loads(c) for c in _answer(_lookups.clients, label)]

    def flow(self, client_id, flow_id):
        return _one(_answer(_lookups.flow, client_id, flow_id))

    def hunt(self, hunt_id):
        return _one(_answer(_lookups.hunt, hunt_id))

    def artifact(self, name):
        return _one(_answer(_lookups.artifact, name))

    def users(self):
        return [json.loads(u) for u in _answer(_lookups.users)]


lookups = _Lookups()


# ---------------------------------------------------------------------------
# The rule and the world around it


class Rule:
    """Subclass this. Set `name`, `version`, `description`, `params` and
    `queues`; write `handle(row, event)` (and `tick()` with
    `tick_seconds`). `self.p` holds the parameters' values."""

    name = "Custom.Rule"
    version = "0.1.0"
    description = ""
    params = []
    queues = []
    tick_seconds = None

    def configure(self):
        """Called once the parameters are in `self.p`; check them here
        (raise ValueError naming the problem)."""

    def queues_for(self, p):
        """The queues to read; by default `queues` (a rule may take them
        from a parameter)."""
        return list(self.queues)

    def interests(self):
        """The rows the rule may act on (`interest(...)`), so that the host
        spares it the others; none: every row of its queues. The rule must
        still decide: the host may call it for any row."""
        return []

    def handle(self, row, event):
        return []

    def tick(self):
        return []


def _failure(error):
    if isinstance(error, _BadConfig):
        return Err(_types.Failure_BadConfig(_types.ParamError(error.param, error.message)))
    if isinstance(error, BadEvent):
        return Err(_types.Failure_BadEvent(str(error)))
    if isinstance(error, _LookupFailed):
        return Err(_types.Failure_Lookup(str(error)))
    # A bug in the rule: say where, briefly.
    where = traceback.format_exception(error)[-2:] if error.__traceback__ else []
    return Err(_types.Failure_Internal(f"{type(error).__name__}: {error} {''.join(where).strip()}"[:2000]))


def export(rule_class):
    """The `WitWorld` class componentize-py exports, running `rule_class`."""

    class WitWorld:
        rule = None

        def describe(self):
            return _types.ModuleInfo(
                name=rule_class.name,
                version=rule_class.version,
                description=rule_class.description,
                params=[p._wit() for p in rule_class.params],
            )

        def configure(self, params):
            try:
                rule = rule_class()
                rule.p = Params(rule_class.params, params)
                try:
                    rule.configure()
                except ValueError as e:
                    raise _BadConfig(getattr(e, "param", rule_class.name), str(e)) from None
                WitWorld.rule = rule
                return _types.Setup(
                    queues=rule.queues_for(rule.p),
                    tick_seconds=rule_class.tick_seconds,
                    interests=list(rule.interests()),
                )
            except Exception as e:  # noqa: BLE001 - every failure is reported
                raise _failure(e) from None

        def handle(self, event):
            try:
                try:
                    row = json.loads(event.row)
                except ValueError as e:
                    raise BadEvent(f"the row is not JSON: {e}") from None
                if not isinstance(row, dict):
                    raise BadEvent(f"the row is not a JSON object: {event.row[:100]}")
                return list(WitWorld.rule.handle(row, event) or [])
            except Exception as e:  # noqa: BLE001
                raise _failure(e) from None

        def tick(self):
            try:
                return list(WitWorld.rule.tick() or [])
            except Exception as e:  # noqa: BLE001
                raise _failure(e) from None

    return WitWorld


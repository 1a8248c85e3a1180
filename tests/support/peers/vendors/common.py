"""What the vendors' stand-ins share: the request and answer types, the
server's state and small JSON/authorization helpers."""

import json
import time
import urllib.parse
from typing import Any, Callable, NamedTuple, Optional


class Answer(NamedTuple):
    """What the stand-in answers: a status, a JSON body (None: plain text,
    or nothing for 204) and extra headers."""
    status: int
    body: Any = None
    headers: tuple = ()


class Request(NamedTuple):
    path: str
    headers: Any
    body: bytes

    @property
    def route(self):
        return urllib.parse.urlsplit(self.path).path

    @property
    def query(self):
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)


class State:
    """What the stand-in remembers between requests (used under the lock)."""

    def __init__(self, api_key, indexes):
        self.api_key = api_key
        self.indexes = indexes
        self.counter = 0
        self.thehive_alerts = set()

    def next_id(self):
        self.counter += 1
        return self.counter


class Vendor(NamedTuple):
    check: Callable[[Request, State], Optional[Answer]]  # refusal, or None
    accept: Callable[[Request, State], Answer]  # the answer to a scheduled 200
    fail: Optional[Callable[[int], Answer]] = None  # the answer to a scheduled error


def read_json(body):
    """(value, None) or (None, the parser's complaint)."""
    try:
        return json.loads(body), None
    except ValueError as e:
        return None, str(e)


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def bearer_key(headers):
    """The key of `Authorization: Bearer <key>`, "" for another scheme, None without the header."""
    auth = headers.get("Authorization")
    if auth is None:
        return None
    return auth[len("Bearer "):] if auth.startswith("Bearer ") else ""


def now_ms():
    return int(time.time() * 1000)

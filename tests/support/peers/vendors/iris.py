"""iris: DFIR-IRIS 2.x "Add an alert", `POST /alerts/add` with
`Authorization: Bearer <key>`.

Checked as iris-web's alerts_add_route checks it
(source/app/blueprints/alerts/alerts_routes.py): a JSON object, else 400
"No JSON data provided"; alert_iocs loaded with IocSchema, then
alert_assets with CaseAssetsSchema, then the rest with AlertSchema
(source/app/schema/marshables.py over source/app/models/alerts.py):
alert_title (string), alert_severity_id, alert_status_id,
alert_customer_id (integers) required; alert_description, alert_source,
alert_source_ref, alert_source_link, alert_note, alert_tags (a
comma-separated string) strings; alert_source_event_time an ISO 8601 time;
alert_classification_id an integer; alert_source_content and alert_context
any JSON; IOCs need ioc_value (1+ characters), integer
ioc_type_id/ioc_tlp_id, string ioc_description/ioc_tags; assets need
asset_name and an integer asset_type_id, strings asset_description,
asset_ip, asset_domain, asset_tags.

The route answers any failure with app/util.py's response_error(str(e)):
400 {"status": "error", "message": "{'field': ['marshmallow message']}",
"data": []}; 401 {"status": "error", "message": "Authentication required",
"data": []} (ac_api_requires). Accepted: 200 {"status": "success",
"message": "", "data": {the dumped alert with "alert_id": N}}
(response_success(data=)). Ids are not checked against IRIS's tables (the
stand-in has none).
"""

import datetime
import json
import re
import uuid

from .common import Answer, bearer_key, read_json


SPEC = {
    "path": "/alerts/add",
    # AlertSchema's fields from the Alert model: (name, kind, required, nullable)
    "alert": (("alert_title", "string", True, False), ("alert_description", "string", False, True),
              ("alert_source", "string", False, True), ("alert_source_ref", "string", False, True),
              ("alert_source_link", "string", False, True), ("alert_source_content", "raw", False, True),
              ("alert_severity_id", "integer", True, False), ("alert_status_id", "integer", True, False),
              ("alert_context", "raw", False, True), ("alert_source_event_time", "datetime", False, False),
              ("alert_note", "string", False, True), ("alert_tags", "string", False, True),
              ("alert_owner_id", "integer", False, True), ("alert_customer_id", "integer", True, False),
              ("alert_classification_id", "integer", False, True),
              ("alert_resolution_status_id", "integer", False, True)),
    "ioc": (("ioc_value", "string", True, False), ("ioc_type_id", "integer", False, True),
            ("ioc_description", "string", False, True), ("ioc_tags", "string", False, True),
            ("ioc_tlp_id", "integer", False, True), ("ioc_enrichment", "raw", False, True)),
    "asset": (("asset_name", "string", True, False), ("asset_description", "string", False, True),
              ("asset_domain", "string", False, True), ("asset_ip", "string", False, True),
              ("asset_info", "string", False, True), ("asset_compromise_status_id", "integer", False, True),
              ("asset_type_id", "integer", True, False), ("asset_tags", "string", False, True),
              ("analysis_status_id", "integer", False, True)),
    # marshmallow's messages
    "missing": "Missing data for required field.",
    "null": "Field may not be null.",
    "invalid": {"string": "Not a valid string.", "integer": "Not a valid integer.",
                "datetime": "Not a valid datetime."},
}


def refusal(message, status=400):
    return Answer(status, {"status": "error", "message": message, "data": []})


def is_integer(value):
    """marshmallow's Integer (not strict): an int, an integral float or a numeric string, not a bool."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return True
    return isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value) is not None


def is_datetime(value):
    if not isinstance(value, str):
        return False
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


KINDS = {"string": lambda v: isinstance(v, str), "integer": is_integer, "datetime": is_datetime,
              "raw": lambda v: True}


def field_errors(data, fields):
    """marshmallow's load errors for one object: {field: [message]}."""
    errors = {}
    for name, kind, required, nullable in fields:
        if name not in data:
            if required:
                errors[name] = [SPEC["missing"]]
        elif data[name] is None:
            if not nullable:
                errors[name] = [SPEC["null"]]
        elif not KINDS[kind](data[name]):
            errors[name] = [SPEC["invalid"][kind]]
    return errors


def int_like(value):
    """app/util.py's assert_type_mml(type=int) lets through what int() takes."""
    try:
        int(value)
        return True
    except (TypeError, ValueError):
        return False


def tags_fault(value):
    """The pre_load hooks split tags on commas: anything but a string raises."""
    if value and not isinstance(value, str):
        return f"'{type(value).__name__}' object has no attribute 'split'"
    return None


def many_errors(items, fields, pre_load):
    """Schema(many=True).load: a pre_load fault first, then field errors by index."""
    if not isinstance(items, list):
        return str({"_schema": ["Invalid input type."]})
    for item in items:
        if not isinstance(item, dict):
            return f"'{type(item).__name__}' object has no attribute 'get'"
        fault = pre_load(item)
        if fault:
            return fault
    errors = {i: e for i, e in ((i, field_errors(item, fields)) for i, item in enumerate(items)) if e}
    return str(errors) if errors else None


def ioc_pre_load(ioc):
    for name in ("ioc_type_id", "ioc_tlp_id"):
        if ioc.get(name) and not int_like(ioc[name]):
            return str({name: ["Invalid data type"]})
    return tags_fault(ioc.get("ioc_tags"))


def asset_pre_load(asset):
    if asset.get("asset_type_id") is None:
        return str({"asset_type_id": ["Invalid data - non null expected"]})
    if not int_like(asset["asset_type_id"]):
        return str({"asset_type_id": ["Invalid data type"]})
    if asset.get("analysis_status_id") is not None and not int_like(asset["analysis_status_id"]):
        return str({"analysis_status_id": ["Invalid data type"]})
    return tags_fault(asset.get("asset_tags"))


def check(request, state):
    if request.route != SPEC["path"]:
        return refusal("Resource not found", 404)
    key = bearer_key(request.headers)
    if not key or (state.api_key is not None and key != state.api_key):
        return refusal("Authentication required", 401)
    data, _ = read_json(request.body)
    if not data or not request.headers.get("Content-Type", "").startswith("application/json"):
        return refusal("No JSON data provided")
    if not isinstance(data, dict):
        return refusal(f"'{type(data).__name__}' object has no attribute 'pop'")
    fault = (many_errors(data.get("alert_iocs", []), SPEC["ioc"], ioc_pre_load)
             or many_errors(data.get("alert_assets", []), SPEC["asset"], asset_pre_load)
             or tags_fault(data.get("alert_tags")))
    if fault:
        return refusal(fault)
    rest = {k: v for k, v in data.items() if k not in ("alert_iocs", "alert_assets")}
    errors = field_errors(rest, SPEC["alert"])
    return refusal(str(errors)) if errors else None


def accept(request, state):
    data = json.loads(request.body)
    alert_id = state.next_id()
    created = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")
    dumped = {name: data.get(name) for name, *_ in SPEC["alert"]}
    dumped.update({
        "alert_id": alert_id, "alert_uuid": str(uuid.uuid4()), "alert_creation_time": created,
        "alert_source_event_time": data.get("alert_source_event_time") or created,
        "iocs": [dict(ioc, ioc_id=alert_id * 100 + i) for i, ioc in enumerate(data.get("alert_iocs", []))],
        "assets": [dict(asset, asset_id=alert_id * 100 + i) for i, asset in enumerate(data.get("alert_assets", []))],
        "modification_history": {}, "cases": [], "comments": [],
    })
    return Answer(200, {"status": "success", "message": "", "data": dumped})


def fail(status):
    return refusal(f"IRIS answered {status}", status)

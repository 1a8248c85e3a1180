"""thehive: TheHive 5 "Create alert", `POST /api/v1/alert` with
`Authorization: Bearer <key>`.

Fields from TheHive4py's InputAlert (thehive4py/types/alert.py,
observable.py: the typed API of TheHive 5) and TheHive's dto/v1/Alert.scala:
type, source, sourceRef, title, description required strings (non-empty:
asked for by velonotify, not a documented TheHive rule); severity 1-4, date
(epoch ms), tags [str], flag bool, tlp 0-4, pap 0-3 (TheHive 5's TLP 2.0 /
PAP levels), externalLink, summary, caseTemplate strings, customFields
(object or [{name, value, order}]), observables [{dataType, data, message,
tags, ioc, sighted, tlp, pap, ...}] whose dataType is one of TheHive's
default observable types (ObservableTypeSrv.initialValues; "file" needs an
attachment a JSON body cannot carry).

Errors are ScalliGraph's (ErrorHandler.scala, Errors.scala): 401 {"type":
"AuthenticationError", "message"}, 400 {"type": "AttributeCheckingError",
"message": "[...]", "errors": [{"name", "type": "MissingAttributeError" |
"InvalidFormatAttributeError", ...}]}, 400 {"type": "BadRequest",
"message": "Invalid Json: ..."} for a body that is not JSON, 404 {"type":
"NotFoundError"} for an unknown observable type (getOrFail). (type, source,
sourceRef) is unique per organisation (AlertSrv.create): a second accepted
alert with the same triple gets 400 {"type": "CreateError", "message":
"Alert <type>:<source>:<sourceRef> already exist in organisation <org>"}
(only alerts answered 201 count; under a scheduled error TheHive is "down"
and checks nothing more). Accepted: 201 with the created alert
(OutputAlert: "_id": "~N", "_type": "Alert", type lower-cased as in
docs.thehive-project.org's create-alert example, ...).
"""

import json

from .common import Answer, bearer_key, is_int, now_ms, read_json


SPEC = {
    "path": "/api/v1/alert",
    "organisation": "velonotify",  # the stand-in's one organisation
    "user": "velonotify@thehive.local",
    "required": ("type", "source", "sourceRef", "title", "description"),
    "strings": ("externalLink", "summary", "caseTemplate", "status", "assignee"),
    "severity": {1: "LOW", 2: "MEDIUM", 3: "HIGH", 4: "CRITICAL"},
    "tlp": {0: "CLEAR", 1: "GREEN", 2: "AMBER", 3: "AMBER+STRICT", 4: "RED"},
    "pap": {0: "CLEAR", 1: "GREEN", 2: "AMBER", 3: "RED"},
    # ObservableTypeSrv.initialValues; "file" is an attachment type.
    "data_types": ("url", "other", "user-agent", "regexp", "mail-subject", "registry", "mail",
                   "autonomous-system", "domain", "ip", "uri_path", "filename", "hash", "file",
                   "fqdn", "hostname"),
    "attachment_types": ("file",),
}


def field_repr(value):
    """A JSON value as ScalliGraph's Field prints it (FString(x), FNumber(1), ...)."""
    if isinstance(value, bool):
        return f"FBoolean({str(value).lower()})"
    if isinstance(value, str):
        return f"FString({value})"
    if isinstance(value, (int, float)):
        return f"FNumber({value})"
    if isinstance(value, list):
        return "FSeq(" + ", ".join(field_repr(v) for v in value) + ")"
    if isinstance(value, dict):
        return "FObject(" + ", ".join(f"{k} -> {field_repr(v)}" for k, v in value.items()) + ")"
    return "FNull"


def missing(name):
    return {"name": name, "type": "MissingAttributeError"}, f"Attribute {name} is missing"


def invalid(name, fmt, value, accepted=()):
    error = {"name": name, "format": fmt, "acceptedInput": list(accepted), "field": value,
             "type": "InvalidFormatAttributeError"}
    return error, f"Invalid format for {name}: {field_repr(value)}, expected {fmt} ({','.join(accepted)})"


def level(name, value, levels):
    if value is not None and (not is_int(value) or value not in levels):
        return [invalid(name, "int", value, [str(k) for k in levels])]
    return []


def string_list(name, value):
    if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
        return [invalid(name, "seq of string", value)]
    return []


def observable_errors(i, observable):
    name = f"observables[{i}]"
    if not isinstance(observable, dict):
        return [invalid(name, "object", observable)]
    errors = []
    data_type = observable.get("dataType")
    if data_type is None:
        errors.append(missing(f"{name}.dataType"))
    elif not isinstance(data_type, str):
        errors.append(invalid(f"{name}.dataType", "string", data_type))
    elif data_type in SPEC["attachment_types"]:
        errors.append(missing(f"{name}.attachment"))
    data = observable.get("data")
    if data_type not in SPEC["attachment_types"]:
        if data is None:
            errors.append(missing(f"{name}.data"))
        elif not isinstance(data, str) or not data.strip():
            errors.append(invalid(f"{name}.data", "string", data))
    if observable.get("message") is not None and not isinstance(observable["message"], str):
        errors.append(invalid(f"{name}.message", "string", observable["message"]))
    errors += string_list(f"{name}.tags", observable.get("tags"))
    for flag in ("ioc", "sighted", "ignoreSimilarity"):
        if observable.get(flag) is not None and not isinstance(observable[flag], bool):
            errors.append(invalid(f"{name}.{flag}", "boolean", observable[flag]))
    for date in ("startDate", "sightedAt"):
        if observable.get(date) is not None and (not is_int(observable[date]) or observable[date] < 0):
            errors.append(invalid(f"{name}.{date}", "date", observable[date]))
    errors += level(f"{name}.tlp", observable.get("tlp"), SPEC["tlp"])
    errors += level(f"{name}.pap", observable.get("pap"), SPEC["pap"])
    return errors


def alert_errors(alert):
    errors = []
    for name in SPEC["required"]:
        value = alert.get(name)
        if value is None:
            errors.append(missing(name))
        elif not isinstance(value, str) or not value.strip():
            errors.append(invalid(name, "string", value))
    for name in SPEC["strings"]:
        if alert.get(name) is not None and not isinstance(alert[name], str):
            errors.append(invalid(name, "string", alert[name]))
    errors += level("severity", alert.get("severity"), SPEC["severity"])
    errors += level("tlp", alert.get("tlp"), SPEC["tlp"])
    errors += level("pap", alert.get("pap"), SPEC["pap"])
    if alert.get("date") is not None and (not is_int(alert["date"]) or alert["date"] < 0):
        errors.append(invalid("date", "date", alert["date"]))
    errors += string_list("tags", alert.get("tags"))
    if alert.get("flag") is not None and not isinstance(alert["flag"], bool):
        errors.append(invalid("flag", "boolean", alert["flag"]))
    fields = alert.get("customFields")
    if fields is not None and not isinstance(fields, dict) and not (
            isinstance(fields, list) and all(isinstance(f, dict) and isinstance(f.get("name"), str) for f in fields)):
        errors.append(invalid("customFields", "object", fields))
    observables = alert.get("observables")
    if observables is not None:
        if not isinstance(observables, list):
            errors.append(invalid("observables", "seq of object", observables))
        else:
            for i, observable in enumerate(observables):
                errors += observable_errors(i, observable)
    return errors


def check(request, state):
    if request.route != SPEC["path"]:
        return Answer(404, {"type": "NotFound", "message": f"No route for POST {request.route}"})
    key = bearer_key(request.headers)
    if key is None:
        return Answer(401, {"type": "AuthenticationError", "message": "Authentication header not found"})
    if not key or (state.api_key is not None and key != state.api_key):
        return Answer(401, {"type": "AuthenticationError", "message": "Authentication failure"})
    alert, complaint = read_json(request.body)
    if complaint is not None:
        return Answer(400, {"type": "BadRequest", "message": f"Invalid Json: {complaint}"})
    if not isinstance(alert, dict):
        return Answer(400, {"type": "BadRequest", "message": "Invalid Json: an alert must be an object"})
    errors = alert_errors(alert)
    if errors:
        return Answer(400, {"type": "AttributeCheckingError",
                            "message": "".join(f"[{message}]" for _, message in errors),
                            "errors": [error for error, _ in errors]})
    for observable in alert.get("observables") or []:
        if observable["dataType"] not in SPEC["data_types"]:
            return Answer(404, {"type": "NotFoundError", "message": f"ObservableType {observable['dataType']} not found"})
    return None


def accept(request, state):
    alert = json.loads(request.body)
    alert_type = alert["type"].lower()
    triple = (alert_type, alert["source"], alert["sourceRef"])
    if triple in state.thehive_alerts:
        return Answer(400, {"type": "CreateError", "message": f"Alert {':'.join(triple)} already exist in "
                                                              f"organisation {SPEC['organisation']}"})
    state.thehive_alerts.add(triple)
    created = now_ms()
    severity, tlp, pap = alert.get("severity", 2), alert.get("tlp", 2), alert.get("pap", 2)
    output = {
        "_id": f"~{state.next_id()}", "_type": "Alert", "_createdBy": SPEC["user"], "_createdAt": created,
        "type": alert_type, "source": alert["source"], "sourceRef": alert["sourceRef"],
        "externalLink": alert.get("externalLink"), "title": alert["title"], "description": alert["description"],
        "severity": severity, "severityLabel": SPEC["severity"][severity],
        "date": alert.get("date", created), "tags": alert.get("tags", []),
        "tlp": tlp, "tlpLabel": SPEC["tlp"][tlp], "pap": pap, "papLabel": SPEC["pap"][pap],
        "follow": True, "customFields": [], "caseTemplate": alert.get("caseTemplate"),
        "observableCount": len(alert.get("observables") or []), "status": "New", "stage": "New",
        "summary": alert.get("summary"), "extraData": {}, "newDate": created, "timeToDetect": 0,
    }
    return Answer(201, {k: v for k, v in output.items() if v is not None})


def fail(status):
    return Answer(status, {"type": "InternalError", "message": f"TheHive answered {status}"})

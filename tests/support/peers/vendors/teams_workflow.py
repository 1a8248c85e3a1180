"""teams-workflow: a Microsoft Teams Workflows webhook ("Post to a channel
when a webhook request is received").

The body must be a message whose attachments are Adaptive Cards (Microsoft:
"Workflows support Adaptive Cards only"; a MessageCard gets 400 "Property
'type' must be 'AdaptiveCard'"); accepted requests get 202, as Workflows
answer. A scheduled error keeps the plain-text "server error".
"""

import json

from .common import Answer


def error_body(message):
    return {"error": {"code": "InvalidRequestContent", "message": message}}


def message_refusal(headers, body):
    if not headers.get("Content-Type", "").startswith("application/json"):
        return error_body("The request content type must be 'application/json'.")
    try:
        message = json.loads(body)
    except ValueError as e:
        return error_body(f"The request content is not valid JSON: {e}")
    # The template posts each attachment's card: a body without them (a
    # connector's MessageCard) has no card to post.
    attachments = message.get("attachments") if isinstance(message, dict) else None
    if not isinstance(attachments, list) or not attachments:
        return error_body("Property 'type' must be 'AdaptiveCard': the body carries no Adaptive Card "
                             "attachment (Workflows support Adaptive Cards only).")
    for attachment in attachments:
        if not isinstance(attachment, dict):
            return error_body("An attachment must be an object.")
        if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
            return error_body("Property 'contentType' must be 'application/vnd.microsoft.card.adaptive'.")
        card = attachment.get("content")
        if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
            return error_body("Property 'type' must be 'AdaptiveCard'.")
        version = card.get("version")
        if not isinstance(version, str) or not version.replace(".", "").isdigit():
            return error_body("Property 'version' must be a version string such as '1.4'.")
        blocks = card.get("body")
        if not isinstance(blocks, list):
            return error_body("Property 'body' must be an array.")
        for block in blocks:
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                return error_body("Every element of 'body' must have a 'type'.")
            if block["type"] == "TextBlock" and not isinstance(block.get("text"), str):
                return error_body("A TextBlock must have a 'text' string.")
    return None


def check(request, state):
    refusal = message_refusal(request.headers, request.body)
    return None if refusal is None else Answer(400, refusal)


def accept(request, state):
    return Answer(202)

"""POST /outbound/<token>: Salesforce Outbound Messages in. Stored and committed first, ACKed after."""
from __future__ import annotations

import hmac
import json
import logging

import psycopg
from flask import Blueprint, Response, abort, request
from werkzeug.exceptions import RequestEntityTooLarge

from core.outbound import ACK, MessageError, parse_message, same_org, soap_fault
from webapp.context import ctx

bp = Blueprint("outbound", __name__)
log = logging.getLogger("forcebridge.outbound")


def _soap(body: str, status: int) -> Response:
    return Response(body, status=status, content_type="text/xml; charset=utf-8")


# `path:` because a generated token (Render's generateValue is base64) may contain "/".
@bp.post("/outbound/<path:token>")
def receive(token: str):
    settings = ctx().settings
    # Unknown tokens look like unknown URLs; an unset token means the endpoint is off.
    if not settings.outbound_token or not hmac.compare_digest(token.encode(), settings.outbound_token.encode()):
        abort(404)
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return _soap(soap_fault("Client", f"message larger than {settings.max_message_bytes} bytes"), 413)
    try:
        message = parse_message(body)
    except MessageError as exc:
        log.warning("rejected outbound message: %s", exc)
        return _soap(soap_fault("Client", str(exc)), 400)
    if not same_org(message.organization_id, settings.salesforce_org_id):
        log.warning("rejected outbound message from organization %r", message.organization_id)
        return _soap(soap_fault("Client", "OrganizationId does not match this connection"), 403)
    try:
        store(message)
    except psycopg.Error as exc:
        # Not stored, so not acknowledged: Salesforce will deliver it again.
        log.error("could not store outbound message: %s", exc)
        return _soap(soap_fault("Server", "temporarily unable to store the message"), 503)
    try:
        ctx().enqueue("apply_inbound")
    except Exception:  # noqa: BLE001 - the inbox is the ledger; the sweeper rings again
        log.exception("could not enqueue apply_inbound; the sweeper will pick the notifications up")
    return _soap(ACK, 200)


def store(message) -> None:
    notes = message.notifications
    with ctx().db.transaction() as conn:
        ctx().db.run(conn, "insert_notifications", {
            "org": message.organization_id, "action": message.action_id or None,
            # One JSON document for the whole message: far cheaper to send than arrays of JSON texts.
            "notifications": json.dumps([{"id": n.id, "object_name": n.object_name, "sfid": n.sfid,
                                          "fields": n.fields} for n in notes]),
        })

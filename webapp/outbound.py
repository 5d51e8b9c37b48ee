"""POST /outbound/<token>: Salesforce Outbound Messages in. Stored and committed first, ACKed after."""
from __future__ import annotations

import hmac
import json
import logging

import psycopg
from flask import Blueprint, Response, abort, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, RequestTimeout

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
    limit = settings.max_message_bytes
    too_large = _soap(soap_fault("Client", f"message larger than {limit} bytes"), 413)
    if request.content_length is not None and request.content_length > limit:
        return too_large
    # A body sent without Content-Length (chunked) is read one byte past the limit: one that goes over it is
    # told apart from one that ends exactly there, and answered 413, not cut and called "not well-formed".
    request.max_content_length = limit + 1
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return too_large
    except RequestTimeout:
        log.warning("outbound message body did not arrive in time")
        return _soap(soap_fault("Client", "the message body did not arrive in time"), 408)
    except Exception as exc:  # noqa: BLE001 - a malformed chunked body, a client gone mid-body: its fault
        log.warning("could not read an outbound message body: %s", type(exc).__name__)
        return _soap(soap_fault("Client", "the message body could not be read"), 400)
    if len(body) > limit:
        return too_large
    try:
        message = parse_message(body)
    except MessageError as exc:
        log.warning("rejected outbound message: %s", exc)
        return _soap(soap_fault("Client", str(exc)), 400)
    if not same_org(message.organization_id, settings.salesforce_org_id):
        log.warning("rejected outbound message from organization %r", message.organization_id[:40])
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


@bp.errorhandler(Exception)
def _fault(exc):
    """Whatever goes wrong on this route is answered as SOAP (Salesforce reads nothing else) and logged
    without the path: Flask's own line for an unhandled error ("Exception on /outbound/<token>") names it."""
    if isinstance(exc, HTTPException):
        if exc.code == 404:
            return exc                     # an unknown token looks like any unknown URL
        return _soap(soap_fault("Client" if exc.code < 500 else "Server", exc.description or exc.name), exc.code)
    log.error("outbound message failed: %s", type(exc).__name__, exc_info=exc)
    return _soap(soap_fault("Server", "internal error; deliver again later"), 500)


def store(message) -> None:
    notes = message.notifications
    with ctx().db.transaction() as conn:
        ctx().db.run(conn, "insert_notifications", {
            "org": message.organization_id, "action": message.action_id or None, "state": "pending",
            # One JSON document for the whole message: far cheaper to send than arrays of JSON texts.
            "notifications": json.dumps([{"id": n.id, "object_name": n.object_name, "sfid": n.sfid,
                                          "fields": n.fields} for n in notes]),
        })

"""Composite resources: sObject Collections (create/update/upsert/delete, 200 records, allOrNone) and /composite."""
import json
import re
import urllib.parse

from flask import Blueprint, current_app, g, request
from werkzeug.exceptions import HTTPException

from emulator import ids, validation
from emulator.auth import org, require_session
from emulator.errors import SalesforceError
from emulator.rest import json_response, parse_version, read_json_body, sf_error_response, with_attributes
from emulator.soql import SoqlError

bp = Blueprint("composite", __name__)

MAX_RECORDS = 200
MAX_SUBREQUESTS = 25
_ROLLED_BACK = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "message": "Record rolled back because not all records were valid and the request was using "
                           "AllOrNone header", "fields": []}
_HALTED = {"errorCode": "PROCESSING_HALTED",
           "message": "The transaction was rolled back since another operation in the same transaction failed."}


class _Rollback(Exception):
    """Raised inside the transaction to undo an allOrNone request after every item has its result."""


@bp.errorhandler(SalesforceError)
def _on_error(error: SalesforceError):
    return sf_error_response(error)


def _records_body() -> tuple[list, bool]:
    body = read_json_body()
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise SalesforceError(400, "JSON_PARSER_ERROR", "The request body must contain a records array")
    records = body["records"]
    if len(records) > MAX_RECORDS:
        raise SalesforceError(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records "
                              "into this call")
    return records, bool(body.get("allOrNone", False))


def _check_json_types(records: list) -> None:
    """A value of the wrong JSON type or an unknown field in any record fails the whole call, as the API
    reads the entire body before it processes a record (validation.check_json_types)."""
    the_org = org()
    for record in records:
        if not isinstance(record, dict):
            continue
        sobj = the_org.types.get(str((record.get("attributes") or {}).get("type") or "").lower())
        if sobj is not None:
            validation.check_json_types(sobj, {k: v for k, v in record.items() if k.lower() != "id"
                                               or not isinstance(v, str)})


def _run_items(items: list, all_or_none: bool, operation) -> list[dict]:
    """Run `operation(item) -> result dict` per item in one transaction.

    Every store operation writes with a single statement after all its checks, so a failed item has
    written nothing and needs no savepoint.

    With allOrNone every item still gets its own verdict first; then everything is rolled back and the
    items that had succeeded report ALL_OR_NONE_OPERATION_ROLLED_BACK.
    """
    the_org = org()
    faults = current_app.config["FAULTS"]
    lock_rate = faults.record_error_rate(request.endpoint)     # injected UNABLE_TO_LOCK_ROW per record
    results: list[dict] = []
    try:
        with the_org.transaction():
            for item in items:
                try:
                    if lock_rate and faults.draw() < lock_rate:
                        raise SalesforceError(400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this "
                                              "record", [])
                    results.append(operation(item))
                except SalesforceError as error:
                    results.append({"success": False, "errors": [error.item_error()]})
            if all_or_none and any(not r["success"] for r in results):
                raise _Rollback()
    except _Rollback:
        for index, result in enumerate(results):
            if result["success"]:
                rolled = {"success": False, "errors": [dict(_ROLLED_BACK)]}
                if result.get("_keep_id"):
                    rolled = {"id": result["id"], **rolled}
                results[index] = rolled
    for result in results:
        result.pop("_keep_id", None)
    return results


def _record_type(record) -> str:
    if not isinstance(record, dict):
        raise SalesforceError(400, "JSON_PARSER_ERROR", "Each record must be a JSON object")
    sobject = (record.get("attributes") or {}).get("type")
    if not sobject:
        raise SalesforceError(400, "INVALID_TYPE", "No SObject Type defined in attributes")
    return sobject


def _values(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "attributes"}


@bp.post("/services/data/<version>/composite/sobjects")
@bp.post("/services/data/<version>/composite/sobjects/")
@require_session
def collection_create(version):
    parse_version(version)
    records, all_or_none = _records_body()
    _check_json_types(records)
    the_org = org()
    client, user_id = g.client, g.user_id

    def create(record):
        created = the_org.create(_record_type(record), _values(record), client=client, user_id=user_id, full=False)
        return {"id": created["Id"], "success": True, "errors": []}
    return json_response(_run_items(records, all_or_none, create))


@bp.patch("/services/data/<version>/composite/sobjects")
@bp.patch("/services/data/<version>/composite/sobjects/")
@require_session
def collection_update(version):
    parse_version(version)
    records, all_or_none = _records_body()
    _check_json_types(records)
    the_org = org()
    client, user_id = g.client, g.user_id

    def update(record):
        sobject = _record_type(record)
        values = _values(record)
        record_id = values.pop("id", None) or values.pop("Id", None)
        if not record_id:
            raise SalesforceError(400, "MISSING_ARGUMENT", "Id not specified in an update call", [])
        values.pop("Id", None)
        updated = the_org.update(sobject, record_id, values, client=client, user_id=user_id, full=False)
        return {"id": updated["Id"], "success": True, "errors": [], "_keep_id": True}
    return json_response(_run_items(records, all_or_none, update))


@bp.patch("/services/data/<version>/composite/sobjects/<sobject>/<field>")
@require_session
def collection_upsert(version, sobject, field):
    version = parse_version(version)
    if version.number < 46:
        return json_response([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}], 404)
    records, all_or_none = _records_body()
    the_org = org()
    sobj = the_org.sobject_type(sobject)
    ext = sobj.field(field)
    if ext is None:
        raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
    _check_json_types(records)
    values = [_ext_value(record, ext["name"]) for record in records]
    seen: dict[str, int] = {}
    for value in values:
        if value is not None:
            seen[str(value).lower()] = seen.get(str(value).lower(), 0) + 1
    # The store looks up every value that can reach it in one query instead of one per record.
    matches = the_org.external_id_matches(sobj.name, ext["name"], [
        value for value in values if value is not None and seen[str(value).lower()] == 1])
    client, user_id = g.client, g.user_id

    def upsert(item):
        record, value = item
        record_type = _record_type(record)
        if record_type.lower() != sobj.name.lower():
            raise SalesforceError(400, "INVALID_TYPE", f"Record type {record_type} does not match {sobj.name}", [])
        if value is None:
            raise SalesforceError(400, "MISSING_ARGUMENT", f"{ext['name']} not specified", [])
        if seen[str(value).lower()] > 1:
            raise SalesforceError(400, "DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {value}", [])
        result, created = the_org.upsert(sobj.name, ext["name"], value, _values(record), client=client,
                                         user_id=user_id, full=False, matches=matches)
        return {"id": result["Id"], "success": True, "errors": [], "created": created, "_keep_id": True}
    return json_response(_run_items(list(zip(records, values)), all_or_none, upsert))


def _ext_value(record, field: str):
    if not isinstance(record, dict):
        return None
    for key, value in record.items():
        if key.lower() == field.lower():
            return value
    return None


@bp.get("/services/data/<version>/composite/sobjects/<sobject>")
@require_session
def collection_retrieve(version, sobject):
    """GET ?ids=..&fields=..: records in request order, null for an Id that matches nothing."""
    version = parse_version(version)
    record_ids = [i for i in request.args.get("ids", "").split(",") if i]
    fields = [f for f in request.args.get("fields", "").split(",") if f.strip()]
    if not record_ids or not fields:
        raise SalesforceError(400, "MISSING_ARGUMENT", "ids and fields parameters are required")
    if len(record_ids) > 2000:
        raise SalesforceError(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 2000 records "
                              "into this call")
    the_org = org()
    sobj = the_org.sobject_type(sobject)
    records = []
    for record_id in record_ids:
        record = the_org.get(sobj.name, record_id, fields=fields) if ids.is_valid(record_id, sobj.key_prefix) else None
        records.append(None if record is None else with_attributes(version, sobj.name, record, ids.to18(record_id)))
    return json_response(records)


@bp.delete("/services/data/<version>/composite/sobjects")
@bp.delete("/services/data/<version>/composite/sobjects/")
@require_session
def collection_delete(version):
    parse_version(version)
    raw = request.args.get("ids", "")
    record_ids = [i for i in raw.split(",") if i]
    if not record_ids:
        raise SalesforceError(400, "MISSING_ARGUMENT", "ids parameter is required")
    if len(record_ids) > MAX_RECORDS:
        raise SalesforceError(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records "
                              "into this call")
    all_or_none = request.args.get("allOrNone", "false").lower() == "true"
    the_org = org()
    by_prefix = {t.key_prefix: t for t in the_org.types.values()}

    def delete(record_id):
        sobj = by_prefix.get(record_id[:3]) if ids.is_valid(record_id) else None
        if sobj is None:
            raise SalesforceError(400, "MALFORMED_ID", f"malformed id {record_id}", [])
        try:
            the_org.delete(sobj.name, record_id, client=g.client, user_id=g.user_id)
        except SalesforceError as error:
            if error.error_code == "NOT_FOUND":
                raise SalesforceError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", []) from None
            raise
        return {"id": ids.to18(record_id), "success": True, "errors": [], "_keep_id": True}
    return json_response(_run_items(record_ids, all_or_none, delete))


# ------------------------------------------------------------ /composite

_REFERENCE = re.compile(r"@\{([A-Za-z0-9_]+)\.([^}]+)\}")
_REFERENCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")
# At most 5 of a /composite call's subrequests may be sObject Collections or Query/QueryAll (REST API guide)
MAX_HEAVY_SUBREQUESTS = 5
_HEAVY = re.compile(r"/composite/sobjects|/query(All)?(/|$)")


class _BadReference(Exception):
    pass


def _lookup(results: dict, ref: str, path: str):
    if ref not in results or results[ref] is None:
        raise _BadReference(f"Invalid reference specified. No value for {ref}.{path} found in {ref}. "
                            f"Provided referenceId ({ref}) must be valid.")
    value = results[ref]
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        try:
            value = value[int(part[1:-1])] if part.startswith("[") else value[part]
        except (KeyError, IndexError, TypeError, ValueError):
            raise _BadReference(f"Invalid reference specified. No value for {ref}.{path} found in {ref}. "
                                f"Provided referenceId ({ref}) must be valid.") from None
    return value


def _substitute(value, results: dict):
    if isinstance(value, str):
        whole = _REFERENCE.fullmatch(value)
        if whole:
            return _lookup(results, whole.group(1), whole.group(2))
        return _REFERENCE.sub(lambda m: str(_lookup(results, m.group(1), m.group(2))), value)
    if isinstance(value, list):
        return [_substitute(v, results) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, results) for k, v in value.items()}
    return value


def _dispatch(method: str, url: str, body, headers: dict) -> tuple[int, object, dict]:
    """Run one subrequest through the app's own routes, inside the current API call (not counted again)."""
    app = current_app
    parsed = urllib.parse.urlsplit(url)
    adapter = app.url_map.bind("localhost")
    try:
        endpoint, view_args = adapter.match(parsed.path, method=method, query_args=parsed.query)
    except HTTPException as exc:
        code = exc.code or 404
        return code, [{"errorCode": "NOT_FOUND" if code == 404 else "METHOD_NOT_ALLOWED",
                       "message": "The requested resource does not exist"}], {}
    if endpoint.startswith(("composite.composite", "admin.", "auth.")):
        return 400, [{"errorCode": "INVALID_API_INPUT", "message": f"Resource {parsed.path} is not supported in "
                      "composite"}], {}
    sub_headers = {k: v for k, v in headers.items()}
    sub_headers["Authorization"] = request.headers.get("Authorization", "")
    data = None if body is None else json.dumps(body)
    with app.test_request_context(parsed.path, method=method, query_string=parsed.query, data=data,
                                  headers=sub_headers, content_type="application/json"):
        g.in_composite = True
        try:
            response = app.view_functions[endpoint](**view_args)
        except SalesforceError as error:
            sobject = view_args.get("sobject", "")
            response = sf_error_response(error, view_args.get("version", "v59.0")[1:], sobject)
        except SoqlError as error:
            response = json_response([{"message": error.message, "errorCode": error.error_code}], 400)
        except HTTPException as exc:
            response = json_response([{"errorCode": "NOT_FOUND", "message": "The requested resource does not "
                                       "exist"}], exc.code or 404)
    payload = response.get_data(as_text=True)
    parsed_body = json.loads(payload) if payload else None
    out_headers = {"Location": response.headers["Location"]} if "Location" in response.headers else {}
    return response.status_code, parsed_body, out_headers


@bp.post("/services/data/<version>/composite")
@bp.post("/services/data/<version>/composite/")
@require_session
def composite(version):
    parse_version(version)
    body = read_json_body()
    if not isinstance(body, dict) or not isinstance(body.get("compositeRequest"), list):
        raise SalesforceError(400, "JSON_PARSER_ERROR", "compositeRequest is required")
    subrequests = body["compositeRequest"]
    if len(subrequests) > MAX_SUBREQUESTS:
        raise SalesforceError(400, "INVALID_API_INPUT", f"Composite request limit exceeded. Max of "
                              f"{MAX_SUBREQUESTS} subrequests allowed")
    heavy = sum(1 for sub in subrequests if isinstance(sub, dict) and _HEAVY.search(
        urllib.parse.urlsplit(str(sub.get("url") or "")).path))
    if heavy > MAX_HEAVY_SUBREQUESTS:
        # the limit is documented; the error an org answers with is not: refused whole, before anything runs
        raise SalesforceError(400, "INVALID_API_INPUT", f"Composite request limit exceeded. Max of "
                              f"{MAX_HEAVY_SUBREQUESTS} sObject Collections or query subrequests allowed")
    for sub in subrequests:
        ref = sub.get("referenceId") if isinstance(sub, dict) else None
        if not isinstance(ref, str) or not _REFERENCE_ID.match(ref):
            raise SalesforceError(400, "INVALID_API_INPUT", f"Invalid referenceId: {ref}")
        for key in (sub.get("httpHeaders") or {}):
            if key.lower() in ("accept", "authorization", "content-type"):
                raise SalesforceError(400, "INVALID_API_INPUT", f"Header {key} is not allowed in a subrequest")
    all_or_none = bool(body.get("allOrNone", False))
    the_org = org()
    responses: list[dict] = []
    results: dict = {}

    def run_all():
        failed = False
        for sub in subrequests:
            ref = sub["referenceId"]
            if failed and all_or_none:
                responses.append({"body": [dict(_HALTED)], "httpHeaders": {}, "httpStatusCode": 400,
                                  "referenceId": ref})
                continue
            try:
                url = _substitute(sub.get("url", ""), results)
                sub_body = _substitute(sub.get("body"), results)
            except _BadReference as exc:
                status, out, headers = 400, [{"errorCode": "PROCESSING_HALTED", "message": str(exc)}], {}
            else:
                status, out, headers = _dispatch(sub.get("method", "GET"), url, sub_body, sub.get("httpHeaders") or {})
            results[ref] = out if status < 300 else None
            responses.append({"body": out, "httpHeaders": headers, "httpStatusCode": status, "referenceId": ref})
            if status >= 400:
                failed = True
        return failed

    if all_or_none:
        try:
            with the_org.transaction():
                if run_all():
                    raise _Rollback()
        except _Rollback:
            for entry in responses:
                if entry["httpStatusCode"] < 400:
                    entry.update({"body": [dict(_HALTED)], "httpHeaders": {}, "httpStatusCode": 400})
    else:
        run_all()
    return json_response({"compositeResponse": responses})

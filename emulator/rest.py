"""REST API under /services/data: versions, limits, describe, sObject rows, upsert by external id, SOQL query."""
import datetime as dt
import email.utils
import json
import threading
import time

from flask import Blueprint, current_app, g, make_response, request

from emulator import ids, validation
from emulator.auth import error_response, org, require_session
from emulator.errors import NotFound, SalesforceError
from emulator.soql import SoqlError, format_datetime, parse_datetime

bp = Blueprint("rest", __name__)

MIN_VERSION, MAX_VERSION = 20, 67
_SEASONS = ("Winter", "Spring", "Summer")
DESCRIBE_SUMMARY_KEYS = ("activateable", "createable", "custom", "customSetting", "deletable", "deprecatedAndHidden",
                         "feedEnabled", "keyPrefix", "label", "labelPlural", "layoutable", "mergeable", "mruEnabled",
                         "name", "queryable", "replicateable", "retrieveable", "searchable", "triggerable",
                         "undeletable", "updateable")
LOCATOR_IDLE_SECONDS = 15 * 60


# ------------------------------------------------------------ responses

def note_arrival() -> None:
    """before_request hook: the org's clock when the request arrived, for the Date header."""
    g.arrived_at = org().clock.now()


def add_date(response):
    """after_request hook: Date from the org's clock (tests advance it), not the machine's. The time the request
    arrived: a client reading the Date as "no later than my query ran" is then right here too."""
    arrived = g.get("arrived_at") or org().clock.now()
    response.headers["Date"] = email.utils.format_datetime(arrived.astimezone(dt.timezone.utc), usegmt=True)
    return response


def json_response(body, status: int = 200, headers=None):
    response = make_response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), status)
    response.headers["Content-Type"] = "application/json;charset=UTF-8"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def sf_error_response(error: SalesforceError, version: str = "59.0", sobject: str = ""):
    if error.status_code == 300:
        return json_response([record_url(version, sobject, rid) for rid in error.matches], 300)
    return json_response(error.envelope(), error.status_code)


class ApiVersion(str):
    """"59.0" from a "v59.0" path segment."""

    @property
    def number(self) -> float:
        return float(self)


def parse_version(segment: str) -> ApiVersion:
    if not segment.startswith("v"):
        raise NotFound()
    try:
        number = float(segment[1:])
    except ValueError:
        raise NotFound() from None
    if not MIN_VERSION <= number <= MAX_VERSION or segment[1:] != f"{int(number)}.0":
        raise NotFound()
    return ApiVersion(segment[1:])


def record_url(version: str, sobject: str, record_id: str) -> str:
    return f"/services/data/v{version}/sobjects/{sobject}/{record_id}"


def attributes_for(version: str):
    def attributes(sobject: str, record_id: str) -> dict:
        return {"type": sobject, "url": record_url(version, sobject, record_id)}
    return attributes


def with_attributes(version: str, sobject: str, record: dict, record_id: str) -> dict:
    return {"attributes": {"type": sobject, "url": record_url(version, sobject, record_id)}, **record}


def read_json_body():
    """The request's JSON object, or raises SalesforceError JSON_PARSER_ERROR like Salesforce."""
    raw = request.get_data(as_text=True)
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError as exc:
        raise SalesforceError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc.msg} at [line:{exc.lineno}, "
                              f"column:{exc.colno}]") from None
    return body


@bp.errorhandler(SalesforceError)
def _on_salesforce_error(error: SalesforceError):
    args = request.view_args or {}
    version = args.get("version", "v59.0")[1:]
    sobject = args.get("sobject", "")
    if sobject and sobject.lower() in org().types:
        sobject = org().types[sobject.lower()].name
    return sf_error_response(error, version, sobject)


@bp.errorhandler(SoqlError)
def _on_soql_error(error: SoqlError):
    return error_response(400, error.error_code, error.message, fields=None)


# ------------------------------------------------------------ versions, resources, limits

def versions() -> list[dict]:
    """v20.0 was Winter '11; then Spring, Summer, Winter every year."""
    result = []
    for number in range(MIN_VERSION, MAX_VERSION + 1):
        k = number - MIN_VERSION
        label = f"{_SEASONS[k % 3]} '{11 + k // 3:02d}"
        result.append({"label": label, "url": f"/services/data/v{number}.0", "version": f"{number}.0"})
    return result


@bp.get("/services/data")
@bp.get("/services/data/")
def list_versions():
    return json_response(versions())


@bp.get("/services/data/<version>")
@bp.get("/services/data/<version>/")
@require_session
def resources(version):
    version = parse_version(version)
    base = f"/services/data/v{version}"
    names = ("tooling", "metadata", "eclair", "folders", "prechatForms", "jsonxform", "chatter", "tabs",
             "appMenu", "quickActions", "queryAll", "commerce", "wave", "iot", "analytics", "search", "identity",
             "composite", "parameterizedSearch", "fingerprint", "theme", "nouns", "event", "serviceTemplates",
             "recent", "connect", "licensing", "limits", "process", "async-queries", "query", "match", "emailConnect",
             "compactLayouts", "knowledgeManagement", "sobjects", "actions", "support")
    body = {name: f"{base}/{name}" for name in names}
    body["identity"] = f"{request.host_url.rstrip('/')}/id/{org().org_id}/{g.user_id}"
    body["jobs"] = f"{base}/jobs"
    return json_response(body)


@bp.get("/services/data/<version>/limits")
@bp.get("/services/data/<version>/limits/")
@require_session
def limits(version):
    parse_version(version)
    usage = org().usage
    usage.exhausted()                  # rolls the day over first
    remaining = max(usage.daily_limit - usage.used, 0)
    body = {
        "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
        "ConcurrentSyncReportRuns": {"Max": 20, "Remaining": 20},
        "DailyApiRequests": {"Max": usage.daily_limit, "Remaining": remaining},
        "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
        "DailyBulkApiBatches": {"Max": 15000, "Remaining": max(15000 - usage.bulk_batches, 0)},
        "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
        "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": max(10000 - usage.bulk_query_jobs, 0)},
        "DailyDeliveredPlatformEvents": {"Max": usage.delivered_limit, "Remaining": usage.deliverable()},
        "DailyGenericStreamingApiEvents": {"Max": 10000, "Remaining": 10000},
        "DailyStreamingApiEvents": {"Max": 1000000, "Remaining": 1000000},
        "DailyWorkflowEmails": {"Max": 2000000, "Remaining": 2000000},
        "DataStorageMB": {"Max": 1024, "Remaining": 1024},
        "FileStorageMB": {"Max": 1024, "Remaining": 1024},
        "HourlyTimeBasedWorkflow": {"Max": 1000, "Remaining": 1000},
        "MassEmail": {"Max": 5000, "Remaining": 5000},
        "SingleEmail": {"Max": 5000, "Remaining": 5000},
        "StreamingApiConcurrentClients": {"Max": 2000, "Remaining": 2000},
    }
    return json_response(body)


# ------------------------------------------------------------ describe

def _summary(version: str, describe: dict) -> dict:
    body = {key: describe.get(key) for key in DESCRIBE_SUMMARY_KEYS}
    body["urls"] = _urls(version, describe["name"])
    return body


def _urls(version: str, name: str) -> dict:
    base = f"/services/data/v{version}/sobjects/{name}"
    return {"compactLayouts": f"{base}/describe/compactLayouts", "rowTemplate": f"{base}/{{ID}}",
            "approvalLayouts": f"{base}/describe/approvalLayouts", "defaultValues": f"{base}/defaultValues?recordTypeId&fields",
            "describe": f"{base}/describe", "quickActions": f"{base}/quickActions", "layouts": f"{base}/describe/layouts",
            "sobject": base}


@bp.get("/services/data/<version>/sobjects")
@bp.get("/services/data/<version>/sobjects/")
@require_session
def global_describe(version):
    version = parse_version(version)
    the_org = org()
    sobjects = [_summary(version, the_org.describe(name)) for name in the_org.sobject_names()]
    return json_response({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects})


@bp.get("/services/data/<version>/sobjects/<sobject>")
@bp.get("/services/data/<version>/sobjects/<sobject>/")
@require_session
def sobject_basic(version, sobject):
    version = parse_version(version)
    describe = org().describe(sobject)
    return json_response({"objectDescribe": _summary(version, describe), "recentItems": []})


@bp.get("/services/data/<version>/sobjects/<sobject>/describe")
@bp.get("/services/data/<version>/sobjects/<sobject>/describe/")
@require_session
def sobject_describe(version, sobject):
    version = parse_version(version)
    sobj = org().sobject_type(sobject)
    since = request.headers.get("If-Modified-Since")
    if since and sobj.modified is not None:
        try:
            unchanged = sobj.modified <= email.utils.parsedate_to_datetime(since)
        except (TypeError, ValueError):
            unchanged = False
        if unchanged:
            return make_response("", 304)
    describe = dict(sobj.describe)
    describe["urls"] = _urls(version, describe["name"])
    return json_response(describe)


# ------------------------------------------------------------ sObject rows

def create_record(version: str, sobject: str, body) -> tuple[int, dict, dict]:
    if not isinstance(body, dict):
        raise SalesforceError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from the request body")
    the_org = org()
    sobj = the_org.sobject_type(sobject)
    validation.check_json_types(sobj, body)
    record = the_org.create(sobj.name, body, client=g.client, user_id=g.user_id, full=False)
    return 201, {"id": record["Id"], "success": True, "errors": []}, {
        "Location": record_url(version, sobj.name, record["Id"])}


@bp.post("/services/data/<version>/sobjects/<sobject>")
@bp.post("/services/data/<version>/sobjects/<sobject>/")
@require_session
def sobject_create(version, sobject):
    version = parse_version(version)
    status, body, headers = create_record(version, sobject, read_json_body())
    return json_response(body, status, headers)


def _id_or_not_found(sobj, record_id: str) -> str:
    """An 18-char Id of this type, or the 404 Salesforce gives when the segment is not an Id at all."""
    if not ids.is_valid(record_id):
        raise NotFound(f"Provided external ID field does not exist or is not accessible: {record_id}")
    return ids.to18(record_id)


def get_record(version: str, sobject: str, record_id: str, fields: list[str] | None) -> tuple[int, dict, dict]:
    the_org = org()
    sobj = the_org.sobject_type(sobject)
    full = _id_or_not_found(sobj, record_id)
    if not full.startswith(sobj.key_prefix):
        raise NotFound()
    record = the_org.get(sobj.name, full, fields=fields, include_deleted=True)
    if record is None:
        raise NotFound()
    if record.get("IsDeleted"):
        raise SalesforceError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
    if fields and "IsDeleted" not in [f.strip() for f in fields]:
        record.pop("IsDeleted", None)
    return 200, with_attributes(version, sobj.name, record, full), {}


def _fields_param() -> list[str] | None:
    raw = request.args.get("fields")
    return [f for f in raw.split(",") if f.strip()] if raw else None


@bp.get("/services/data/<version>/sobjects/<sobject>/<record_id>")
@require_session
def sobject_get(version, sobject, record_id):
    version = parse_version(version)
    status, body, headers = get_record(version, sobject, record_id, _fields_param())
    return json_response(body, status, headers)


def update_record(version: str, sobject: str, record_id: str, body) -> tuple[int, dict | None, dict]:
    if not isinstance(body, dict):
        raise SalesforceError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from the request body")
    the_org = org()
    sobj = the_org.sobject_type(sobject)
    _id_or_not_found(sobj, record_id)
    validation.check_json_types(sobj, body)
    the_org.update(sobj.name, record_id, body, client=g.client, user_id=g.user_id, full=False)
    return 204, None, {}


@bp.patch("/services/data/<version>/sobjects/<sobject>/<record_id>")
@require_session
def sobject_update(version, sobject, record_id):
    version = parse_version(version)
    status, _, headers = update_record(version, sobject, record_id, read_json_body())
    return make_response("", status, headers)


def delete_record(version: str, sobject: str, record_id: str) -> tuple[int, dict | None, dict]:
    the_org = org()
    sobj = the_org.sobject_type(sobject)
    _id_or_not_found(sobj, record_id)
    the_org.delete(sobj.name, record_id, client=g.client, user_id=g.user_id)
    return 204, None, {}


@bp.delete("/services/data/<version>/sobjects/<sobject>/<record_id>")
@require_session
def sobject_delete(version, sobject, record_id):
    version = parse_version(version)
    status, _, headers = delete_record(version, sobject, record_id)
    return make_response("", status, headers)


# ------------------------------------------------------------ rows by external id

def upsert_record(version: ApiVersion, sobject: str, field: str, value: str, body,
                  update_only: bool = False) -> tuple[int, dict | None, dict]:
    if not isinstance(body, dict):
        raise SalesforceError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from the request body")
    the_org = org()
    sobj = the_org.sobject_type(sobject)
    validation.check_json_types(sobj, body)
    record, created = the_org.upsert(sobj.name, field, value, body, client=g.client, user_id=g.user_id,
                                     update_only=update_only, full=False)
    result = {"id": record["Id"], "success": True, "errors": []}
    if version.number >= 46:
        result["created"] = created
    headers = {"Location": record_url(version, sobj.name, record["Id"])}
    if created:
        return 201, result, headers
    if version.number >= 46:
        return 200, result, headers
    return 204, None, {}


@bp.patch("/services/data/<version>/sobjects/<sobject>/<field>/<path:value>")
@require_session
def sobject_upsert(version, sobject, field, value):
    version = parse_version(version)
    update_only = request.args.get("updateOnly", "false").lower() == "true"
    status, body, headers = upsert_record(version, sobject, field, value, read_json_body(), update_only)
    if body is None:
        return make_response("", status, headers)
    return json_response(body, status, headers)


@bp.post("/services/data/<version>/sobjects/<sobject>/<field>")
@require_session
def sobject_upsert_by_id(version, sobject, field):
    """POST /sobjects/X/Id with no Id in the body inserts (v37+)."""
    version = parse_version(version)
    if field != "Id":
        raise NotFound()
    body = read_json_body()
    status, result, headers = create_record(version, sobject, body)
    result["created"] = True
    return json_response(result, status, headers)


def _by_external_id(sobject: str, field: str, value: str) -> str:
    the_org = org()
    matches = the_org.find_by_external_id(sobject, field, value)
    if not matches:
        raise NotFound()
    if len(matches) > 1:
        raise SalesforceError(300, "MULTIPLE_CHOICES", "More than one record found", [], matches=matches)
    return matches[0]


@bp.get("/services/data/<version>/sobjects/<sobject>/<field>/<path:value>")
@require_session
def sobject_get_by_external_id(version, sobject, field, value):
    version = parse_version(version)
    record_id = _by_external_id(sobject, field, value)
    status, body, headers = get_record(version, sobject, record_id, _fields_param())
    return json_response(body, status, headers)


@bp.delete("/services/data/<version>/sobjects/<sobject>/<field>/<path:value>")
@require_session
def sobject_delete_by_external_id(version, sobject, field, value):
    parse_version(version)
    record_id = _by_external_id(sobject, field, value)
    status, _, headers = delete_record(version, sobject, record_id)
    return make_response("", status, headers)


# ------------------------------------------------------------ deleted / updated

REPLICATION_DAYS = 30


def _minute(moment: dt.datetime) -> dt.datetime:
    return moment.replace(second=0, microsecond=0)


def _window() -> tuple[dt.datetime, dt.datetime, dt.datetime]:
    """getDeleted/getUpdated's window: the API ignores the seconds of start and end (12:30:15 is 12:30:00).
    Returns (start, end of the rows, latestDateCovered). An end in the current minute answers what the org
    has up to now, but covers only up to the minute's start: a change made later in that minute is in the
    next window, which starts at latestDateCovered (a change early in it may come twice; none is missed)."""
    try:
        start = _minute(parse_datetime(request.args["start"]))
        end = _minute(parse_datetime(request.args["end"]))
    except (KeyError, ValueError):
        raise SalesforceError(400, "MALFORMED_QUERY", "start and end must be ISO 8601 date-times") from None
    if start > end:
        raise SalesforceError(400, "INVALID_REPLICATION_DATE", "start date cannot be after end date")
    if start < _earliest_available():
        raise SalesforceError(400, "INVALID_REPLICATION_DATE", "start date must be within the last "
                              f"{REPLICATION_DAYS} days")
    now = org().clock.now()
    if end <= _minute(now):
        return start, end, end
    return start, now, max(start, _minute(now))


def _earliest_available() -> dt.datetime:
    """The earliest time the org still answers for: it keeps delete and update history for 30 days."""
    return _minute(org().clock.now() - dt.timedelta(days=REPLICATION_DAYS))


@bp.get("/services/data/<version>/sobjects/<sobject>/deleted")
@bp.get("/services/data/<version>/sobjects/<sobject>/deleted/")
@require_session
def sobject_deleted(version, sobject):
    parse_version(version)
    start, end, covered = _window()
    rows = org().deleted_records(sobject, start, end)
    return json_response({"deletedRecords": [{"id": rid, "deletedDate": when} for rid, when in rows],
                          "earliestDateAvailable": format_datetime(_earliest_available()),
                          "latestDateCovered": format_datetime(covered)})


@bp.get("/services/data/<version>/sobjects/<sobject>/updated")
@bp.get("/services/data/<version>/sobjects/<sobject>/updated/")
@require_session
def sobject_updated(version, sobject):
    parse_version(version)
    start, end, covered = _window()
    return json_response({"ids": org().updated_ids(sobject, start, end),
                          "latestDateCovered": format_datetime(covered)})


# ------------------------------------------------------------ SOQL

class Locators:
    """Open query cursors by locator id, as Salesforce keeps them: idle ones expire after 15 minutes."""

    def __init__(self, limit: int = 500):
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = {}
        self._counter = 0
        self.limit = limit

    def add(self, cursor, soql: str, include_deleted: bool, batch_size: int, pod: str) -> str:
        with self._lock:
            self._expire()
            self._counter += 1
            locator = ids.make_id("01g", pod, self._counter)
            self._entries[locator] = {"cursor": cursor, "soql": soql, "include_deleted": include_deleted,
                                      "batch_size": batch_size}
            return locator

    def get(self, locator: str) -> dict | None:
        with self._lock:
            return self._entries.get(locator)

    def drop(self, locator: str) -> None:
        with self._lock:
            entry = self._entries.pop(locator, None)
        if entry:
            entry["cursor"].close()

    def _expire(self) -> None:
        now = time.monotonic()
        stale = [k for k, e in self._entries.items() if now - e["cursor"].last_used > LOCATOR_IDLE_SECONDS]
        while len(self._entries) - len(stale) >= self.limit:
            oldest = min((k for k in self._entries if k not in stale),
                         key=lambda k: self._entries[k]["cursor"].last_used)
            stale.append(oldest)
        for key in stale:
            self._entries.pop(key)["cursor"].close()

    def close_all(self) -> None:
        with self._lock:
            for entry in self._entries.values():
                entry["cursor"].close()
            self._entries.clear()


def locators() -> Locators:
    return current_app.config["LOCATORS"]


def batch_size() -> int:
    """Sforce-Query-Options: batchSize=N, clamped to Salesforce's 200..2000 (default 2000)."""
    header = request.headers.get("Sforce-Query-Options", "")
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "batchsize" and value.strip().isdigit():
            return min(max(int(value), 200), 2000)
    return 2000


def _page(version: str, cursor, size: int) -> list[dict]:
    return cursor.records(size, attributes_for(version))


def run_query(version: str, soql: str | None, include_deleted: bool, size: int) -> dict:
    if soql is None:
        raise SoqlError("MALFORMED_QUERY", "A query string has to be specified")
    the_org = org()
    cursor = the_org.open_query(soql, include_deleted)
    plan = cursor.plan
    if plan.kind != "rows":
        rows = cursor.fetch(2000)       # Salesforce caps aggregate results at 2,000 rows, without paging
        cursor.close()
        if plan.kind == "count":
            return {"totalSize": rows[0][0], "done": True, "records": []}
        records = [plan.aggregate_record(row) for row in rows]
        return {"totalSize": len(records), "done": True, "records": records}
    records = _page(version, cursor, size)
    total = cursor.total()
    if cursor.done:
        cursor.close()
        return _result(version, total, records, None, cursor.position)
    locator = locators().add(cursor, soql, include_deleted, size, the_org.pod)
    return _result(version, total, records, locator, cursor.position)


def _result(version: str, total: int, records: list, locator: str | None, position: int) -> dict:
    """A query page; nextRecordsUrl (under /query/ for queryAll too, as Salesforce does) while rows remain."""
    if locator is None:
        return {"totalSize": total, "done": True, "records": records}
    return {"totalSize": total, "done": False,
            "nextRecordsUrl": f"/services/data/v{version}/query/{locator}-{position}", "records": records}


def query_more(version: str, locator_ref: str) -> dict:
    locator, _, offset_text = locator_ref.rpartition("-")
    entry = locators().get(locator) if offset_text.isdigit() else None
    if entry is None:
        raise SalesforceError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    offset = int(offset_text)
    cursor = entry["cursor"]
    with cursor.lock:
        if offset < cursor.position:
            # A client re-reading a page: start over on a fresh cursor and skip to the requested row.
            fresh = org().open_query(entry["soql"], entry["include_deleted"])
            fresh.fetch(offset)
            cursor.close()
            entry["cursor"] = cursor = fresh
        elif offset > cursor.position:
            cursor.fetch(offset - cursor.position)
        records = _page(version, cursor, entry["batch_size"])
        total = cursor.total()
        if cursor.done:
            locators().drop(locator)
            return _result(version, total, records, None, cursor.position)
        return _result(version, total, records, locator, cursor.position)


@bp.get("/services/data/<version>/query")
@bp.get("/services/data/<version>/query/")
@require_session
def query(version):
    version = parse_version(version)
    return json_response(run_query(version, request.args.get("q"), False, batch_size()))


@bp.get("/services/data/<version>/queryAll")
@bp.get("/services/data/<version>/queryAll/")
@require_session
def query_all(version):
    version = parse_version(version)
    return json_response(run_query(version, request.args.get("q"), True, batch_size()))


@bp.get("/services/data/<version>/query/<locator>")
@bp.get("/services/data/<version>/queryAll/<locator>")
@require_session
def query_next(version, locator):
    version = parse_version(version)
    return json_response(query_more(version, locator))

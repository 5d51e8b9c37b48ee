"""Bulk API 2.0: query jobs whose CSV results stream from disk page by page, and CSV ingest jobs
with successful/failed/unprocessed results, under /services/data/vXX.X/jobs/."""
from __future__ import annotations

import base64
import csv
import datetime as dt
import json
import logging
import os
import pathlib
import shutil
import threading
import time
from array import array
from itertools import accumulate
from typing import Callable, Iterable, Iterator, Sequence

from flask import Blueprint, Response, current_app, g, jsonify, request

from emulator import auth, ids, soql

log = logging.getLogger(__name__)

JOB_PREFIX = "750"
DEFAULT_PAGE_SIZE = 100_000     # Salesforce picks "a default based on the size of the result set"
WRITE_CHUNK_ROWS = 5_000
READ_CHUNK_BYTES = 1 << 20
DELIMITERS = {"BACKQUOTE": "`", "CARET": "^", "COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "TAB": "\t"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
QUERY_OPERATIONS = ("query", "queryAll")
FINISHED = ("JobComplete", "Failed", "Aborted")
TRANSACTION_ROWS = 200
INGEST_CREATE_FIELDS = ("id", "operation", "object", "createdById", "createdDate", "systemModstamp",
                        "state", "externalIdFieldName", "concurrencyMode", "contentType", "apiVersion",
                        "contentUrl", "jobType", "lineEnding", "columnDelimiter", "assignmentRuleId")
NULL_MARKER = "#N/A"            # Bulk API: "To set a field value to null, use #N/A"


# ---------------------------------------------------------------- pure core

def sf_datetime(moment: dt.datetime) -> str:
    """Bulk 2.0 job JSON writes times as 2018-12-18T22:51:36.000+0000."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{moment.microsecond // 1000:03d}+0000"


def encode_locator(row: int) -> str:
    """Opaque locator for the page starting at `row` (Salesforce's look like MTAwMDA)."""
    return base64.b64encode(str(row).encode()).decode().rstrip("=")


def decode_locator(locator: str) -> int | None:
    try:
        padded = locator + "=" * (-len(locator) % 4)
        row = int(base64.b64decode(padded, validate=True).decode())
    except (ValueError, UnicodeDecodeError):
        return None
    return row if row >= 0 else None


class BulkError(Exception):
    """A request Bulk API 2.0 refuses: HTTP status plus its [{"errorCode", "message"}] body."""

    def __init__(self, error_code: str, message: str, status: int = 400):
        super().__init__(f"{error_code}: {message}")
        self.error_code = error_code
        self.message = message
        self.status = status


def column_converter(field: dict) -> Callable[[Sequence], list[str]]:
    """Turns one column of stored values into Bulk CSV text: booleans true/false, datetimes ending
    in Z, numbers as REST shows them, null as an empty string. Works a column at a time because
    a comprehension per column is several times faster than a function call per value."""
    kind = field["type"]
    if kind == "boolean":
        return lambda values: ["" if v is None else "true" if v else "false" for v in values]
    if kind == "datetime":
        return lambda values: ["" if v is None else v[:-5] + "Z" if v.endswith("+0000") else v
                               for v in values]
    if kind in ("int", "long", "double", "currency", "percent"):
        return lambda values: ["" if v is None else str(soql.to_json_value(field, v)) for v in values]
    return lambda values: ["" if v is None else v for v in values]


def csv_line(values: Iterable[str], delimiter: str, line_ending: str) -> str:
    """One CSV line with every value quoted, as Bulk 2.0 writes results."""
    return delimiter.join(
        '"' + (v.replace('"', '""') if '"' in v else v) + '"' for v in values) + line_ending


def csv_lines(rows: Iterable[Sequence], converters: list[Callable], delimiter: str) -> list[str]:
    """Rows of stored values as Bulk CSV lines (no line ending), through column_converter: the reference
    rendering, which query_lines uses for every row its SQL rendering does not cover exactly."""
    texts = [convert(column) for convert, column in zip(converters, zip(*rows))]
    return [csv_line(values, delimiter, "") for values in zip(*texts)]


# What the SQL rendering writes for a value it does not render exactly like column_converter: a lone quote,
# which no rendered value holds (a value's own quotes would need doubling), so the row is noticed and redone.
UNRENDERED = "'\"'"
MAX_PRINTF_ARGS = 100           # SQLite allows 127 arguments per function call


def csv_value_sql(field: dict, value: str) -> str:
    """SQL giving the stored `value` (an SQL expression) as Bulk CSV text, quotes not yet doubled; exactly
    column_converter's text for the values a database holds every day, else UNRENDERED."""
    kind = field["type"]
    if kind == "boolean":
        return (f"CASE WHEN {value} IS NULL THEN '' WHEN {value} = 1 THEN 'true' WHEN {value} = 0 THEN 'false' "
                f"ELSE {UNRENDERED} END")
    if kind == "datetime":
        return (f"CASE WHEN {value} IS NULL THEN '' WHEN substr({value}, -5) = '+0000' "
                f"THEN substr({value}, 1, length({value}) - 5) || 'Z' ELSE {value} END")
    if kind in ("int", "long"):
        return f"CASE WHEN {value} IS NULL THEN '' WHEN typeof({value}) = 'integer' THEN {value} ELSE {UNRENDERED} END"
    if kind in soql.NUMBER_TYPES:
        # REST shows a whole number below 1e15 without a fraction; Python's repr of the rest is not SQL's
        return (f"CASE WHEN {value} IS NULL THEN '' WHEN {value} = CAST({value} AS INTEGER) AND abs({value}) < 1e15 "
                f"THEN CAST({value} AS INTEGER) ELSE {UNRENDERED} END")
    return f"coalesce({value}, '')"


def csv_line_sql(plan, delimiter: str) -> str:
    """One SQL expression giving a whole row of the plan as a Bulk CSV line (no line ending)."""
    values = [csv_value_sql(column.field, plan.select_sql[column.index]) for column in plan.columns]
    parts = []
    for start in range(0, len(values), MAX_PRINTF_ARGS):
        chunk = values[start:start + MAX_PRINTF_ARGS]
        pattern = delimiter.replace("%", "%%").join(['"%s"'] * len(chunk))
        parts.append(f"printf({_sql_text(pattern)}, {', '.join(chunk)})")
    return f" || {_sql_text(delimiter)} || ".join(parts)


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def query_lines(conn, plan, delimiter: str, batch_rows: int = WRITE_CHUNK_ROWS) -> Iterator[list[str]]:
    """The plan's rows as Bulk CSV lines, a batch at a time, on a snapshot connection. SQLite renders each
    line (a Python call per value took most of a big job's time); a line holding more quotes than its own
    pairs (a value with a quote of its own, or UNRENDERED) is rendered again from its stored values."""
    converters = [column_converter(column.field) for column in plan.columns]
    pairs = 2 * len(plan.columns)
    cursor = conn.execute(plan.reselect(["t.rowid", csv_line_sql(plan, delimiter)]), plan.params)
    while batch := cursor.fetchmany(batch_rows):
        lines = [line for _, line in batch]
        if "".join(lines).count('"') != pairs * len(lines):
            redo = {rowid: n for n, (rowid, line) in enumerate(batch) if line.count('"') != pairs}
            stored = _stored_rows(conn, plan, list(redo))
            again = csv_lines(([stored[r][c.index] for c in plan.columns] for r in redo), converters, delimiter)
            for n, line in zip(redo.values(), again):
                lines[n] = line
        yield lines


def _stored_rows(conn, plan, rowids: list[int]) -> dict[int, tuple]:
    """rowid -> the plan's SQL row (select_sql's values) for these rows of the base table."""
    found = {}
    for start in range(0, len(rowids), 500):
        chunk = rowids[start:start + 500]
        for rowid, *values in conn.execute(plan.by_rowid(len(chunk)), chunk):
            found[rowid] = values
    return found


def ingest_values(row: dict[str, str], field_types: dict[str, str]) -> dict:
    """CSV strings to typed values: empty means 'leave as is', #N/A means null."""
    values = {}
    for name, text in row.items():
        if text == "":
            continue
        if text == NULL_MARKER:
            values[name] = None
            continue
        values[name] = typed(text, field_types.get(name.lower()))
    return values


def typed(text: str, field_type: str | None):
    """Best-effort conversion; on failure the raw text goes on so the org reports the type error."""
    try:
        if field_type == "boolean":
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            return text
        if field_type in ("int", "long"):
            return int(text)
        if field_type in ("double", "currency", "percent"):
            return float(text)
    except ValueError:
        return text
    return text


def error_text(exc) -> str:
    """sf__Error as Bulk writes it: CODE:message:fields --"""
    code = getattr(exc, "error_code", None) or type(exc).__name__
    message = getattr(exc, "message", None) or str(exc)
    fields = ",".join(getattr(exc, "fields", None) or ())
    return f"{code}:{message}:{fields} --"


# ---------------------------------------------------------------- job storage

class Jobs:
    """Bulk jobs in <data>/bulk2/<job id>/ (job.json + CSV files); thread-safe."""

    def __init__(self, org):
        self.org = org
        self.root = pathlib.Path(org.data_dir) / "bulk2"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._jobs: dict[str, dict] = {}
        for path in sorted(self.root.glob("*/job.json")):
            job = json.loads(path.read_text())
            if job["state"] not in FINISHED and job["state"] != "Open":
                job.update(state="Failed", errorMessage="InternalServerError : the emulator "
                                                        "restarted while the job ran")
                self._write(job)
            self._jobs[job["id"]] = job

    def new_id(self) -> str:
        with self._lock:
            counter = self.root / "counter"
            number = int(counter.read_text()) + 1 if counter.exists() else 1
            counter.write_text(str(number))
        return ids.make_id(JOB_PREFIX, self.org.org_id[3:5], number)

    def dir(self, job_id: str) -> pathlib.Path:
        return self.root / job_id

    def get(self, job_id: str, job_type: str) -> dict | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return dict(job) if job and job["jobType"] == job_type else None

    def all(self, job_type: str) -> list[dict]:
        with self._lock:
            return [dict(j) for j in self._jobs.values() if j["jobType"] == job_type]

    def put(self, job: dict) -> dict:
        with self._lock:
            job["systemModstamp"] = sf_datetime(self.org.clock.now())
            self.dir(job["id"]).mkdir(exist_ok=True)
            self._jobs[job["id"]] = job
            self._write(job)
            return dict(job)

    def update(self, job_id: str, **changes) -> dict:
        """The job with `changes` applied; {} when it was deleted meanwhile (its thread then stops)."""
        with self._lock:
            if job_id not in self._jobs:
                return {}
            job = {**self._jobs[job_id], **changes}
            return self.put(job)

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)
            shutil.rmtree(self.dir(job_id), ignore_errors=True)

    def _write(self, job: dict) -> None:
        path = self.dir(job["id"]) / "job.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(job))
        os.replace(tmp, path)


# ---------------------------------------------------------------- query jobs

def write_query_results(batches: Iterable[list[str]], data_path: pathlib.Path, index_path: pathlib.Path,
                        line_ending: str, aborted: Callable[[], bool]) -> int:
    """Stream CSV lines (batches of them, no header, no line endings) into data.csv and each row's byte
    offset into index.bin. Returns the row count; memory stays at one batch whatever the result size."""
    count = offset = 0
    with open(data_path, "wb") as data, open(index_path, "wb") as index:
        for lines in batches:
            if not lines:
                continue
            text = line_ending.join(lines) + line_ending
            ending = len(line_ending)
            # ASCII text has a byte per character: no line needs encoding on its own to be measured
            sizes = map(ending.__add__, map(len, lines)) if text.isascii() else \
                [len(line.encode()) + ending for line in lines]
            starts = array("Q", accumulate(sizes, initial=offset))
            offset = starts.pop()
            data.write(text.encode())
            starts.tofile(index)
            count += len(lines)
            if aborted():
                break
        array("Q", [offset]).tofile(index)     # end sentinel: the last page ends here
    return count


def row_offset(index_path: pathlib.Path, row: int) -> int:
    with open(index_path, "rb") as index:
        index.seek(row * 8)
        value = array("Q")
        value.frombytes(index.read(8))
        return value[0]


def stream_range(path: pathlib.Path, start: int, end: int, head: bytes) -> Iterator[bytes]:
    yield head
    with open(path, "rb") as data:
        data.seek(start)
        left = end - start
        while left > 0:
            block = data.read(min(READ_CHUNK_BYTES, left))
            if not block:
                return
            left -= len(block)
            yield block


# ---------------------------------------------------------------- ingest jobs

def run_ingest(org, job: dict, data_path: pathlib.Path, out_dir: pathlib.Path,
               is_aborted: Callable[[], bool], *, client: str | None, user_id: str) -> dict:
    """Apply an uploaded CSV row by row; write the three result files; return job counters."""
    delimiter = DELIMITERS[job["columnDelimiter"]]
    line_ending = LINE_ENDINGS[job["lineEnding"]]
    sobject = job["object"]
    field_types = {f["name"].lower(): f["type"] for f in org.describe(sobject)["fields"]}
    with open(data_path, newline="", encoding="utf-8-sig") as source:
        reader = csv.reader(source, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            return {"state": "Failed", "errorMessage": "InvalidBatch : Empty CSV file"}
        unknown = [name for name in header if name.lower() not in field_types and "." not in name]
        if unknown:
            return {"state": "Failed", "errorMessage": f"InvalidBatch : Field name not found : {unknown[0]}"}
        if job["operation"] in ("delete", "hardDelete") and [h.lower() for h in header] != ["id"]:
            return {"state": "Failed", "errorMessage": "InvalidBatch : The 'delete' batch must contain "
                                                       "only ids"}
        apply = _operation(org, job, sobject, client, user_id)
        processed = failed = 0
        with open(out_dir / "successfulResults.csv", "w", newline="", encoding="utf-8") as ok_file, \
                open(out_dir / "failedResults.csv", "w", newline="", encoding="utf-8") as bad_file, \
                open(out_dir / "unprocessedrecords.csv", "w", newline="", encoding="utf-8") as rest_file:
            ok = csv.writer(ok_file, quoting=csv.QUOTE_ALL, lineterminator=line_ending)
            bad = csv.writer(bad_file, quoting=csv.QUOTE_ALL, lineterminator=line_ending)
            rest = csv.writer(rest_file, quoting=csv.QUOTE_ALL, lineterminator=line_ending)
            ok.writerow(["sf__Id", "sf__Created", *header])
            bad.writerow(["sf__Id", "sf__Error", *header])
            rest.writerow(header)
            for chunk in _chunks(reader, TRANSACTION_ROWS):
                if is_aborted():
                    rest.writerows(chunk)
                    rest.writerows(reader)
                    break
                # Salesforce commits ingest data in chunks of 200 records; a failing record
                # rolls back only itself.
                with org.transaction():
                    for cells in chunk:
                        if not any(cells):
                            continue
                        row = dict(zip(header, cells))
                        processed += 1
                        try:
                            with org.savepoint():
                                record_id, created = apply(row, ingest_values(row, field_types))
                        except Exception as exc:      # every record-level failure lands in failedResults
                            failed += 1
                            bad.writerow([_row_id(row, required=False) if job["operation"] != "insert"
                                          else "", error_text(exc), *cells])
                        else:
                            ok.writerow([record_id, "true" if created else "false", *cells])
    return {"numberRecordsProcessed": processed, "numberRecordsFailed": failed}


def _chunks(rows: Iterator[list[str]], size: int) -> Iterator[list[list[str]]]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _operation(org, job, sobject, client, user_id):
    """The per-row write for the job's operation: (row, values) -> (record id, created)."""
    who = {"client": client, "user_id": user_id}
    operation = job["operation"]

    def without_id(values):
        return {k: v for k, v in values.items() if k.lower() != "id"}

    def insert(row, values):
        return org.create(sobject, values, **who)["Id"], True

    def update(row, values):
        record_id = _row_id(row)
        org.update(sobject, record_id, without_id(values), **who)
        return record_id, False

    def delete(row, values):
        record_id = _row_id(row)
        org.delete(sobject, record_id, **who)
        return record_id, False

    def upsert(row, values):
        field = job["externalIdFieldName"]
        if field.lower() == "id":
            return update(row, values) if _row_id(row, required=False) else insert(row, without_id(values))
        key = next((k for k in row if k.lower() == field.lower()), field)
        ext_value = row.get(key, "")
        rest = {k: v for k, v in values.items() if k != key}
        record, created = org.upsert(sobject, field, ext_value, rest, **who)
        return record["Id"], created

    return {"insert": insert, "update": update, "upsert": upsert, "delete": delete,
            "hardDelete": delete}[operation]


class MissingId(Exception):
    error_code = "MISSING_ARGUMENT"
    message = "Id not specified in an update call"
    fields = ()


def _row_id(row: dict, required: bool = True) -> str:
    record_id = next((v for k, v in row.items() if k.lower() == "id"), "")
    if not record_id and required:
        raise MissingId()
    return record_id


# ---------------------------------------------------------------- HTTP API

bp = Blueprint("bulk2", __name__, url_prefix="/services/data/v<version>/jobs")

NOT_FOUND = BulkError("NOT_FOUND", "The requested resource does not exist", 404)


def init_app(app) -> None:
    """Called by create_app after registering bp: the org's job store."""
    app.extensions["emulator.bulk2"] = Jobs(app.config["ORG"])


def _jobs() -> Jobs:
    return current_app.extensions["emulator.bulk2"]


@bp.errorhandler(BulkError)
def _bulk_error(exc: BulkError):
    return auth.error_response(exc.status, exc.error_code, exc.message, fields=None)


@bp.before_request
def _authenticate():
    return auth.authorize()


def _public(job: dict) -> dict:
    return {k: v for k, v in job.items() if not k.startswith("_")}


def _new_job(version: str, body: dict, job_type: str, sobject: str, operation: str) -> dict:
    delimiter = body.get("columnDelimiter") or "COMMA"
    line_ending = body.get("lineEnding") or "LF"
    if delimiter not in DELIMITERS:
        raise BulkError("INVALIDJOB", f"Invalid column delimiter: {delimiter}")
    if line_ending not in LINE_ENDINGS:
        raise BulkError("INVALIDJOB", f"Invalid line ending: {line_ending}")
    if (body.get("contentType") or "CSV") != "CSV":
        raise BulkError("INVALIDJOB", "Invalid content type: only CSV is supported")
    now = sf_datetime(_jobs().org.clock.now())
    client, user_id = g.client, g.user_id
    return {
        "id": _jobs().new_id(), "operation": operation, "object": sobject,
        "createdById": user_id, "createdDate": now, "systemModstamp": now,
        "state": "UploadComplete" if job_type == "V2Query" else "Open",
        "concurrencyMode": "Parallel", "contentType": "CSV", "apiVersion": float(version),
        "jobType": job_type, "lineEnding": line_ending, "columnDelimiter": delimiter,
        "_client": client, "_user_id": user_id,
    }


def _check_version(version: str) -> None:
    try:
        float(version)
    except ValueError:
        raise NOT_FOUND from None


# ---- query jobs

@bp.post("/query")
def create_query_job(version):
    _check_version(version)
    body = request.get_json(silent=True) or {}
    operation = body.get("operation")
    if operation not in QUERY_OPERATIONS:
        raise BulkError("INVALIDJOB", f"Invalid operation: {operation}")
    text = body.get("query") or ""
    # Salesforce rejects bad SOQL when the job is created, not when it runs.
    try:
        plan = _jobs().org.compile(text, include_deleted=operation == "queryAll")
    except soql.SoqlError as exc:
        raise BulkError(exc.error_code, exc.message) from None
    if plan.kind != "rows":
        raise BulkError("API_ERROR", "Aggregate queries are not supported by Bulk API 2.0 query jobs")
    if plan.offset:
        raise BulkError("API_ERROR", "OFFSET is not supported by Bulk API 2.0 query jobs")
    if plan.children:
        raise BulkError("API_ERROR", "Parent-to-child relationship queries (subqueries) are not supported by "
                                     "Bulk API 2.0 query jobs")
    job = _new_job(version, body, "V2Query", plan.sobject.name, operation)
    job.update(_query=text, _columns=[".".join(column.path) for column in plan.columns])
    job = _jobs().put(job)
    _jobs().org.usage.count_bulk_query_job()
    threading.Thread(target=_run_query_job, args=(_jobs(), job["id"]), daemon=True,
                     name=f"bulk2-query-{job['id']}").start()
    created = _public(job)
    created.pop("jobType")
    return jsonify(created)


def _run_query_job(jobs: Jobs, job_id: str) -> None:
    job = jobs.update(job_id, state="InProgress", numberRecordsProcessed=0, retries=0,
                      totalProcessingTime=0)
    started = time.monotonic()
    directory = jobs.dir(job_id)
    try:
        plan = jobs.org.compile(job["_query"], include_deleted=job["operation"] == "queryAll")
        with jobs.org.snapshot() as conn:
            count = write_query_results(
                query_lines(conn, plan, DELIMITERS[job["columnDelimiter"]]), directory / "data.csv",
                directory / "index.bin", LINE_ENDINGS[job["lineEnding"]],
                lambda: (jobs.get(job_id, "V2Query") or {}).get("state") == "Aborted")
    except Exception as exc:          # a job that dies reports why, like Salesforce's errorMessage
        log.exception("bulk query job %s failed", job_id)
        jobs.update(job_id, state="Failed", errorMessage=f"InternalServerError : {exc}")
        return
    current = jobs.get(job_id, "V2Query")
    if current is None or current["state"] == "Aborted":
        return
    jobs.update(job_id, state="JobComplete", numberRecordsProcessed=count, retries=0,
                totalProcessingTime=int((time.monotonic() - started) * 1000),
                isPkChunkingSupported=True)


def _list_jobs(job_type: str):
    return jsonify({"done": True, "records": [_public(j) for j in _jobs().all(job_type)],
                    "nextRecordsUrl": None})


def _job_info(job_id: str, job_type: str):
    return jsonify(_public(_jobs().get(job_id, job_type) or _raise(NOT_FOUND)))


@bp.get("/query")
def list_query_jobs(version):
    return _list_jobs("V2Query")


@bp.get("/query/<job_id>")
def get_query_job(version, job_id):
    return _job_info(job_id, "V2Query")


@bp.patch("/query/<job_id>")
def patch_query_job(version, job_id):
    job = _jobs().get(job_id, "V2Query") or _raise(NOT_FOUND)
    state = (request.get_json(silent=True) or {}).get("state")
    if state != "Aborted":
        raise BulkError("INVALIDJOBSTATE", f"Changing the state of a query job to {state} is not "
                                           "allowed")
    if job["state"] in FINISHED:
        raise BulkError("INVALIDJOBSTATE", "Aborting already Completed Job not allowed")
    return jsonify(_public(_jobs().update(job_id, state="Aborted")))


@bp.delete("/query/<job_id>")
def delete_query_job(version, job_id):
    return _delete_job(job_id, "V2Query")


@bp.get("/query/<job_id>/results")
def query_results(version, job_id):
    job = _jobs().get(job_id, "V2Query") or _raise(NOT_FOUND)
    _same_version(job, version)
    if job["state"] != "JobComplete":
        raise BulkError("INVALIDJOBSTATE", f"Job is in state {job['state']}; results are available "
                                           "once it is JobComplete")
    total = job["numberRecordsProcessed"]
    locator = request.args.get("locator") or ""
    start = decode_locator(locator) if locator and locator != "null" else 0
    if start is None or start > total:
        raise BulkError("INVALID_LOCATOR", f"Invalid locator: {locator}")
    try:
        page_size = int(request.args.get("maxRecords") or DEFAULT_PAGE_SIZE)
    except ValueError:
        raise BulkError("INVALIDJOB", "maxRecords must be a positive integer") from None
    if page_size <= 0:
        raise BulkError("INVALIDJOB", "maxRecords must be a positive integer")
    count = min(page_size, total - start)
    directory = _jobs().dir(job_id)
    index = directory / "index.bin"
    first_byte, end_byte = row_offset(index, start), row_offset(index, start + count)
    head = csv_line(job["_columns"], DELIMITERS[job["columnDelimiter"]],
                    LINE_ENDINGS[job["lineEnding"]]).encode()
    response = Response(stream_range(directory / "data.csv", first_byte, end_byte, head),
                        mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=UTF-8"
    response.headers["Content-Length"] = str(len(head) + end_byte - first_byte)
    response.headers["Sforce-NumberOfRecords"] = str(count)
    response.headers["Sforce-Locator"] = encode_locator(start + count) if start + count < total else "null"
    return response


# ---- ingest jobs

@bp.post("/ingest")
def create_ingest_job(version):
    _check_version(version)
    content = None
    if request.mimetype == "multipart/form-data":
        body = json.loads(request.form.get("job") or "{}")
        upload = request.files.get("content")
        content = upload.read() if upload else request.form.get("content", "").encode()
    else:
        body = request.get_json(silent=True) or {}
    operation = body.get("operation")
    if operation not in INGEST_OPERATIONS:
        raise BulkError("INVALIDJOB", f"Invalid operation: {operation}")
    org = _jobs().org
    sobject = next((n for n in org.sobject_names() if n.lower() == str(body.get("object")).lower()), None)
    if sobject is None:
        raise BulkError("INVALIDJOB", f"Unable to find object: {body.get('object')}")
    external_id = body.get("externalIdFieldName")
    if operation == "upsert":
        fields = {f["name"].lower(): f for f in org.describe(sobject)["fields"]}
        field = fields.get(str(external_id).lower())
        if field is None or not (field.get("externalId") or field["name"] == "Id"):
            raise BulkError("INVALIDJOB", f"The External ID field {external_id} is not found or is "
                                          "not an External ID field")
        external_id = field["name"]
    job = _new_job(version, body, "V2Ingest", sobject, operation)
    if external_id and operation == "upsert":
        job["externalIdFieldName"] = external_id
    job["contentUrl"] = f"services/data/v{version}/jobs/ingest/{job['id']}/batches"
    job.update(retries=0, totalProcessingTime=0, apiActiveProcessingTime=0, apexProcessingTime=0,
               numberRecordsProcessed=0, numberRecordsFailed=0)
    job = _jobs().put(job)
    if content is not None:
        (_jobs().dir(job["id"]) / "upload.csv").write_bytes(content)
        job = _close(job)
    # The create response lists the job's settings only; counters appear in job info.
    return jsonify({k: v for k, v in _public(job).items() if k in INGEST_CREATE_FIELDS})


@bp.get("/ingest")
def list_ingest_jobs(version):
    return _list_jobs("V2Ingest")


@bp.get("/ingest/<job_id>")
def get_ingest_job(version, job_id):
    return _job_info(job_id, "V2Ingest")


@bp.put("/ingest/<job_id>/batches")
def upload_batch(version, job_id):
    job = _jobs().get(job_id, "V2Ingest") or _raise(NOT_FOUND)
    if job["state"] != "Open":
        raise BulkError("INVALIDJOBSTATE", f"Job's state is {job['state']}; data can be uploaded "
                                           "only while it is Open", 409)
    path = _jobs().dir(job_id) / "upload.csv"
    if path.exists():
        raise BulkError("BULK_API_ERROR", f"Found multiple contents for job: <{job_id}>, please "
                        "'Close' / 'Abort' / 'Delete' the current Job then create a new Job and make "
                        "sure you only do 'PUT' once on a given Job.")
    with open(path, "wb") as out:
        shutil.copyfileobj(request.stream, out, READ_CHUNK_BYTES)
    return "", 201


@bp.patch("/ingest/<job_id>")
def patch_ingest_job(version, job_id):
    job = _jobs().get(job_id, "V2Ingest") or _raise(NOT_FOUND)
    state = (request.get_json(silent=True) or {}).get("state")
    if state == "UploadComplete" and job["state"] == "Open":
        return jsonify(_public(_close(job)))
    if state == "Aborted" and job["state"] not in FINISHED:
        return jsonify(_public(_jobs().update(job_id, state="Aborted")))
    raise BulkError("INVALIDJOBSTATE", f"Changing the state of a job from {job['state']} to {state} "
                                       "is not allowed")


def _close(job: dict) -> dict:
    if not (_jobs().dir(job["id"]) / "upload.csv").exists():
        return _jobs().update(job["id"], state="Failed", errorMessage="InvalidBatch : No data "
                                                                     "was uploaded for this job")
    job = _jobs().update(job["id"], state="UploadComplete")
    threading.Thread(target=_run_ingest_job, args=(_jobs(), job["id"]), daemon=True,
                     name=f"bulk2-ingest-{job['id']}").start()
    return job


def _run_ingest_job(jobs: Jobs, job_id: str) -> None:
    job = jobs.update(job_id, state="InProgress")
    started = time.monotonic()
    directory = jobs.dir(job_id)
    try:
        outcome = run_ingest(
            jobs.org, job, directory / "upload.csv", directory,
            lambda: (jobs.get(job_id, "V2Ingest") or {}).get("state") == "Aborted",
            client=job["_client"], user_id=job["_user_id"])
        jobs.org.usage.count_ingest_records(outcome.get("numberRecordsProcessed", 0))
    except Exception as exc:          # a job that dies reports why, like Salesforce's errorMessage
        log.exception("bulk ingest job %s failed", job_id)
        outcome = {"state": "Failed", "errorMessage": f"InternalServerError : {exc}"}
    current = jobs.get(job_id, "V2Ingest")
    if current is None:
        return
    if current["state"] == "Aborted":
        outcome.pop("state", None)
    else:
        outcome.setdefault("state", "JobComplete")
    elapsed = int((time.monotonic() - started) * 1000)
    jobs.update(job_id, totalProcessingTime=elapsed, apiActiveProcessingTime=elapsed, **outcome)


@bp.delete("/ingest/<job_id>")
def delete_ingest_job(version, job_id):
    return _delete_job(job_id, "V2Ingest")


RESULT_FILES = {"successfulresults": "successfulResults.csv", "failedresults": "failedResults.csv",
                "unprocessedrecords": "unprocessedrecords.csv"}


@bp.get("/ingest/<job_id>/<kind>")
@bp.get("/ingest/<job_id>/<kind>/")
def ingest_results(version, job_id, kind):
    job = _jobs().get(job_id, "V2Ingest") or _raise(NOT_FOUND)
    name = RESULT_FILES.get(kind.lower()) or _raise(NOT_FOUND)
    _same_version(job, version)
    path = _jobs().dir(job_id) / name
    if job["state"] not in FINISHED:
        raise BulkError("INVALIDJOBSTATE", f"Job is in state {job['state']}; results are available "
                                           "once it has finished")
    if not path.exists():
        return _results_of_a_job_that_never_ran(job, kind.lower())
    response = Response(stream_range(path, 0, path.stat().st_size, b""), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=UTF-8"
    response.headers["Content-Length"] = str(path.stat().st_size)
    return response


def _same_version(job: dict, version: str) -> None:
    """Results are read under the API version the job was created with; another version gets 409."""
    try:
        same = float(version) == float(job["apiVersion"])
    except (TypeError, ValueError):
        same = False
    if not same:
        raise BulkError("INVALIDJOBSTATE", f"Job {job['id']} was created with API version {job['apiVersion']}; "
                                           f"read its results with the same version, not {version}", 409)


def _results_of_a_job_that_never_ran(job: dict, kind: str):
    """Failed or aborted before processing: no successes or failures; every uploaded row unprocessed."""
    upload = _jobs().dir(job["id"]) / "upload.csv"
    data = upload.read_bytes() if upload.exists() else b""
    if kind != "unprocessedrecords":
        header = data.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8-sig", "replace")
        columns = next(csv.reader([header], delimiter=DELIMITERS[job["columnDelimiter"]]), [])
        first = "sf__Created" if kind == "successfulresults" else "sf__Error"
        data = csv_line(["sf__Id", first, *columns], ",", LINE_ENDINGS[job["lineEnding"]]).encode()
    return Response(data, headers={"Content-Type": "text/csv; charset=UTF-8"})


def _delete_job(job_id: str, job_type: str):
    job = _jobs().get(job_id, job_type) or _raise(NOT_FOUND)
    if job["state"] not in FINISHED and job["state"] != "UploadComplete":
        raise BulkError("API_ERROR", "Error encountered when deleting the job because the job is "
                                     "not terminated")
    if job["state"] == "UploadComplete" and job_type == "V2Query":
        raise BulkError("API_ERROR", "Error encountered when deleting the job because the job is "
                                     "not terminated")
    _jobs().delete(job_id)
    return "", 204


def _raise(exc: Exception):
    raise exc

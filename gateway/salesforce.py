"""The one way to Salesforce over HTTP: login, the client name, retries, error mapping and API usage."""
from __future__ import annotations

import base64
import collections
import contextlib
import datetime as dt
import email.utils
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlencode, urlparse

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce.exceptions import SalesforceAuthenticationFailed
from simple_salesforce.login import SalesforceLogin, token_login

from core import soql, wire_values
from core.mapping import MappingError, check_object_name
from settings import Settings

log = logging.getLogger("forcebridge.salesforce")
CLIENT_NAME = "forcebridge"
# Errors worth trying again in a moment; everything else is the request's (or the record's) fault.
RETRY_NOW_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE"})
RETRY_LATER_CODES = frozenset({"REQUEST_LIMIT_EXCEEDED"})
_LIMIT_RE = re.compile(r"api-usage=(\d+)/(\d+)")
# A Collections call Salesforce refuses as a whole while it reads the body, although the cause is one
# record's data: the call is split (halved) until that record is alone, and only it fails.
RECORD_DATA_CODES = frozenset({"JSON_PARSER_ERROR", "INVALID_FIELD", "MALFORMED_ID", "INVALID_TYPE",
                               "INVALID_TYPE_ON_FIELD_IN_RECORD", "STRING_TOO_LONG"})
_NO_SUCH_COLUMN = re.compile(r"No such column '([^']+)'")
# The kinds of work API calls are counted under (forcebridge.api_usage_hourly); `Salesforce.work(kind)` sets
# the current thread's, a call's path gives the rest (core/budget.py ranks them).
KINDS = ("writes", "loads", "polls", "formula_refresh", "drift", "gap_fetches", "filter_checks", "logins",
         "other")
_FROM_RE = re.compile(r"\bFROM\s+(\w+)", re.I)
_OBJECT_PATH_RE = re.compile(r"/(?:composite/)?sobjects/(\w+)")
_JOB_RE = re.compile(r"/jobs/(query|ingest)/(\w+)")
_QUERY_PAGE_RE = re.compile(r"/query(?:All)?/([\w-]+)")
REST_QUERY_PAGE = 2000      # records a REST query page brings (what a Bulk query job saves against)
COLLECTION_SIZE = 200       # records a Collections call takes (what a Bulk ingest job saves against)
# Collections requests one /composite call may carry: Salesforce counts the whole /composite call as one API
# call and takes up to 25 subrequests, at most 5 of them sObject Collections or queries (REST API guide, Composite).
MAX_BUNDLE = 5


@dataclass(frozen=True)
class Collection:
    """One sObject Collections request of at most 200 records: `Salesforce.write_collections` sends several
    in one API call. `records` are record bodies; updates and deletes name the record by "Id"."""
    op: str                       # create | update | upsert | delete
    sobject: str
    records: list
    ext_field: str | None = None


class SalesforceError(Exception):
    """A call Salesforce refused. `body` is its error JSON as sent (a list of {errorCode, message})."""

    def __init__(self, status: int, error_code: str, message: str, body=None):
        super().__init__(f"{status} {error_code}: {message}")
        self.status, self.error_code, self.message, self.body = status, error_code, message, body

    def as_errors(self) -> list[dict]:
        """In the shape of a Collections item's `errors`, so callers store one format."""
        return [{"statusCode": self.error_code, "message": self.message, "fields": []}]


class TransientError(SalesforceError):
    """Worth retrying later: 5xx, timeouts, locked rows, the daily API limit, a session that stays expired."""


class PermanentError(SalesforceError):
    """The request itself is wrong (4xx other than the transient codes)."""


@dataclass(frozen=True)
class ApiUsage:
    used: int
    limit: int


@dataclass(frozen=True)
class Health:
    """How the last exchange with Salesforce went: ok, unreachable or refused (credentials), and since when."""
    state: str
    since: dt.datetime
    message: str = ""


def configured(settings: Settings) -> bool:
    return bool(settings.sf_username or (settings.sf_client_id and settings.sf_client_secret))


_instances_lock = threading.Lock()
_instances: dict = {}


def for_settings(settings: Settings) -> "Salesforce | None":
    """One gateway per process and credentials (it holds the session and the connection pool)."""
    if not configured(settings):
        return None
    key = (settings.sf_instance_url, settings.sf_username, settings.sf_client_id, settings.sf_ca_bundle)
    with _instances_lock:
        if key not in _instances:
            _instances[key] = Salesforce(settings, pool_size=settings.drain_concurrency + 2)
        return _instances[key]


def describer(settings: Settings):
    """Context.describe for the web app: the object's describe, or None when Salesforce is not set up or
    not reachable (mapping creation then needs the types in the request)."""
    def describe(object_name: str | None) -> dict | None:
        sf = for_settings(settings)
        if sf is None or not object_name:
            return None
        try:
            return sf.describe(object_name)
        except PermanentError as exc:
            if exc.status == 404:
                raise MappingError(f"Salesforce has no object {object_name}") from None
            raise MappingError(f"Salesforce refused the describe of {object_name}: {exc}") from None
        except TransientError as exc:
            log.warning("describe %s failed: %s", object_name, exc)
            return None
    return describe


class Salesforce:
    """Thread-safe: several collection calls may be in flight at once on one instance."""

    def __init__(self, settings: Settings, *, timeout: float = 30.0, retries: int = 3, backoff: float = 0.25,
                 pool_size: int = 8, max_split_calls: int = 48):
        self.settings = settings
        self.max_split_calls = max_split_calls     # extra calls one Collections call may cost when split
        self.split_calls = 0                       # extra calls spent splitting, since the start
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.session = _Session()
        self.session.verify = settings.sf_ca_bundle or True
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._base: str | None = None
        self._describes: dict[str, tuple[float, dict]] = {}
        self.api_usage: ApiUsage | None = None
        self.calls = 0
        self.logins = 0
        self._tally = threading.local()
        self._work = threading.local()
        self._usage_lock = threading.Lock()
        self._usage: collections.Counter = collections.Counter()    # (hour, kind, object) -> calls
        self._saved: collections.Counter = collections.Counter()    # (hour, kind, object) -> calls saved
        self._splits: collections.Counter = collections.Counter()   # (hour, kind, object) -> calls spent splitting
        self._objects: collections.OrderedDict = collections.OrderedDict()  # job id or query locator -> (object, kind)
        self.health: Health | None = None

    @contextlib.contextmanager
    def work(self, kind: str):
        """The calls this thread makes inside the block are counted as `kind` (one of KINDS)."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind of work {kind!r}")
        outer = getattr(self._work, "kind", None)
        self._work.kind = kind
        try:
            yield
        finally:
            self._work.kind = outer

    def take_usage(self) -> tuple[dict, dict]:
        """The calls (and calls saved) counted since the last take, by (hour, kind, object); cleared."""
        with self._usage_lock:
            used, saved = dict(self._usage), dict(self._saved)
            self._usage.clear()
            self._saved.clear()
        return used, saved

    def take_splits(self) -> dict:
        """The extra calls spent splitting refused Collections calls since the last take, by (hour, kind, object)."""
        with self._usage_lock:
            splits = dict(self._splits)
            self._splits.clear()
        return splits

    def give_back_usage(self, used: dict, saved: dict, splits: dict | None = None) -> None:
        """Counts a flush could not store: kept for the next one."""
        with self._usage_lock:
            self._usage.update(used)
            self._saved.update(saved)
            self._splits.update(splits or {})

    @contextlib.contextmanager
    def tally(self):
        """Count the calls this thread makes inside the block (polls record their own API usage):
        `with sf.tally() as calls: ...; calls[0]`."""
        counter = [0]
        outer = getattr(self._tally, "counter", None)
        self._tally.counter = counter
        try:
            yield counter
        finally:
            self._tally.counter = outer
            if outer is not None:
                outer[0] += counter[0]

    # -- auth ---------------------------------------------------------------------------------------
    def _login(self) -> None:
        s = self.settings
        explicit = urlparse(s.sf_instance_url) if s.sf_instance_url else None
        try:
            if s.sf_client_id and s.sf_client_secret and not s.sf_username:
                token_url = (f"{s.sf_instance_url.rstrip('/')}/services/oauth2/token" if explicit
                             else f"https://{s.sf_domain}.salesforce.com/services/oauth2/token")
                basic = base64.b64encode(f"{s.sf_client_id}:{s.sf_client_secret}".encode()).decode()
                token, instance = token_login(token_url, {"grant_type": "client_credentials"}, s.sf_domain,
                                              s.sf_client_id, {"Authorization": f"Basic {basic}"}, None,
                                              self.session)
            else:
                token, instance = SalesforceLogin(
                    username=s.sf_username, password=s.sf_password, security_token=s.sf_security_token or "",
                    sf_version=s.sf_api_version, session=self.session, domain=s.sf_domain,
                    client_id=CLIENT_NAME,
                    scratch_url=s.sf_instance_url.rstrip("/") if explicit else None)
        except SalesforceAuthenticationFailed as exc:
            self._count("logins", "")
            self._set_health("refused", f"{exc.code}: {exc.message}")
            raise PermanentError(401, str(exc.code), str(exc.message)) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            self._set_health("unreachable", str(exc))
            raise TransientError(0, "CONNECTION_ERROR", str(exc)) from None
        scheme = explicit.scheme if explicit else "https"
        self._token, self._base = token, f"{scheme}://{instance.rstrip('/')}"
        self.calls += 1
        self.logins += 1
        self._count("logins", "")

    def _credentials(self) -> tuple[str, str]:
        with self._lock:
            if self._token is None:
                self._login()
            return self._token, self._base

    def _relogin(self, stale_token: str) -> None:
        with self._lock:
            if self._token == stale_token:   # another thread may have logged in already
                self._login()

    def credentials(self) -> tuple[str, str]:
        """(access token, instance URL) of the current login, logging in first if needed: for the other
        Salesforce APIs that take the same session (gateway/pubsub.py)."""
        return self._credentials()

    def renew_credentials(self, stale_token: str) -> None:
        """Log in again because `stale_token` was refused (once, however many threads saw it refused)."""
        self._relogin(stale_token)

    # -- the choke point ----------------------------------------------------------------------------
    def call(self, method: str, path: str, *, params=None, json=None, headers=None, data=None,
             stream: bool = False, retry: bool = True, kind: str | None = None,
             timeout: float | None = None) -> requests.Response:
        """One REST call: `path` under /services/data/vXX.X (or absolute from /services/...).
        `stream=True` leaves the body unread (Bulk results go straight into COPY); close the response.
        `retry=False` for calls that are not idempotent (creates without an external id): after a timeout
        or a 5xx the records may exist already, so the error goes to the caller instead of a second try.
        `kind` names the work the call is for (KINDS); else the thread's `work(kind)`, else the path's."""
        relogged = False
        attempt = 0
        while True:
            token, base = self._credentials()
            url = base + (path if path.startswith("/services/") else
                          f"/services/data/v{self.settings.sf_api_version}{path}")
            sent_headers = {"Authorization": f"Bearer {token}", "Accept": "application/json",
                            "Sforce-Call-Options": f"client={CLIENT_NAME}", **(headers or {})}
            try:
                response = self.session.request(method, url, params=params, json=json, data=data,
                                                headers=sent_headers, timeout=timeout or self.timeout, stream=stream)
            except (requests.ConnectionError, requests.Timeout) as exc:
                error = TransientError(0, "CONNECTION_ERROR", str(exc))
                self._set_health("unreachable", str(exc))
            else:
                self._account(response, method, path, params, json, data, kind, stream)
                if response.status_code < 300:
                    return response
                error = _error_of(response)
                if error.error_code == "INVALID_SESSION_ID" and not relogged:
                    relogged = True
                    self._relogin(token)
                    continue
            if not isinstance(error, TransientError) or error.error_code in RETRY_LATER_CODES \
                    or attempt >= self.retries or not retry:
                raise error
            attempt += 1
            time.sleep(self.backoff * 2 ** (attempt - 1))

    def _account(self, response: requests.Response, method: str = "GET", path: str = "", params=None,
                 json=None, data=None, kind: str | None = None, stream: bool = False) -> None:
        self.calls += 1
        tally = getattr(self._tally, "counter", None)
        if tally is not None:
            tally[0] += 1
        m = _LIMIT_RE.search(response.headers.get("Sforce-Limit-Info", ""))
        if m:
            self.api_usage = ApiUsage(int(m.group(1)), int(m.group(2)))
        if response.status_code < 500:
            self._set_health("ok")
        try:
            self._count_call(response, method, path, params, json, data, kind, stream)
        except Exception:  # noqa: BLE001 - accounting never breaks a call
            log.exception("API usage accounting failed for %s %s", method, path.split("?")[0])

    def _count_call(self, response, method, path, params, body, data, kind, stream) -> None:
        """One call under its kind and object; a Bulk job's calls are weighed against the REST calls
        the same records would have taken (what choosing Bulk saved)."""
        known = None
        job = _JOB_RE.search(path)
        page = _QUERY_PAGE_RE.search(path)
        if job:
            known = self._objects.get(job.group(2))
        elif page:
            known = self._objects.get(page.group(1).rsplit("-", 1)[0])
        kind = kind or getattr(self._work, "kind", None) or (known[1] if known else None) or _default_kind(method, path)
        obj = known[0] if known else _object_of(path, params, body)
        self._count(kind, obj)
        if response.status_code >= 300:
            return
        if job:
            self._weigh_job(response, method, job.group(1), job.group(2), kind, obj, data)
        elif path.endswith("/jobs/query") or path.endswith("/jobs/ingest"):
            answer = _json_or_none(response)
            if isinstance(answer, dict) and answer.get("id"):
                self._remember(answer["id"], obj, kind)
                self._save(kind, obj, -1)       # the job's own calls count against what it saves
        elif "/query" in path:
            answer = None if stream else _json_or_none(response)
            next_url = answer.get("nextRecordsUrl") if isinstance(answer, dict) else None
            locator = _QUERY_PAGE_RE.search(next_url or "")
            if locator:
                self._remember(locator.group(1).rsplit("-", 1)[0], obj, kind)

    def _weigh_job(self, response, method, job_type, job_id, kind, obj, data) -> None:
        self._save(kind, obj, -1)
        if job_type == "ingest" and method == "PUT" and data:
            rows = max(bytes(data).count(b"\n") - 1, 0) if isinstance(data, (bytes, bytearray)) else 0
            self._save(kind, obj, math.ceil(rows / COLLECTION_SIZE))
        elif job_type == "query" and method == "GET" and _is_json(response):
            answer = _json_or_none(response)
            if not (isinstance(answer, dict) and answer.get("state") == "JobComplete"):
                return
            with self._usage_lock:
                first = job_id in self._objects and not self._objects[job_id][2:]
                if first:
                    self._objects[job_id] = (obj, kind, True)    # credited once, however often it is asked
            if first:
                self._save(kind, obj, math.ceil(int(answer.get("numberRecordsProcessed") or 0) / REST_QUERY_PAGE))

    def credit(self, sobject: str, calls: int, kind: str) -> None:
        """Calls a choice made before calling saved (a poll sent to Bulk 2.0 without a REST page first)."""
        self._save(getattr(self._work, "kind", None) or kind, sobject, calls)

    def _remember(self, key: str, obj: str, kind: str) -> None:
        with self._usage_lock:
            self._objects[key] = (obj, kind)
            while len(self._objects) > 1000:
                self._objects.popitem(last=False)

    def _count(self, kind: str, obj: str) -> None:
        with self._usage_lock:
            self._usage[(_hour(), kind, obj or "")] += 1

    def _save(self, kind: str, obj: str, calls: int) -> None:
        with self._usage_lock:
            self._saved[(_hour(), kind, obj or "")] += calls

    def _set_health(self, state: str, message: str = "") -> None:
        current = self.health
        if current is None or current.state != state:
            self.health = Health(state, dt.datetime.now(dt.timezone.utc), message[:500])

    # -- resources ----------------------------------------------------------------------------------
    def describe(self, sobject: str, max_age: float = 600.0) -> dict:
        check_object_name(sobject)   # the last guard: a name is part of the URL (MappingError before any call)
        cached = self._describes.get(sobject.lower())
        if cached and time.monotonic() - cached[0] < max_age:
            return cached[1]
        result = self.call("GET", f"/sobjects/{sobject}/describe").json()
        self._describes[sobject.lower()] = (time.monotonic(), result)
        return result

    def query(self, soql: str) -> list[dict]:
        response = self.call("GET", "/query", params={"q": soql}).json()
        records = list(response.get("records", []))
        while not response.get("done", True) and response.get("nextRecordsUrl"):
            response = self.call("GET", response["nextRecordsUrl"]).json()
            records.extend(response.get("records", []))
        return records

    def query_page(self, soql: str | None = None, next_url: str | None = None, include_deleted: bool = False,
                   batch_size: int | None = None) -> dict:
        """One page of a REST query (or the page `next_url` names): {records, totalSize, done, nextRecordsUrl}."""
        headers = {"Sforce-Query-Options": f"batchSize={batch_size}"} if batch_size else None
        if next_url:
            return self.call("GET", next_url, headers=headers).json()
        return self.call("GET", "/queryAll" if include_deleted else "/query", params={"q": soql},
                         headers=headers).json()

    def query_first_page(self, soql: str, include_deleted: bool = False) -> tuple[dict, dt.datetime | None]:
        """A REST query's first page, and Salesforce's time no later than the query ran (`server_time`): the
        later pages come from the same cursor."""
        response = self.call("GET", "/queryAll" if include_deleted else "/query", params={"q": soql})
        return response.json(), server_time(response)

    def count(self, sobject: str, where: str = "") -> int:
        check_object_name(sobject)
        return int(self.query_page(soql.count(sobject, where))["totalSize"])

    def get_deleted(self, sobject: str, start: str, end: str) -> dict:
        """getDeleted over REST: {deletedRecords: [{id, deletedDate}], earliestDateAvailable, latestDateCovered}."""
        return self.call("GET", f"/sobjects/{sobject}/deleted/", params={"start": start, "end": end}).json()

    # Bulk API 2.0 --------------------------------------------------------------------------------
    def bulk_query_create(self, soql: str, include_deleted: bool = False) -> dict:
        return self.call("POST", "/jobs/query", json={
            "operation": "queryAll" if include_deleted else "query", "query": soql,
            "contentType": "CSV", "columnDelimiter": "COMMA", "lineEnding": "LF"}).json()

    def bulk_query_job(self, job_id: str) -> dict:
        return self.call("GET", f"/jobs/query/{job_id}").json()

    def bulk_query_results(self, job_id: str, locator: str | None, max_records: int | None) -> requests.Response:
        """One results page, unread (stream it, then close it). Headers: Sforce-Locator ('null' on the last
        page) and Sforce-NumberOfRecords."""
        params = {}
        if locator:
            params["locator"] = locator
        if max_records:
            params["maxRecords"] = str(max_records)
        return self.call("GET", f"/jobs/query/{job_id}/results", params=params,
                         headers={"Accept": "text/csv"}, stream=True)

    def bulk_query_delete(self, job_id: str) -> None:
        self.call("DELETE", f"/jobs/query/{job_id}")

    def bulk_ingest(self, sobject: str, operation: str, csv_body: bytes, external_id: str | None = None) -> dict:
        """Create an ingest job, upload the CSV and close it (three calls); returns the job."""
        body = {"object": sobject, "operation": operation, "contentType": "CSV", "columnDelimiter": "COMMA",
                "lineEnding": "LF"}
        if external_id:
            body["externalIdFieldName"] = external_id
        job = self.call("POST", "/jobs/ingest", json=body).json()
        self.call("PUT", f"/jobs/ingest/{job['id']}/batches", data=csv_body, headers={"Content-Type": "text/csv"})
        return self.call("PATCH", f"/jobs/ingest/{job['id']}", json={"state": "UploadComplete"}).json()

    def bulk_ingest_job(self, job_id: str) -> dict:
        return self.call("GET", f"/jobs/ingest/{job_id}").json()

    def bulk_ingest_results(self, job_id: str, kind: str) -> str:
        """kind: successfulResults | failedResults | unprocessedrecords; the CSV text."""
        response = self.call("GET", f"/jobs/ingest/{job_id}/{kind}/", headers={"Accept": "text/csv"})
        response.encoding = "utf-8"
        return response.text

    def create_records(self, sobject: str, records: list[dict]) -> list[dict]:
        """Not retried here: a create that timed out may have created the records (see `call`)."""
        return self.write_collection(Collection("create", sobject, records))

    def update_records(self, sobject: str, records: list[dict]) -> list[dict]:
        return self.write_collection(Collection("update", sobject, records))

    def upsert_records(self, sobject: str, ext_field: str, records: list[dict]) -> list[dict]:
        return self.write_collection(Collection("upsert", sobject, records, ext_field))

    def delete_records(self, ids: list[str]) -> list[dict]:
        return self.write_collection(Collection("delete", "", [{"Id": i} for i in ids]))

    def write_collection(self, c: Collection) -> list[dict]:
        """One sObject Collections call, answered record by record (allOrNone false). Values go in the JSON
        type describe gives (a value that cannot be one fails alone, before the call), and a call refused as a
        whole for one record's data is split until that record is alone (split_records)."""
        results, to_send = self._prepare(c)
        if to_send:
            sent = self.split_records([r for _, r in to_send], self._one_call(c))
            for (i, _), item in zip(to_send, sent):
                results[i] = item
        return results

    def write_collections(self, collections: list[Collection]) -> list:
        """Up to MAX_BUNDLE Collections requests in one API call (/composite, allOrNone false), each answered
        as if it had been a call of its own: its per-record results, or the SalesforceError that refused it as
        a whole (one record's data refusing it: split into calls of their own, as `write_collection` does).
        A failure of the /composite call itself is every request's answer; anything else raises."""
        if not 0 < len(collections) <= MAX_BUNDLE:
            raise ValueError(f"one call carries 1 to {MAX_BUNDLE} Collections requests, not {len(collections)}")
        if len(collections) == 1:
            return [self._alone(collections[0])]
        prepared = [self._prepare(c) for c in collections]
        subrequests = [self._subrequest(c, [r for _, r in to_send], f"c{n}")
                       for n, (c, (_, to_send)) in enumerate(zip(collections, prepared)) if to_send]
        answers: dict = {}
        if subrequests:
            # a create that timed out may have created its records: no second try then (see `call`)
            retry = all(c.op != "create" for c in collections)
            try:
                # collateSubrequests false: in order, one after another (collated, Salesforce may run them in any
                # order, and a request naming parents by external id must come after the one creating them);
                # so the call may take each request's time
                response = self.call("POST", "/composite", retry=retry, timeout=self.timeout * len(subrequests),
                                     json={"allOrNone": False, "collateSubrequests": False,
                                           "compositeRequest": subrequests})
            except SalesforceError as exc:
                if not _record_data_refusal(exc):
                    return [exc if to_send else results for results, to_send in prepared]
                # refused whole for one record's data (not seen from Salesforce, but possible): each request
                # alone, where its own splitting isolates the record
                return [self._alone(c) for c in collections]
            body = response.json()
            answers = {a.get("referenceId"): a for a in (body.get("compositeResponse") or [])
                       if isinstance(a, dict)} if isinstance(body, dict) else {}
            first = subrequests[0]
            self._save(getattr(self._work, "kind", None) or "writes",
                       _object_of(first["url"], None, first.get("body")), len(subrequests) - 1)
        return [self._answer(c, results, to_send, answers.get(f"c{n}")) if to_send else results
                for n, (c, (results, to_send)) in enumerate(zip(collections, prepared))]

    def _alone(self, c: Collection):
        """`c` in a Collections call of its own: its per-record results, or the error that refused it."""
        try:
            return self.write_collection(c)
        except SalesforceError as exc:
            return exc

    def _answer(self, c: Collection, results: list, to_send: list, answer: dict | None):
        """One subrequest's answer as `write_collections` returns it. Whatever the follow-up calls of one
        request (splitting) meet is that request's answer alone: the others were already applied."""
        try:
            return self._answer_of(c, results, to_send, answer)
        except SalesforceError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - not Salesforce's answer (a body that is not JSON): try later
            return TransientError(0, "CALL_FAILED", f"{type(exc).__name__}: {exc}"[:500])

    def _answer_of(self, c: Collection, results: list, to_send: list, answer: dict | None):
        if answer is None:
            return TransientError(0, "UNEXPECTED_RESPONSE", "the composite call did not answer this request")
        status, items = answer.get("httpStatusCode") or 0, answer.get("body")
        if status >= 300:
            error = _error_from(status, items, "")
            if not _record_data_refusal(error):
                return error
            items = self.split_records([r for _, r in to_send], self._one_call(c), refused=error)
        if not isinstance(items, list) or len(items) != len(to_send):
            return TransientError(0, "UNEXPECTED_RESPONSE", "result count differs from records sent")
        for (i, _), item in zip(to_send, items):
            results[i] = item
        return results

    def _prepare(self, c: Collection) -> tuple[list, list]:
        """The records' results known before any call (a value that cannot take its field's type), and the
        (position, wire record) pairs to send."""
        _check_size(c.records)
        if c.op == "delete":
            return [None] * len(c.records), [(i, r["Id"]) for i, r in enumerate(c.records)]
        records = ([{"id": r["Id"], **{k: v for k, v in r.items() if k != "Id"}} for r in c.records]
                   if c.op == "update" else c.records)    # Collections wants "id" beside attributes
        fields = self._fields(c.sobject)
        results: list = [None] * len(records)
        to_send: list[tuple[int, dict]] = []
        for i, record in enumerate(records):
            typed, error = wire_values.typed_record(record, fields) if fields else (record, None)
            if error is not None:
                results[i] = error
            else:
                to_send.append((i, typed))
        return results, to_send

    @staticmethod
    def _request(c: Collection) -> tuple[str, str]:
        if c.op == "create":
            return "POST", "/composite/sobjects"
        if c.op == "upsert":
            return "PATCH", f"/composite/sobjects/{c.sobject}/{c.ext_field}"
        if c.op == "update":
            return "PATCH", "/composite/sobjects"
        return "DELETE", "/composite/sobjects"

    def _one_call(self, c: Collection):
        """`part -> per-record results`: one Collections call of its own for part of `c`'s wire records."""
        method, path = self._request(c)

        def one_call(part: list) -> list[dict]:
            params, body = _collection_request(c, part)
            return self.call(method, path, params=params, json=body, retry=c.op != "create").json()
        return one_call

    def _subrequest(self, c: Collection, part: list, reference: str) -> dict:
        method, path = self._request(c)
        params, body = _collection_request(c, part)
        url = f"/services/data/v{self.settings.sf_api_version}{path}" + ("?" + urlencode(params) if params else "")
        return {"method": method, "url": url, "referenceId": reference, **({"body": body} if body else {})}

    def _fields(self, sobject: str) -> dict[str, dict]:
        """describe's fields by lower-case name; empty (values go as they are) when describe is unavailable."""
        try:
            # part of the write: counted as one (unless the caller's work says otherwise)
            with self.work(getattr(self._work, "kind", None) or "writes"):
                return wire_values.fields_by_name(self.describe(sobject))
        except (SalesforceError, MappingError) as exc:
            log.warning("describe %s failed (%s); values are sent untyped", sobject, exc)
            return {}

    def split_records(self, records: list, one_call, refused: "SalesforceError | None" = None) -> list[dict]:
        """`one_call(records) -> per-record results`, split in halves while Salesforce refuses the whole call
        for one record's data (RECORD_DATA_CODES); a record alone gets that error as its own. At most
        max_split_calls extra calls: records still unsent then get a retryable error (tried again later).
        `refused`: the records were already sent together and refused so (a /composite subrequest)."""
        budget = [self.max_split_calls]
        results = self._split(records, one_call, budget, refused)
        spent = self.max_split_calls - budget[0]
        if spent:
            failed = sum(1 for r in results if not r.get("success"))
            log.warning("a call of %s records was refused as a whole; %s extra calls isolated %s failing records",
                        len(records), spent, failed)
        return results

    def _split(self, records: list, one_call, budget: list, refused: "SalesforceError | None" = None) -> list[dict]:
        if refused is None:
            try:
                return one_call(records)
            except PermanentError as exc:
                if not _record_data_refusal(exc):
                    raise
                refused = exc
        if len(records) == 1:
            return [{"success": False, "errors": _item_errors(refused)}]
        column = _NO_SUCH_COLUMN.search(refused.message or "")
        if column:
            # an unknown field fails exactly the records that carry it: no halving needed
            name = column.group(1).lower()
            carrying = [any(isinstance(k, str) and k.lower() == name for k in r) for r in records]
            if any(carrying):
                rest = [r for r, has in zip(records, carrying) if not has]
                sent = iter(self._more(rest, one_call, budget) if rest else [])
                return [{"success": False, "errors": _item_errors(refused)} if has else next(sent)
                        for has in carrying]
        half = len(records) // 2
        return self._more(records[:half], one_call, budget) + self._more(records[half:], one_call, budget)

    def _more(self, records: list, one_call, budget: list) -> list[dict]:
        """One more call for `records` (counted), or a retryable error for each when the budget is spent."""
        if budget[0] <= 0:
            return [{"success": False, "errors": [{"statusCode": "SERVER_UNAVAILABLE", "fields": [],
                                                   "message": "not sent: the call was split to isolate records "
                                                              "Salesforce refused, up to its limit; tried again "
                                                              "later"}]} for _ in records]
        budget[0] -= 1
        with self._lock:
            self.split_calls += 1
        with self._usage_lock:
            self._splits[(_hour(), getattr(self._work, "kind", None) or "writes", "")] += 1
        return self._split(records, one_call, budget)

    # single-record calls: what a naive sync does (kept for the benchmark's comparison)
    def create_record(self, sobject: str, values: dict) -> dict:
        return self.call("POST", f"/sobjects/{sobject}/", json=values).json()

    def update_record(self, sobject: str, record_id: str, values: dict) -> None:
        self.call("PATCH", f"/sobjects/{sobject}/{record_id}", json=values)

    def close(self) -> None:
        self.session.close()


class _Session(requests.Session):
    """requests lets REQUESTS_CA_BUNDLE override session.verify; SF_CA_BUNDLE must win (login included)."""

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("verify", self.verify)
        return super().request(method, url, *args, **kwargs)


def server_time(response: requests.Response) -> dt.datetime | None:
    """Salesforce's clock no later than the call was served: the response's Date header (whole seconds, written
    while the call was served) less the call's whole duration as measured here (a duration, so our clock's own
    offset does not matter). None without a readable Date: the caller then trusts nothing but stamps it saw."""
    text = response.headers.get("Date")
    try:
        sent = email.utils.parsedate_to_datetime(text) if text else None
    except (TypeError, ValueError):
        sent = None
    if sent is None or sent.tzinfo is None:
        return None
    return sent - (response.elapsed or dt.timedelta())


def _item_errors(error: SalesforceError) -> list[dict]:
    """A whole-call refusal as one record's Collections-shaped errors (Salesforce's message kept)."""
    body = error.body if isinstance(error.body, list) else []
    items = [{"statusCode": e.get("errorCode") or e.get("statusCode") or error.error_code,
              "message": e.get("message") or error.message, "fields": e.get("fields") or []}
             for e in body if isinstance(e, dict)]
    return items or error.as_errors()
def _hour() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)


def _default_kind(method: str, path: str) -> str:
    """A call made outside any `work(kind)` block: writes are recognised by their path, the rest is other."""
    if "/composite/sobjects" in path or path.rstrip("/").endswith("/composite") or "/jobs/ingest" in path or (
            method in ("POST", "PATCH", "DELETE") and "/sobjects/" in path and not path.endswith("/describe")):
        return "writes"
    return "other"


def _object_of(path: str, params, body) -> str:
    """The sObject a call is about, from its path, its SOQL or its body; '' when it names none."""
    m = _OBJECT_PATH_RE.search(path)
    if m and not path.endswith("/composite/sobjects"):
        return m.group(1)
    if isinstance(body, dict):
        subrequests = body.get("compositeRequest")
        if isinstance(subrequests, list) and subrequests and isinstance(subrequests[0], dict):
            # a bundle of Collections requests: counted under its first request's object
            first = subrequests[0]
            return _object_of(urlparse(str(first.get("url") or "")).path, None, first.get("body"))
        if body.get("object"):
            return str(body["object"])
        if body.get("query"):
            q = _FROM_RE.search(str(body["query"]))
            return q.group(1) if q else ""
        records = body.get("records")
        if isinstance(records, list) and records and isinstance(records[0], dict):
            return str((records[0].get("attributes") or {}).get("type") or "")
    if isinstance(params, dict) and params.get("q"):
        q = _FROM_RE.search(str(params["q"]))
        return q.group(1) if q else ""
    return ""


def _is_json(response) -> bool:
    """A job's status (JSON), not its results (CSV, streamed to the caller)."""
    return "json" in response.headers.get("Content-Type", "")


def _json_or_none(response):
    if not _is_json(response):
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _check_size(items) -> None:
    if not 0 < len(items) <= 200:
        raise ValueError(f"sObject Collections take 1 to 200 records, not {len(items)}")


def _collection_request(c: Collection, part: list) -> tuple[dict | None, dict | None]:
    """A Collections request's query parameters and body for `part` of its wire records."""
    if c.op == "delete":
        return {"ids": ",".join(part), "allOrNone": "false"}, None
    return None, {"allOrNone": False, "records": [{"attributes": {"type": c.sobject}, **r} for r in part]}


def _record_data_refusal(error: SalesforceError) -> bool:
    return isinstance(error, PermanentError) and error.status == 400 and error.error_code in RECORD_DATA_CODES


def _error_of(response: requests.Response) -> SalesforceError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return _error_from(response.status_code, body, response.text)


def _error_from(status: int, body, text: str) -> SalesforceError:
    """Salesforce's REST error envelope is a list of {message, errorCode, fields}; be lenient."""
    first = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else (
        body if isinstance(body, dict) else {})
    code = str(first.get("errorCode") or first.get("error") or f"HTTP_{status}")
    message = str(first.get("message") or first.get("error_description") or text[:500])
    transient = status >= 500 or code in RETRY_NOW_CODES or code in RETRY_LATER_CODES \
        or code == "INVALID_SESSION_ID"
    return (TransientError if transient else PermanentError)(status, code, message, body)

"""The emulated org's state (records, recycle bin, users, sessions, change log) in SQLite under --data; thread-safe.

The interface E2's outbound sender and Bulk 2.0 code against (see notes/EMULATOR.md):

    org = Org(data_dir, org_id)           one per process, app.config["ORG"]
    org.org_id, org.clock, org.data_dir
    org.describe(sobject) -> dict          raises NotFound
    org.sobject_names() -> list[str]
    org.get(sobject, record_id, fields=None, include_deleted=False) -> dict | None
    org.query(soql, include_deleted=False) -> Iterator[dict]
        rows as plain dicts field -> JSON value, no "attributes"; a parent relationship is a nested dict
        ({"Account": {"Name": "Acme"}}) or None, a child subquery {"totalSize", "done", "records"} or None;
        raises SoqlError(error_code, message)
    org.open_query(soql, include_deleted=False) -> QueryCursor   .fetch(n) raw rows, .records(n, attributes),
        .total(), .done, .close(), .plan (columns)
    org.create(sobject, values, *, client, user_id) -> dict            full record
    org.update(sobject, record_id, values, *, client, user_id) -> dict full record
    org.upsert(sobject, ext_field, ext_value, values, *, client, user_id) -> (dict, created: bool)
        full=False: these three return only {"Id": ...} (callers that need nothing else skip a read);
        upsert(matches=org.external_id_matches(...)): a Collections call's lookups in one query
    org.delete(sobject, record_id, *, client, user_id) -> None
        these four raise SalesforceError(status_code, error_code, message, fields)
    org.subscribe(callback)                callback(Change) after each committed change, outside any lock
    org.capture(callback)                  callback(conn, changes) inside each writing transaction, just before
        COMMIT (the change events of emulator/pubsub.py); while one is set, Change.values holds what was written
    org.count_api_call(route, client)      API usage + per-route/per-client stats
"""
import contextlib
import dataclasses
import fcntl
import functools
import datetime as dt
import logging
import pathlib
import sqlite3
import string
import threading
import time
import uuid
from typing import Callable, Iterator

from emulator import calculated, ids, org_rules, validation
from emulator.clock import Clock
from emulator.errors import NotFound, SalesforceError
from emulator.limits import ApiUsage
from emulator.schema import NUMBER_TYPES, SObjectType, load_types
from emulator.soql import Plan, SoqlError, compile_query, format_datetime, quote, to_json_value
from emulator.soql import sqlite_statement as _sql

__all__ = ["Org", "Change", "SalesforceError", "NotFound", "SoqlError", "QueryCursor"]

log = logging.getLogger(__name__)

DEFAULT_USERNAME = "admin@forcebridge.example"
DEFAULT_PASSWORD = "emulator"
DEFAULT_SECURITY_TOKEN = "TOKEN"
DEFAULT_CONSUMER_KEY = "forcebridge-emulator"
DEFAULT_CONSUMER_SECRET = "emulator-secret"

_META_SQL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS counters (key_prefix TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY, sobject TEXT NOT NULL, record_id TEXT NOT NULL, kind TEXT NOT NULL,
    client TEXT, user_id TEXT, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS credentials (
    username TEXT PRIMARY KEY COLLATE NOCASE, user_id TEXT NOT NULL, password TEXT NOT NULL,
    security_token TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS oauth_clients (
    consumer_key TEXT PRIMARY KEY, consumer_secret TEXT NOT NULL, run_as_user_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    token TEXT PRIMARY KEY, user_id TEXT NOT NULL, issued_at TEXT NOT NULL, expires_at TEXT NOT NULL,
    refresh_token TEXT);
CREATE INDEX IF NOT EXISTS sessions_refresh ON sessions (refresh_token);
"""


@dataclasses.dataclass(frozen=True)
class Change:
    sobject: str
    record_id: str
    kind: str            # created | updated | deleted | undeleted
    client: str | None   # from Sforce-Call-Options: client=NAME
    user_id: str
    at: dt.datetime
    # What the change wrote, as stored (None for deletes); only filled while a capture hook is set.
    values: dict | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class Session:
    token: str
    user_id: str
    expires_at: dt.datetime


@functools.lru_cache(maxsize=512)
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return (f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})")


@functools.lru_cache(maxsize=512)
def _update_sql(table: str, columns: tuple[str, ...]) -> str:
    return _sql('UPDATE {} SET {sets} WHERE "Id" = ?', table, sets=", ".join(f"{quote(c)} = ?" for c in columns))


def _lock_data_dir(data_dir: pathlib.Path):
    """One org process per data dir: two writers would hand out the same Ids."""
    handle = open(data_dir / ".lock", "w")       # noqa: SIM115 - held open for the process's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ValueError(f"{data_dir} is in use by another emulator process") from None
    return handle


def _column_type(field: dict) -> str:
    kind = field["type"]
    if kind == "boolean":
        return "INTEGER NOT NULL DEFAULT 0"
    if kind in ("int", "long"):
        return "INTEGER"
    if kind in NUMBER_TYPES:
        return "REAL"
    if kind in ("id", "reference", "date", "datetime"):
        return "TEXT"
    return "TEXT COLLATE NOCASE"     # SOQL compares and sorts text case-insensitively


def load_children(conn: sqlite3.Connection, plan: Plan, rows: list, attributes=None) -> dict:
    """Child subquery results for a page of parent rows: {relationship name: {parent Id: [records]}}."""
    result: dict = {}
    parent_ids = [row[-1] for row in rows]
    for child in plan.children:
        groups: dict = {}
        for start in range(0, len(parent_ids), 500):
            chunk = parent_ids[start:start + 500]
            for child_row in conn.execute(child.sql(len(chunk)), [*child.plan.params, *chunk]):
                bucket = groups.setdefault(child_row[-2], [])
                if child.limit is None or len(bucket) < child.limit:
                    bucket.append(child.plan.record(child_row, attributes))
        result[child.name] = groups
    return result


class QueryCursor:
    """A running query on its own SQLite connection, so Salesforce-style locators can page through it later."""

    def __init__(self, plan: Plan, conn: sqlite3.Connection):
        self.plan = plan
        self.conn = conn
        self.lock = threading.Lock()
        self.position = 0
        self.last_used = time.monotonic()
        self._cursor = conn.execute(plan.sql, plan.params)
        self._total: int | None = None
        self._peeked: list = []
        self.exhausted = False

    def fetch(self, count: int) -> list[tuple]:
        rows = self._peeked[:count]
        self._peeked = self._peeked[count:]
        if len(rows) < count and not self.exhausted:
            more = self._cursor.fetchmany(count - len(rows))
            rows.extend(more)
        self.position += len(rows)
        if not self._peeked and not self.exhausted:
            self._peeked = self._cursor.fetchmany(1)
            if not self._peeked:
                self.exhausted = True
        self.last_used = time.monotonic()
        return rows

    def records(self, count: int, attributes=None) -> list[dict]:
        """The next `count` rows as output records, child subqueries included."""
        rows = self.fetch(count)
        children = load_children(self.conn, self.plan, rows, attributes)
        return [self.plan.record(row, attributes, children) for row in rows]

    @property
    def done(self) -> bool:
        return self.exhausted and not self._peeked

    def total(self) -> int:
        if self._total is None:
            if self.done:
                self._total = self.position
            else:
                self._total = self.conn.execute(self.plan.count_sql, self.plan.count_params).fetchone()[0]
        return self._total

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._cursor.close()
            self.conn.close()


class Org:
    """One emulated Salesforce org. See the module docstring for the interface other parts rely on."""

    def __init__(self, data_dir: pathlib.Path | str, org_id: str | None = None, *, time_scale: float = 1.0,
                 session_seconds: int = 7200, daily_api_limit: int = 100_000,
                 daily_delivered_events: int = 1_000_000):
        self.data_dir = pathlib.Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock_data_dir(self.data_dir)
        try:
            self.session_seconds = session_seconds
            self.types = load_types(self.data_dir / "objects")
            self.rules = org_rules.OrgRules(self.data_dir)
            self.db_path = self.data_dir / "org.sqlite3"
            self._write_lock = threading.RLock()
            self._depth = 0
            self._pending: list[Change] = []
            self._tx_now: dt.datetime | None = None      # the open transaction's timestamp, see now()
            self._now_text: tuple = (None, "")             # (datetime, format_datetime of it), last one used
            self._subscribers: list[Callable[[Change], None]] = []
            self._capture_hooks: list[Callable] = []
            self._readers = threading.local()
            self._conn = self._connect()
            self._conn.executescript(_META_SQL)
            self.org_id = self._init_org_id(org_id)
            self.pod = self.org_id[3:5]
            self.clock = Clock(time_scale, not_before=self._last_time())
            self._counters = dict(self._conn.execute("SELECT key_prefix, next FROM counters"))
            self._dirty_counters: set[str] = set()
            for sobject in self.types.values():
                self._ensure_table(sobject)
            self.default_user_id = self._ensure_default_user()
            self.usage = ApiUsage(daily_api_limit, self.clock, daily_delivered_events)
        except BaseException:
            self._lock_file.close()
            raise

    # ------------------------------------------------------------ plumbing

    def _connect(self, cache_kib: int = 65536) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA cache_size=-" + str(int(cache_kib)))   # PRAGMA takes no bound parameters
        return conn

    def _reader(self) -> sqlite3.Connection:
        """The write connection inside a transaction (to see its own writes), else this thread's reader."""
        if self._depth and self._write_lock._is_owned():      # noqa: SLF001 - RLock ownership
            return self._conn
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            conn = self._readers.conn = self._connect()
        return conn

    def _init_org_id(self, org_id: str | None) -> str:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'org_id'").fetchone()
        if org_id is not None:
            org_id = ids.to18(org_id)
            if not org_id.startswith(ids.ORG_PREFIX):
                raise ValueError("an org id starts with 00D")
        if row is not None:
            if org_id is not None and org_id != row[0]:
                raise ValueError(f"data dir belongs to org {row[0]}, not {org_id}")
            return row[0]
        if org_id is None:
            org_id = ids.make_id(ids.ORG_PREFIX, "5g", int(uuid.uuid4().int % 62 ** 8))
        self._conn.execute("INSERT INTO meta VALUES ('org_id', ?)", (org_id,))
        return org_id

    def _last_time(self) -> dt.datetime | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'last_time'").fetchone()
        return dt.datetime.fromisoformat(row[0]) if row else None

    def _ensure_table(self, sobject: SObjectType) -> None:
        existing = {r[1].lower() for r in self._conn.execute(_sql("PRAGMA table_info({})", sobject.table))}
        if not existing:
            cols = ['"Id" TEXT PRIMARY KEY'] + [f"{quote(f['name'])} {_column_type(f)}"
                                                for f in sobject.describe["fields"] if f["name"] != "Id"]
            cols.append('"_deleted_at" TEXT')
            self._conn.execute(_sql("CREATE TABLE {} ({cols})", sobject.table, cols=", ".join(cols)))
        else:
            for field in sobject.describe["fields"]:
                if field["name"].lower() not in existing:
                    self._conn.execute(_sql("ALTER TABLE {} ADD COLUMN {} {type}", sobject.table, field["name"],
                                            type=_column_type(field)))
        # Lookups to users are never followed backwards (users are not deleted), others are: cascades.
        indexed = ["SystemModstamp", "_deleted_at"] + [
            f["name"] for f in sobject.describe["fields"]
            if f.get("externalId") or (f.get("unique") and f["name"] != "Id")
            or (f["type"] == "reference" and f["referenceTo"] != ["User"])]
        for name in indexed:
            self._conn.execute(_sql("CREATE INDEX IF NOT EXISTS {} ON {} ({})",
                                    f"{sobject.table}_{name}", sobject.table, name))

    def _ensure_default_user(self) -> str:
        row = self._conn.execute("SELECT user_id FROM credentials WHERE username = ?", (DEFAULT_USERNAME,)).fetchone()
        if row:
            return row[0]
        user_id = self.add_user(DEFAULT_USERNAME, DEFAULT_PASSWORD, DEFAULT_SECURITY_TOKEN,
                                first_name="Emulator", last_name="Admin")
        self.add_oauth_client(DEFAULT_CONSUMER_KEY, DEFAULT_CONSUMER_SECRET, user_id)
        return user_id

    @contextlib.contextmanager
    def transaction(self):
        """One SQLite transaction (nested calls join the outer one); changes are published after COMMIT."""
        self._write_lock.acquire()
        outer = self._depth == 0
        committed: list[Change] = []
        try:
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
                self._pending = []
                self._tx_now = None
            self._depth += 1
            try:
                yield self._conn
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                    self._pending = []
                raise
            self._depth -= 1
            if outer:
                self._flush()
                self._conn.execute("COMMIT")
                committed, self._pending = self._pending, []
        finally:
            if outer:
                self._tx_now = None
            self._write_lock.release()
        for change in committed:
            self._publish(change)

    def _flush(self) -> None:
        """Write what the transaction batched: change log rows, Id counters, the latest timestamp."""
        if self._pending:
            for hook in self._capture_hooks:
                hook(self._conn, self._pending)
            texts: dict = {}      # a transaction's changes share one time (see now()): format it once
            self._conn.executemany(
                "INSERT INTO changes (sobject, record_id, kind, client, user_id, at) VALUES (?,?,?,?,?,?)",
                [(c.sobject, c.record_id, c.kind, c.client, c.user_id,
                  texts.get(c.at) or texts.setdefault(c.at, format_datetime(c.at))) for c in self._pending])
            last = max(c.at for c in self._pending)
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('last_time', ?)", (last.isoformat(),))
        if self._dirty_counters:
            self._conn.executemany(
                "INSERT INTO counters VALUES (?, ?) ON CONFLICT (key_prefix) DO UPDATE SET next = excluded.next",
                [(prefix, self._counters[prefix]) for prefix in self._dirty_counters])
            self._dirty_counters.clear()

    @contextlib.contextmanager
    def savepoint(self):
        """Isolate one record inside a larger transaction: its failure undoes only its own writes."""
        with self.transaction() as conn:
            mark = len(self._pending)
            conn.execute("SAVEPOINT record")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK TO record")
                conn.execute("RELEASE record")
                del self._pending[mark:]
                raise
            conn.execute("RELEASE record")

    def subscribe(self, callback: Callable[[Change], None]) -> None:
        self._subscribers.append(callback)

    def capture(self, callback: Callable) -> None:
        """callback(conn, changes) in every transaction that changed records, before COMMIT: what it writes
        on `conn` commits or rolls back with the changes themselves."""
        self._capture_hooks.append(callback)

    def _publish(self, change: Change) -> None:
        for callback in list(self._subscribers):
            try:
                callback(change)
            except Exception:      # a subscriber's bug must not fail the API call that already committed
                log.exception("change subscriber failed")

    def now(self) -> dt.datetime:
        """Record timestamps have whole seconds, as Salesforce's do (".000" milliseconds).

        Inside a transaction, the time it first asked for: every record one API call writes gets the same
        CreatedDate/LastModifiedDate/SystemModstamp and change time. It is read under the write lock, so
        a later transaction never gets an earlier time.
        """
        if self._depth and self._write_lock._is_owned():      # noqa: SLF001 - RLock ownership
            if self._tx_now is None:
                self._tx_now = self.clock.now().replace(microsecond=0)
            return self._tx_now
        return self.clock.now().replace(microsecond=0)

    def _now_formatted(self) -> str:
        """now() as stored in the timestamp columns, formatted once per distinct time."""
        now = self.now()
        cached = self._now_text
        if cached[0] != now:
            cached = self._now_text = (now, format_datetime(now))
        return cached[1]

    def _next_id(self, sobject: SObjectType) -> str:
        prefix = sobject.key_prefix
        number = self._counters.get(prefix, 1)
        self._counters[prefix] = number + 1
        self._dirty_counters.add(prefix)
        return ids.make_id(prefix, self.pod, number)

    def _record_change(self, sobject: SObjectType, record_id: str, kind: str, client, user_id, at,
                       values: dict | None = None) -> None:
        """Queued for the change log and subscribers; written by _flush at COMMIT, dropped on ROLLBACK."""
        self._pending.append(Change(sobject.name, record_id, kind, client, user_id, at,
                                    values if self._capture_hooks else None))

    # ------------------------------------------------------------ schema

    def sobject_type(self, sobject: str) -> SObjectType:
        found = self.types.get(sobject.lower()) if isinstance(sobject, str) else None
        if found is None:
            raise NotFound()
        return found

    def describe(self, sobject: str) -> dict:
        return self.sobject_type(sobject).describe

    def sobject_names(self) -> list[str]:
        return sorted(t.name for t in self.types.values())

    # ------------------------------------------------------------ reads

    def _row_to_record(self, sobject: SObjectType, names: list[str], row) -> dict:
        return {name: to_json_value(sobject.field(name), value) for name, value in zip(names, row)}

    def _load(self, conn, sobject: SObjectType, record_id: str, names: list[str] | None = None):
        names = names or sobject.field_names
        cols = ", ".join(quote(n) for n in names)
        row = conn.execute(_sql('SELECT {cols} FROM {} WHERE "Id" = ?', sobject.table, cols=cols),
                           (record_id,)).fetchone()
        return None if row is None else self._row_to_record(sobject, names, row)

    def get(self, sobject, record_id, fields=None, include_deleted=False) -> dict | None:
        """The record (all fields, or `fields` in canonical case) or None. Raises SalesforceError for unknown fields."""
        sobj = self.sobject_type(sobject)
        try:
            record_id = ids.to18(record_id)
        except ValueError:
            return None
        names = None
        if fields:
            names = []
            for name in fields:
                field = sobj.field(name.strip())
                if field is None:
                    raise SalesforceError(400, "INVALID_FIELD", f"No such column '{name.strip()}' on entity "
                                          f"'{sobj.name}'. If you are attempting to use a custom field, be sure to "
                                          "append the '__c' after the custom field name. Please reference your WSDL "
                                          "or the describe call for the appropriate names.")
                names.append(field["name"])
            if "IsDeleted" not in names:
                names.append("IsDeleted")
        record = self._load(self._reader(), sobj, record_id, names)
        if record is None or (record["IsDeleted"] and not include_deleted):
            return None
        if fields and not any(n.strip().lower() == "isdeleted" for n in fields):
            record.pop("IsDeleted")
        return record

    def compile(self, soql: str, include_deleted: bool = False) -> Plan:
        return compile_query(soql, self.types, include_deleted=include_deleted, today=self.clock.now().date())

    def open_query(self, soql: str, include_deleted: bool = False) -> QueryCursor:
        """A cursor on a dedicated connection, for paging through large results without loading them."""
        plan = self.compile(soql, include_deleted)
        # Hundreds of locators may be open at once: each cursor gets a small page cache.
        return QueryCursor(plan, self._connect(cache_kib=4096))

    @contextlib.contextmanager
    def snapshot(self, cache_kib: int = 4096) -> Iterator[sqlite3.Connection]:
        """A dedicated connection inside one read transaction: every statement on it sees the org as it was
        at the first read, whatever commits meanwhile (WAL readers do not block the writer)."""
        conn = self._connect(cache_kib=cache_kib)
        try:
            conn.execute("BEGIN")
            yield conn
        finally:
            conn.close()

    def query(self, soql: str, include_deleted: bool = False) -> Iterator[dict]:
        plan = self.compile(soql, include_deleted)
        if plan.kind != "rows":
            raise SoqlError("MALFORMED_QUERY", "aggregate queries are not supported by Org.query")
        return self._iterate(plan)

    def _iterate(self, plan: Plan) -> Iterator[dict]:
        conn = self._connect(cache_kib=4096)
        try:
            cursor = conn.execute(plan.sql, plan.params)
            while True:
                rows = cursor.fetchmany(1000)
                if not rows:
                    return
                children = load_children(conn, plan, rows)
                for row in rows:
                    yield plan.record(row, None, children)
        finally:
            conn.close()

    def changes(self, since_seq: int = 0, limit: int = 1000) -> list[dict]:
        """The change log (admin API and tests): who changed what, with which client name."""
        rows = self._reader().execute(
            "SELECT seq, sobject, record_id, kind, client, user_id, at FROM changes WHERE seq > ? ORDER BY seq "
            "LIMIT ?", (since_seq, limit)).fetchall()
        keys = ("seq", "sobject", "record_id", "kind", "client", "user_id", "at")
        return [dict(zip(keys, row)) for row in rows]

    def updated_ids(self, sobject: str, start: dt.datetime, end: dt.datetime) -> list[str]:
        sobj = self.sobject_type(sobject)
        rows = self._reader().execute(
            f"SELECT \"Id\" FROM {quote(sobj.table)} WHERE \"SystemModstamp\" >= ? AND \"SystemModstamp\" < ? "
            "AND \"IsDeleted\" = 0 ORDER BY \"Id\"", (format_datetime(start), format_datetime(end))).fetchall()
        return [r[0] for r in rows]

    def deleted_records(self, sobject: str, start: dt.datetime, end: dt.datetime) -> list[tuple[str, str]]:
        sobj = self.sobject_type(sobject)
        return self._reader().execute(
            f"SELECT \"Id\", \"_deleted_at\" FROM {quote(sobj.table)} WHERE \"_deleted_at\" >= ? AND "
            "\"_deleted_at\" < ? AND \"IsDeleted\" = 1 ORDER BY \"_deleted_at\", \"Id\"",
            (format_datetime(start), format_datetime(end))).fetchall()

    # ------------------------------------------------------------ writes

    def _check_references(self, sobj: SObjectType, stored: dict, lookups: dict) -> None:
        conn = self._conn
        for name, (target_name, ext_field, ext_value) in lookups.items():
            target = self.types[target_name.lower()]
            rows = conn.execute(_sql('SELECT "Id" FROM {} WHERE {} = ? AND "IsDeleted" = 0 LIMIT 2',
                                     target.table, ext_field), (ext_value,)).fetchall()
            if len(rows) != 1:
                text = "not found" if not rows else "matched more than one record"
                raise SalesforceError(400, "INVALID_FIELD", f"Foreign key external ID: {ext_value} {text} for field "
                                      f"{ext_field} in entity {target.name}")
            stored[name] = rows[0][0]
        for name, value in stored.items():
            field = sobj.field(name)
            if field["type"] != "reference" or value is None:
                continue
            target = next((self.types[t.lower()] for t in field["referenceTo"]
                           if t.lower() in self.types and self.types[t.lower()].key_prefix == value[:3]), None)
            if target is None:
                continue
            row = conn.execute(_sql('SELECT "IsDeleted" FROM {} WHERE "Id" = ?', target.table), (value,)).fetchone()
            if row is None or row[0]:
                message = ("entity is deleted" if row else "invalid cross reference id")
                raise SalesforceError(400, "ENTITY_IS_DELETED" if row else "INVALID_CROSS_REFERENCE_KEY", message,
                                      [] if row else [name])

    def _check_unique(self, sobj: SObjectType, stored: dict, record_id: str | None, checked=()) -> None:
        """DUPLICATE_VALUE when a live record already has a unique field's value; `checked`: fields the
        caller has just looked up the same way (an upsert's external id that matched nothing)."""
        for name in sobj.unique_fields:
            value = stored.get(name)
            if value is None or name in checked:
                continue
            row = self._conn.execute(
                f"SELECT \"Id\" FROM {quote(sobj.table)} WHERE {quote(name)} = ? AND \"IsDeleted\" = 0 "
                "AND \"Id\" IS NOT ? LIMIT 1", (value, record_id)).fetchone()
            if row:
                raise SalesforceError(400, "DUPLICATE_VALUE", f"duplicate value found: {name} duplicates value on "
                                      f"record with id: {ids.to15(row[0])}", [])

    @staticmethod
    def _compound_name(sobj: SObjectType, row: dict) -> None:
        if sobj.has_compound_name():
            parts = [row.get("FirstName"), row.get("LastName")]
            row["Name"] = " ".join(p for p in parts if p) or None

    def _insert(self, sobj: SObjectType, values: dict, client, user_id: str, full: bool = True,
                unique_checked=()) -> dict:
        """Validate and insert one record; the full record, or only {"Id": ...} when not `full`."""
        stored, lookups = validation.check(sobj, values, creating=True, types=self.types)
        self._check_references(sobj, stored, lookups)
        self._check_unique(sobj, stored, None, unique_checked)
        now = self._now_formatted()
        row = validation.defaults(sobj)
        row.update(stored)
        if sobj.field("OwnerId") and row.get("OwnerId") is None:
            row["OwnerId"] = user_id
        record_id = self._next_id(sobj)
        row.update({"Id": record_id, "IsDeleted": 0, "CreatedDate": now, "CreatedById": user_id,
                    "LastModifiedDate": now, "LastModifiedById": user_id, "SystemModstamp": now})
        self._compound_name(sobj, row)
        self._check_org_rules(sobj, row, None)
        cols = tuple(row)
        self._conn.execute(_insert_sql(sobj.table, cols), [row[c] for c in cols])
        calculated.recalculate(self._conn, self.types, sobj, [record_id])
        self._record_change(sobj, record_id, "created", client, user_id, self.now(), row)
        if not full:
            return {"Id": record_id}
        record = dict.fromkeys(sobj.field_names)
        fields = sobj.fields
        record.update({name: to_json_value(fields[name.lower()], value) for name, value in row.items()})
        return record

    def _existing(self, sobj: SObjectType, record_id: str, full: bool = True) -> dict:
        """The live record or the Salesforce error a write to it gets (MALFORMED_ID, NOT_FOUND, ENTITY_IS_DELETED).
        Not `full`: only the fields an update needs (Id, IsDeleted and the parts of a compound name)."""
        try:
            full_id = ids.to18(record_id)
        except ValueError:
            raise SalesforceError(400, "MALFORMED_ID", f"{sobj.label} ID: id value of incorrect type: {record_id}",
                                  ["Id"]) from None
        if not full_id.startswith(sobj.key_prefix):
            raise SalesforceError(400, "MALFORMED_ID", f"{sobj.label} ID: id value of incorrect type: {record_id}",
                                  ["Id"])
        names = None
        if not full:
            names = ["Id", "IsDeleted", "FirstName", "LastName"] if sobj.has_compound_name() else ["Id", "IsDeleted"]
        current = self._load(self._conn, sobj, full_id, names)
        if current is None:
            raise NotFound()
        if current["IsDeleted"]:
            raise SalesforceError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        return current

    def _update(self, sobj: SObjectType, record_id: str, values: dict, client, user_id: str,
                full: bool = True, live: bool = False) -> dict:
        """Validate and update one live record; the full record, or only {"Id": ...} when not `full`.
        `live`: record_id is an 18-character Id this transaction has just found live (an upsert's match)."""
        current = {"Id": record_id} if live and not full else self._existing(sobj, record_id, full)
        stored, lookups = validation.check(sobj, values, creating=False, types=self.types)
        self._check_references(sobj, stored, lookups)
        self._check_unique(sobj, stored, current["Id"])
        now = self._now_formatted()
        stored.update({"LastModifiedDate": now, "LastModifiedById": user_id, "SystemModstamp": now})
        if sobj.has_compound_name() and ({"FirstName", "LastName"} & set(stored)):
            if "LastName" not in current:
                current = self._existing(sobj, record_id, full=False)
            merged = {**current, **stored}
            self._compound_name(sobj, merged)
            stored["Name"] = merged["Name"]
        if self.rules.for_object(sobj.name):
            prior = self._load(self._conn, sobj, current["Id"])
            self._check_org_rules(sobj, {**prior, **{k: to_json_value(sobj.field(k), v) for k, v in stored.items()}},
                                  prior)
        self._conn.execute(_update_sql(sobj.table, tuple(stored)), [*stored.values(), current["Id"]])
        calculated.recalculate(self._conn, self.types, sobj, [current["Id"]])
        self._record_change(sobj, current["Id"], "updated", client, user_id, self.now(), stored)
        if not full:
            return {"Id": current["Id"]}
        current.update({name: to_json_value(sobj.field(name), value) for name, value in stored.items()})
        return current

    def _delete(self, sobj: SObjectType, record_id: str, client, user_id: str) -> str:
        current = self._existing(sobj, record_id)
        self._mark_deleted(sobj, [current["Id"]], client, user_id)
        return current["Id"]

    def _mark_deleted(self, sobj: SObjectType, record_ids: list[str], client, user_id: str) -> None:
        """Into the recycle bin, with the children Salesforce deletes too (cascadeDelete relationships);
        other lookups to these records are cleared."""
        now = format_datetime(self.now())
        for record_id in record_ids:
            self._conn.execute(_sql('UPDATE {} SET "IsDeleted" = 1, "_deleted_at" = ?, "LastModifiedDate" = ?, '
                                    '"LastModifiedById" = ?, "SystemModstamp" = ? WHERE "Id" = ?', sobj.table),
                               (now, now, user_id, now, record_id))
            self._record_change(sobj, record_id, "deleted", client, user_id, self.now())
        calculated.recalculate(self._conn, self.types, sobj, record_ids)
        for relation in sobj.describe.get("childRelationships", []):
            child = self.types.get(relation["childSObject"].lower())
            field = child.field(relation["field"]) if child else None
            if field is None or field["type"] != "reference":
                continue
            marks = ", ".join("?" for _ in record_ids)
            children = [r[0] for r in self._conn.execute(
                f"SELECT \"Id\" FROM {quote(child.table)} WHERE {quote(field['name'])} IN ({marks}) "
                "AND \"IsDeleted\" = 0", record_ids)]
            if not children:
                continue
            if relation.get("cascadeDelete"):
                self._mark_deleted(child, children, client, user_id)
            elif field["nillable"]:
                for child_id in children:
                    self._conn.execute(_sql('UPDATE {} SET {} = NULL, "SystemModstamp" = ? WHERE "Id" = ?',
                                            child.table, field["name"]), (now, child_id))
                    self._record_change(child, child_id, "updated", client, user_id, self.now(),
                                        {field["name"]: None})

    def _check_org_rules(self, sobj: SObjectType, row: dict, prior: dict | None) -> None:
        """Validation rules, triggers and duplicate rules (emulator/org_rules.py) on the record as it would be
        stored; `row` holds stored values on an insert, JSON values on an update (`prior`: the stored record)."""
        if not self.rules.for_object(sobj.name):
            return
        if prior is None:
            row = {name: to_json_value(sobj.field(name), value) for name, value in row.items()}
        record_id = row.get("Id")

        def find_duplicate(names: list[str], record: dict) -> str | None:
            where, params = [], []
            for name in names:
                field = sobj.field(name)
                value = record.get(field["name"]) if field else None
                if value is None or value == "":
                    return None     # a blank never matches (matching rules leave blank fields out)
                where.append(f"{quote(field['name'])} = ? COLLATE NOCASE" if isinstance(value, str)
                             else f"{quote(field['name'])} = ?")
                params.append(int(value) if isinstance(value, bool) else value)
            found = self._conn.execute(
                f"SELECT \"Id\" FROM {quote(sobj.table)} WHERE {' AND '.join(where)} AND \"IsDeleted\" = 0 "
                "AND \"Id\" IS NOT ? LIMIT 1", [*params, record_id]).fetchone()
            return found[0] if found else None
        self.rules.check(sobj.name, row, prior, find_duplicate)

    def configure_rules(self, config: dict) -> dict:
        """Replace the org's rules (admin API); ValueError for an unknown object or field."""
        compiled = org_rules.compile_rules(config)
        for key, entry in compiled.items():
            sobj = self.types.get(key)
            if sobj is None:
                raise ValueError(f"rules: no sObject {entry['name']}")
            names = set()
            for rule in entry["validationRules"] + [t for t in entry["triggers"] if t["formula"]]:
                names |= rule["formula"].fields()
            for rule in entry["duplicateRules"]:
                names |= {f.lower() for f in rule["fields"]}
            unknown = sorted(n for n in names if sobj.field(n) is None)
            if unknown:
                raise ValueError(f"rules.{entry['name']}: no field {', '.join(unknown)} on {sobj.name}")
        return self.rules.configure(config)

    def _joins_transaction(self) -> bool:
        """True inside this thread's open transaction, which a nested transaction() would only join."""
        return bool(self._depth) and self._write_lock._is_owned()      # noqa: SLF001 - RLock ownership

    def create(self, sobject, values: dict, *, client: str | None, user_id: str, full: bool = True) -> dict:
        sobj = self.sobject_type(sobject)
        if self._joins_transaction():         # a Collections call: 200 of these in its transaction
            return self._insert(sobj, values, client, user_id, full)
        with self.transaction():
            return self._insert(sobj, values, client, user_id, full)

    def update(self, sobject, record_id, values, *, client, user_id, full: bool = True) -> dict:
        sobj = self.sobject_type(sobject)
        if self._joins_transaction():
            return self._update(sobj, record_id, values, client, user_id, full)
        with self.transaction():
            return self._update(sobj, record_id, values, client, user_id, full)

    def delete(self, sobject, record_id, *, client, user_id) -> None:
        sobj = self.sobject_type(sobject)
        with self.transaction():
            self._delete(sobj, record_id, client, user_id)

    def undelete(self, sobject, record_id, *, client, user_id) -> dict:
        """Restore a record from the recycle bin (admin API; REST has no undelete resource)."""
        sobj = self.sobject_type(sobject)
        with self.transaction():
            current = self._load(self._conn, sobj, ids.to18(record_id))
            if current is None:
                raise NotFound()
            if not current["IsDeleted"]:
                raise SalesforceError(400, "UNDELETE_FAILED", "Entity is not in the recycle bin", [])
            now = format_datetime(self.now())
            self._conn.execute(_sql('UPDATE {} SET "IsDeleted" = 0, "_deleted_at" = NULL, "LastModifiedDate" = ?, '
                                    '"LastModifiedById" = ?, "SystemModstamp" = ? WHERE "Id" = ?', sobj.table), (now, user_id, now, current["Id"]))
            record = self._load(self._conn, sobj, current["Id"])
            self._record_change(sobj, current["Id"], "undeleted", client, user_id, self.now(), record)
            return record

    def find_by_external_id(self, sobject, ext_field: str, ext_value) -> list[str]:
        """Ids of live records whose external id field matches (case-insensitively, as Salesforce does)."""
        sobj = self.sobject_type(sobject)
        field = self._external_field(sobj, ext_field)
        if field["name"] == "Id":
            try:
                value = ids.to18(str(ext_value))
            except ValueError:
                return []
        else:
            value = validation.convert(field, ext_value)
        # Inside an upsert's transaction this is the write connection; from a plain GET, a reader.
        rows = self._reader().execute(
            f"SELECT \"Id\" FROM {quote(sobj.table)} WHERE {quote(field['name'])} = ? AND \"IsDeleted\" = 0 "
            "ORDER BY \"Id\" LIMIT 100", (value,)).fetchall()
        return [r[0] for r in rows]

    @staticmethod
    def _external_field(sobj: SObjectType, ext_field: str) -> dict:
        field = sobj.field(ext_field)
        if field is None:
            raise NotFound()
        if not (field.get("externalId") or field.get("idLookup")):
            raise SalesforceError(400, "INVALID_FIELD", f"Field name provided, {field['name']} is not an External ID "
                                  f"or indexed field for {sobj.name}")
        return field

    def _upsert(self, sobj: SObjectType, ext_field: str, ext_value, values: dict, client, user_id,
                update_only: bool = False, full: bool = True,
                matches: "ExternalIdMatches | None" = None) -> tuple[dict, bool]:
        field = self._external_field(sobj, ext_field)
        if not self._joins_transaction():
            with self.transaction():
                return self._upsert(sobj, ext_field, ext_value, values, client, user_id, update_only, full, matches)
        if matches is not None and matches.answers(sobj, field):
            found = matches.find(ext_value)
        else:
            found = self.find_by_external_id(sobj.name, field["name"], ext_value)
        if len(found) > 1:
            raise SalesforceError(300, "MULTIPLE_CHOICES", f"More than one record found for external id field "
                                  f"{field['name']} with value {ext_value}", [], matches=found)
        body = {k: v for k, v in values.items() if k.lower() != field["name"].lower()}
        if found:
            body.pop("Id", None)
            return self._update(sobj, found[0], body, client, user_id, full, live=True), False
        if update_only or field["name"] == "Id":
            raise NotFound()
        body[field["name"]] = ext_value
        # No live record has this value: the lookup just now asked exactly what the unique check would.
        return self._insert(sobj, body, client, user_id, full, unique_checked=(field["name"],)), True

    def upsert(self, sobject, ext_field, ext_value, values, *, client, user_id, update_only: bool = False,
               full: bool = True, matches: "ExternalIdMatches | None" = None) -> tuple[dict, bool]:
        """`matches`: from external_id_matches() for the same call, which looked up all its values at once."""
        return self._upsert(self.sobject_type(sobject), ext_field, ext_value, values, client, user_id, update_only,
                            full, matches)

    def external_id_matches(self, sobject, ext_field: str, ext_values: list) -> "ExternalIdMatches | None":
        """For an sObject Collections upsert: the records matching all of its external id values, read in one
        query at its first lookup (inside the call's transaction). None where per-record lookups are needed:
        the field is Id or no external id (each record then gets its own error), or two of the values are
        equal as the column compares them, so one record's insert could be another's match."""
        sobj = self.sobject_type(sobject)
        field = sobj.field(ext_field)
        if field is None or field["name"] == "Id" or not (field.get("externalId") or field.get("idLookup")):
            return None
        matches = ExternalIdMatches(self, sobj, field, ext_values)
        return matches if matches.distinct else None

    def seed(self, sobject: str, count: int, fields: dict, *, user_id: str | None = None,
             stamped_seconds_ago: float = 0) -> dict:
        """Bulk-insert `count` records fast (no validation per row, no change events); "{n}" in a value is the row number.
        `stamped_seconds_ago`: a late commit, stamped that long before now (Salesforce stamps SystemModstamp when
        a transaction starts, so a slow one commits records older than some already visible)."""
        sobj = self.sobject_type(sobject)
        user_id = user_id or self.default_user_id
        sample = {k: (v.format(n=0) if isinstance(v, str) else v) for k, v in fields.items()}
        stored, _ = validation.check(sobj, sample, creating=True, types=self.types)
        templates = {name: fields[next(k for k in fields if k.lower() == name.lower())] for name in stored}
        base = validation.defaults(sobj)
        if sobj.field("OwnerId"):
            base["OwnerId"] = user_id
        base.update({"IsDeleted": 0, "CreatedById": user_id, "LastModifiedById": user_id})
        cols = list(dict.fromkeys(["Id", *base, "CreatedDate", "LastModifiedDate", "SystemModstamp", *templates]))
        if sobj.has_compound_name():
            cols.append("Name")
        sql = (f"INSERT INTO {quote(sobj.table)} ({', '.join(quote(c) for c in cols)}) "
               f"VALUES ({', '.join('?' for _ in cols)})")
        first = last = None
        done = 0
        while done < count:
            chunk = min(50_000, count - done)
            with self.transaction() as conn:
                now = format_datetime(self.now() - dt.timedelta(seconds=stamped_seconds_ago))
                start = self._counters.get(sobj.key_prefix, 1)
                self._counters[sobj.key_prefix] = start + chunk
                self._dirty_counters.add(sobj.key_prefix)
                rows = []
                for i in range(chunk):
                    n = done + i
                    row = dict(base)
                    row["Id"] = ids.make_id(sobj.key_prefix, self.pod, start + i)
                    row["CreatedDate"] = row["LastModifiedDate"] = row["SystemModstamp"] = now
                    for name, template in templates.items():
                        value = template.format(n=n) if isinstance(template, str) else template
                        row[name] = validation.convert(sobj.field(name), value)
                    if sobj.has_compound_name():
                        self._compound_name(sobj, row)
                    rows.append([row.get(c) for c in cols])
                conn.executemany(sql, rows)
                first = first or rows[0][0]
                last = rows[-1][0]
            done += chunk
        return {"sobject": sobj.name, "count": count, "firstId": first, "lastId": last}

    def reset(self) -> None:
        """Delete every record and change (admin API); users, sessions and the org id stay."""
        with self.transaction() as conn:
            for sobj in self.types.values():
                if sobj.name == "User":
                    continue
                conn.execute(_sql("DELETE FROM {}", sobj.table))
            conn.execute("DELETE FROM changes")

    # ------------------------------------------------------------ users and sessions

    def add_user(self, username: str, password: str, security_token: str = "", *, first_name: str = "",
                 last_name: str = "User", email: str | None = None) -> str:
        user_type = self.types["user"]
        with self.transaction() as conn:
            record = self._insert(user_type, {"Username": username, "FirstName": first_name, "LastName": last_name,
                                              "Email": email or username}, None, "005000000000000AAA")
            conn.execute(_sql('UPDATE {} SET "CreatedById" = ?, "LastModifiedById" = ? WHERE "Id" = ?', user_type.table), (record["Id"], record["Id"], record["Id"]))
            conn.execute("INSERT INTO credentials VALUES (?, ?, ?, ?)",
                         (username, record["Id"], password, security_token))
        return record["Id"]

    def add_oauth_client(self, consumer_key: str, consumer_secret: str, run_as_user_id: str) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO oauth_clients VALUES (?, ?, ?)",
                         (consumer_key, consumer_secret, run_as_user_id))

    def check_password(self, username: str, password: str) -> str | None:
        """The user Id when `password` is the password, or password + security token (SOAP login sends both)."""
        row = self._reader().execute("SELECT user_id, password, security_token FROM credentials WHERE username = ?",
                                     (username,)).fetchone()
        if row and password in (row[1], row[1] + row[2]):
            return row[0]
        return None

    def oauth_client(self, consumer_key: str, consumer_secret: str | None) -> str | None:
        """The run-as user of a connected app, or None when the key/secret are wrong."""
        row = self._reader().execute("SELECT consumer_secret, run_as_user_id FROM oauth_clients WHERE consumer_key = ?",
                                     (consumer_key,)).fetchone()
        if row and (consumer_secret is None or consumer_secret == row[0]):
            return row[1]
        return None

    def open_session(self, user_id: str, with_refresh: bool = False) -> tuple[Session, str | None]:
        token = f"{ids.to15(self.org_id)}!AQ{uuid.uuid4().hex}{uuid.uuid4().hex[:20]}"
        refresh = f"5Aep{uuid.uuid4().hex}{uuid.uuid4().hex[:24]}" if with_refresh else None
        now = self.clock.now()
        expires = now + dt.timedelta(seconds=self.session_seconds)
        with self.transaction() as conn:
            conn.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                         (token, user_id, now.isoformat(), expires.isoformat(), refresh))
        return Session(token, user_id, expires), refresh

    def session(self, token: str) -> Session | None:
        """The live session for a bearer token. A session ends after session_seconds without a call (Salesforce's
        timeout counts inactivity): each call moves its end forward, written at most once a minute."""
        row = self._reader().execute("SELECT user_id, expires_at FROM sessions WHERE token = ?", (token,)).fetchone()
        if row is None:
            return None
        expires = dt.datetime.fromisoformat(row[1])
        now = self.clock.now()
        if expires <= now:
            return None
        renewed = now + dt.timedelta(seconds=self.session_seconds)
        if renewed - expires >= dt.timedelta(seconds=min(60, self.session_seconds / 2)):
            with self.transaction() as conn:
                conn.execute("UPDATE sessions SET expires_at = ? WHERE token = ? AND expires_at > ?",
                             (renewed.isoformat(), token, now.isoformat()))
            expires = renewed
        return Session(token, row[0], expires)

    def refresh_session(self, refresh_token: str) -> Session | None:
        row = self._reader().execute("SELECT user_id FROM sessions WHERE refresh_token = ? LIMIT 1",
                                     (refresh_token,)).fetchone()
        if row is None:
            return None
        session, _ = self.open_session(row[0])
        return session

    def expire_sessions(self) -> int:
        """Fault injection: every session ends now (refresh tokens keep working, as in Salesforce)."""
        with self.transaction() as conn:
            return conn.execute("UPDATE sessions SET expires_at = ?", (self.clock.now().isoformat(),)).rowcount

    def user_name(self, user_id: str) -> dict:
        row = self._reader().execute(
            "SELECT \"Username\", \"Name\", \"Email\" FROM so_User WHERE \"Id\" = ?", (user_id,)).fetchone()
        return {"Username": row[0], "Name": row[1], "Email": row[2]} if row else {}

    # ------------------------------------------------------------ API usage

    def count_api_call(self, route: str, client: str | None) -> None:
        self.usage.count(route, client)

    def stats(self) -> dict:
        return self.usage.snapshot()

    def close(self) -> None:
        self._conn.close()
        self._lock_file.close()      # releases the data dir for the next process


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _match_key(nocase: bool, value):
    """What SQLite compares for `column = value`: text columns are COLLATE NOCASE, which folds ASCII only."""
    if not (nocase and isinstance(value, str)):
        return value
    return value.lower() if value.isascii() else value.translate(_ASCII_LOWER)


class ExternalIdMatches:
    """One Collections upsert's external id lookups (Org.find_by_external_id) answered from one query.

    Built only when the call's values are pairwise distinct as the column compares them: then no record
    the call inserts matches another record's value, and the query's answers stay exact for the whole
    call. The query runs at the first lookup, inside the call's transaction, before the call has written.
    """

    def __init__(self, org: Org, sobj: SObjectType, field: dict, ext_values: list):
        self._org, self._sobj, self._field = org, sobj, field
        self._nocase = _column_type(field).endswith("COLLATE NOCASE")
        keys: dict = {}
        count = 0
        for ext_value in ext_values:
            try:
                value = validation.convert(field, ext_value)
            except SalesforceError:
                continue           # that record fails its lookup with this error, writing nothing
            if value is not None:  # = NULL matches nothing, and a NULL written matches nothing later
                count += 1
                keys.setdefault(_match_key(self._nocase, value), value)
        self.distinct = count == len(keys)
        self._keys = set(keys)
        self._values = list(keys.values())
        self._found: dict | None = None

    def answers(self, sobj: SObjectType, field: dict) -> bool:
        return sobj is self._sobj and field is self._field

    def find(self, ext_value) -> list[str]:
        """What find_by_external_id answers for a value (its error, too, for one of the wrong type)."""
        value = validation.convert(self._field, ext_value)
        if value is None:
            return []
        key = _match_key(self._nocase, value)
        if key not in self._keys:      # not one of the call's values: ask the table itself
            return self._org.find_by_external_id(self._sobj.name, self._field["name"], ext_value)
        if self._found is None:
            self._found = self._fetch()
        return list(self._found.get(key, ()))

    def _fetch(self) -> dict:
        found: dict = {}
        conn = self._org._conn      # noqa: SLF001 - the transaction's connection
        for start in range(0, len(self._values), 500):
            chunk = self._values[start:start + 500]
            sql = _sql('SELECT "Id", {} FROM {} WHERE {} IN ({marks}) AND "IsDeleted" = 0', self._field["name"],
                       self._sobj.table, self._field["name"], marks=", ".join("?" for _ in chunk))
            for record_id, value in conn.execute(sql, chunk):
                found.setdefault(_match_key(self._nocase, value), []).append(record_id)
        for record_ids in found.values():
            record_ids.sort()               # find_by_external_id: ORDER BY "Id" LIMIT 100
            del record_ids[100:]
        return found

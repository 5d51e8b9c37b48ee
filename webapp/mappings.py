"""Mappings in the console: list with row counts, create (from describe, by hand or from the Outbound Message
WSDL), edit fields, pause/resume, delete, and import/export of the whole configuration."""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import replace

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for

from core import configuration, formulas, soql
from core.convert import SUPPORTED_TYPES
from core.mapping import (CONFLICT_RULES, DIRECTIONS, IMPLIED_FIELDS, OWNERS, RELATIONSHIP_MARK, Mapping,
                          MappingError, check_object_name, from_entry, relationship_parents)
from core.outbound_wsdl import WsdlError, read_wsdl
from gateway import mapped_tables, mapping_store
from webapp import sync, write_path
from webapp.context import ctx

bp = Blueprint("mappings", __name__, url_prefix="/mappings")
EXACT_COUNT_UP_TO = 200_000   # above this the planner's estimate is shown (an exact count scans the table)


def _describe(object_name: str) -> dict | None:
    """Salesforce's describe, or None when not connected (fields are then typed by hand). An object
    Salesforce does not know raises MappingError, which the form shows. So does a name that is not an
    object API name, before any call: it would become part of Salesforce's URL."""
    if not object_name:
        return None
    check_object_name(object_name)
    try:
        return ctx().describe(object_name)
    except MappingError:
        raise
    except Exception:  # noqa: BLE001 - no connection: fields by hand
        return None


def parent_describes(fields, describe: dict | None) -> dict:
    """Describes of the parents named by relationship external-id fields (to check their external ids), by
    lowercase name; a parent that cannot be described is left out (the field is then checked by Salesforce)."""
    if not describe or not isinstance(fields, dict):
        return {}
    found = {}
    for name in relationship_parents(fields, describe):
        try:
            parent = ctx().describe(name)
        except Exception:  # noqa: BLE001 - unknown parent: Salesforce refuses the write later
            parent = None
        if parent:
            found[name.lower()] = parent
    return found


def create_mapping(entry: dict, describe: dict | None) -> Mapping:
    """The one way a mapping is created from an entry (console form, JSON API): validated against describe
    and the parents its relationship fields name, saved with its table and capture triggers and its first
    sync queued (gateway/mapping_store.py), then the worker rung. Raises MappingError naming the field, or
    mapping_store.MappingExists."""
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    mapping = from_entry(entry, describe=describe, parents=parent_describes(config.get("fields"), describe))
    check_row_filter(mapping)
    created = mapping_store.create(ctx().db, mapping)
    ring_worker(created=[created])
    return created


def check_row_filter(m: Mapping, before: Mapping | None = None) -> None:
    """A new or changed row filter is parsed by Salesforce (a LIMIT 0 query) before it is saved."""
    condition = m.extra.get("row_filter")
    if condition and (before is None or before.extra.get("row_filter") != condition):
        problem = ctx().check_row_filter(m.object_name, condition)
        if problem:
            raise MappingError(f"config.row_filter: {problem}", "config.row_filter")


def ring_loads_if_filter_changed(before: Mapping, saved: Mapping) -> None:
    """A changed row filter queued a load in the save's transaction (gateway/mapping_store.py): run it now."""
    if before.extra.get("row_filter") != saved.extra.get("row_filter") and saved.reads and saved.active:
        ctx().enqueue("run_loads")


def ring_worker(created: list[Mapping] = (), saved: bool = False) -> None:
    """After mappings were saved: notifications kept as unmapped are pending again; a created mapping's first
    load and the push of rows without sfid start (the `mapping_ready` task)."""
    if created or saved:
        ctx().enqueue("apply_inbound")
    for m in created:
        ctx().enqueue("mapping_ready", m.id)


def _postgres_rows(m: Mapping) -> int | None:
    db = ctx().db
    estimate = db.fetchone("table_row_estimate", {"schema": m.table_schema, "table": m.table_name})
    if estimate is None:
        return None                       # the table was dropped outside ForceBridge
    if estimate["estimate"] > EXACT_COUNT_UP_TO:
        return estimate["estimate"]
    with db.transaction() as conn:
        return mapped_tables.count_rows(conn, m)


def _salesforce_rows(m: Mapping) -> int | None:
    try:
        condition = soql.filter_condition(m)   # with a row filter: the records it selects
        return ctx().count_records(m.object_name, condition) if condition else ctx().count_records(m.object_name)
    except Exception:  # noqa: BLE001 - shown as unknown
        return None


def _row(m: Mapping, inbound: dict, writes: dict) -> dict:
    problems = inbound.get(m.object_name.lower(), {})
    latest = sync.load_progress(m.id, limit=1)
    return {"m": m, "pg_rows": _postgres_rows(m), "sf_rows": _salesforce_rows(m),
            "inbound_pending": problems.get("pending", 0), "inbound_failed": problems.get("failed", 0),
            "writes": writes.get(m.id), "load": latest[0] if latest else None}


def _rows() -> list[dict]:
    inbound = {r["object_key"]: r for r in ctx().db.fetchall("inbound_problems_per_object")}
    writes = write_path.per_mapping()
    return [_row(m, inbound, writes) for m in mapping_store.list_all(ctx().db)]


@bp.get("")
def index():
    return _list_page(message=request.args.get("message"))


def _list_page(status: int = 200, **messages):
    return render_template("mappings/list.html", rows=_rows(), formulas=_formula_rows(), **messages), status


def _formula_rows() -> list[dict]:
    """Formula and roll-up refresh per reading mapping that has been refreshed (jobs/formula_refresh.py)."""
    states = {r["mapping_id"]: r for r in ctx().db.fetchall("formula_refresh_overview")}
    now = dt.datetime.now(dt.timezone.utc)
    return [{"m": m, "minutes": formulas.refresh_minutes(m), **states[m.id],
             "due_now": states[m.id]["next_run_at"] is not None and states[m.id]["next_run_at"] <= now}
            for m in mapping_store.list_all(ctx().db) if m.reads and m.id in states]


# --- create and edit ---------------------------------------------------------------------------------------

def _form_fields(describe: dict | None) -> list[dict]:
    """The fields a user can tick: from describe, else none (typed by hand). Each lookup whose parent has
    external ids adds Heroku Connect's relationship external-id fields (Account__r__External_Id__c)."""
    if not describe:
        return []
    out = []
    for f in describe.get("fields", []):
        if f["name"] in IMPLIED_FIELDS or f.get("type", "").lower() not in SUPPORTED_TYPES:
            continue
        out.append({"name": f["name"], "type": f["type"], "length": f.get("length") or None,
                    "label": f.get("label", f["name"]), "external_id": bool(f.get("externalId"))})
    return sorted(out, key=lambda f: f["name"].lower()) + _relationship_choices(describe)


def _relationship_choices(describe: dict) -> list[dict]:
    out = []
    for f in describe.get("fields", []):
        rel = f.get("relationshipName")
        if f.get("type") != "reference" or not rel or not f.get("referenceTo") or not f.get("createable", True):
            continue
        try:
            parent = ctx().describe(f["referenceTo"][0])
        except Exception:  # noqa: BLE001 - a parent we cannot describe offers no choices
            parent = None
        base = rel[:-3] if rel.lower().endswith("__r") else rel
        for p in (parent or {}).get("fields", []):
            if p.get("externalId"):
                out.append({"name": f"{base}{RELATIONSHIP_MARK}{p['name']}", "type": "relationship",
                            "length": p.get("length") or None, "external_id": False,
                            "label": f"{f['name']} by {parent['name']}.{p['name']}"})
    return sorted(out, key=lambda f: f["name"].lower())


def parse_typed_fields(text: str) -> dict[str, dict]:
    """'Name:string:80' per line (or comma), as typed when Salesforce is not connected; a fourth part names
    the field's owner ('Name:string:80:salesforce')."""
    fields: dict[str, dict] = {}
    for raw in text.replace(",", "\n").splitlines():
        parts = [p.strip() for p in raw.split(":")]
        if not parts[0]:
            continue
        if len(parts) < 2 or not parts[1]:
            raise MappingError(f"{parts[0]}: give a type, e.g. {parts[0]}:string:80")
        opts = {"type": parts[1]}
        if len(parts) > 2 and parts[2]:
            if not parts[2].isdigit():
                raise MappingError(f"{parts[0]}: length must be a number")
            opts["length"] = int(parts[2])
        if len(parts) > 3 and parts[3]:
            opts["owner"] = parts[3]
        fields[parts[0]] = opts
    return fields


def _typed_line(f) -> str:
    """A mapped field as parse_typed_fields reads it back."""
    parts = [f.name, f.sf_type, str(f.length or "")] + ([f.owner] if f.owner != "both" else [])
    return ":".join(parts).rstrip(":")


def _entry_from_form(form, describe: dict | None) -> dict:
    fields: dict[str, dict] = {name: {} for name in form.getlist("field")}
    if not describe:
        # Ticked fields carry their type (from a WSDL) in a hidden input; typed ones say it themselves.
        fields = {name: {"type": form.get(f"type:{name}", "")} for name in fields}
    for name, opts in fields.items():
        owner = form.get(f"owner:{name}") or "both"
        if owner != "both":
            opts["owner"] = owner
    fields.update(parse_typed_fields(form.get("typed_fields", "")))
    row_filter = (form.get("row_filter") or "").strip()
    return {
        "object_name": form.get("object_name", "").strip(),
        "table": form.get("table", "").strip() or None,
        "schema": form.get("schema", "").strip() or None,
        "direction": form.get("direction") or "sf_to_pg",
        "conflict_rule": form.get("conflict_rule") or "last_writer_wins",
        "active": True,
        "config": {"fields": fields, "upsert_field": form.get("upsert_field") or None,
                   **({"row_filter": row_filter} if row_filter else {}),
                   **({"sf_source": form.get("sf_source")} if form.get("sf_source") else {})},
    }


def _render_form(*, object_name="", mapping=None, describe=None, wsdl_fields=None, error=None, form=None,
                 chosen=None, status=200):
    fields = _form_fields(describe) or [{"name": n, "type": t, "length": None, "label": n, "external_id": False}
                                        for n, t in (wsdl_fields or {}).items() if n not in IMPLIED_FIELDS]
    if chosen is None and form is not None:
        chosen = set(form.getlist("field"))
    elif chosen is None and mapping is not None:
        chosen = {f.name for f in mapping.fields}
    elif chosen is None:
        chosen = {f["name"] for f in fields} if wsdl_fields else set()
    listed = {f["name"] for f in fields}
    typed = ""
    if mapping is not None and form is None:
        typed = "\n".join(_typed_line(f) for f in mapping.fields if f.name not in listed)
    if form is not None:
        owners = {f["name"]: form.get(f"owner:{f['name']}") or "both" for f in fields}
    else:
        owners = {f.name: f.owner for f in mapping.fields} if mapping is not None else {}
    return render_template(
        "mappings/form.html", object_name=object_name, mapping=mapping, fields=fields, chosen=chosen,
        owners=owners, owner_choices=OWNERS,
        connected=describe is not None, from_wsdl=bool(wsdl_fields), error=error, form=form or {},
        typed=form.get("typed_fields", "") if form is not None else typed,
        directions=DIRECTIONS, conflict_rules=CONFLICT_RULES, types=sorted(SUPPORTED_TYPES)), status


@bp.get("/new")
def new():
    object_name = request.args.get("object", "").strip()
    try:
        return _render_form(object_name=object_name, describe=_describe(object_name))
    except MappingError as exc:
        return _list_page(404, error=str(exc))


@bp.post("")
def create():
    form = request.form
    object_name = form.get("object_name", "").strip()
    describe = None
    try:
        describe = None if form.get("from_wsdl") else _describe(object_name)
        created = create_mapping(_entry_from_form(form, describe), describe)
    except (MappingError, mapping_store.MappingExists) as exc:
        wsdl_fields = {n: form.get(f"type:{n}", "") for n in form.getlist("field")} if form.get("from_wsdl") else None
        return _render_form(object_name=object_name, describe=describe, wsdl_fields=wsdl_fields, error=str(exc),
                            form=form, status=422)
    return redirect(url_for(".index", message=f"Mapping for {created.object_name} created "
                                              f"(table {created.table_schema}.{created.table_name})."), 303)


def _known_describe(m: Mapping) -> dict | None:
    try:
        return _describe(m.object_name)
    except MappingError:   # the object went away in Salesforce: the stored types still serve
        return None


def _mapping_or_404(mapping_id: int) -> Mapping:
    m = mapping_store.get(ctx().db, mapping_id)
    if m is None:
        abort(404, description=f"There is no mapping {mapping_id}.")
    return m


@bp.get("/<int:mapping_id>/edit")
def edit(mapping_id: int):
    m = _mapping_or_404(mapping_id)
    return _render_form(object_name=m.object_name, mapping=m, describe=_known_describe(m))


@bp.post("/<int:mapping_id>")
def update(mapping_id: int):
    m = _mapping_or_404(mapping_id)
    describe = _known_describe(m)
    form = request.form
    try:
        entry = _entry_from_form(form, describe)
        if not describe:
            # Fields already mapped keep their stored types when ticked without one.
            for name, opts in entry["config"]["fields"].items():
                known = m.field(name)
                if known and not opts.get("type"):
                    opts.update({"type": known.sf_type, **({"length": known.length} if known.length else {})})
        checked = from_entry({**entry, "object_name": m.object_name, "table": m.table_name,
                              "schema": m.table_schema}, describe=describe,
                             parents=parent_describes(entry["config"]["fields"], describe))
        extra = {k: v for k, v in m.extra.items() if k != "row_filter"}
        if checked.extra.get("row_filter"):
            extra["row_filter"] = checked.extra["row_filter"]
        candidate = replace(m, fields=checked.fields, direction=checked.direction,
                            conflict_rule=checked.conflict_rule, upsert_field=checked.upsert_field, extra=extra)
        if "sf_source" in checked.extra:       # the form's Salesforce source (absent: the stored one stays)
            candidate = replace(candidate, extra={**candidate.extra, "sf_source": checked.extra["sf_source"]})
        check_row_filter(candidate, m)
        ring_loads_if_filter_changed(m, mapping_store.update(ctx().db, candidate))
    except MappingError as exc:
        return _render_form(object_name=m.object_name, mapping=m, describe=describe, error=str(exc), form=form,
                            status=422)
    ctx().enqueue("apply_inbound")
    return redirect(url_for(".index", message=f"Mapping for {m.object_name} saved."), 303)


def _row_response(m: Mapping, message: str | None = None):
    if not request.headers.get("HX-Request"):
        return redirect(url_for(".index", message=message), 303)
    inbound = {r["object_key"]: r for r in ctx().db.fetchall("inbound_problems_per_object")}
    return render_template("mappings/_row.html", r=_row(m, inbound, write_path.per_mapping()), flash=message)


@bp.post("/<int:mapping_id>/pause")
def pause(mapping_id: int):
    m = mapping_store.update(ctx().db, replace(_mapping_or_404(mapping_id), active=False))
    return _row_response(m, f"{m.object_name} paused: notifications wait as unmapped until you resume.")


@bp.post("/<int:mapping_id>/resume")
def resume(mapping_id: int):
    m = mapping_store.update(ctx().db, replace(_mapping_or_404(mapping_id), active=True))
    ctx().enqueue("apply_inbound")
    return _row_response(m, f"{m.object_name} resumed.")


@bp.post("/<int:mapping_id>/reload")
def reload(mapping_id: int):
    """Load every record again from Salesforce (Heroku Connect's "reload"); the table keeps serving meanwhile."""
    m = _mapping_or_404(mapping_id)
    if not m.reads:
        abort(409, description=f"{m.object_name} is mapped Postgres → Salesforce only; there is nothing to load.")
    sync.reload_mapping(mapping_id, "console")
    return _row_response(m, f"Reload of {m.object_name} queued.")


@bp.get("/<int:mapping_id>/row")
def row(mapping_id: int):
    """The row alone: a row with a load in progress asks for itself every few seconds."""
    return _row_response(_mapping_or_404(mapping_id))


@bp.post("/<int:mapping_id>/delete")
def delete(mapping_id: int):
    drop = request.form.get("drop_table") == "yes"
    gone = mapping_store.delete(ctx().db, mapping_id, drop_table=drop)
    if gone is None:
        abort(404, description=f"There is no mapping {mapping_id}.")
    table = f"{gone.table_schema}.{gone.table_name}"
    message = f"Mapping for {gone.object_name} deleted; " + (f"table {table} dropped." if drop else
                                                             f"table {table} kept.")
    if request.headers.get("HX-Request"):
        return render_template("mappings/_deleted.html", message=message)
    return redirect(url_for(".index", message=message), 303)


# --- from the Outbound Message WSDL ------------------------------------------------------------------------

@bp.post("/wsdl")
def from_wsdl():
    upload = request.files.get("wsdl")
    if upload is None or not upload.filename:
        return _list_page(400, error="Choose the WSDL file Salesforce generated for the Outbound Message.")
    try:
        found = read_wsdl(upload.read())
    except WsdlError as exc:
        return _list_page(400, error=f"That WSDL could not be read: {exc}")
    try:
        describe = _describe(found.object_name)
    except MappingError as exc:
        return _list_page(400, error=f"The WSDL is for {found.object_name}, but {exc}")
    if describe:
        # Connected: describe knows lengths and exact types; the WSDL only says which fields are sent.
        return _render_form(object_name=found.object_name, describe=describe, chosen=set(found.fields))
    return _render_form(object_name=found.object_name, wsdl_fields=found.fields)


# --- import and export -------------------------------------------------------------------------------------

def current_connection() -> dict:
    """The connection block exports carry: the one last imported, else one made up from our settings."""
    stored = mapping_store.connection_config(ctx().db)
    if stored:
        return stored
    schemas = Counter(m.table_schema for m in mapping_store.list_all(ctx().db))
    s = ctx().settings
    return configuration.made_up_connection(s.salesforce_org_id, s.sf_api_version,
                                            schemas.most_common(1)[0][0] if schemas else "salesforce")


def export_document(flavor: str) -> dict:
    doc = configuration.export_document(mapping_store.list_all(ctx().db), current_connection(), flavor)
    doc["connection"]["exported_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
    return doc


@bp.get("/export")
def export():
    flavor = request.args.get("flavor", "forcebridge")
    if flavor not in configuration.FLAVORS:
        abort(400, description=f"flavor must be one of {', '.join(configuration.FLAVORS)}")
    name = "heroku-connect-export.json" if flavor == "heroku" else "forcebridge-config.json"
    return Response(json.dumps(export_document(flavor), indent=2, sort_keys=True), mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.post("/import")
def import_config():
    upload = request.files.get("config")
    raw = upload.read() if upload is not None and upload.filename else request.form.get("config_text", "").encode()
    try:
        done = import_document(json.loads(raw or b"null"))
    except RecursionError:
        return _list_page(400, error="Nothing imported: the document is nested too deeply")
    except (ValueError, MappingError, mapping_store.ImportFailed) as exc:
        return _list_page(400, error=f"Nothing imported: {exc}")
    return redirect(url_for(".index", message=f"Imported: {len(done['created'])} created, "
                                              f"{len(done['updated'])} updated, "
                                              f"{len(done['unchanged'])} unchanged."), 303)


def _import_describe(object_name: str) -> dict | None:
    try:
        return _describe(object_name)
    except MappingError as exc:
        raise MappingError(f"mapping {object_name}: {exc}") from None


def plan_document(doc, schema: str | None = None) -> tuple[dict, list]:
    """(connection, import plan) for a whole export, checked entirely against Salesforce's describe (when
    connected) before anything is written. `schema` overrides the one connection.name names."""
    connection, entries = configuration.read_document(doc)
    schema = schema or configuration.default_schema(connection)
    existing = {m.object_name.lower(): m for m in mapping_store.list_all(ctx().db)}
    describes, parents = {}, {}
    for e in entries:
        describe = describes[e["object_name"].lower()] = _import_describe(e["object_name"])
        config = e.get("config") if isinstance(e.get("config"), dict) else {}
        parents.update(parent_describes(config.get("fields"), describe))
    steps = configuration.plan_import(entries, existing, schema, describes, parents)
    for step in steps:      # all or nothing: Salesforce parses every new or changed row filter first
        try:
            check_row_filter(step.mapping, existing.get(step.mapping.object_name.lower()))
        except MappingError as exc:
            raise MappingError(f"mapping {step.mapping.object_name}: {exc}", exc.field) from None
    return connection, steps


def import_document(doc) -> dict:
    """A whole export (Heroku Connect's or ours), all or nothing: checked entirely (describes fetched
    first), then saved in one transaction with every table, trigger and queued load. Raises MappingError or
    mapping_store.ImportFailed naming the mapping (and field); nothing is kept then."""
    connection, steps = plan_document(doc)
    stored = configuration.connection_to_store(connection) if connection else None
    saved = mapping_store.import_all(ctx().db, steps, connection=stored, version=doc.get("version", 1))
    done = {"created": [], "updated": [], "unchanged": []}
    for step, m in zip(steps, saved):
        done[{"create": "created", "update": "updated"}.get(step.action, step.action)].append(m.object_name)
    ring_worker(created=[m for step, m in zip(steps, saved) if step.action == "create"],
                saved=bool(done["updated"]))
    return done

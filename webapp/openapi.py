"""GET /api/v1/openapi.json: the JSON API (webapp/api.py and the blueprints nested in it: sync_errors.py,
sync.py, api_jobs.py) described in OpenAPI 3.0. Public (the document holds no data); tests/integration/
test_openapi.py keeps it in step with the routes."""
from __future__ import annotations

from flask import Blueprint, jsonify

from core.change_states import Action, State, target
from jobs.api_jobs import KINDS as JOB_KINDS

bp = Blueprint("openapi", __name__)   # nested in webapp/api.py's tree, its one public route

MAX_ID = 2_147_483_647   # ids are Postgres integers / bigints; larger ones name nothing


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    words = {400: "The request is malformed or invalid", 401: "No or wrong bearer token",
             404: "No such resource", 409: "Conflicts with the current state"}
    return {str(c): _json(_ref("Error"), words[c]) for c in (401, *codes)}


def _id_param(name: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}


FIELD = {"type": "object", "description": "Salesforce field type and length (empty when the describe supplies them) "
                                         "and which side owns the field's value (default both)",
         "properties": {"type": {"type": "string"}, "length": {"type": "integer", "minimum": 1, "maximum": 131072},
                        "owner": {"type": "string", "enum": ["both", "salesforce", "postgres"]}}}
CONFIG = {
    "type": "object",
    "description": "Heroku Connect's exported mapping config",
    "properties": {
        "access": {"type": "string", "enum": ["read_only", "read_write"]},
        "fields": {"type": "object", "additionalProperties": FIELD, "minProperties": 1,
                   "description": "Salesforce field API name -> its type (Id, SystemModstamp, IsDeleted are implied)"},
        "upsert_field": {"type": "string", "nullable": True, "description": "external id field used for inserts"},
    },
    "additionalProperties": True,
}
DIRECTION = {"type": "string", "enum": ["sf_to_pg", "pg_to_sf", "bidirectional"]}
CONFLICT_RULE = {"type": "string", "enum": ["last_writer_wins", "salesforce_wins", "postgres_wins"]}
CHANGE_STATE = {"type": "string", "enum": [str(s) for s in State]}
TIMESTAMP = {"type": "string", "format": "date-time"}

SCHEMAS = {
    "Error": {"type": "object", "required": ["error", "message"],
              "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                             "field": {"type": "string", "nullable": True,
                                       "description": "the request's field at fault, e.g. config.access"}}},
    "MappingIn": {
        "type": "object", "required": ["object_name", "config"],
        "properties": {"object_name": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]*$"},
                       "config": CONFIG, "table": {"type": "string"}, "schema": {"type": "string"},
                       "direction": DIRECTION, "conflict_rule": CONFLICT_RULE, "active": {"type": "boolean"}}},
    "MappingPatch": {
        "type": "object",
        "description": "Keys left out keep their values; every key given is validated as on creation and nothing "
                       "is saved unless all are valid. id, object_name, table and schema may be sent back unchanged.",
        "properties": {"config": CONFIG, "direction": DIRECTION, "conflict_rule": CONFLICT_RULE,
                       "active": {"type": "boolean"}}},
    "Mapping": {
        "type": "object",
        "required": ["id", "object_name", "config", "table", "schema", "direction", "conflict_rule", "active"],
        "properties": {"id": {"type": "integer"}, "object_name": {"type": "string"}, "config": CONFIG,
                       "table": {"type": "string"}, "schema": {"type": "string"}, "direction": DIRECTION,
                       "conflict_rule": CONFLICT_RULE, "active": {"type": "boolean"}}},
    "ConfigDocument": {
        "type": "object", "required": ["mappings"],
        "description": "A whole configuration as `heroku connect:export` writes it: connection.name "
                       "`<app>:DATABASE_URL:<schema>` names the schema of the mapped tables",
        "properties": {
            "version": {"type": "integer", "enum": [1]},
            "connection": {"type": "object", "additionalProperties": True, "properties": {
                "name": {"type": "string"}, "organization_id": {"type": "string"},
                "api_version": {"type": "string"}, "features": {"type": "object"},
                "exported_at": {"type": "string"}}},
            "mappings": {"type": "array", "items": {
                "type": "object", "required": ["object_name", "config"],
                "properties": {"object_name": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]*$"},
                               "config": CONFIG, "table": {"type": "string"}, "schema": {"type": "string"},
                               "direction": DIRECTION, "conflict_rule": CONFLICT_RULE,
                               "active": {"type": "boolean"}}}}}},
    "ImportResult": {
        "type": "object", "required": ["created", "updated", "unchanged"],
        "properties": {k: {"type": "array", "items": {"type": "string"}, "description": f"objects {k}"}
                       for k in ("created", "updated", "unchanged")}},
    "HourlyStats": {
        "type": "object", "required": ["hours", "buckets"],
        "properties": {"hours": {"type": "integer"}, "buckets": {"type": "array", "items": {
            "type": "object", "required": ["hour", "mapping_id", "direction", "outcome", "count"],
            "description": "every hour of the range appears; an hour with no activity has nulls and count 0",
            "properties": {"hour": TIMESTAMP, "mapping_id": {"type": "integer", "nullable": True},
                           "direction": {"type": "string", "enum": ["sf_to_pg", "pg_to_sf"], "nullable": True},
                           "outcome": {"type": "string", "nullable": True}, "count": {"type": "integer"}}}}}},
    "ChangeError": {
        "type": "object",
        "required": ["id", "mapping_id", "op", "record_id", "state", "attempts", "created_at"],
        "properties": {
            "id": {"type": "integer"}, "mapping_id": {"type": "integer"},
            "object_name": {"type": "string", "nullable": True}, "table": {"type": "string", "nullable": True},
            "op": {"type": "string", "enum": ["insert", "update", "delete"]}, "record_id": {"type": "integer"},
            "sfid": {"type": "string", "nullable": True}, "external_id": {"type": "string", "nullable": True},
            "fields": {"type": "array", "items": {"type": "string"}, "nullable": True}, "state": CHANGE_STATE,
            "attempts": {"type": "integer"}, "error": {"nullable": True, "description": "Salesforce's error JSON"},
            "created_at": TIMESTAMP, "finished_at": {**TIMESTAMP, "nullable": True}}},
    "Conflict": {
        "type": "object", "required": ["id", "mapping_id", "sfid", "rule", "winner", "pg_values", "sf_values"],
        "properties": {
            "id": {"type": "integer"}, "mapping_id": {"type": "integer"},
            "record_id": {"type": "integer", "nullable": True}, "sfid": {"type": "string"}, "rule": CONFLICT_RULE,
            "winner": {"type": "string", "enum": ["salesforce", "postgres", "merged"],
                       "description": "the rule's pick for the fields both sides changed; merged: none were"},
            "pg_values": {"type": "object"}, "sf_values": {"type": "object"},
            "fields": {"type": "array", "items": {"type": "string"}, "nullable": True,
                       "description": "columns both sides changed (the rule decided these)"},
            "sf_fields": {"type": "array", "items": {"type": "string"}, "nullable": True,
                          "description": "columns Salesforce changed"},
            "pg_fields": {"type": "array", "items": {"type": "string"}, "nullable": True,
                          "description": "columns Postgres changed; null: all of them (a new row)"},
            "pg_changed_at": {**TIMESTAMP, "nullable": True}, "sf_changed_at": {**TIMESTAMP, "nullable": True},
            "detected_at": TIMESTAMP}},
}

LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer"},
         "description": "at most this many (default 100); clamped to 1..1000, an unreadable value means the default"}
MAPPING_ID = _id_param("mapping_id", "the mapping's id")
CHANGE_ID = _id_param("change_id", "the change_log entry's id")

PATHS = {
    "/mappings": {
        "get": {"summary": "List mappings", "operationId": "listMappings",
                "responses": {"200": _json({"type": "object", "required": ["mappings"], "properties": {
                    "mappings": {"type": "array", "items": _ref("Mapping")}}}, "Every mapping"), **_errors()}},
        "post": {"summary": "Create a mapping (and its table)", "operationId": "createMapping",
                 "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("MappingIn")}}},
                 "responses": {"201": _json(_ref("Mapping"), "Created"), **_errors(400, 409)}},
    },
    "/mappings/{mapping_id}": {
        "parameters": [MAPPING_ID],
        "get": {"summary": "One mapping", "operationId": "getMapping",
                "responses": {"200": _json(_ref("Mapping"), "The mapping"), **_errors(404)}},
        "patch": {"summary": "Change a mapping (fields, direction, conflict rule, active)",
                  "operationId": "patchMapping",
                  "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("MappingPatch")}}},
                  "responses": {"200": _json(_ref("Mapping"), "Changed"), **_errors(400, 404)}},
        "delete": {"summary": "Delete a mapping", "operationId": "deleteMapping",
                   "parameters": [{"name": "drop_table", "in": "query", "schema": {"type": "boolean"},
                                   "description": "also drop its table (default false)"}],
                   "responses": {"200": _json({"type": "object", "required": ["deleted", "table_dropped"],
                                               "properties": {"deleted": _ref("Mapping"),
                                                              "table_dropped": {"type": "boolean"}}}, "Deleted"),
                                 **_errors(404)}},
    },
    "/config/export": {
        "get": {"summary": "The whole configuration, in Heroku Connect's export shape", "operationId": "exportConfig",
                "responses": {"200": _json(_ref("ConfigDocument"), "The configuration"), **_errors()}}},
    "/config/import": {
        "post": {"summary": "Import a whole configuration export, all or nothing", "operationId": "importConfig",
                 "requestBody": {"required": True,
                                 "content": {"application/json": {"schema": _ref("ConfigDocument")}}},
                 "responses": {"200": _json(_ref("ImportResult"), "Imported (an identical one changes nothing)"),
                               **_errors(400)}}},
    "/stats/hourly": {
        "get": {"summary": "Sync counts per hour, mapping, direction and outcome", "operationId": "hourlyStats",
                "parameters": [
                    {"name": "hours", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 2160}},
                    {"name": "mapping_id", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID}}],
                "responses": {"200": _json(_ref("HourlyStats"), "Buckets"), **_errors(400)}},
    },
    "/errors": {
        "get": {"summary": "Postgres -> Salesforce changes that failed (or wait for a retry)", "operationId": "listErrors",
                "parameters": [
                    {"name": "state", "in": "query", "schema": {"type": "string", "enum": ["FAILED", "REQUEUED", "IGNORED"]}},
                    LIMIT],
                "responses": {"200": _json({"type": "object", "required": ["errors"], "properties": {
                    "errors": {"type": "array", "items": _ref("ChangeError")}}}, "Entries"), **_errors(400)}},
    },
    "/errors/{change_id}/retry": {
        "parameters": [CHANGE_ID],
        "post": {"summary": "Send a failed change again", "operationId": "retryError",
                 "responses": {"200": _json({"type": "object", "required": ["id", "state"], "properties": {
                     "id": {"type": "integer"}, "state": {"type": "string", "enum": [str(target(Action.RETRY))]}}}, "Requeued"),
                     **_errors(404, 409)}},
    },
    "/errors/{change_id}/ignore": {
        "parameters": [CHANGE_ID],
        "post": {"summary": "Give up on a failed change", "operationId": "ignoreError",
                 "responses": {"200": _json({"type": "object", "required": ["id", "state"], "properties": {
                     "id": {"type": "integer"}, "state": {"type": "string", "enum": [str(target(Action.IGNORE))]}}}, "Ignored"),
                     **_errors(404, 409)}},
    },
    "/conflicts": {
        "get": {"summary": "Records changed on both sides, and who won", "operationId": "listConflicts",
                "parameters": [LIMIT],
                "responses": {"200": _json({"type": "object", "required": ["conflicts"], "properties": {
                    "conflicts": {"type": "array", "items": _ref("Conflict")}}}, "Conflicts, newest first"),
                    **_errors()}},
    },
}

LOAD = {"type": "object", "description": "a load's progress: state, loaded/total, percent, rate, ETA",
        "required": ["id", "mapping_id", "state"],
        "properties": {"id": {"type": "integer"}, "mapping_id": {"type": "integer"}, "state": {"type": "string"},
                       "method": {"type": "string", "nullable": True}, "error": {"nullable": True}}}
DRIFT = {"type": "object", "description": "one drift check: counts and the records that differ",
         "required": ["mapping_id", "in_sync"],
         "properties": {"id": {"type": "integer"}, "mapping_id": {"type": "integer"}, "in_sync": {"type": "boolean"},
                        "salesforce_records": {"type": "integer"}, "postgres_rows": {"type": "integer"},
                        "missing_in_postgres": {"type": "integer"}, "deleted_in_salesforce": {"type": "integer"},
                        "older_in_postgres": {"type": "integer"}, "not_yet_in_salesforce": {"type": "integer"}}}
JOB = {"type": "object", "description": "a long operation run by the worker: follow it at `url` until done or failed",
       "required": ["id", "kind", "mapping_id", "state", "url"],
       "properties": {"id": {"type": "integer"}, "kind": {"type": "string", "enum": list(JOB_KINDS)},
                      "mapping_id": {"type": "integer"}, "params": {"type": "object"},
                      "state": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
                      "result": {"type": "object", "nullable": True,
                                 "description": "when done: poll counts, push counts, the drift report, the load"},
                      "error": {"type": "string", "nullable": True}, "attempts": {"type": "integer"},
                      "requested_by": {"type": "string"}, "created_at": TIMESTAMP,
                      "started_at": {**TIMESTAMP, "nullable": True}, "finished_at": {**TIMESTAMP, "nullable": True},
                      "url": {"type": "string"}}}
LOCATION = {"Location": {"description": "the job's URL", "schema": {"type": "string"}}}


def _accepted(description: str) -> dict:
    return {"202": {**_json(JOB, description), "headers": LOCATION}}
FLAG = {"type": "boolean"}
LIST_LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer"},
              "description": "at most this many (default 20); clamped to 1..1000, an unreadable value means the default"}
MAPPING_FILTER = {"name": "mapping_id", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}
SYNC_PATHS = {
    "/mappings/{mapping_id}/reload": {
        "parameters": [MAPPING_ID],
        "post": {"summary": "Load the object again from Salesforce (queued for the worker)", "operationId": "reloadMapping",
                 "responses": {"202": {**_json({**LOAD, "properties": {**LOAD["properties"], "job": JOB}},
                                               "The load queued, and the job that runs it"), "headers": LOCATION},
                               **_errors(404, 409)}}},
    "/loads": {
        "get": {"summary": "Loads, newest first", "operationId": "listLoads", "parameters": [MAPPING_FILTER, LIST_LIMIT],
                "responses": {"200": _json({"type": "object", "required": ["loads"], "properties": {
                    "loads": {"type": "array", "items": LOAD}}}, "Loads"), **_errors(400)}}},
    "/loads/{load_id}": {
        "parameters": [_id_param("load_id", "the load's id")],
        "get": {"summary": "One load's progress", "operationId": "getLoad",
                "responses": {"200": _json(LOAD, "The load"), **_errors(404)}}},
    "/mappings/{mapping_id}/poll": {
        "parameters": [MAPPING_ID],
        "post": {"summary": "Poll Salesforce for this mapping now (a job: its result has changed, deleted, failed, "
                            "api_calls, skipped)", "operationId": "pollMapping",
                 "responses": {**_accepted("Queued for the worker"), **_errors(404, 409)}}},
    "/polls": {
        "get": {"summary": "Polling state per mapping", "operationId": "listPolls",
                "responses": {"200": _json({"type": "object", "required": ["polls"], "properties": {
                    "polls": {"type": "array", "items": {"type": "object"}}}}, "Poll state"), **_errors()}}},
    "/mappings/{mapping_id}/push": {
        "parameters": [MAPPING_ID],
        "post": {"summary": "Send rows that have no sfid yet to Salesforce (a job: its result says what was queued "
                            "or sent)", "operationId": "pushMapping",
                 "responses": {**_accepted("Queued for the worker"), **_errors(404, 409)}}},
    "/mappings/{mapping_id}/reconcile": {
        "parameters": [MAPPING_ID,
                       {"name": "repair", "in": "query", "schema": FLAG, "description": "also repair what differs"},
                       {"name": "async", "in": "query", "schema": FLAG,
                        "description": "read for older clients; every check runs in the worker"}],
        "post": {"summary": "Drift check: compare Salesforce and Postgres record by record (a job: its result is "
                            "the report)", "operationId": "reconcileMapping",
                 "responses": {**_accepted("Queued for the worker"), **_errors(400, 404, 409)}}},
    "/drift": {
        "get": {"summary": "Drift reports, newest first", "operationId": "listDrift", "parameters": [MAPPING_FILTER, LIST_LIMIT],
                "responses": {"200": _json({"type": "object", "required": ["reports"], "properties": {
                    "reports": {"type": "array", "items": DRIFT}}}, "Reports"), **_errors(400)}}},
    "/jobs": {
        "get": {"summary": "Jobs the API queued for the worker, newest first", "operationId": "listJobs",
                "parameters": [MAPPING_FILTER, LIST_LIMIT],
                "responses": {"200": _json({"type": "object", "required": ["jobs"], "properties": {
                    "jobs": {"type": "array", "items": JOB}}}, "Jobs"), **_errors(400)}}},
    "/jobs/{job_id}": {
        "parameters": [_id_param("job_id", "the job's id")],
        "get": {"summary": "One job: queued, running, done (with its result) or failed (with its error)",
                "operationId": "getJob", "responses": {"200": _json(JOB, "The job"), **_errors(404)}}},
}
PATHS.update(SYNC_PATHS)

ALERT = {"type": "object", "required": ["condition", "title", "open"], "properties": {
    "condition": {"type": "string"}, "title": {"type": "string"}, "open": {"type": "boolean"},
    "since": {**TIMESTAMP, "nullable": True}, "count": {"type": "integer"}, "detail": {"type": "string"},
    "last_sent_at": {**TIMESTAMP, "nullable": True}, "cleared_at": {**TIMESTAMP, "nullable": True}}}
ALERT_PATHS = {   # webapp/api_alerts.py (issue 16)
    "/alerts": {
        "get": {"summary": "Each alert condition's state, the thresholds and the channels", "operationId": "getAlerts",
                "responses": {"200": _json({"type": "object", "required": ["alerts", "thresholds", "channels"],
                                            "properties": {"alerts": {"type": "array", "items": ALERT},
                                                           "thresholds": {"type": "object"},
                                                           "channels": {"type": "array", "items": {"type": "object"}}}},
                                           "Alert state"), **_errors()}}},
}
PATHS.update(ALERT_PATHS)

SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "ForceBridge API", "version": "1",
             "description": "Mappings, sync statistics, failed changes and conflicts. Every operation needs "
                            "`Authorization: Bearer <API_TOKEN>`."},
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearer": []}],
    "paths": PATHS,
    "components": {"schemas": SCHEMAS,
                   "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
}


@bp.get("/openapi.json")
def openapi():
    return jsonify(SPEC)

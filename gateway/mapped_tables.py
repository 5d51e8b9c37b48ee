"""DDL and bulk writes for mapped tables, composed from sql/queries/mapped_tables.sql with psycopg.sql."""
from __future__ import annotations

import psycopg
from psycopg import sql

from core.convert import pg_array_type, pg_type
from core.hc_schema import table_indexes
from core.inbound import UpsertBatch
from core.mapping import Mapping, MappingError
from gateway.db import QUERIES, template as _template


def table_ident(m: Mapping) -> sql.Identifier:
    return sql.Identifier(m.table_schema, m.table_name)


def create_table(conn: psycopg.Connection, m: Mapping) -> None:
    """Create the table in Heroku Connect's shape, or add the columns it lacks (never drops any)."""
    conn.execute(_template("create_schema", schema=sql.Identifier(m.table_schema)))
    conn.execute(_template("create_mapped_table", table=table_ident(m)))
    for spec in m.fields:
        conn.execute(_template("add_mapped_column", table=table_ident(m), column=sql.Identifier(spec.column),
                               type=sql.SQL(pg_type(spec))))
    create_indexes(conn, m)


def create_indexes(conn: psycopg.Connection, m: Mapping) -> None:
    """Heroku Connect's indexes (core.hc_schema.table_indexes) that the table lacks."""
    for index in missing_indexes(conn, m):
        try:
            conn.execute(_template("create_unique_table_index" if index.unique else "create_table_index",
                                   table=table_ident(m), index=sql.Identifier(index.name),
                                   column=sql.Identifier(index.column)))
        except psycopg.errors.UniqueViolation as exc:   # the mapping is refused; no row is touched
            raise MappingError(f"{m.table_schema}.{m.table_name}.{index.column} holds duplicate values, so the "
                               f"unique index {index.name} (upsert field or unique `indexes` entry) cannot be "
                               f"created: {exc.diag.message_detail or exc}") from None


def missing_indexes(conn: psycopg.Connection, m: Mapping) -> list:
    """Indexes of table_indexes(m) the table does not have. A unique one counts as present when the column is
    already unique under another name (a table adopted from Heroku Connect): ON CONFLICT (<column>) works the
    same, and a second unique index would only cost writes."""
    names = {r["name"] for r in conn.execute(QUERIES["table_index_names"],
                                             {"schema": m.table_schema, "table": m.table_name}).fetchall()}
    return [index for index in table_indexes(m)
            if index.name not in names and not (index.unique and conn.execute(QUERIES["unique_index_on_column"], {
                "schema": m.table_schema, "table": m.table_name, "column": index.column}).fetchone()["present"])]


def exists(conn: psycopg.Connection, m: Mapping) -> bool:
    return conn.execute(QUERIES["mapped_table_exists"], {"schema": m.table_schema, "table": m.table_name}
                        ).fetchone()["present"]


def drop_table(conn: psycopg.Connection, m: Mapping) -> None:
    conn.execute(_template("drop_mapped_table", table=table_ident(m)))


def count_rows(conn: psycopg.Connection, m: Mapping) -> int:
    return conn.execute(_template("count_mapped_rows", table=table_ident(m))).fetchone()["n"]


def _placeholder(values: list) -> sql.SQL:
    """A column's array in binary when its values are of one Python type (psycopg dumps those 10-20 times faster
    than as text, which counted for a sixth of a CDC batch's time); mixed types (ints among floats) as text."""
    return sql.SQL("%b" if len({type(v) for v in values if v is not None}) <= 1 else "%s")


def upsert_batch(conn: psycopg.Connection, batch: UpsertBatch) -> int:
    """One INSERT .. ON CONFLICT for the whole batch; returns how many rows changed."""
    cols = [sql.Identifier(c.column) for c in batch.columns]
    names = [sql.Identifier(f"c{i}") for i in range(len(cols))]
    arrays = [sql.SQL("{}::{}").format(_placeholder(values), sql.SQL(pg_array_type(c)))
              for c, values in zip(batch.columns, batch.values)]
    lead = sql.SQL(", ") if cols else sql.SQL("")
    # a Postgres-owned column takes Salesforce's value only in a new row
    overwritten = [sql.Identifier(c.column) for c in batch.columns if c.owner != "postgres"]
    query = _template(
        "upsert_from_salesforce",
        table=table_ident(batch.mapping),
        columns=lead + sql.SQL(", ").join(cols),
        u_columns=lead + sql.SQL(", ").join(sql.SQL("u.{}").format(n) for n in names),
        arrays=lead + sql.SQL(", ").join(arrays),
        u_names=lead + sql.SQL(", ").join(names),
        set_columns=sql.SQL("").join(sql.SQL(", {} = EXCLUDED.{}").format(c, c) for c in overwritten),
        differs=sql.SQL("").join(sql.SQL(" OR t.{} IS DISTINCT FROM EXCLUDED.{}").format(c, c) for c in overwritten),
    )
    params = [batch.sfids, batch.modstamps, batch.isdeleted, *batch.values]
    return conn.execute(query, params).rowcount

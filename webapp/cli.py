"""`flask --app webapp db upgrade`, `flask --app webapp connect adopt` and friends."""
import json

import click
from flask import Flask

from gateway.db import migrate
from webapp.context import ctx


def init_app(app: Flask) -> None:
    @app.cli.group()
    def db():
        """The connector's schema."""

    @db.command("upgrade")
    def upgrade():
        """Apply the migrations in sql/migrations (idempotent)."""
        applied = migrate(ctx().settings.database_url)
        click.echo(f"applied: {', '.join(applied)}" if applied else "schema is up to date")

    @app.cli.group()
    def connect():
        """Moving over from Heroku Connect."""

    @connect.command("adopt")
    @click.option("--schema", required=True, help="the schema Heroku Connect managed (restored from its dump)")
    @click.option("--config", "config_file", type=click.File("rb"), default=None,
                  help="the connection's export (heroku connect:export); its mappings are created as part of it")
    def adopt_command(schema, config_file):
        """Take over a restored Heroku Connect schema in place: rows, ids and trigger-log history kept."""
        from core.mapping import MappingError
        from gateway.adopt import AdoptError
        from gateway.mapping_store import ImportFailed
        from webapp.setup import adopt_schema

        try:
            doc = json.loads(config_file.read()) if config_file else None
            done = adopt_schema(schema, doc)
        except (ValueError, MappingError, AdoptError, ImportFailed) as exc:
            raise click.ClickException(f"nothing changed: {exc}") from None
        if done.already_adopted:
            click.echo(f"{schema}: no Heroku Connect triggers or trigger log left (adopted before); checked again.")
        click.echo(f"adopted {schema}: mappings {', '.join(done.mappings) or '-'}")
        click.echo(f"  trigger log: {done.moved_open} unsent changes queued, {done.moved_failed} failures kept, "
                   f"{done.moved_history} history entries archived")
        click.echo(f"  dropped: {len(done.dropped_triggers)} triggers, {len(done.dropped_functions)} functions")
        for name, stamp in done.watermarks.items():
            click.echo(f"  {name}: " + (f"polls resume after SystemModstamp {stamp}" if stamp else
                                         "empty table: initial load queued"))

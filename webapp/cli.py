"""`flask --app webapp db upgrade` and friends."""
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

"""The Huey instance, with its storage chosen by one setting, HUEY_URL."""
from __future__ import annotations

import pathlib
from urllib.parse import urlparse

from huey import RedisHuey, SqliteHuey


def make_huey(url: str, name: str = "forcebridge", **options):
    """sqlite:///path (embedded default), postgresql://... (PostgresHuey, for hosts with ephemeral disks),
    redis://... (several machines)."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        path = pathlib.Path(url[len("sqlite:///"):] if url.startswith("sqlite:///") else url[len("sqlite://"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(name, filename=str(path), **options)
    if scheme in ("redis", "rediss"):
        return RedisHuey(name, url=url, **options)
    if scheme in ("postgres", "postgresql"):
        from jobs.pg_storage import PostgresHuey

        return PostgresHuey(name, dsn=url, **options)
    # only the scheme: the rest of the URL may hold a password, and this message ends up in logs
    raise ValueError(f"HUEY_URL scheme {scheme!r}: use sqlite:///path, postgresql://... or redis://...")

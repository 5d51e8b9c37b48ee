"""The job queue: a Huey instance with its storage chosen by one setting, HUEY_URL, and every task on it.
Built by create_queue(settings) when a process asks for it (the worker, the web app, tests), never at import."""
from __future__ import annotations

import pathlib
from dataclasses import dataclass
from urllib.parse import urlparse

from huey import Huey, RedisHuey, SqliteHuey

from settings import Settings


@dataclass
class Queue:
    """This deployment's Huey and its tasks by name: the worker consumes it, the web app rings it."""
    huey: Huey
    tasks: dict

    def enqueue(self, task_name: str, *args) -> None:
        self.tasks[task_name](*args)


def create_queue(settings: Settings, **options) -> Queue:
    from jobs import tasks  # the tasks import the sync's modules; a storage-only user needs none of them

    huey = make_huey(settings.huey_url, name=settings.huey_name, **options)
    return Queue(huey, tasks.register(huey))


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

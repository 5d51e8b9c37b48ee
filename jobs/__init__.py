"""Background work run by the Huey consumer (`python -m jobs.worker`, see jobs/worker.py): apply, drain, sweep."""
from jobs.queue import make_huey
from settings import Settings

_settings = Settings.from_env()
huey = make_huey(_settings.huey_url, name=_settings.huey_name)

from jobs import tasks  # noqa: E402,F401  (registers the tasks on `huey`)
from jobs import heartbeat  # noqa: E402,F401  (a background thread of the worker; the console reads it)

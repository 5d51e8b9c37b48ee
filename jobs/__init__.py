"""Background work run by the Huey consumer (`huey_consumer jobs.huey`): apply, drain, sweep."""
from jobs.queue import make_huey
from settings import Settings

huey = make_huey(Settings.from_env().huey_url)

from jobs import tasks  # noqa: E402,F401  (registers the tasks on `huey`)

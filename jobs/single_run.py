"""One run at a time of a mapping's periodic job (a poll, a formula refresh): a transaction-scoped advisory
lock, the run's API calls counted, and its outcome recorded whatever happens."""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from gateway.db import Database
from gateway.salesforce import Salesforce


@dataclass
class Run:
    held: bool                  # False: another run of this mapping holds the lock; do nothing
    api_calls: int = 0
    error: str | None = None    # what the run raised, as the console shows it


@contextlib.contextmanager
def single_run(db: Database, sf: Salesforce, lock_query: str, mapping_id: int, finish: Callable[[Run], None]):
    """`with single_run(...) as run: if not run.held: return ...`. `lock_query` takes the mapping's
    advisory lock (`locked`: true or false), held until the run ends; once held, `finish(run)` is called
    when the block ends, with the calls it made and its error (which is raised on)."""
    with db.transaction() as lock:
        if not db.run(lock, lock_query, {"mapping_id": mapping_id}).fetchone()["locked"]:
            yield Run(held=False)
            return
        run = Run(held=True)
        with sf.tally() as calls:
            try:
                yield run
            except Exception as exc:
                run.error = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                run.api_calls = calls[0]
                finish(run)

"""Third-party browser files, served from where they were installed (never committed to the repo):
plotly.js from the plotly wheel, htmx from the npm install that `make install` runs."""
from __future__ import annotations

import pathlib
import threading

from flask import Blueprint, abort, send_file

bp = Blueprint("assets", __name__, url_prefix="/assets")
NPM_DIR = pathlib.Path(__file__).resolve().parent / "static" / "vendor" / "node_modules"


def _plotly() -> pathlib.Path | None:
    import plotly

    found = sorted(pathlib.Path(plotly.__file__).parent.rglob("plotly.min.js"))
    return found[0] if found else None


def _htmx() -> pathlib.Path | None:
    path = NPM_DIR / "htmx.org" / "dist" / "htmx.min.js"
    return path if path.is_file() else None


VENDOR = {"plotly.min.js": _plotly, "htmx.min.js": _htmx}
# Where each vendor file was found: at most one entry per VENDOR name, whatever names clients ask for (the
# route is public). A file not installed yet is looked for again, so `make install` needs no restart.
_found: dict[str, pathlib.Path] = {}
_lock = threading.Lock()


def locate(name: str) -> pathlib.Path | None:
    finder = VENDOR.get(name)
    if finder is None:
        return None
    path = _found.get(name)
    if path is None:
        path = finder()
        if path is not None:
            with _lock:
                _found[name] = path
    return path


@bp.get("/<name>")
def vendor(name: str):
    path = locate(name)
    if path is None:
        abort(404, description=f"{name} is not installed; run `make install`")
    return send_file(path, mimetype="text/javascript", max_age=24 * 3600)

"""`make demo` keeps its promise: embedded Postgres, emulator, web and worker, data moving both ways."""
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_moves_data_both_ways():
    # Not pytest's tmp_path: embedded Postgres runs as its own system user, and every pytest session
    # resets /tmp/pytest-of-root to mode 0700, which would lock that user out of its data directory.
    state = pathlib.Path(tempfile.mkdtemp(prefix="forcebridge-demo-"))
    state.chmod(0o755)
    env = {**os.environ, "FORCEBRIDGE_DEMO_DIR": str(state / "demo")}
    try:
        out = subprocess.run([sys.executable, "-m", "demo", "--seconds", "15", "--port", str(free_port()),
                              "--rate", "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-3000:]
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert last["pg_accounts_in_salesforce"] > 0      # Postgres -> Salesforce
    assert last["notifications_applied"] > 0          # Salesforce -> Postgres
    assert last["pg_contacts"] > 0

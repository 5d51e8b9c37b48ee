"""Run the emulator: python -m emulator --port 8443 --org-id <18> --data <dir> [--no-tls] [--time-scale N] ..."""
import argparse
import logging
import pathlib
import sys

from emulator import tls
from emulator.app import create_app
from emulator.server import serve
from emulator.store import Org


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=8443, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--org-id", default=None, help="18-character 00D... id (default: made up at first start)")
    parser.add_argument("--data", default=".emulator-data", help="directory for the org's SQLite file and TLS files")
    parser.add_argument("--no-tls", action="store_true", help="serve plain HTTP")
    parser.add_argument("--time-scale", type=float, default=1.0, help="emulated seconds per real second")
    parser.add_argument("--session-seconds", type=int, default=7200, help="session timeout after inactivity (emulated seconds)")
    parser.add_argument("--daily-api-limit", type=int, default=100_000)
    parser.add_argument("--daily-delivered-events", type=int, default=1_000_000,
                        help="change events that may be delivered to subscribers per day (DailyDeliveredPlatformEvents)")
    parser.add_argument("--seed", type=int, default=0, help="seed for fault injection")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    parser.add_argument("--no-pubsub", action="store_true", help="no Pub/Sub API (Change Data Capture) server")
    parser.add_argument("--pubsub-port", type=int, default=0, help="Pub/Sub API (gRPC) port; 0 picks a free one")
    parser.add_argument("--pubsub-keepalive", type=float, default=None,
                        help="real seconds between keepalives on an idle stream (default: 270 emulated seconds)")
    parser.add_argument("--cdc-entities", default=None, metavar="NAMES",
                        help="comma-separated objects selected for Change Data Capture (default: every object)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    data_dir = pathlib.Path(args.data).resolve()
    # Open the org once here so a bad --org-id or data dir fails fast, before the worker starts.
    try:
        probe = Org(data_dir, args.org_id)
    except ValueError as exc:
        sys.exit(f"emulator: {exc}")
    org_id = probe.org_id
    probe.close()
    certfile, ca_path = None, None
    if not args.no_tls:
        ca_path, server_path = tls.ensure_certificates(data_dir, [args.host])
        certfile = str(server_path)
    state = {}

    def app_factory():
        org = Org(data_dir, org_id, time_scale=args.time_scale, session_seconds=args.session_seconds,
                  daily_api_limit=args.daily_api_limit, daily_delivered_events=args.daily_delivered_events)
        pubsub = None
        if not args.no_pubsub:
            pubsub = {"host": args.host, "port": args.pubsub_port, "certfile": certfile,
                      "keepalive_seconds": args.pubsub_keepalive, "on_ready": on_pubsub_ready,
                      "entities": [n.strip() for n in args.cdc_entities.split(",") if n.strip()]
                      if args.cdc_entities is not None else None}
        state["app"] = app = create_app(org, faults_seed=args.seed, pubsub=pubsub)
        return app

    def on_pubsub_ready(port: int) -> None:
        # Printed by the worker that serves it, after EMULATOR_ORG_ID (python -m emulator prints that first).
        host = args.host if ":" not in args.host else f"[{args.host}]"
        (data_dir / "pubsub").write_text(f"{host}:{port}\n")
        print(f"EMULATOR_PUBSUB={host}:{port}", flush=True)

    def on_ready(port: int) -> None:
        scheme = "http" if args.no_tls else "https"
        host = args.host if ":" not in args.host else f"[{args.host}]"
        url = f"{scheme}://{host}:{port}"
        (data_dir / "url").write_text(url + "\n")
        print(f"EMULATOR_URL={url}", flush=True)
        if ca_path:
            print(f"EMULATOR_CA={ca_path}", flush=True)
        print(f"EMULATOR_ORG_ID={org_id}", flush=True)

    def on_exit() -> None:
        app = state.get("app")
        if app is None:
            return
        app.config["LOCATORS"].close_all()
        for hook in app.config.get("SHUTDOWN_HOOKS", []):
            hook()
        app.config["ORG"].close()

    serve(app_factory, host=args.host, port=args.port, on_ready=on_ready, on_exit=on_exit, certfile=certfile,
          verbose=args.verbose)


if __name__ == "__main__":
    main()

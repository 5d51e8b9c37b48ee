"""Run the emulator: python -m emulator --port 8443 --org-id <18> --data <dir> [--no-tls] [--time-scale N] ..."""
import argparse
import logging
import pathlib
import signal
import sys

from werkzeug.serving import make_server

from emulator import tls
from emulator.app import create_app
from emulator.store import Org


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=8443, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--org-id", default=None, help="18-character 00D... id (default: made up at first start)")
    parser.add_argument("--data", default=".emulator-data", help="directory for the org's SQLite file and TLS files")
    parser.add_argument("--no-tls", action="store_true", help="serve plain HTTP")
    parser.add_argument("--time-scale", type=float, default=1.0, help="emulated seconds per real second")
    parser.add_argument("--session-seconds", type=int, default=7200, help="session lifetime (emulated seconds)")
    parser.add_argument("--daily-api-limit", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0, help="seed for fault injection")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)
    data_dir = pathlib.Path(args.data).resolve()
    org = Org(data_dir, args.org_id, time_scale=args.time_scale, session_seconds=args.session_seconds,
              daily_api_limit=args.daily_api_limit)
    app = create_app(org, faults_seed=args.seed)
    context, ca_path = None, None
    if not args.no_tls:
        ca_path, server_path = tls.ensure_certificates(data_dir, [args.host])
        context = tls.server_context(server_path)
    server = make_server(args.host, args.port, app, threaded=True, ssl_context=context)
    scheme = "http" if args.no_tls else "https"
    host = args.host if ":" not in args.host else f"[{args.host}]"
    url = f"{scheme}://{host}:{server.server_port}"
    (data_dir / "url").write_text(url + "\n")
    print(f"EMULATOR_URL={url}", flush=True)
    if ca_path:
        print(f"EMULATOR_CA={ca_path}", flush=True)
    print(f"EMULATOR_ORG_ID={org.org_id}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
        app.config["LOCATORS"].close_all()
        shutdown = app.config.get("SHUTDOWN_HOOKS", [])
        for hook in shutdown:
            hook()
        org.close()


if __name__ == "__main__":
    main()

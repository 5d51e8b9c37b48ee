"""gunicorn settings (Procfile `web:`). With FORCEBRIDGE_EMBEDDED_WORKER=1 (Render's free plan) the master
also runs one Huey worker process for the instance and stops it cleanly on SIGTERM."""
import signal

from jobs.embedded import EmbeddedWorker
from settings import Settings

_settings = Settings.from_env()   # the variables are in settings.py and the README
bind = f"{_settings.host}:{_settings.port}"
workers = _settings.web_concurrency
# gthread whose reads of request headers time out (WEB_HEADER_SECONDS, 3 s); bodies are held to a minimum rate
# by the app's BodyDeadline middleware (webapp/slow_clients.py, WEB_BODY_SECONDS and WEB_BODY_MIN_RATE)
worker_class = "webapp.slow_clients.BoundedThreadWorker"
threads = _settings.web_threads
# An Outbound Message is committed before its ACK, so a request cut off by a deploy is simply
# delivered again by Salesforce; 20 s lets the ones in flight finish.
graceful_timeout = _settings.web_graceful_seconds
timeout = 60
keepalive = 5
accesslog = "-"
logger_class = "webapp.access_log.RedactingLogger"  # the Outbound Message token never reaches the log
errorlog = "-"
# gunicorn trusts no proxy header from any address (X-Forwarded-Proto, SCRIPT_NAME, ...): with "*" every client
# could set them. The app reads X-Forwarded-For/-Proto itself, from exactly PROXY_FIX_HOPS proxies (werkzeug's
# ProxyFix in webapp/__init__.py; Render and a Caddy/nginx in front: 1, nothing in front: 0, trust none).
forwarded_allow_ips = ""
forwarder_headers = ""
# gunicorn's runtime control socket sits at one path per user; two instances on a host would fight over it.
control_socket_disable = True

_embedded = None


def when_ready(server):
    global _embedded
    if not _settings.embedded_worker:
        return
    _embedded = EmbeddedWorker(_settings.worker_shutdown_seconds, logger=server.log)
    _embedded.start()
    server.log.info("embedded worker: one consumer for this instance")
    # gunicorn's own handlers only queue the signal; chain ours in front so the worker starts its
    # graceful stop at the same moment the web workers start theirs.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        previous = signal.getsignal(sig)

        def chained(signum, frame, previous=previous):
            _embedded.begin_stop()
            if callable(previous):
                previous(signum, frame)

        signal.signal(sig, chained)


def on_exit(server):
    if _embedded is not None:
        _embedded.wait()

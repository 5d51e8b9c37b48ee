"""gunicorn's access log without the Outbound Message token: the token is the endpoint's only secret and
sits in its path, and logs travel to log drains and support tickets."""
import re

from gunicorn.glogging import Logger

_OUTBOUND_PATH = re.compile(r"(/outbound/)[^/?#\s\"]+")


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        # every atom, not only the request line: PATH_INFO, RAW_URI and the Referer can carry it too
        return {key: _OUTBOUND_PATH.sub(r"\1[redacted]", value) if isinstance(value, str) else value
                for key, value in super().atoms(resp, req, environ, request_time).items()}

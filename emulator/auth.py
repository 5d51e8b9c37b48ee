"""Login (SOAP partner login, OAuth 2 token endpoint) and the per-request gate every API route passes through."""
import base64
import functools
import hashlib
import hmac
import time
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from flask import Blueprint, current_app, g, jsonify, make_response, request

from emulator import ids

bp = Blueprint("auth", __name__)

_PARTNER_NS = "urn:partner.soap.sforce.com"


def org():
    return current_app.config["ORG"]


def error_response(status: int, error_code: str, message: str, fields=()):
    """Salesforce's REST error envelope: a JSON array with one {"message", "errorCode", "fields"}."""
    body = {"message": message, "errorCode": error_code}
    if fields is not None:
        body["fields"] = list(fields)
    return make_response(jsonify([body]), status)


def call_options_client() -> str | None:
    """The client name from `Sforce-Call-Options: client=NAME[, defaultNamespace=...]`, or None."""
    header = request.headers.get("Sforce-Call-Options", "")
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "client" and value.strip():
            return value.strip()
    return None


def route_name() -> str:
    return request.endpoint or request.path


def authorize():
    """Check the bearer token, the daily limit and injected faults; count the call. None when the call may go on.

    Sets g.session, g.user_id and g.client for the view.
    """
    if g.get("in_composite"):
        return None     # a /composite subrequest runs inside its parent call, which was already checked
    the_org = org()
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() not in ("bearer", "oauth") or not token.strip():
        if not header:
            return error_response(401, "INVALID_SESSION_ID", "Session expired or invalid", fields=None)
        return error_response(401, "INVALID_AUTH_HEADER", "INVALID_HEADER_TYPE", fields=None)
    session = the_org.session(token.strip())
    if session is None:
        return error_response(401, "INVALID_SESSION_ID", "Session expired or invalid", fields=None)
    g.session = session
    g.user_id = session.user_id
    g.client = call_options_client()
    route = route_name()
    latency, fault = current_app.config["FAULTS"].decide(route)
    if latency:
        time.sleep(latency)
    if fault == "503":
        return error_response(503, "SERVER_UNAVAILABLE", "Service Unavailable: the server is temporarily unable to "
                              "handle the request. Please try again later.", fields=None)
    if fault == "REQUEST_LIMIT_EXCEEDED" or the_org.usage.exhausted():
        g.count_api = True
        return error_response(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", fields=None)
    the_org.count_api_call(route, g.client)
    g.count_api = True
    if fault == "UNABLE_TO_LOCK_ROW":
        return error_response(400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", [])
    return None


def require_session(view):
    """Decorator for API views: 401 INVALID_SESSION_ID envelope, faults, API usage; adds Sforce-Limit-Info."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        failure = authorize()
        if failure is not None:
            return failure
        return view(*args, **kwargs)
    return wrapper


def add_limit_info(response):
    """after_request hook: Salesforce returns Sforce-Limit-Info on every counted REST response."""
    if g.get("count_api"):
        response.headers["Sforce-Limit-Info"] = org().usage.header()
    return response


def login_fault():
    """Faults for the login routes (auth.soap_login, auth.oauth_token): latency, and 503 as a response."""
    latency, fault = current_app.config["FAULTS"].decide(route_name())
    if latency:
        time.sleep(latency)
    if fault == "503":
        return make_response("Service Unavailable", 503, {"Content-Type": "text/plain"})
    return None


# ------------------------------------------------------------ SOAP partner login

def _soap_fault(code: str, message: str, status: int = 500):
    body = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>'
            f'<faultcode>sf:{code}</faultcode><faultstring>{code}: {escape(message)}</faultstring><detail>'
            f'<sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>{code}</sf:exceptionCode>'
            f'<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage></sf:LoginFault></detail>'
            '</soapenv:Fault></soapenv:Body></soapenv:Envelope>')
    return make_response(body, status, {"Content-Type": "text/xml; charset=utf-8"})


def _base_url() -> str:
    return request.host_url.rstrip("/")


def _login_response(version: str, session_token: str, user_id: str, session_seconds: int) -> str:
    the_org = org()
    org15 = ids.to15(the_org.org_id)
    base = _base_url()
    user = the_org.user_name(user_id)
    return (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
        'envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        '<soapenv:Body><loginResponse><result>'
        f'<metadataServerUrl>{base}/services/Soap/m/{version}/{org15}</metadataServerUrl>'
        '<passwordExpired>false</passwordExpired><sandbox>false</sandbox>'
        f'<serverUrl>{base}/services/Soap/u/{version}/{org15}</serverUrl>'
        f'<sessionId>{session_token}</sessionId><userId>{user_id}</userId><userInfo>'
        '<accessibilityMode>false</accessibilityMode><currencySymbol>$</currencySymbol>'
        '<orgAttachmentFileSizeLimit>5242880</orgAttachmentFileSizeLimit>'
        '<orgDefaultCurrencyIsoCode>USD</orgDefaultCurrencyIsoCode>'
        '<orgDisallowHtmlAttachments>false</orgDisallowHtmlAttachments><orgHasPersonAccounts>false'
        f'</orgHasPersonAccounts><organizationId>{the_org.org_id}</organizationId>'
        '<organizationMultiCurrency>false</organizationMultiCurrency><organizationName>ForceBridge Emulator'
        '</organizationName><profileId>00e000000000000AAA</profileId><roleId xsi:nil="true"/>'
        f'<sessionSecondsValid>{session_seconds}</sessionSecondsValid>'
        '<userDefaultCurrencyIsoCode xsi:nil="true"/>'
        f'<userEmail>{escape(user.get("Email") or "")}</userEmail>'
        f'<userFullName>{escape(user.get("Name") or "")}</userFullName><userId>{user_id}</userId>'
        '<userLanguage>en_US</userLanguage><userLocale>en_US</userLocale>'
        f'<userName>{escape(user.get("Username") or "")}</userName><userTimeZone>America/Los_Angeles</userTimeZone>'
        '<userType>Standard</userType><userUiSkin>Theme3</userUiSkin></userInfo></result></loginResponse>'
        '</soapenv:Body></soapenv:Envelope>')


@bp.post("/services/Soap/u/<version>")
@bp.post("/services/Soap/u/<version>/<path:rest>")
def soap_login(version, rest=None):
    failure = login_fault()
    if failure is not None:
        return failure
    try:
        root = ElementTree.fromstring(request.get_data())
    except ElementTree.ParseError:
        return _soap_fault("INVALID_LOGIN", "Invalid username, password, security token; or user locked out.")
    login = root.find(f".//{{{_PARTNER_NS}}}login")
    if login is None:
        return _soap_fault("UNKNOWN_EXCEPTION", "The emulator supports only the login operation on the partner API.")
    username = (login.findtext(f"{{{_PARTNER_NS}}}username") or "").strip()
    password = login.findtext(f"{{{_PARTNER_NS}}}password") or ""
    org_scope = root.findtext(f".//{{{_PARTNER_NS}}}organizationId")
    the_org = org()
    user_id = the_org.check_password(username, password)
    if user_id is None or (org_scope and ids.is_valid(org_scope) and ids.to18(org_scope) != the_org.org_id):
        return _soap_fault("INVALID_LOGIN", "Invalid username, password, security token; or user locked out.")
    session, _ = the_org.open_session(user_id)
    body = _login_response(version, session.token, user_id, the_org.session_seconds)
    return make_response(body, 200, {"Content-Type": "text/xml; charset=utf-8"})


# ------------------------------------------------------------ OAuth 2 token endpoint

def _token_error(error: str, description: str, status: int = 400):
    return make_response(jsonify({"error": error, "error_description": description}), status)


def _client_credentials() -> tuple[str | None, str | None]:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            key, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            return key, secret
        except (ValueError, UnicodeDecodeError):
            return None, None
    return request.form.get("client_id"), request.form.get("client_secret")


def _token_body(session, user_id: str, client_secret: str, refresh_token: str | None, scope: str) -> dict:
    the_org = org()
    issued_at = str(int(time.time() * 1000))
    identity = f"{_base_url()}/id/{the_org.org_id}/{user_id}"
    signature = base64.b64encode(hmac.new(client_secret.encode(), (identity + issued_at).encode(),
                                          hashlib.sha256).digest()).decode()
    body = {"access_token": session.token, "instance_url": _base_url(), "id": identity, "token_type": "Bearer",
            "issued_at": issued_at, "signature": signature, "scope": scope}
    if refresh_token:
        body["refresh_token"] = refresh_token
    return body


@bp.post("/services/oauth2/token")
def oauth_token():
    failure = login_fault()
    if failure is not None:
        return failure
    the_org = org()
    grant = request.form.get("grant_type")
    key, secret = _client_credentials()
    if grant not in ("password", "client_credentials", "refresh_token"):
        return _token_error("unsupported_grant_type", "grant type not supported")
    if not key:
        return _token_error("invalid_client_id", "client identifier invalid")
    run_as = the_org.oauth_client(key, None)
    if run_as is None:
        return _token_error("invalid_client_id", "client identifier invalid")
    if grant != "refresh_token" or secret is not None:
        if the_org.oauth_client(key, secret) is None:
            return _token_error("invalid_client", "invalid client credentials")
    if grant == "password":
        user_id = the_org.check_password(request.form.get("username", ""), request.form.get("password", ""))
        if user_id is None:
            return _token_error("invalid_grant", "authentication failure")
        wants_refresh = "refresh_token" in request.form.get("scope", "")
        session, refresh = the_org.open_session(user_id, with_refresh=wants_refresh)
        return jsonify(_token_body(session, user_id, secret, refresh, "api refresh_token" if refresh else "api"))
    if grant == "client_credentials":
        session, _ = the_org.open_session(run_as)
        return jsonify(_token_body(session, run_as, secret, None, "api"))
    session = the_org.refresh_session(request.form.get("refresh_token", ""))
    if session is None:
        return _token_error("invalid_grant", "expired access/refresh token")
    return jsonify(_token_body(session, session.user_id, secret or "", None, "api refresh_token"))

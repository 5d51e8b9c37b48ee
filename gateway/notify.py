"""The one way alerts leave: a generic JSON webhook, Slack's incoming webhook, email over SMTP (TLS)."""
from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

import requests

from core.alerts import Alert, email_subject, slack_body
from settings import Settings

TIMEOUT = 10


class DeliveryError(Exception):
    """A channel did not take the alert; the message says why (no credentials in it)."""


def send(settings: Settings, channel: dict, alert: Alert) -> None:
    kind = channel["kind"]
    try:
        if kind == "webhook":
            _post(channel["target"], alert.as_json())
        elif kind == "slack":
            _post(channel["target"], slack_body(alert))
        elif kind == "email":
            _mail(settings, channel["target"], alert)
        else:
            raise DeliveryError(f"unknown channel kind {kind!r}")
    except DeliveryError:
        raise
    except (requests.RequestException, smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise DeliveryError(f"{kind}: {type(exc).__name__}: {exc}") from None


def _post(url: str, body: dict) -> None:
    response = requests.post(url, json=body, timeout=TIMEOUT, allow_redirects=False)
    if response.status_code >= 300:
        raise DeliveryError(f"{url.split('?')[0][:80]} answered {response.status_code}")


def _mail(settings: Settings, to: str, alert: Alert) -> None:
    if not settings.smtp_host:
        raise DeliveryError("email: SMTP_HOST is not set")
    message = EmailMessage()
    message["Subject"] = email_subject(alert)
    message["From"] = settings.smtp_from or settings.smtp_username or "forcebridge@localhost"
    message["To"] = to
    message.set_content(alert.text())
    context = ssl.create_default_context(cafile=settings.smtp_ca_bundle or None)
    if settings.smtp_tls == "ssl":
        client = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT, context=context)
    else:
        client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT)
    with client:
        if settings.smtp_tls == "starttls":
            client.starttls(context=context)
        if settings.smtp_username:
            client.login(settings.smtp_username, settings.smtp_password)
        client.send_message(message)

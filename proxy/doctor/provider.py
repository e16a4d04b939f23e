"""Whether the Twilio credentials work: one read-only API call.

Rules this module keeps:
1. The call is GET of the account itself (`/2010-04-01/Accounts/<sid>.json`) at the
   configured `api_base_url`, through the twilio library: it reads no message, call or
   recording, so it can say nothing of one. The account must be `active`.
2. The token comes from where the daemon takes it (`auth_token_file` or
   TWILIO_AUTH_TOKEN) and is never printed; a refusal is its HTTP status and Twilio's code.
3. twilio's HTTP client logs requests at INFO: its logger is silenced here, as the
   daemon's are.
"""

from __future__ import annotations

import logging

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from proxy.channels.sms.runner import SmsStartError, auth_token
from proxy.config import Config
from proxy.config.model import SmsChannel
from proxy.doctor.findings import Finding, fail, ok

logging.getLogger("twilio.http_client").disabled = True  # rule 3


def check_provider(config: Config, timeout: float) -> list[Finding]:
    sms = config.channels.sms
    if sms is None:
        return []
    what = f"twilio account {sms.account_sid}"
    problem = account_problem(sms, timeout)
    return [ok(f"{what} credentials work") if problem is None else fail(what, problem)]


def account_problem(settings: SmsChannel, timeout: float) -> str | None:
    """Why the configured Twilio account cannot be used now, or None (rules 1 and 2)."""
    try:
        token = auth_token(settings)
    except SmsStartError as error:
        return str(error)
    client = Client(settings.account_sid, token, http_client=TwilioHttpClient(timeout=timeout))
    client.api.base_url = settings.api_base_url.rstrip("/")
    try:
        account = client.api.v2010.accounts(settings.account_sid).fetch()
    except (TwilioException, requests.RequestException) as error:
        return _refusal(error, settings.api_base_url, timeout)
    if account.status != "active":
        return f"the account is {account.status}, not active"
    return None


def _refusal(error: Exception, base_url: str, timeout: float) -> str:
    if isinstance(error, TwilioRestException):
        return f"refused (HTTP {error.status}, code {error.code})"
    if isinstance(error, requests.Timeout):
        return f"no answer within {timeout:g} s from {base_url}"
    if isinstance(error, requests.ConnectionError):
        return f"cannot reach {base_url}"
    return f"unexpected answer ({type(error).__name__})"

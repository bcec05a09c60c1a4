"""Installing Harvest by OAuth2 (authorization code): what the "Install Harvest" page and
``scripts/harvest_authorize.py`` do, on the API server or a terminal, never in a task.

1. :func:`authorization_url` sends the administrator to Harvest ID with a random ``state`` (CSRF).
2. :func:`exchange_code` trades the code Harvest sends back for tokens (requests-oauthlib).
3. :func:`harvest_accounts` lists the Harvest accounts the authorization reaches (the caller picks one).
4. :func:`check_administrator` asks the Harvest API, through :class:`~primetric_harvest.harvest_hook.HarvestHook`
   (the same check as every sync), whether the user is an administrator of that account.
5. :func:`save_connection` writes the ``harvest`` connection into Airflow's metadata database.

Renewing the tokens afterwards is :mod:`primetric_harvest.oauth_tokens`' job, on the workers.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from oauthlib.oauth2.rfc6749 import errors as oauth_errors
from requests_oauthlib import OAuth2Session

from primetric_harvest.db import connect, query
from primetric_harvest.harvest_api import (
    DEFAULT_BASE_URL,
    DEFAULT_ID_URL,
    DEFAULT_USER_AGENT,
    HarvestConnectionSettings,
    HarvestError,
    is_oauth_connection,
)
from primetric_harvest.harvest_hook import HarvestHook, StaticToken
from primetric_harvest.names import HARVEST_CONN_ID, PRIMETRIC_CONN_ID
from primetric_harvest.oauth_tokens import (
    TOKEN_PATH,
    HarvestOAuthError,
    TokenSet,
    id_headers,
    mask,
    server_error_hook,
    sha256,
    token_set,
)

AUTHORIZE_PATH = "/oauth2/authorize"
ACCOUNTS_PATH = "/api/v2/accounts"
APP_NAME = "Primetric Airflow sync"  # what the administrator names the Harvest OAuth2 application
# The extra keys an installation writes: installing again replaces them, and keeps the operator's others.
INSTALLATION_EXTRA_KEYS = frozenset({"refresh_token", "oauth_base_url", "token_store_conn_id"})


def authorization_url(client_id: str, redirect_uri: str, state: str, id_url: str = DEFAULT_ID_URL) -> str:
    """Harvest's authorize URL for the authorization-code grant, carrying ``state`` (CSRF)."""
    url, _ = OAuth2Session(client_id, redirect_uri=redirect_uri, state=state).authorization_url(
        id_url.rstrip("/") + AUTHORIZE_PATH
    )
    return url


def new_state() -> str:
    return secrets.token_urlsafe(24)


def claim_state(state: str, conn_id: str = PRIMETRIC_CONN_ID) -> bool:
    """Record that an OAuth2 ``state`` has come back; False if it already had (a replayed callback).

    Kept in the Primetric database (``harvest_sync.oauth_states``, a hash only), which every API server
    worker and replica shares, like the token store.
    """
    try:
        with connect(conn_id, autocommit=True) as conn:
            row = conn.execute(query("oauth", "claim_state"), {"state_sha256": sha256(state)}).fetchone()
    except Exception as exc:  # noqa: BLE001 - no connection, database down: say what is needed
        raise HarvestOAuthError(
            f"The install records each Harvest answer once in the Primetric database (connection {conn_id!r}), "
            f"which could not be reached ({type(exc).__name__}): fix the connection and start again."
        ) from None
    return row is not None


def insecure_transport_allowed() -> bool:
    """oauthlib's own switch for a local test Harvest ID over http (never set it in production)."""
    return os.environ.get("OAUTHLIB_INSECURE_TRANSPORT", "").lower() in ("1", "true", "yes")


def url_refusal(label: str, url: str) -> str | None:
    """Why ``url`` cannot be a Harvest URL of the install (it must be https, with a host), or None."""
    shown = url if len(url) <= 80 else url[:79] + "…"
    if not is_http_url(url):
        return f"{label} must be an https:// URL with a host, not {shown!r}."
    if url.startswith("https://") or (url.startswith("http://") and insecure_transport_allowed()):
        return None
    return (
        f"{label} must be an https:// URL (Harvest's are {DEFAULT_BASE_URL} and {DEFAULT_ID_URL}), not {shown!r}: "
        "OAuth2 sends the client secret and the tokens over it."
    )


def exchange_code(
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str,
    id_url: str = DEFAULT_ID_URL,
    timeout: float = 30,
    user_agent: str | None = None,
) -> TokenSet:
    """Trade an authorization code for tokens (requests-oauthlib); clear errors for the usual failures."""
    mask(client_secret, code)
    session = OAuth2Session(client_id, redirect_uri=redirect_uri)
    session.register_compliance_hook("access_token_response", server_error_hook)
    try:
        token = session.fetch_token(
            id_url.rstrip("/") + TOKEN_PATH,
            code=code,
            client_secret=client_secret,
            include_client_id=True,  # Harvest wants client_id and client_secret in the form body
            timeout=timeout,
            headers=id_headers(user_agent),
        )
    except oauth_errors.InvalidClientError:
        raise HarvestOAuthError(
            "Harvest refused the Client ID or Client secret: copy both again from your OAuth2 application "
            "at id.getharvest.com/developers."
        ) from None
    except oauth_errors.InvalidGrantError as exc:
        raise HarvestOAuthError(
            f"Harvest refused the authorization code ({exc.description or 'invalid_grant'}): it has expired or "
            "was already used. Authorize again."
        ) from None
    except oauth_errors.OAuth2Error as exc:
        raise HarvestOAuthError(f"Harvest ID refused the token request: {exc.error}: {exc.description}.") from None
    except requests.RequestException as exc:
        raise HarvestOAuthError(f"Could not reach Harvest ID at {id_url}: {type(exc).__name__}.") from None
    return token_set(token)


def harvest_accounts(
    access_token: str, id_url: str = DEFAULT_ID_URL, timeout: float = 30, user_agent: str | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(user, Harvest accounts) the token reaches; Forecast and other products are left out."""
    try:
        response = requests.get(
            id_url.rstrip("/") + ACCOUNTS_PATH,
            headers={**id_headers(user_agent), "Authorization": f"Bearer {access_token}"},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        raise HarvestOAuthError(f"Could not reach Harvest ID at {id_url}: {type(exc).__name__}.") from None
    if response.status_code != 200:
        raise HarvestOAuthError(f"Harvest ID answered HTTP {response.status_code} when listing your accounts.")
    try:
        body = response.json()
        accounts = [a for a in body.get("accounts") or [] if str(a.get("product", "")).lower() == "harvest"]
        return body.get("user") or {}, accounts
    except (ValueError, AttributeError):
        raise HarvestOAuthError("Harvest ID answered the accounts request with something that is not JSON.") from None


def check_administrator(
    access_token: str,
    account_id: str,
    api_url: str = DEFAULT_BASE_URL,
    timeout: float = 30,
    user_agent: str | None = None,
) -> dict[str, Any]:
    """``/v2/users/me`` of the new authorization on the account, through the hook's own administrator check
    (one request, no retries: someone is waiting at the page); refuses a token that is not an administrator's."""
    settings = HarvestConnectionSettings(
        conn_id=HARVEST_CONN_ID,
        account_id=str(account_id),
        api_url=api_url.rstrip("/"),
        timeout=timeout,
        max_attempts=1,
        user_agent=user_agent or DEFAULT_USER_AGENT,
    )
    hook = HarvestHook(
        HARVEST_CONN_ID,
        context=f"the new authorization for account {account_id}",
        settings=settings,
        token_source=StaticToken(access_token),
    )
    try:
        return hook.require_administrator()
    except HarvestError as exc:
        raise HarvestOAuthError(str(exc)) from None


_CREDENTIAL = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space: Harvest's ids, secrets and codes


def looks_like_credential(value: str) -> bool:
    """Whether a typed or pasted client id, secret or authorization code could be one (spaces inside, control
    characters or non-ASCII letters come from a bad copy)."""
    return bool(_CREDENTIAL.fullmatch(value))


def is_http_url(url: str) -> bool:
    """An http(s) URL with a host, nothing a browser or the requests library would choke on."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and looks_like_credential(url)


def parse_pasted(pasted: str, expected_state: str) -> str:
    """The code from a pasted redirect URL (its ``state`` checked) or a bare pasted code."""
    pasted = pasted.strip()
    if "://" not in pasted and "?" not in pasted:
        if not pasted:
            raise HarvestOAuthError("Nothing was pasted.")
        if not looks_like_credential(pasted):
            raise HarvestOAuthError(
                "What was pasted is not an authorization code (it holds spaces or unusual characters): paste the "
                "whole address Harvest sent the browser to."
            )
        return pasted
    try:
        params = parse_qs(urlsplit(pasted).query)
    except ValueError:
        raise HarvestOAuthError(
            "What was pasted is not a URL (the address bar's text is needed, e.g. https://…/callback?code=…)."
        ) from None
    if "error" in params:
        raise HarvestOAuthError(f"Harvest did not authorize: {params['error'][0]} ({_denied(params['error'][0])}).")
    if params.get("state", [None])[0] != expected_state:
        raise HarvestOAuthError("The pasted URL's state does not match this authorization (CSRF check): start again.")
    code = params.get("code", [None])[0]
    if not code:
        raise HarvestOAuthError("The pasted URL has no code= parameter.")
    if not looks_like_credential(code):
        raise HarvestOAuthError("The pasted URL's code= holds characters an authorization code never has.")
    return code


def _denied(error: str) -> str:
    return "you denied access" if error == "access_denied" else "see Harvest's message"


# --------------------------------------------------------------------------- Airflow's metadata database
def connection_shadowed_by_env(conn_id: str) -> str | None:
    name = f"AIRFLOW_CONN_{conn_id.upper()}"
    return name if os.environ.get(name) else None


def save_connection(
    conn_id: str,
    *,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    account_id: str,
    api_url: str = DEFAULT_BASE_URL,
    id_url: str = DEFAULT_ID_URL,
    installed_by: str = "",
) -> None:
    """Write the installation into Airflow's metadata database (API server or CLI; never a task)."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    shadow = connection_shadowed_by_env(conn_id)
    if shadow:
        raise HarvestOAuthError(
            f"Connection {conn_id!r} is defined by the environment variable {shadow} on this server, which hides "
            "the one this page stores in Airflow's database. Remove the variable (on every Airflow component) "
            "and install again."
        )
    mask(client_secret, refresh_token)
    with create_session() as session:
        conn = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
        extra: dict[str, Any] = {}
        if conn is None:
            conn = Connection(conn_id=conn_id, conn_type=HarvestHook.conn_type)
            session.add(conn)
        else:
            extra = {k: v for k, v in (conn.extra_dejson or {}).items() if k not in INSTALLATION_EXTRA_KEYS}
        extra.update({"account_id": str(account_id), "refresh_token": refresh_token})
        if id_url.rstrip("/") != DEFAULT_ID_URL:
            extra["oauth_base_url"] = id_url.rstrip("/")
        conn.conn_type = HarvestHook.conn_type
        conn.host = api_url.rstrip("/")
        conn.login = client_id
        conn.set_password(client_secret)
        conn.set_extra(json.dumps(extra))
        conn.description = (
            f"Harvest OAuth2 ({APP_NAME}), account {account_id}; installed "
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC{f' by {installed_by}' if installed_by else ''}"
        )


@dataclass(frozen=True)
class InstallationStatus:
    """What the metadata database holds for the connection (no secrets): for the install page."""

    exists: bool
    shadowed_by: str | None  # the environment variable that hides the stored connection, if any
    mode: str | None = None  # "oauth2" or "personal access token"
    client_id: str | None = None
    account_id: str | None = None
    api_url: str | None = None
    id_url: str = DEFAULT_ID_URL
    description: str | None = None


def installation_status(conn_id: str = HARVEST_CONN_ID) -> InstallationStatus:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        conn = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
        if conn is None:
            return InstallationStatus(exists=False, shadowed_by=connection_shadowed_by_env(conn_id))
        extra = conn.extra_dejson or {}
        oauth = is_oauth_connection(conn)
        return InstallationStatus(
            exists=True,
            shadowed_by=connection_shadowed_by_env(conn_id),
            mode="oauth2" if oauth else "personal access token",
            client_id=conn.login if oauth else None,
            account_id=extra.get("account_id"),
            api_url=conn.host,
            id_url=extra.get("oauth_base_url") or DEFAULT_ID_URL,
            description=conn.description,
        )

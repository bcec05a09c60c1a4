"""Harvest OAuth2: the authorization-code install, and access tokens that renew themselves.

Where things live
-----------------
* Airflow connection ``harvest_default`` (written by the "Install Harvest" page or
  ``scripts/harvest_authorize.py``; Airflow encrypts password and extra with its Fernet key):
  ``login`` = OAuth2 client id, ``password`` = client secret, ``host`` = Harvest API URL, and in ``extra``:
  ``account_id``, ``refresh_token`` (the one the administrator's authorization produced) and, when not
  Harvest's, ``oauth_base_url`` (Harvest ID; tests point it at the simulator). A connection whose extra
  has no ``refresh_token`` is a personal-access-token connection (``password`` = the token).
* Table ``harvest_sync.oauth_tokens`` in the Primetric database: the current access token, its expiry and
  the current refresh token, Fernet-encrypted with Airflow's ``[core] fernet_key``. Airflow 3 task code
  cannot write connections (no metadata-DB access), so refreshed tokens are kept here, where every task
  on every worker reads them. ``seed_sha256`` (a hash of the connection's refresh token) tells whether a
  row continues the current installation; installing again starts a new chain.

Refreshing
----------
:class:`OAuthTokenSource` hands out the access token, refreshing it a little before ``expires_in`` runs
out and once when Harvest answers 401 (:class:`BearerRefreshAuth`). Every refresh holds the row lock
(``SELECT … FOR UPDATE``) until Harvest's answer is stored, and re-reads the row after taking it: a
second run that wanted to refresh at the same time finds the new token and uses it instead of spending
the (possibly rotated, so already used) refresh token again. A refused refresh token (revoked, app
removed) fails the task at once (:class:`HarvestReauthorizationRequired`, no retries) with a message that
sends the administrator to the install page; nothing else is touched.

No token or secret is ever logged: each is registered with Airflow's secret masker as soon as it is
known, and ``requests_oauthlib``/``oauthlib`` (which log request and response bodies at DEBUG) are held
at INFO.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from airflow.sdk.exceptions import AirflowFailException
from oauthlib.oauth2.rfc6749 import errors as oauth_errors
from requests_oauthlib import OAuth2Session

from primetric_harvest.db import connect, query
from primetric_harvest.harvest_api import (
    DEFAULT_BASE_URL,
    DEFAULT_ID_URL,
    DEFAULT_USER_AGENT,
    HarvestAccessError,
    HarvestError,
    administrator_refusal,
)
from primetric_harvest.names import HARVEST_CONN_ID, PRIMETRIC_CONN_ID

log = logging.getLogger(__name__)

AUTHORIZE_PATH = "/oauth2/authorize"
TOKEN_PATH = "/api/v2/oauth2/token"
ACCOUNTS_PATH = "/api/v2/accounts"
INSTALL_PATH = "/harvest-install"  # where the plugin mounts the install page on the API server
CALLBACK_PATH = f"{INSTALL_PATH}/callback"
APP_NAME = "Primetric Airflow sync"  # what the administrator names the Harvest OAuth2 application
# Our keys in the connection's extra (besides harvest_hook.OWN_EXTRA_KEYS): never HTTP headers.
OAUTH_EXTRA_KEYS = {"refresh_token", "oauth_base_url", "token_store_conn_id"}
REFRESH_MARGIN_SECONDS = 120.0

# These two log token request bodies and token responses at DEBUG: never let them.
for _name in ("requests_oauthlib", "oauthlib"):
    logging.getLogger(_name).setLevel(logging.INFO)


class HarvestOAuthError(HarvestError):
    """The OAuth2 install or a token call failed; the message says what to do."""


class HarvestReauthorizationRequired(HarvestAccessError, AirflowFailException):
    """Harvest refused the refresh token or the app: only an administrator can fix it. No retries."""


def mask(*values: Any) -> None:
    """Register secrets with Airflow's secret masker (task logs and the supervisor's)."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - the Task SDK ships with Airflow 3
        return
    for value in values:
        if value:
            mask_secret(value)


def install_page_hint() -> str:
    base = ""
    try:
        from airflow.configuration import conf

        base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    except Exception:  # noqa: BLE001 - a hint only
        pass
    where = f"{base}{INSTALL_PATH}/" if base else f"the Airflow UI's Install Harvest page ({INSTALL_PATH}/)"
    return (
        f"An Airflow administrator must open {where} and authorize again "
        "(or run scripts/harvest_authorize.py on a server without a browser)."
    )


# --------------------------------------------------------------------------- Fernet (Airflow's key)
def fernet():
    """A MultiFernet over Airflow's ``[core] fernet_key`` (comma-separated keys rotate, as in Airflow).

    Unlike Airflow's own ``get_fernet`` (which silently stores plain text without a key), we refuse:
    the tokens must be encrypted at rest.
    """
    from cryptography.fernet import Fernet, MultiFernet

    key = ""
    try:
        from airflow.configuration import conf
    except ImportError:  # a worker with only the Task SDK
        from airflow.sdk.configuration import conf
    key = (conf.get("core", "fernet_key", fallback="") or "").strip()
    try:
        if not key or "{" in key:
            raise ValueError("empty")
        return MultiFernet([Fernet(part.strip().encode()) for part in key.split(",")])
    except ValueError:
        raise HarvestOAuthError(
            "Airflow's [core] fernet_key is not set or not a valid Fernet key on this "
            f"{'worker' if os.environ.get('AIRFLOW_CTX_DAG_ID') else 'server'}; Harvest OAuth2 tokens are stored "
            "encrypted with it. Set the same key as the API server's (AIRFLOW__CORE__FERNET_KEY)."
        ) from None


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode()).decode()


def decrypt(value: str, where: str) -> str:
    from cryptography.fernet import InvalidToken

    try:
        return fernet().decrypt(value.encode()).decode()
    except InvalidToken:
        raise HarvestReauthorizationRequired(
            f"The stored Harvest OAuth2 tokens of {where} cannot be decrypted with Airflow's [core] fernet_key "
            f"(the key changed?). {install_page_hint()}"
        ) from None


# --------------------------------------------------------------------------- token endpoint
@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    expires_in: float

    def __repr__(self) -> str:  # never show the tokens
        return f"TokenSet(expires_in={self.expires_in}, refresh_token={'yes' if self.refresh_token else 'no'})"


def _headers(user_agent: str | None = None) -> dict[str, str]:
    return {"Accept": "application/json", "User-Agent": user_agent or DEFAULT_USER_AGENT}


def _token_set(token: dict, fallback_refresh: str | None = None) -> TokenSet:
    access = token.get("access_token")
    if not access:
        raise HarvestOAuthError("Harvest ID answered the token request without an access_token.")
    mask(access, token.get("refresh_token"))
    try:
        expires_in = float(token.get("expires_in"))
    except (TypeError, ValueError):
        expires_in = 3600.0  # no lifetime given: assume an hour, the 401 path covers the rest
    return TokenSet(access, token.get("refresh_token") or fallback_refresh, max(0.0, expires_in))


def _server_error_hook(response: requests.Response) -> requests.Response:
    if response.status_code >= 500:
        raise HarvestOAuthError(f"Harvest ID answered HTTP {response.status_code} to the token request; try again.")
    return response


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
            row = conn.execute(query("oauth", "claim_state"), {"state_sha256": _sha256(state)}).fetchone()
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
    """Why ``url`` cannot be a Harvest URL of the install (it must be https), or None."""
    shown = url if len(url) <= 80 else url[:79] + "…"
    if url.startswith("https://") and len(url) > len("https://"):
        return None
    if url.startswith("http://") and insecure_transport_allowed():
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
    session.register_compliance_hook("access_token_response", _server_error_hook)
    try:
        token = session.fetch_token(
            id_url.rstrip("/") + TOKEN_PATH,
            code=code,
            client_secret=client_secret,
            include_client_id=True,  # Harvest wants client_id and client_secret in the form body
            timeout=timeout,
            headers=_headers(user_agent),
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
    return _token_set(token)


def refresh_grant(
    client_id: str,
    client_secret: str,
    refresh_token: str,
    id_url: str = DEFAULT_ID_URL,
    timeout: float = 30,
    user_agent: str | None = None,
    where: str = "",
) -> TokenSet:
    """A new access token (and maybe a new refresh token) for ``refresh_token``."""
    mask(client_secret, refresh_token)
    session = OAuth2Session(client_id)
    session.register_compliance_hook("refresh_token_response", _server_error_hook)
    try:
        token = session.refresh_token(
            id_url.rstrip("/") + TOKEN_PATH,
            refresh_token=refresh_token,
            client_id=client_id,
            client_secret=client_secret,
            timeout=timeout,
            headers=_headers(user_agent),
        )
    except (oauth_errors.InvalidGrantError, oauth_errors.InvalidClientError, oauth_errors.UnauthorizedClientError) as e:
        raise HarvestReauthorizationRequired(
            f"Harvest refused to renew the access token of {where or 'the Harvest connection'} "
            f"({e.error}: {e.description or 'no detail'}): the authorization was revoked or the OAuth2 "
            f"application was removed. {install_page_hint()}"
        ) from None
    except oauth_errors.OAuth2Error as exc:
        raise HarvestOAuthError(
            f"Harvest ID refused the token refresh of {where}: {exc.error}: {exc.description}."
        ) from None
    except requests.RequestException as exc:
        raise HarvestOAuthError(
            f"Could not reach Harvest ID at {id_url} to renew the token of {where}: {type(exc).__name__}."
        ) from None
    # requests-oauthlib copies the old refresh token in when Harvest sends none: tell the two apart.
    return _token_set(token, fallback_refresh=refresh_token)


# --------------------------------------------------------------------------- accounts and roles
def harvest_accounts(
    access_token: str, id_url: str = DEFAULT_ID_URL, timeout: float = 30, user_agent: str | None = None
) -> tuple[dict, list[dict]]:
    """(user, Harvest accounts) the token reaches; Forecast and other products are left out."""
    try:
        response = requests.get(
            id_url.rstrip("/") + ACCOUNTS_PATH,
            headers={**_headers(user_agent), "Authorization": f"Bearer {access_token}"},
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
) -> dict:
    """``/v2/users/me`` of the token on the account; refuses a token that is not an administrator's."""
    try:
        response = requests.get(
            api_url.rstrip("/") + "/v2/users/me",
            headers={
                **_headers(user_agent),
                "Authorization": f"Bearer {access_token}",
                "Harvest-Account-Id": str(account_id),
            },
            timeout=timeout,
        )
    except requests.RequestException as exc:
        raise HarvestOAuthError(f"Could not reach the Harvest API at {api_url}: {type(exc).__name__}.") from None
    if response.status_code != 200:
        raise HarvestOAuthError(
            f"Harvest answered HTTP {response.status_code} for /v2/users/me on account {account_id}: "
            f"{response.text[:200]}"
        )
    me = response.json()
    refusal = administrator_refusal(me)
    if refusal:
        raise HarvestOAuthError(
            f"The Harvest authorization for account {account_id}: {refusal}. "
            "Sign in to Harvest as an administrator and authorize again."
        )
    return me


def parse_pasted(pasted: str, expected_state: str) -> str:
    """The code from a pasted redirect URL (its ``state`` checked) or a bare pasted code."""
    pasted = pasted.strip()
    if "://" not in pasted and "?" not in pasted:
        if not pasted:
            raise HarvestOAuthError("Nothing was pasted.")
        return pasted
    params = parse_qs(urlsplit(pasted).query)
    if "error" in params:
        raise HarvestOAuthError(f"Harvest did not authorize: {params['error'][0]} ({_denied(params['error'][0])}).")
    if params.get("state", [None])[0] != expected_state:
        raise HarvestOAuthError("The pasted URL's state does not match this authorization (CSRF check): start again.")
    code = params.get("code", [None])[0]
    if not code:
        raise HarvestOAuthError("The pasted URL has no code= parameter.")
    return code


def _denied(error: str) -> str:
    return "you denied access" if error == "access_denied" else "see Harvest's message"


# --------------------------------------------------------------------------- storing an installation
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
            conn = Connection(conn_id=conn_id, conn_type="http")
            session.add(conn)
        else:
            extra = {k: v for k, v in (conn.extra_dejson or {}).items() if k not in OAUTH_EXTRA_KEYS}
        extra.update({"account_id": str(account_id), "refresh_token": refresh_token})
        if id_url.rstrip("/") != DEFAULT_ID_URL:
            extra["oauth_base_url"] = id_url.rstrip("/")
        conn.conn_type = "http"
        conn.host = api_url.rstrip("/")
        conn.login = client_id
        conn.set_password(client_secret)
        conn.set_extra(json.dumps(extra))
        conn.description = (
            f"Harvest OAuth2 ({APP_NAME}), account {account_id}; installed "
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC{f' by {installed_by}' if installed_by else ''}"
        )


def installation_status(conn_id: str = HARVEST_CONN_ID) -> dict[str, Any]:
    """What the metadata database holds for the connection (no secrets): for the install page."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        conn = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
        if conn is None:
            return {"exists": False, "mode": None, "shadowed_by": connection_shadowed_by_env(conn_id)}
        extra = conn.extra_dejson or {}
        return {
            "exists": True,
            "mode": "oauth2" if extra.get("refresh_token") else "personal access token",
            "client_id": conn.login if extra.get("refresh_token") else None,
            "account_id": extra.get("account_id"),
            "api_url": conn.host,
            "id_url": extra.get("oauth_base_url") or DEFAULT_ID_URL,
            "description": conn.description,
            "shadowed_by": connection_shadowed_by_env(conn_id),
        }


# --------------------------------------------------------------------------- the token source
def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _margin(lifetime: float | None) -> float:
    """Refresh this many seconds before expiry: a tenth of the lifetime, at most two minutes."""
    return min(REFRESH_MARGIN_SECONDS, 0.1 * lifetime) if lifetime else REFRESH_MARGIN_SECONDS


class OAuthTokenSource:
    """Access tokens of one OAuth2 connection, shared with every process through the token store."""

    def __init__(
        self,
        conn_id: str,
        *,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        id_url: str = DEFAULT_ID_URL,
        store_conn_id: str = PRIMETRIC_CONN_ID,
        timeout: float = 30,
        user_agent: str | None = None,
        where: str = "",
    ):
        if not client_id or not client_secret:
            raise HarvestError(
                f"OAuth2 connection {conn_id!r} has no client id (login) or client secret (password). "
                f"{install_page_hint()}"
            )
        mask(client_secret, refresh_token)
        self.conn_id = conn_id
        self.client_id = client_id
        self._client_secret = client_secret
        self._seed_token = refresh_token
        self.seed = _sha256(refresh_token)
        self.id_url = id_url.rstrip("/")
        self.store_conn_id = store_conn_id
        self.timeout = timeout
        self.user_agent = user_agent
        self.where = where or f"connection {conn_id!r}"
        self._access: str | None = None
        self._deadline = 0.0  # time.monotonic() after which the cached token must be re-checked
        self.refreshes = 0  # token requests this source sent to Harvest ID
        self.adopted = 0  # times it found a newer token another process had stored

    @classmethod
    def from_connection(cls, conn_id: str, conn: Any, *, where: str = "", timeout: float = 30) -> OAuthTokenSource:
        extra = conn.extra_dejson or {}
        return cls(
            conn_id,
            client_id=conn.login or "",
            client_secret=conn.password or "",
            refresh_token=str(extra["refresh_token"]),
            id_url=str(extra.get("oauth_base_url") or DEFAULT_ID_URL),
            store_conn_id=str(extra.get("token_store_conn_id") or PRIMETRIC_CONN_ID),
            timeout=timeout,
            user_agent=extra.get("user_agent"),
            where=where,
        )

    def __repr__(self) -> str:
        return f"OAuthTokenSource({self.conn_id!r}, client_id={self.client_id!r})"

    # -- reading ----------------------------------------------------------------------------
    def _usable(self, row: dict | None, *, not_this: str | None = None) -> str | None:
        """The row's access token if it belongs to this installation and is not about to expire."""
        if not row or row["seed_sha256"] != self.seed or not row["access_token"]:
            return None
        if row["expires_in"] is None or row["expires_in"] <= _margin(row["lifetime_seconds"]):
            return None
        token = decrypt(row["access_token"], self.where)
        if not_this is not None and token == not_this:
            return None
        mask(token)
        self._access = token
        self._deadline = time.monotonic() + row["expires_in"] - _margin(row["lifetime_seconds"])
        return token

    def access_token(self) -> str:
        if self._access and time.monotonic() < self._deadline:
            return self._access
        with connect(self.store_conn_id, autocommit=True) as conn:
            row = _row(conn.execute(query("oauth", "current"), {"conn_id": self.conn_id}))
        token = self._usable(row)
        if token:
            return token
        # Missing, of another installation, or about to expire: refresh (or adopt what another run stored).
        stale = self._access
        if row and row["seed_sha256"] == self.seed and row["access_token"]:
            stale = decrypt(row["access_token"], self.where)
        return self.refresh(stale=stale)

    # -- refreshing -------------------------------------------------------------------------
    def refresh(self, stale: str | None = None) -> str:
        """A fresh access token; ``stale`` is the one that expired or got a 401 (None: none known).

        Holds the row lock while it asks Harvest, so concurrent refreshers queue; one that finds a token
        newer than ``stale`` (stored while it waited) uses it without asking Harvest again.
        """
        with connect(self.store_conn_id) as conn:  # one transaction: the lock lasts until commit
            conn.execute(
                query("oauth", "seed"),
                {"conn_id": self.conn_id, "seed_sha256": self.seed, "refresh_token": encrypt(self._seed_token)},
            )
            row = _row(conn.execute(query("oauth", "lock"), {"conn_id": self.conn_id}))
            if row["seed_sha256"] != self.seed:
                log.info("Harvest connection %r was installed again: starting from its refresh token", self.conn_id)
                params = {"conn_id": self.conn_id, "seed_sha256": self.seed, "refresh_token": encrypt(self._seed_token)}
                conn.execute(query("oauth", "reseed"), params)
                row = _row(conn.execute(query("oauth", "lock"), {"conn_id": self.conn_id}))
            adopted = self._usable(row, not_this=stale)
            if adopted:
                self.adopted += 1
                log.info("Using the Harvest access token another run renewed for %s", self.where)
                return adopted
            current_refresh = decrypt(row["refresh_token"], self.where)
            started = time.monotonic()
            tokens = refresh_grant(
                self.client_id,
                self._client_secret,
                current_refresh,
                self.id_url,
                timeout=self.timeout,
                user_agent=self.user_agent,
                where=self.where,
            )
            self.refreshes += 1
            rotated = tokens.refresh_token != current_refresh
            expires_in = max(0.0, tokens.expires_in - (time.monotonic() - started))
            conn.execute(
                query("oauth", "store"),
                {
                    "conn_id": self.conn_id,
                    "access_token": encrypt(tokens.access_token),
                    "refresh_token": encrypt(tokens.refresh_token),
                    "expires_in": expires_in,
                    "rotated": rotated,
                },
            )
            conn.commit()
        log.info(
            "Renewed the Harvest access token of %s (valid %.0f s%s)",
            self.where,
            expires_in,
            "; Harvest sent a new refresh token, stored" if rotated else "",
        )
        self._access = tokens.access_token
        self._deadline = time.monotonic() + expires_in - _margin(tokens.expires_in)
        return tokens.access_token

    def requests_auth(self, on_resend=None) -> BearerRefreshAuth:
        return BearerRefreshAuth(self, on_resend)


def _row(cursor) -> dict | None:
    values = cursor.fetchone()
    if values is None:
        return None
    return dict(zip([c.name for c in cursor.description], values, strict=True))


class BearerRefreshAuth(requests.auth.AuthBase):
    """``Authorization: Bearer`` from an :class:`OAuthTokenSource`; on a 401, refresh once and resend.

    The requests pattern of ``HTTPDigestAuth``: a response hook answers the 401 by sending a copy of
    the request with the new token on the same connection; the second answer is final.
    """

    def __init__(self, source: OAuthTokenSource, on_resend=None):
        self.source = source
        self.on_resend = on_resend  # e.g. rate limiter + request counter of the hook

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.source.access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        request._harvest_token = token  # type: ignore[attr-defined]
        request.register_hook("response", self._on_response)
        return request

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        if response.status_code != 401 or getattr(request, "_harvest_resent", False):
            return response
        log.info("Harvest answered 401 for %s: renewing the access token once", request.path_url.split("?")[0])
        _ = response.content
        response.close()
        token = self.source.refresh(stale=getattr(request, "_harvest_token", None))
        again = request.copy()
        again.headers["Authorization"] = f"Bearer {token}"
        again._harvest_token = token  # type: ignore[attr-defined]
        again._harvest_resent = True  # type: ignore[attr-defined]
        if self.on_resend:
            self.on_resend()
        second = response.connection.send(again, **kwargs)
        second.history.append(response)
        second.request = again
        return second

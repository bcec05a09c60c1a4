"""Harvest OAuth2 access tokens that renew themselves, for tasks on any worker.

Where things live
-----------------
* Airflow connection ``harvest_default`` (written by the "Install Harvest" page or
  ``scripts/harvest_authorize.py``, see :mod:`primetric_harvest.oauth_install`; Airflow encrypts password and
  extra with its Fernet key): ``login`` = OAuth2 client id, ``password`` = client secret, ``host`` = Harvest API
  URL, and in ``extra``: ``account_id``, ``refresh_token`` (the one the administrator's authorization produced)
  and, when not Harvest's, ``oauth_base_url`` (Harvest ID; tests point it at the simulator). A connection whose
  extra has no ``refresh_token`` is a personal-access-token connection (``password`` = the token).
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

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
from airflow.sdk.exceptions import AirflowFailException
from oauthlib.oauth2.rfc6749 import errors as oauth_errors
from requests_oauthlib import OAuth2Session

from primetric_harvest.db import connect, query
from primetric_harvest.harvest_api import (
    DEFAULT_USER_AGENT,
    HarvestAccessError,
    HarvestConnectionSettings,
    HarvestError,
    OAuthClient,
)
from primetric_harvest.names import INSTALL_PATH, ConnectionUse, connection_name

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet
    from psycopg import Connection, Cursor

log = logging.getLogger(__name__)
_STORE = connection_name(ConnectionUse.TOKEN_STORE)

TOKEN_PATH = "/api/v2/oauth2/token"
REFRESH_MARGIN_SECONDS = 120.0

# These two log token request bodies and token responses at DEBUG: never let them.
for _name in ("requests_oauthlib", "oauthlib"):
    logging.getLogger(_name).setLevel(logging.INFO)


class HarvestOAuthError(HarvestError):
    """The OAuth2 install or a token call failed; the message says what to do."""


class HarvestReauthorizationRequired(HarvestAccessError, AirflowFailException):
    """Harvest refused the refresh token or the app: only an administrator can fix it. No retries."""


def mask(*values: str | None) -> None:
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
def fernet() -> MultiFernet:
    """A MultiFernet over Airflow's ``[core] fernet_key`` (comma-separated keys rotate, as in Airflow).

    Unlike Airflow's own ``get_fernet`` (which silently stores plain text without a key), we refuse:
    the tokens must be encrypted at rest.
    """
    from cryptography.fernet import Fernet, MultiFernet

    try:
        from airflow.configuration import conf
    except ImportError:  # a worker with only the Task SDK
        from airflow.sdk.configuration import conf  # type: ignore[no-redef]  # the Task SDK's, same interface
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


def id_headers(user_agent: str | None = None) -> dict[str, str]:
    """Headers of every Harvest ID request (Harvest wants a User-Agent that names the application)."""
    return {"Accept": "application/json", "User-Agent": user_agent or DEFAULT_USER_AGENT}


def token_set(token: dict[str, Any], fallback_refresh: str | None = None) -> TokenSet:
    """Harvest ID's token answer, its secrets masked at once."""
    access = token.get("access_token")
    if not access:
        raise HarvestOAuthError("Harvest ID answered the token request without an access_token.")
    mask(access, token.get("refresh_token"))
    try:
        expires_in = float(token.get("expires_in"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        expires_in = 3600.0  # no lifetime given: assume an hour, the 401 path covers the rest
    return TokenSet(access, token.get("refresh_token") or fallback_refresh, max(0.0, expires_in))


def server_error_hook(response: requests.Response) -> requests.Response:
    """requests-oauthlib compliance hook: a 5xx of Harvest ID is named as such, not as a refused grant."""
    if response.status_code >= 500:
        raise HarvestOAuthError(f"Harvest ID answered HTTP {response.status_code} to the token request; try again.")
    return response


def refresh_grant(
    client: OAuthClient,
    refresh_token: str,
    *,
    timeout: float = 30,
    user_agent: str | None = None,
    where: str = "",
) -> TokenSet:
    """A new access token (and maybe a new refresh token) for ``refresh_token``."""
    mask(client.client_secret, refresh_token)
    session = OAuth2Session(client.client_id)
    session.register_compliance_hook("refresh_token_response", server_error_hook)
    try:
        token = session.refresh_token(
            client.id_url + TOKEN_PATH,
            refresh_token=refresh_token,
            client_id=client.client_id,
            client_secret=client.client_secret,
            timeout=timeout,
            headers=id_headers(user_agent),
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
            f"Could not reach Harvest ID at {client.id_url} to renew the token of {where}: {type(exc).__name__}."
        ) from None
    # requests-oauthlib copies the old refresh token in when Harvest sends none: tell the two apart.
    return token_set(token, fallback_refresh=refresh_token)


# --------------------------------------------------------------------------- the token source
def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _margin(lifetime: float | None) -> float:
    """Refresh this many seconds before expiry: a tenth of the lifetime, at most two minutes."""
    return min(REFRESH_MARGIN_SECONDS, 0.1 * lifetime) if lifetime else REFRESH_MARGIN_SECONDS


def stored_installation(client: OAuthClient) -> str | None:
    """The token-store row (its key) that continues this installation, None if no run has used it yet."""
    with connect(client.token_store_conn_id, autocommit=True, application_name=_STORE) as conn:
        row = conn.execute(query("oauth", "by_seed"), {"seed_sha256": sha256(client.refresh_token)}).fetchone()
    return row[0] if row else None


class OAuthTokenSource:
    """Access tokens of one OAuth2 connection, shared with every process through the token store.

    ``store_key`` is the token-store row (by default the connection id): the connection test, which Airflow
    runs under a throwaway connection id, passes the row of the installation it tests.
    """

    def __init__(
        self,
        conn_id: str,
        client: OAuthClient,
        *,
        store_key: str | None = None,
        timeout: float = 30,
        user_agent: str | None = None,
        where: str = "",
    ):
        if not client.client_id or not client.client_secret:
            raise HarvestError(
                f"OAuth2 connection {conn_id!r} has no client id (login) or client secret (password). "
                f"{install_page_hint()}"
            )
        mask(client.client_secret, client.refresh_token)
        self.conn_id = conn_id
        self.client = client
        self.key = store_key or conn_id
        self.seed = sha256(client.refresh_token)
        self.timeout = timeout
        self.user_agent = user_agent
        self.where = where or f"connection {conn_id!r}"
        self._access: str | None = None
        self._deadline = 0.0  # time.monotonic() after which the cached token must be re-checked
        self.refreshes = 0  # token requests this source sent to Harvest ID
        self.adopted = 0  # times it found a newer token another process had stored

    @classmethod
    def from_settings(
        cls, settings: HarvestConnectionSettings, *, where: str = "", store_key: str | None = None
    ) -> OAuthTokenSource:
        if settings.oauth is None:
            raise HarvestError(f"Connection {settings.conn_id!r} is not an OAuth2 installation (no refresh_token).")
        return cls(
            settings.conn_id,
            settings.oauth,
            store_key=store_key,
            timeout=settings.timeout,
            user_agent=settings.user_agent,
            where=where,
        )

    def __repr__(self) -> str:
        return f"OAuthTokenSource({self.conn_id!r}, client_id={self.client.client_id!r})"

    # -- reading ----------------------------------------------------------------------------
    def _usable(self, row: dict[str, Any] | None, *, not_this: str | None = None) -> str | None:
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
        with connect(self.client.token_store_conn_id, autocommit=True, application_name=_STORE) as conn:
            row = _row(conn.execute(query("oauth", "current"), {"conn_id": self.key}))
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
        key = {"conn_id": self.key}
        seed = {**key, "seed_sha256": self.seed}
        # One transaction: the lock lasts until commit.
        with connect(self.client.token_store_conn_id, application_name=_STORE) as conn:
            conn.execute(query("oauth", "seed"), {**seed, "refresh_token": encrypt(self.client.refresh_token)})
            row = _locked(conn, key)
            if row["seed_sha256"] != self.seed:
                log.info("Harvest connection %r was installed again: starting from its refresh token", self.conn_id)
                conn.execute(query("oauth", "reseed"), {**seed, "refresh_token": encrypt(self.client.refresh_token)})
                row = _locked(conn, key)
            adopted = self._usable(row, not_this=stale)
            if adopted:
                self.adopted += 1
                log.info("Using the Harvest access token another run renewed for %s", self.where)
                return adopted
            current_refresh = decrypt(row["refresh_token"], self.where)
            started = time.monotonic()
            tokens = refresh_grant(
                self.client, current_refresh, timeout=self.timeout, user_agent=self.user_agent, where=self.where
            )
            self.refreshes += 1
            rotated = tokens.refresh_token != current_refresh
            expires_in = max(0.0, tokens.expires_in - (time.monotonic() - started))
            conn.execute(
                query("oauth", "store"),
                {
                    **key,
                    "access_token": encrypt(tokens.access_token),
                    "refresh_token": encrypt(tokens.refresh_token or current_refresh),
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

    def requests_auth(self, on_resend: Callable[[], None] | None = None) -> BearerRefreshAuth:
        return BearerRefreshAuth(self, on_resend)


def _locked(conn: Connection[Any], key: dict[str, str]) -> dict[str, Any]:
    """The row, locked until the transaction ends (``seed`` made sure it exists)."""
    row = _row(conn.execute(query("oauth", "lock"), key))
    if row is None:  # pragma: no cover - seeded in the same transaction
        raise HarvestOAuthError(f"The Harvest token store has no row {key['conn_id']!r} right after seeding it.")
    return row


def _row(cursor: Cursor[Any]) -> dict[str, Any] | None:
    values = cursor.fetchone()
    if values is None or cursor.description is None:
        return None
    return dict(zip([c.name for c in cursor.description], values, strict=True))


class BearerRefreshAuth(requests.auth.AuthBase):
    """``Authorization: Bearer`` from an :class:`OAuthTokenSource`; on a 401, refresh once and resend.

    The requests pattern of ``HTTPDigestAuth``: a response hook answers the 401 by sending a copy of
    the request with the new token on the same connection; the second answer is final.
    """

    def __init__(self, source: OAuthTokenSource, on_resend: Callable[[], None] | None = None):
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

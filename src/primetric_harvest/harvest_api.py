"""Harvest API v2 as this project relies on it: defaults, errors, and the rules about a Harvest connection.

Shared by the hook (requests from tasks), the OAuth2 code and the install page, so that none of them
imports another for a constant or an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from primetric_harvest.names import PRIMETRIC_CONN_ID

DEFAULT_BASE_URL = "https://api.harvestapp.com"
DEFAULT_ID_URL = "https://id.getharvest.com"  # Harvest ID: OAuth2 authorize, token and accounts
DEFAULT_USER_AGENT = "Primetric Harvest Sync (integrations@primetric.example)"
MAX_PER_PAGE = 2000


class HarvestError(RuntimeError):
    """A Harvest call failed in a way a retry will not fix; the message says what to do."""


class HarvestAccessError(HarvestError):
    """401/403/404 (``status``), or a token that is not an administrator's (``status`` None)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class HarvestResponseError(HarvestError):
    """The answer was not Harvest's shape."""


class HarvestUnreachable(HarvestError):
    """No answer at all (refused, dropped, timed out) after every attempt: the API URL or the network."""


def administrator_refusal(me: dict[str, Any]) -> str | None:
    """Why a `/v2/users/me` answer is not an administrator's, or None: a lesser token sees a silent subset."""
    roles = me.get("access_roles") or []
    if "administrator" in roles:
        return None
    return (
        f"it belongs to {me.get('email', 'a user')} with roles {', '.join(map(str, roles)) or 'none'}, "
        "not an administrator; only an administrator's token sees every time entry"
    )


def is_oauth_connection(conn: Any) -> bool:
    """An OAuth2 installation (login/password = client id/secret) rather than a personal access token."""
    return bool((conn.extra_dejson or {}).get("refresh_token"))


def harvest_account_id(conn: Any, conn_id: str) -> str:
    """The Harvest account a connection syncs: ``extra.account_id``; a personal-access-token connection may
    give it as ``login`` instead (an OAuth2 connection's login is its client id, never an account)."""
    extra = conn.extra_dejson or {}
    account_id = str(extra.get("account_id") or "").strip()
    if not account_id and not is_oauth_connection(conn):
        account_id = str(conn.login or "").strip()
    if not account_id:
        raise HarvestError(
            f"Connection {conn_id!r} has no Harvest account id: set its Account ID (extra.account_id), "
            "the number Harvest shows under id.getharvest.com/developers next to your token."
        )
    return account_id


@dataclass(frozen=True)
class OAuthClient:
    """An OAuth2 installation (the "Install Harvest" page): its client, and the refresh token it was given."""

    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    id_url: str = DEFAULT_ID_URL  # Harvest ID (tests point it at the simulator)
    token_store_conn_id: str = PRIMETRIC_CONN_ID  # where renewed tokens are kept (harvest_sync.oauth_tokens)


@dataclass(frozen=True)
class HarvestConnectionSettings:
    """What a Harvest connection says, read once (type ``harvest``, or ``http`` as before the provider).

    host = API URL (default Harvest's); extra ``account_id``; password = personal access token, or
    login/password = OAuth2 client id/secret with extra ``refresh_token``. Optional extras (ours, never sent
    to Harvest as headers): ``user_agent``, ``timeout`` (s), ``max_attempts``, ``retry_wait_seconds``,
    ``retry_max_wait_seconds`` (transient faults, per request), ``rate_limit_requests``/``rate_limit_seconds``
    (Harvest's 100 per 15 s), ``oauth_base_url`` (Harvest ID), ``token_store_conn_id``.
    """

    conn_id: str
    account_id: str
    api_url: str = DEFAULT_BASE_URL
    personal_token: str | None = field(default=None, repr=False)  # None for an OAuth2 installation
    oauth: OAuthClient | None = None
    user_agent: str = DEFAULT_USER_AGENT
    timeout: float = 30.0
    max_attempts: int = 5
    retry_wait_seconds: float = 0.5
    retry_max_wait_seconds: float = 8.0
    rate_limit_requests: int = 100
    rate_limit_seconds: float = 15.0

    @property
    def rate_limit(self) -> tuple[int, float]:
        return self.rate_limit_requests, self.rate_limit_seconds

    @classmethod
    def from_connection(cls, conn: Any, conn_id: str) -> HarvestConnectionSettings:
        extra = conn.extra_dejson or {}

        def number(key: str, kind: type, default: float) -> Any:
            value = extra.get(key)
            if value in (None, ""):
                return default
            try:
                return kind(value)
            except (TypeError, ValueError):
                raise HarvestError(
                    f"Connection {conn_id!r}: extra {key!r} must be a{'n integer' if kind is int else ' number'}, "
                    f"not {value!r}."
                ) from None

        oauth = None
        token = None
        if is_oauth_connection(conn):
            oauth = OAuthClient(
                client_id=conn.login or "",
                client_secret=conn.password or "",
                refresh_token=str(extra["refresh_token"]),
                id_url=str(extra.get("oauth_base_url") or DEFAULT_ID_URL).rstrip("/"),
                token_store_conn_id=str(extra.get("token_store_conn_id") or PRIMETRIC_CONN_ID),
            )
        else:
            token = conn.password
            if not token:
                raise HarvestError(
                    f"Connection {conn_id!r} has no access token: paste a Harvest personal access token as its "
                    "password (id.getharvest.com/developers), or install OAuth2 from the Install Harvest page."
                )
        return cls(
            conn_id=conn_id,
            account_id=harvest_account_id(conn, conn_id),
            api_url=connection_api_url(conn.host, conn.schema, conn.port),
            personal_token=token,
            oauth=oauth,
            user_agent=str(extra.get("user_agent") or DEFAULT_USER_AGENT),
            timeout=number("timeout", float, 30.0),
            max_attempts=max(1, number("max_attempts", int, 5)),
            retry_wait_seconds=number("retry_wait_seconds", float, 0.5),
            retry_max_wait_seconds=number("retry_max_wait_seconds", float, 8.0),
            rate_limit_requests=number("rate_limit_requests", int, 100),
            rate_limit_seconds=number("rate_limit_seconds", float, 15.0),
        )


def connection_api_url(host: str | None, scheme: str | None = None, port: int | None = None) -> str:
    """The API base URL of a connection: host with its scheme (else ``schema`` or https), and port."""
    url = (host or DEFAULT_BASE_URL).strip().rstrip("/")
    if "://" not in url:
        url = f"{scheme or 'https'}://{url}"
    return f"{url}:{port}" if port else url

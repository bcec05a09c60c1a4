"""Harvest API v2 as this project relies on it: defaults, errors, and the rules about a Harvest connection.

Shared by the hook (requests from tasks), the OAuth2 code and the install page, so that none of them
imports another for a constant or an exception.
"""

from __future__ import annotations

from typing import Any

DEFAULT_BASE_URL = "https://api.harvestapp.com"
DEFAULT_ID_URL = "https://id.getharvest.com"  # Harvest ID: OAuth2 authorize, token and accounts
DEFAULT_USER_AGENT = "Primetric Harvest Sync (integrations@primetric.example)"
MAX_PER_PAGE = 2000


class HarvestError(RuntimeError):
    """A Harvest call failed in a way a retry will not fix; the message says what to do."""


class HarvestAccessError(HarvestError):
    """401/403/404, or a token that is not an administrator's."""


class HarvestResponseError(HarvestError):
    """The answer was not Harvest's shape."""


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

"""A thin, typed wrapper over Harvest API v2 and the Airflow connection that holds its credentials.

Connection ``harvest_default`` (conn_type ``http``): host = API base URL with scheme (default
``https://api.harvestapp.com``), password = access token, extra ``{"account_id": "..."}``.
Optional extra keys (ours, never sent as headers): ``user_agent``, ``timeout`` (seconds),
``rate_limit_requests`` / ``rate_limit_seconds`` (Harvest's documented 100 per 15 s by default).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.harvestapp.com"
DEFAULT_USER_AGENT = "Primetric Harvest Sync (integrations@primetric.example)"
MAX_PER_PAGE = 2000
# Our keys in the connection's extra: Harvest must never receive them as headers.
OWN_EXTRA_KEYS = {"account_id", "user_agent", "timeout", "rate_limit_requests", "rate_limit_seconds"}


class HarvestError(RuntimeError):
    """A Harvest call failed in a way a retry will not fix; the message says what to do."""


class HarvestAccessError(HarvestError):
    """401/403/404, or a token that is not an administrator's."""


class HarvestResponseError(HarvestError):
    """The answer was not Harvest's shape."""


class _Retryable(Exception):
    """A 5xx, a dropped connection or a timeout: worth another try."""


class RateLimiter(Protocol):
    def acquire(self) -> None: ...


class LocalRateLimiter:
    """Paces one process; the Postgres-backed limiter paces every process on one account."""

    def __init__(self, requests_per_window: int = 100, window_seconds: float = 15.0):
        self.interval = window_seconds / max(1, requests_per_window - 2)
        self._next = 0.0

    def acquire(self) -> None:
        now = time.monotonic()
        wait = self._next - now
        if wait > 0:
            time.sleep(wait)
        self._next = max(now, self._next) + self.interval


@dataclass
class HarvestStats:
    requests: int = 0
    throttled: int = 0  # 429 and 503 answers
    retries: int = 0
    waited_seconds: float = 0.0
    by_path: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "throttled": self.throttled,
            "retries": self.retries,
            "waited_seconds": round(self.waited_seconds, 2),
            "by_path": dict(self.by_path),
        }


def _load_connection(conn_id: str):
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


class HarvestHook:
    """Harvest API v2 client bound to one Airflow connection (and so one Harvest account)."""

    conn_name_attr = "harvest_conn_id"
    default_conn_name = "harvest_default"
    conn_type = "http"
    hook_name = "Harvest"

    def __init__(
        self,
        harvest_conn_id: str = default_conn_name,
        *,
        context: str = "",
        rate_limiter: RateLimiter | None = None,
        max_attempts: int = 5,
        max_throttle_waits: int = 20,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.harvest_conn_id = harvest_conn_id
        self.context = context  # e.g. "Primetric project 7": named in every error
        self.max_attempts = max_attempts
        self.max_throttle_waits = max_throttle_waits
        self.stats = HarvestStats()
        self._sleep = sleep
        conn = _load_connection(harvest_conn_id)
        extra = conn.extra_dejson or {}
        host = (conn.host or DEFAULT_BASE_URL).rstrip("/")
        if "://" not in host:
            host = f"{conn.schema or 'https'}://{host}"
        if conn.port:
            host = f"{host}:{conn.port}"
        self.base_url = host
        self.account_id = str(extra.get("account_id") or conn.login or "").strip()
        if not self.account_id:
            raise HarvestError(f"Connection {harvest_conn_id!r} has no Harvest account id: set extra.account_id.")
        self.timeout = float(extra.get("timeout", 30))
        self.rate_limit = (int(extra.get("rate_limit_requests", 100)), float(extra.get("rate_limit_seconds", 15)))
        self.rate_limiter = rate_limiter or LocalRateLimiter(*self.rate_limit)
        self._token = conn.password
        if not self._token:
            raise HarvestError(f"Connection {harvest_conn_id!r} has no access token (password).")
        self.session = requests.Session()
        self.session.headers.update(
            {
                "Harvest-Account-Id": self.account_id,
                "User-Agent": extra.get("user_agent") or DEFAULT_USER_AGENT,
                "Accept": "application/json",
            }
        )

    # -- authentication: one place, so an OAuth2 token source can replace it -------------------
    def access_token(self) -> str:
        return self._token

    def _where(self) -> str:
        return f"connection {self.harvest_conn_id!r}" + (f", {self.context}" if self.context else "")

    # -- requests ---------------------------------------------------------------------------
    def _send_once(self, url: str, params: dict[str, Any] | None) -> requests.Response:
        self.rate_limiter.acquire()
        self.stats.requests += 1
        try:
            response = self.session.get(
                url,
                params=params,
                timeout=(min(10.0, self.timeout), self.timeout),
                headers={"Authorization": f"Bearer {self.access_token()}"},
            )
            if response.status_code < 400:
                _ = response.content  # read the whole body here: a body cut short is retryable
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        return response

    def _log_retry(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        log.warning(
            "Harvest request failed (%s), attempt %d of %d; retrying",
            state.outcome.exception(),
            state.attempt_number,
            self.max_attempts,
        )

    def get(self, path_or_url: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET one resource as JSON, waiting out throttling and retrying transient faults."""
        url = path_or_url if "://" in path_or_url else f"{self.base_url}/v2/{path_or_url.lstrip('/')}"
        path = requests.utils.urlparse(url).path
        self.stats.by_path[path] = self.stats.by_path.get(path, 0) + 1
        throttle_waits = 0
        while True:
            retrying = Retrying(
                retry=retry_if_exception_type(_Retryable),
                stop=stop_after_attempt(self.max_attempts),
                wait=wait_exponential_jitter(initial=0.5, max=8),
                sleep=self._sleep,
                before_sleep=self._log_retry,
                reraise=True,
            )
            try:
                response = retrying(self._checked, url, params)
            except _Retryable as exc:
                raise HarvestError(
                    f"Harvest {path} kept failing after {self.max_attempts} attempts ({exc}); {self._where()}."
                ) from None
            if response is not None:
                return self._json(response, path)
            throttle_waits += 1
            if throttle_waits > self.max_throttle_waits:
                raise HarvestError(f"Harvest kept answering 429 for {path}; {self._where()}.")

    def _checked(self, url: str, params: dict[str, Any] | None) -> requests.Response | None:
        """The response, or None after waiting out a 429/503; raises for the rest."""
        response = self._send_once(url, params)
        status = response.status_code
        if status in (429, 503):
            self.stats.throttled += 1
            wait = _retry_after(response.headers.get("Retry-After"), default=5.0)
            log.warning("Harvest answered %d; waiting %.1f s as Retry-After asks", status, wait)
            self.stats.waited_seconds += wait
            self._sleep(wait)
            return None
        if status >= 500:
            raise _Retryable(f"HTTP {status}")
        if status in (401, 403, 404):
            raise HarvestAccessError(_access_message(status, response, self._where()))
        if status >= 400:
            raise HarvestError(
                f"Harvest answered HTTP {status} for {response.url}: {response.text[:200]}; {self._where()}."
            )
        return response

    def _json(self, response: requests.Response, path: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise HarvestResponseError(
                f"Harvest {path} answered with a body that is not JSON "
                f"(content-type {response.headers.get('Content-Type')!r}, {len(response.content)} bytes); "
                f"expected a JSON object; {self._where()}."
            ) from None
        if not isinstance(body, dict):
            raise HarvestResponseError(
                f"Harvest {path} answered {type(body).__name__}, expected a JSON object; {self._where()}."
            )
        return body

    def paginate(self, path: str, key: str, params: dict[str, Any] | None = None) -> Iterator[list[dict]]:
        """Yield each page's records, following ``links.next`` until it is null (cursor or page based)."""
        params = {"per_page": MAX_PER_PAGE, **(params or {})}
        url: str | None = f"{self.base_url}/v2/{path}"
        first = True
        while url:
            body = self.get(url, params if first else None)
            first = False
            records = body.get(key)
            links = body.get("links")
            if not isinstance(records, list) or not isinstance(links, dict):
                raise HarvestResponseError(
                    f"Harvest {path} answered an object without a {key!r} list and 'links' "
                    f"(keys: {sorted(body)[:10]}); expected Harvest API v2 pagination; {self._where()}."
                )
            yield records
            url = links.get("next")

    # -- endpoints we use ---------------------------------------------------------------------
    def me(self) -> dict[str, Any]:
        return self.get("users/me")

    def require_administrator(self) -> dict[str, Any]:
        """A lesser token silently sees only part of the entries: refuse to sync with it."""
        me = self.me()
        roles = me.get("access_roles") or []
        if "administrator" not in roles:
            raise HarvestAccessError(
                f"The Harvest token of {self._where()} belongs to {me.get('email', 'a user')} with roles "
                f"{roles or 'none'}; only an administrator's token sees every time entry. "
                "Authorize the integration as a Harvest administrator."
            )
        return me

    def users(self) -> Iterator[list[dict]]:
        # No is_active filter: archived people still own time entries.
        return self.paginate("users", "users")

    def time_entries(self, **filters: Any) -> Iterator[list[dict]]:
        return self.paginate("time_entries", "time_entries", {k: v for k, v in filters.items() if v is not None})


def _retry_after(value: str | None, default: float) -> float:
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def _access_message(status: int, response: requests.Response, where: str) -> str:
    detail = response.text[:200].replace("\n", " ")
    hint = {
        401: "the access token is invalid, expired or revoked: renew it in the connection",
        403: "the token may not use this account (check extra.account_id) or lacks permission",
        404: "the resource does not exist on this account (check the account id and linked project ids)",
    }[status]
    return f"Harvest answered HTTP {status} for {response.request.path_url.split('?')[0]}: {hint}; {where}. ({detail})"

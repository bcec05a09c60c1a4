"""A thin, typed hook over Harvest API v2 and the Airflow connection that holds its credentials.

Connection ``harvest_default``, type ``harvest`` (this package's provider: a form with labelled fields and a
Test button) or ``http`` (as before the provider; still read the same way): host = API base URL with scheme
(default ``https://api.harvestapp.com``), extra ``account_id``, password = personal access token, or an
OAuth2 installation (login/password = client id/secret, extra ``refresh_token``). Optional extras: see
:class:`~primetric_harvest.harvest_api.HarvestConnectionSettings`.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import msgspec
import requests
from airflow.sdk import BaseHook
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from primetric_harvest.harvest_api import (
    DEFAULT_BASE_URL,
    MAX_PER_PAGE,
    HarvestAccessError,
    HarvestConnectionSettings,
    HarvestError,
    HarvestResponseError,
    HarvestUnreachable,
    administrator_refusal,
)
from primetric_harvest.names import HARVEST_CONN_ID
from primetric_harvest.oauth_tokens import OAuthTokenSource, stored_installation

log = logging.getLogger(__name__)


class _Retryable(Exception):
    """A 5xx, a dropped connection or a timeout: worth another try."""


class _NoAnswer(_Retryable):
    """Refused, dropped or timed out before Harvest answered."""


class _UnreadableBody(_Retryable):
    """A 2xx whose body is not JSON (cut short, or a proxy's HTML page): worth another try."""


class RateLimiter(Protocol):
    def acquire(self) -> None: ...


class TokenSource(Protocol):
    """Where the hook's bearer token comes from: a fixed token, or OAuth2 tokens that renew themselves."""

    def access_token(self) -> str: ...

    def requests_auth(self, on_resend: Callable[[], None] | None = None) -> requests.auth.AuthBase: ...


@dataclass(frozen=True)
class StaticToken:
    """A token that does not renew itself: a personal access token, or the one an OAuth2 install just got."""

    token: str = field(repr=False)

    def access_token(self) -> str:
        return self.token

    def requests_auth(self, on_resend: Callable[[], None] | None = None) -> requests.auth.AuthBase:
        return _Bearer(self.token)


class _Bearer(requests.auth.AuthBase):
    def __init__(self, token: str):
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


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


def token_source_for(settings: HarvestConnectionSettings, *, where: str = "") -> TokenSource:
    """The connection's own token: its personal access token, or its OAuth2 installation's renewing tokens."""
    if settings.oauth is not None:
        return OAuthTokenSource.from_settings(settings, where=where)
    assert settings.personal_token  # HarvestConnectionSettings.from_connection refuses a connection without
    return StaticToken(settings.personal_token)


class HarvestHook(BaseHook):
    """Harvest API v2 client bound to one Airflow connection (and so one Harvest account).

    Airflow builds it from the connection id alone (the connection form's Test button); a task passes what
    it shares with other tasks: the settings it already read, the rate limiter of the account.
    """

    conn_name_attr = "harvest_conn_id"
    default_conn_name = HARVEST_CONN_ID
    conn_type = "harvest"
    hook_name = "Harvest"
    max_throttle_waits: ClassVar[int] = 20  # 429/503 answers waited out per request before giving up

    def __init__(
        self,
        harvest_conn_id: str = HARVEST_CONN_ID,
        *,
        context: str = "",
        settings: HarvestConnectionSettings | None = None,
        token_source: TokenSource | None = None,
        rate_limiter: RateLimiter | None = None,
    ):
        super().__init__()
        self.harvest_conn_id = harvest_conn_id
        self.context = context  # e.g. "Primetric project 7": named in every error
        self.settings = settings or self.settings_for(harvest_conn_id)
        self.token_source = token_source or token_source_for(self.settings, where=self._where())
        self.rate_limiter = rate_limiter or LocalRateLimiter(*self.settings.rate_limit)
        self.stats = HarvestStats()
        self.last_response_date: dt.datetime | None = None  # Harvest's clock (the Date header)
        self.session = requests.Session()
        self.session.auth = self.token_source.requests_auth(on_resend=self._count_resend)
        self.session.headers.update(
            {
                "Harvest-Account-Id": self.settings.account_id,
                "User-Agent": self.settings.user_agent,
                "Accept": "application/json",
            }
        )

    @classmethod
    def settings_for(cls, harvest_conn_id: str = HARVEST_CONN_ID) -> HarvestConnectionSettings:
        """The connection's settings, read once (a task reads them before it builds the account's limiter)."""
        return HarvestConnectionSettings.from_connection(cls.get_connection(harvest_conn_id), harvest_conn_id)

    @property
    def account_id(self) -> str:
        return self.settings.account_id

    @property
    def base_url(self) -> str:
        return self.settings.api_url

    def access_token(self) -> str:
        return self.token_source.access_token()

    def _count_resend(self) -> None:
        """The request sent again after a 401 and a token refresh: paced and counted like any other."""
        self.rate_limiter.acquire()
        self.stats.requests += 1

    def _where(self) -> str:
        return f"connection {self.harvest_conn_id!r}" + (f", {self.context}" if self.context else "")

    # -- the connection form's Test button ------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        """What Airflow's "Test" button shows: the account, its users and the token's owner, or what is wrong.

        One attempt per request (someone waits at the form). Airflow tests under a throwaway connection id,
        so the messages name the account and the URL, not the connection.
        """
        s = self.settings
        hook = self
        if s.oauth is not None:
            # Renewing from the connection's refresh token would start a second token chain (and spend a refresh
            # token the runs may still need): use the installation's stored row, as a run would.
            key = stored_installation(s.oauth)
            if key is None:
                return False, (
                    f"Not tested: the OAuth2 installation for account {s.account_id} has not been used by a sync "
                    "yet, and a test now would spend the refresh token its first run needs. Trigger a sync; the "
                    "Install Harvest page already checked the administrator."
                )
            source = OAuthTokenSource.from_settings(s, where=f"account {s.account_id}", store_key=key)
            hook = HarvestHook(self.harvest_conn_id, settings=s, token_source=source)
        try:
            me = hook.get("users/me", attempts=1)
            refusal = administrator_refusal(me)
            if refusal:
                return False, f"Not an administrator (account {s.account_id}): {refusal}. Use an administrator's token."
            users = hook.get("users", {"per_page": 1}, attempts=1).get("total_entries")
        except HarvestAccessError as exc:
            return False, _test_refusal(exc, s)
        except HarvestUnreachable:
            return False, (
                f"Harvest is unreachable at {s.api_url}: no answer. Check the API URL (Harvest's is "
                f"{DEFAULT_BASE_URL}) and that this server can reach it."
            )
        except HarvestError as exc:
            return False, str(exc)
        kind = "administrator OAuth2 authorization" if s.oauth is not None else "administrator token"
        return True, f"Harvest answered: {kind} for account {s.account_id} ({users} users), of {me.get('email')}."

    # -- requests ---------------------------------------------------------------------------
    def _send_once(self, url: str, params: dict[str, Any] | None) -> requests.Response:
        self.rate_limiter.acquire()
        self.stats.requests += 1
        timeout = self.settings.timeout
        try:
            response = self.session.get(url, params=params, timeout=(min(10.0, timeout), timeout))
            if response.status_code < 400:
                _ = response.content  # read the whole body here: a body cut short is retryable
        except requests.exceptions.ChunkedEncodingError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _NoAnswer(f"{type(exc).__name__}: {exc}") from exc
        self.last_response_date = _http_date(response.headers.get("Date")) or self.last_response_date
        return response

    def _log_retry(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        log.warning(
            "Harvest request failed (%s), attempt %d of %d; retrying",
            state.outcome.exception() if state.outcome else None,
            state.attempt_number,
            self.settings.max_attempts,
        )

    def get(
        self, path_or_url: str, params: dict[str, Any] | None = None, *, attempts: int | None = None
    ) -> dict[str, Any]:
        """GET one resource as JSON, waiting out throttling and retrying transient faults (``attempts`` tries,
        by default the connection's ``max_attempts``)."""
        attempts = attempts or self.settings.max_attempts
        url = path_or_url if "://" in path_or_url else f"{self.base_url}/v2/{path_or_url.lstrip('/')}"
        path = urllib.parse.urlsplit(url).path
        self.stats.by_path[path] = self.stats.by_path.get(path, 0) + 1
        first_wait = self.settings.retry_wait_seconds
        throttle_waits = 0
        while True:
            retrying = Retrying(
                retry=retry_if_exception_type(_Retryable),
                stop=stop_after_attempt(attempts),
                wait=wait_exponential_jitter(
                    initial=first_wait, max=self.settings.retry_max_wait_seconds, jitter=first_wait
                ),
                before_sleep=self._log_retry,
                reraise=True,
            )
            try:
                body = retrying(self._checked_json, url, params, path)
            except _Retryable as exc:
                error = {_UnreadableBody: HarvestResponseError, _NoAnswer: HarvestUnreachable}.get(
                    type(exc), HarvestError
                )
                raise error(
                    f"Harvest {path} kept failing after {attempts} attempts ({exc}); {self._where()}."
                ) from None
            if body is not None:
                return body
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
            time.sleep(wait)
            return None
        if status >= 500:
            raise _Retryable(f"HTTP {status}")
        if status in (401, 403, 404):
            raise HarvestAccessError(_access_message(status, response, self._where()), status=status)
        if status >= 400:
            raise HarvestError(
                f"Harvest answered HTTP {status} for {response.url}: {response.text[:200]}; {self._where()}."
            )
        return response

    def _checked_json(self, url: str, params: dict[str, Any] | None, path: str) -> dict[str, Any] | None:
        response = self._checked(url, params)
        return None if response is None else self._json(response, path)

    def _json(self, response: requests.Response, path: str) -> dict[str, Any]:
        try:
            # msgspec decodes a 2000-entry page ~4x faster than the json module, into the same dicts/lists.
            body = msgspec.json.decode(response.content)
        except (msgspec.DecodeError, ValueError):
            body = _json_lenient(response.content)
        if body is _NOT_JSON:
            raise _UnreadableBody(
                f"answered with a body that is not JSON "
                f"(content-type {response.headers.get('Content-Type')!r}, {len(response.content)} bytes: "
                f"{response.text[:60]!r}); expected a JSON object"
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
        if not isinstance(me.get("access_roles"), list):
            raise HarvestResponseError(
                f"Harvest /v2/users/me answered without an 'access_roles' list (keys: {sorted(me)[:10]}); "
                f"expected the token's Harvest user; {self._where()}."
            )
        refusal = administrator_refusal(me)
        if refusal:
            raise HarvestAccessError(
                f"The Harvest token of {self._where()}: {refusal}. "
                "Authorize the integration as a Harvest administrator."
            )
        return me

    def users(self) -> Iterator[list[dict]]:
        # No is_active filter: archived people still own time entries.
        return self.paginate("users", "users")

    def projects(self) -> Iterator[list[dict]]:
        """Every project of the account page by page, active and archived (no is_active filter): the Harvest
        sync page offers them to link."""
        return self.paginate("projects", "projects")

    def time_entries(self, **filters: Any) -> Iterator[list[dict]]:
        """Yield a listing's entries page by page, complete even while people add, edit or delete entries.

        Page numbers shift under a live listing: an entry deleted from a page already read makes the
        next page start one entry later, and the entry that slid back is never seen (inside a prune
        window its work log would even be deleted); an entry edited to an earlier page is missed too.
        So a listing of several pages is checked: the same ``total_entries`` on every page, and nothing
        created, edited or moved into the listing since page 1 was read (one ``updated_since`` request
        of one entry). Then nothing can have moved between pages. Else the listing is read again by
        date (:meth:`_entries_by_date`), which is complete by construction; the duplicates that leaves
        are harmless (staging keeps one row per entry, the newest).
        """
        filters = {k: v for k, v in filters.items() if v is not None}
        totals: list[int] = []
        started = next_url = None
        while True:
            body = self._entries_page(filters, next_url)
            started = started or self.last_response_date  # Harvest's clock as page 1 was read
            totals.append(body["total_entries"])
            yield body["time_entries"]
            next_url = body["links"].get("next")  # page numbers or a cursor: whichever Harvest uses
            if not next_url:
                break
        if len(totals) == 1:
            return  # one response is one consistent read
        if len(set(totals)) == 1 and started is not None:
            since = (started - PAGING_CLOCK_MARGIN).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if self._entries_page({**filters, "updated_since": since, "per_page": 1})["total_entries"] == 0:
                return
        log.warning(
            "Harvest time entries %s changed while being paged (total_entries %s); reading them again by date",
            filters,
            sorted(set(totals)),
        )
        yield from self._entries_by_date(filters)

    def _entries_by_date(self, filters: dict[str, Any]) -> Iterator[list[dict]]:
        """The listing read as page 1 of shrinking date ranges: each response is one consistent read.

        Harvest sorts by spent_date, newest first: on a full page, the entries dated after its oldest
        date are ALL the range's entries of those dates. The next request lists up to that oldest date
        (``to``) again. Only a day with more entries than a page holds is paged by number, and listed
        again until its count holds still.
        """
        filters = dict(filters)
        to = _day(filters.pop("to", None))
        lower = _day(filters.get("from"))
        while lower is None or to is None or to >= lower:
            body = self._entries_page({**filters, "page": 1, **({"to": to.isoformat()} if to else {})})
            records = body["time_entries"]
            if not body["links"].get("next"):
                yield records  # the rest of the range fits in this one response
                return
            days = [_entry_day(e) for e in records]
            known = [d for d in days if d is not None]
            if not known or known != sorted(known, reverse=True):
                raise HarvestResponseError(
                    f"Harvest /v2/time_entries answered a full page that is not sorted by spent_date, newest "
                    f"first ({len(known)} of {len(records)} entries dated); expected Harvest's order; {self._where()}."
                )
            oldest = known[-1]
            if known[0] == oldest:  # the whole page is one day
                yield from self._entries_of_one_day(filters, oldest)
                to = oldest - dt.timedelta(days=1)
            else:
                yield [e for e, d in zip(records, days, strict=True) if d is None or d > oldest]
                to = oldest

    def _entries_page(self, params: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
        """One page of a listing: the first (``params``) or the one ``links.next`` pointed to."""
        body = self.get(next_url) if next_url else self.get("time_entries", {"per_page": MAX_PER_PAGE, **params})
        if (
            not isinstance(body.get("time_entries"), list)
            or not isinstance(body.get("links"), dict)
            or not isinstance(body.get("total_entries"), int)
        ):
            raise HarvestResponseError(
                f"Harvest /v2/time_entries answered an object without a 'time_entries' list, 'links' and "
                f"'total_entries' (keys: {sorted(body)[:10]}); expected Harvest API v2 pagination; {self._where()}."
            )
        return body

    def _entries_of_one_day(self, filters: dict[str, Any], day: dt.date, attempts: int = 3) -> Iterator[list[dict]]:
        """A day with more entries than a page: paged by number, kept only if its count held still."""
        counts: list[int] = []
        for _ in range(attempts):
            pages, counts, next_url = [], [], None
            while True:
                body = self._entries_page({**filters, "from": day.isoformat(), "to": day.isoformat()}, next_url)
                pages.append(body["time_entries"])
                counts.append(body["total_entries"])
                next_url = body["links"].get("next")
                if not next_url:
                    break
            seen = len({e.get("id") for records in pages for e in records if isinstance(e, dict)})
            if len(set(counts)) == 1 and seen >= counts[0]:
                yield from pages
                return
            log.warning(
                "Harvest time entries of %s changed while being paged (counts %s); listing it again", day, counts
            )
        raise HarvestError(
            f"Harvest time entries of {day} kept changing while being listed ({attempts} times, counts {counts}); "
            f"{self._where()}. Run the sync again."
        )


# Harvest's Date header and its updated_at stamps may disagree by this much (clock skew).
PAGING_CLOCK_MARGIN = dt.timedelta(seconds=30)


def _day(value: object) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _entry_day(entry: object) -> dt.date | None:
    """An entry's spent_date, None when missing or not a YYYY-MM-DD date (a bad record, kept aside later)."""
    spent = entry.get("spent_date") if isinstance(entry, dict) else None
    try:
        return dt.date.fromisoformat(spent) if isinstance(spent, str) and len(spent) == 10 else None
    except ValueError:
        return None


_NOT_JSON = object()


def _json_lenient(content: bytes) -> Any:
    """Valid JSON that msgspec refuses: a lone surrogate escape ("\\ud800"), a number beyond a double (1e400),
    an integer of thousands of digits. One odd record must not make the whole page unreadable: the json module
    reads them (1e400 as inf, a huge integer as a float); the record is then judged like any other."""

    def integer(digits: str) -> int | float:
        return int(digits) if len(digits) <= 4000 else float(digits)

    try:
        return json.loads(content.decode("utf-8"), parse_int=integer)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return _NOT_JSON


def _http_date(value: str | None) -> dt.datetime | None:
    try:
        return email.utils.parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None


def _retry_after(value: str | None, default: float) -> float:
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def _access_message(status: int, response: requests.Response, where: str) -> str:
    detail = response.text[:200].replace("\n", " ")
    hint = {
        401: "the access token is invalid, expired or revoked: renew it in the connection "
        "(OAuth2: open the Install Harvest page)",
        403: "the token may not use this account (check extra.account_id) or lacks permission",
        404: "the resource does not exist on this account (check the account id and linked project ids)",
    }[status]
    return f"Harvest answered HTTP {status} for {response.request.path_url.split('?')[0]}: {hint}; {where}. ({detail})"


def _test_refusal(exc: HarvestAccessError, settings: HarvestConnectionSettings) -> str:
    """The Test button's answer to a 401/403/404, in the form's words."""
    if exc.status == 401:
        if settings.oauth is not None:
            return (
                "Harvest refused the OAuth2 access token (HTTP 401): open the Install Harvest page and authorize again."
            )
        return (
            "Harvest refused the token (HTTP 401): it is invalid, expired or revoked. Create a personal access token "
            "at id.getharvest.com/developers and paste it as the password."
        )
    if exc.status == 403:
        return (
            f"Harvest refused account {settings.account_id} for this token (HTTP 403): check the Account ID, the "
            "number shown next to the token at id.getharvest.com/developers."
        )
    return str(exc)

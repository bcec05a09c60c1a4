"""What one run of a project's sync fetches and replaces: a pure decision, made once per run.

Harvest has no deletes in its API, so a run can only learn that an entry is gone by listing a range
of spent_dates completely and noticing the absence. Each run therefore has *listings* (what it asks
Harvest for) and a *prune window* (the spent_dates it listed completely: synced work logs there that
Harvest no longer lists are deleted).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypedDict

# Re-read a little before the high-water mark: clock skew and entries committed in the same second.
DEFAULT_OVERLAP = dt.timedelta(minutes=10)
DEFAULT_WINDOW_DAYS = 60
DEFAULT_FULL_RECONCILE_DAYS = 7


class SyncMode(StrEnum):
    RESET = "reset"  # a "since" date was given: everything from it, and it becomes sync_since
    FULL = "full"  # first run of a project (no high-water mark): everything from sync_since
    RECONCILE = "reconcile"  # the periodic full re-list from sync_since
    INCREMENTAL = "incremental"  # daily: the reconcile window in full, older entries updated since the mark
    BACKFILL = "backfill"  # an Airflow backfill run: exactly the spent_dates of its data interval
    CLEAR = "clear"  # clear_data: delete the project's synced work logs, fetch nothing


RESET, FULL, RECONCILE, INCREMENTAL, BACKFILL, CLEAR = SyncMode


class InvalidSyncRequest(ValueError):
    """A trigger's parameters cannot be run as given; ``field`` names the parameter that is wrong."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


# What a run can be asked for (the trigger form, the REST API's conf, the Harvest sync page): nothing else.
SINCE = "since"  # YYYY-MM-DD: reset and sync all work logs from that date
CLEAR_DATA = "clear_data"  # true: delete the project's synced work logs
CONFIRM_PROJECT_NAME = "confirm_project_name"  # clear_data only: the project's name, typed again
REQUEST_KEYS = (SINCE, CLEAR_DATA, CONFIRM_PROJECT_NAME)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def shown(value: object, limit: int = 40) -> str:
    """``value`` as an error message may repeat it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, kw_only=True)
class SyncRequest:
    """What a run was asked to do, checked: see :func:`parse_sync_request`."""

    since: dt.date | None = None
    clear_data: bool = False


def parse_sync_request(
    conf: Mapping[str, Any], *, today: dt.date, project_name: str, backfill: bool = False
) -> SyncRequest:
    """The run's parameters, or :class:`InvalidSyncRequest` naming the one that is wrong, before anything is touched.

    ``today``: Harvest's today (its Date header) in a run, the server's today on a page. ``backfill``: an Airflow
    backfill run, which replaces exactly the dates of its data interval, whatever its parameters say.
    """
    unknown = sorted(str(k) for k in conf if k not in REQUEST_KEYS)
    if unknown:
        raise InvalidSyncRequest(
            f"unknown parameter {', '.join(shown(k) for k in unknown)}: the accepted parameters are "
            f"{', '.join(REQUEST_KEYS)} (spelled exactly so)",
            field=unknown[0],
        )
    since = parse_since(conf.get(SINCE))
    clear = conf.get(CLEAR_DATA)
    if clear not in (None, False, True):
        raise InvalidSyncRequest(f"clear_data={shown(clear)} is not true or false", field=CLEAR_DATA)
    if since is not None and since > today:
        raise InvalidSyncRequest(
            f"since={since.isoformat()} is after today ({today.isoformat()}): a reset from a future date would delete "
            "every synced work log and sync nothing; give a date up to today",
            field=SINCE,
        )
    if since is not None and clear:
        raise InvalidSyncRequest(
            "clear_data and since cannot be combined: clear the data first, then reset and sync from a date",
            field=CLEAR_DATA,
        )
    if backfill and (since is not None or clear):
        raise InvalidSyncRequest(
            "a backfill replaces exactly the dates of its own runs: since and clear_data cannot be given to a "
            "backfill (trigger a reset or a clear as a run of its own)",
            field=SINCE if since is not None else CLEAR_DATA,
        )
    if clear:
        typed = conf.get(CONFIRM_PROJECT_NAME)
        if not isinstance(typed, str) or typed.strip() != project_name.strip():
            raise InvalidSyncRequest(
                f"clear_data deletes every synced work log of {project_name!r}: to confirm, repeat the project's "
                f"name exactly in {CONFIRM_PROJECT_NAME} (got {shown(typed)})",
                field=CONFIRM_PROJECT_NAME,
            )
    return SyncRequest(since=since, clear_data=bool(clear))


@dataclass(frozen=True)
class Listing:
    """One `GET /v2/time_entries` listing per linked Harvest project."""

    from_date: dt.date | None = None
    to_date: dt.date | None = None
    updated_since: dt.datetime | None = None
    running_only: bool = False

    def filters(self) -> dict[str, str]:
        bounds = {"from": self.from_date, "to": self.to_date, "updated_since": self.updated_since}
        out = {k: v.isoformat() for k, v in bounds.items() if v is not None}
        if self.running_only:
            out["is_running"] = "true"
        return out


@dataclass(frozen=True, kw_only=True)
class SyncPlan:
    """What one run fetches, what it replaces and what it records; travels from extract to load as XCom."""

    mode: SyncMode
    listings: tuple[Listing, ...] = ()
    prune: bool = False  # delete what Harvest no longer lists inside [prune_from, prune_to]
    prune_from: dt.date | None = None  # None: from the beginning of time
    prune_to: dt.date | None = None  # None: no upper bound
    new_sync_since: dt.date | None = None  # stored as the project's sync_since
    advances_mark: bool = False  # the listings saw every change since the high-water mark
    full_reconcile: bool = False  # the listings covered everything from sync_since
    clears_data: bool = False  # delete the project's synced work logs and kept-aside entries; nothing lands

    @property
    def fetches(self) -> bool:
        return bool(self.listings)


class _Complete(TypedDict):
    """The flags of a plan whose listings re-list everything from sync_since."""

    prune: bool
    advances_mark: bool
    full_reconcile: bool


def parse_since(value: object) -> dt.date | None:
    """The trigger form's `since`: empty, or a YYYY-MM-DD date."""
    if value in (None, ""):
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    try:
        if isinstance(value, str) and _DAY.fullmatch(value.strip()):
            return dt.date.fromisoformat(value.strip())
    except ValueError:
        pass
    raise InvalidSyncRequest(f"since={shown(value)} is not a date: expected YYYY-MM-DD, e.g. 2026-01-31", field=SINCE)


def plan_sync(
    *,
    since: object = None,
    clear_data: bool = False,
    sync_since: dt.date | None,
    project_start: dt.date | None,
    high_water_mark: dt.datetime | None,
    today: dt.date | None = None,
    now: dt.datetime | None = None,
    window_days: int = DEFAULT_WINDOW_DAYS,
    full_reconcile_every_days: int = DEFAULT_FULL_RECONCILE_DAYS,
    last_full_reconcile_at: dt.datetime | None = None,
    backfill: tuple[dt.date, dt.date] | None = None,
    overlap: dt.timedelta = DEFAULT_OVERLAP,
) -> SyncPlan:
    """Decide the run. ``backfill`` is the inclusive spent_date range of a backfill run's data interval."""
    now = now or dt.datetime.now(dt.UTC)
    today = today or now.date()
    since_date = parse_since(since)
    if clear_data:
        if since_date:
            raise InvalidSyncRequest("clear_data and since cannot be combined: clear first, then reset from a date")
        return SyncPlan(mode=CLEAR, prune=True, new_sync_since=sync_since, clears_data=True)
    everything = _Complete(prune=True, advances_mark=True, full_reconcile=True)  # a complete re-list
    if since_date:
        return SyncPlan(mode=RESET, listings=(Listing(since_date),), new_sync_since=since_date, **everything)
    start = sync_since or project_start  # nothing before it is ever synced
    if backfill:
        first, last = max(backfill[0], start) if start else backfill[0], backfill[1]
        listings: tuple[Listing, ...] = (Listing(first, last),) if first <= last else ()
        return SyncPlan(
            mode=BACKFILL,
            listings=listings,
            prune=bool(listings),
            prune_from=first,
            prune_to=last,
            new_sync_since=sync_since,
        )
    if high_water_mark is None:
        return SyncPlan(mode=FULL, listings=(Listing(start),), new_sync_since=sync_since, **everything)
    due = last_full_reconcile_at is None or now - last_full_reconcile_at >= dt.timedelta(days=full_reconcile_every_days)
    if due:
        return SyncPlan(mode=RECONCILE, listings=(Listing(start),), new_sync_since=sync_since, **everything)
    changed_since = high_water_mark - overlap
    if window_days <= 0:
        # No window: deletes wait for the periodic full reconcile; running timers are re-read.
        listings = (Listing(start, None, changed_since), Listing(start, None, None, running_only=True))
        return SyncPlan(mode=INCREMENTAL, listings=listings, new_sync_since=sync_since, advances_mark=True)
    window_from = today - dt.timedelta(days=window_days)
    if start and start > window_from:
        window_from = start
    listings = (Listing(window_from),)  # in full: running timers and deletes in the window show up
    if start is None or start < window_from:
        listings += (Listing(start, window_from - dt.timedelta(days=1), changed_since),)
    return SyncPlan(
        mode=INCREMENTAL,
        listings=listings,
        prune=True,
        prune_from=window_from,
        new_sync_since=sync_since,
        advances_mark=True,
    )


def new_high_water_mark(
    plan: SyncPlan, harvest_time_at_start: dt.datetime | None, newest_updated_at: dt.datetime | None
) -> dt.datetime | None:
    """The mark the next run asks Harvest for changes since; None: keep the current one.

    Harvest's own clock when the listings began: they saw every change made before it, and whatever changes
    after it carries a later updated_at (an entry changed while we were paging included). Without a Date
    header, the newest updated_at seen. Only a run whose listings saw every change may move it.
    """
    if not plan.advances_mark:
        return None
    return harvest_time_at_start or newest_updated_at


def superseded(extract_started_at: dt.datetime, last_loaded_extract_started_at: dt.datetime | None) -> bool:
    """A run that began fetching before the run that loaded last would write older data over newer."""
    return last_loaded_extract_started_at is not None and last_loaded_extract_started_at > extract_started_at


def backfill_window(
    run_type: object, interval_start: dt.datetime | None, interval_end: dt.datetime | None
) -> tuple[dt.date, dt.date] | None:
    """The spent_dates a backfill run re-syncs: its data interval (end exclusive); None for other runs."""
    if str(getattr(run_type, "value", run_type)) != "backfill" or interval_start is None or interval_end is None:
        return None
    last = max(interval_start, interval_end - dt.timedelta(microseconds=1))
    return interval_start.date(), last.date()

"""What one run of a project's sync fetches and replaces: a pure decision, made once per run.

Harvest has no deletes in its API, so a run can only learn that an entry is gone by listing a range
of spent_dates completely and noticing the absence. Each run therefore has *listings* (what it asks
Harvest for) and a *prune window* (the spent_dates it listed completely: synced work logs there that
Harvest no longer lists are deleted).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# Re-read a little before the high-water mark: clock skew and entries committed in the same second.
DEFAULT_OVERLAP = dt.timedelta(minutes=10)
DEFAULT_WINDOW_DAYS = 60
DEFAULT_FULL_RECONCILE_DAYS = 7

RESET = "reset"  # a "since" date was given: everything from it, and it becomes sync_since
FULL = "full"  # first run of a project (no high-water mark): everything from sync_since
RECONCILE = "reconcile"  # the periodic full re-list from sync_since
INCREMENTAL = "incremental"  # daily: the reconcile window in full, older entries updated since the mark
BACKFILL = "backfill"  # an Airflow backfill run: exactly the spent_dates of its data interval
CLEAR = "clear"  # clear_data: delete the project's synced work logs and stop


class InvalidSyncRequest(ValueError):
    pass


@dataclass(frozen=True)
class Listing:
    """One `GET /v2/time_entries` listing per linked Harvest project."""

    from_date: dt.date | None = None
    to_date: dt.date | None = None
    updated_since: dt.datetime | None = None
    running_only: bool = False

    def filters(self) -> dict[str, str]:
        out = {"from": self.from_date, "to": self.to_date, "updated_since": self.updated_since}
        out = {k: v.isoformat() for k, v in out.items() if v is not None}
        if self.running_only:
            out["is_running"] = "true"
        return out


@dataclass(frozen=True)
class SyncPlan:
    mode: str
    listings: tuple[Listing, ...]
    prune: bool  # delete what Harvest no longer lists inside [prune_from, prune_to]
    prune_from: dt.date | None  # None: from the beginning of time
    prune_to: dt.date | None  # None: no upper bound
    new_sync_since: dt.date | None  # stored as the project's sync_since
    advances_mark: bool  # the listings saw every change since the high-water mark
    full_reconcile: bool  # the listings covered everything from sync_since

    @property
    def fetches(self) -> bool:
        return bool(self.listings)

    def to_xcom(self) -> dict:
        def enc(v):
            return v.isoformat() if isinstance(v, dt.date | dt.datetime) else v

        return {
            "mode": self.mode,
            "listings": [{k: enc(v) for k, v in vars(lst).items()} for lst in self.listings],
            "prune": self.prune,
            "prune_from": enc(self.prune_from),
            "prune_to": enc(self.prune_to),
            "new_sync_since": enc(self.new_sync_since),
            "advances_mark": self.advances_mark,
            "full_reconcile": self.full_reconcile,
        }

    @classmethod
    def from_xcom(cls, data: dict) -> SyncPlan:
        def day(v):
            return dt.date.fromisoformat(v) if v else None

        listings = tuple(
            Listing(
                day(x["from_date"]),
                day(x["to_date"]),
                dt.datetime.fromisoformat(x["updated_since"]) if x["updated_since"] else None,
                x["running_only"],
            )
            for x in data["listings"]
        )
        return cls(
            mode=data["mode"],
            listings=listings,
            prune=data["prune"],
            prune_from=day(data["prune_from"]),
            prune_to=day(data["prune_to"]),
            new_sync_since=day(data["new_sync_since"]),
            advances_mark=data["advances_mark"],
            full_reconcile=data["full_reconcile"],
        )


def parse_since(value: object) -> dt.date | None:
    """The trigger form's `since`: empty, or a YYYY-MM-DD date."""
    if value in (None, ""):
        return None
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InvalidSyncRequest(f"since={value!r} is not a date: expected YYYY-MM-DD, e.g. 2026-01-31") from None


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
        return SyncPlan(CLEAR, (), True, None, None, sync_since, advances_mark=False, full_reconcile=False)
    if since_date:
        return SyncPlan(RESET, (Listing(since_date),), True, None, None, since_date, True, True)
    start = sync_since or project_start  # nothing before it is ever synced
    if backfill:
        first, last = max(backfill[0], start) if start else backfill[0], backfill[1]
        listings = (Listing(first, last),) if first <= last else ()
        return SyncPlan(BACKFILL, listings, bool(listings), first, last, sync_since, False, False)
    if high_water_mark is None:
        return SyncPlan(FULL, (Listing(start),), True, None, None, sync_since, True, True)
    due = last_full_reconcile_at is None or now - last_full_reconcile_at >= dt.timedelta(days=full_reconcile_every_days)
    if due:
        return SyncPlan(RECONCILE, (Listing(start),), True, None, None, sync_since, True, True)
    changed_since = high_water_mark - overlap
    if window_days <= 0:
        # No window: deletes wait for the periodic full reconcile; running timers are re-read.
        listings = (Listing(start, None, changed_since), Listing(start, None, None, running_only=True))
        return SyncPlan(INCREMENTAL, listings, False, None, None, sync_since, True, False)
    window_from = today - dt.timedelta(days=window_days)
    if start and start > window_from:
        window_from = start
    listings = [Listing(window_from)]  # in full: running timers and deletes in the window show up
    if start is None or start < window_from:
        listings.append(Listing(start, window_from - dt.timedelta(days=1), changed_since))
    return SyncPlan(INCREMENTAL, tuple(listings), True, window_from, None, sync_since, True, False)


def backfill_window(
    run_type: object, interval_start: dt.datetime | None, interval_end: dt.datetime | None
) -> tuple[dt.date, dt.date] | None:
    """The spent_dates a backfill run re-syncs: its data interval (end exclusive); None for other runs."""
    if str(getattr(run_type, "value", run_type)) != "backfill" or interval_start is None or interval_end is None:
        return None
    last = max(interval_start, interval_end - dt.timedelta(microseconds=1))
    return interval_start.date(), last.date()

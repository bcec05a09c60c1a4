"""What one run of a project's sync fetches and replaces: a pure decision, made once per run."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

# Re-read a little before the high-water mark: clock skew and entries committed in the same second.
DEFAULT_OVERLAP = dt.timedelta(minutes=10)

RESET = "reset"  # a "since" date was given: replace everything from it
FULL = "full"  # first run of a project (no high-water mark): everything from sync_since
INCREMENTAL = "incremental"  # daily: entries updated since the high-water mark
CLEAR = "clear"  # clear_data: delete the project's synced work logs and stop


class InvalidSyncRequest(ValueError):
    pass


@dataclass(frozen=True)
class SyncPlan:
    mode: str
    from_date: dt.date | None  # spent_date lower bound sent to Harvest (`from`)
    to_date: dt.date | None  # spent_date upper bound (`to`)
    updated_since: dt.datetime | None
    replace: bool  # delete the project's synced work logs first (same transaction)
    include_skipped: bool  # re-examine entries kept aside by earlier runs
    new_sync_since: dt.date | None  # stored as the project's sync_since

    @property
    def fetches(self) -> bool:
        return self.mode != CLEAR

    def to_xcom(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, dt.date | dt.datetime) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_xcom(cls, data: dict) -> SyncPlan:
        def parse(key, kind):
            value = data.get(key)
            return kind.fromisoformat(value) if value else None

        return cls(
            mode=data["mode"],
            from_date=parse("from_date", dt.date),
            to_date=parse("to_date", dt.date),
            updated_since=parse("updated_since", dt.datetime),
            replace=data["replace"],
            include_skipped=data["include_skipped"],
            new_sync_since=parse("new_sync_since", dt.date),
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
    overlap: dt.timedelta = DEFAULT_OVERLAP,
) -> SyncPlan:
    since_date = parse_since(since)
    if clear_data:
        if since_date:
            raise InvalidSyncRequest("clear_data and since cannot be combined: clear first, then reset from a date")
        return SyncPlan(CLEAR, None, None, None, replace=True, include_skipped=False, new_sync_since=sync_since)
    if since_date:
        return SyncPlan(RESET, since_date, None, None, replace=True, include_skipped=False, new_sync_since=since_date)
    start = sync_since or project_start
    if high_water_mark is None:
        return SyncPlan(FULL, start, None, None, replace=True, include_skipped=False, new_sync_since=sync_since)
    return SyncPlan(
        INCREMENTAL,
        start,
        None,
        high_water_mark - overlap,
        replace=False,
        include_skipped=True,
        new_sync_since=sync_since,
    )

"""What the four steps of a run hand each other and the run summary: typed, and how they travel as XCom.

Airflow passes a task's return value to the next task as XCom (JSON in the metadata database). Each step
returns one of these dataclasses; :func:`to_xcom` turns it into plain JSON values and :func:`from_xcom`
back into the dataclass (dates and timestamps included), checking its shape, so no step reads another
step's result by string key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from primetric_harvest.plan import SyncPlan

if TYPE_CHECKING:
    from pydantic import TypeAdapter

T = TypeVar("T")


@dataclass(frozen=True)
class HarvestRequests:
    """The Harvest requests of one extract (from the hook's counters)."""

    requests: int = 0
    throttled: int = 0  # answered 429, or 503 (waited out the same way, per Retry-After)
    retries: int = 0
    waited_seconds: float = 0.0
    by_path: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Extracted:
    """extract → transform, load: the run's plan and what was fetched into staging."""

    plan: SyncPlan
    harvest_project_ids: tuple[int, ...]
    extract_started_at: dt.datetime  # the database's clock: orders runs of one project (superseded runs)
    harvest_time_at_start: dt.datetime | None = None  # Harvest's clock before the listings: the next mark
    entries_fetched: int = 0
    users_fetched: int = 0
    harvest: HarvestRequests | None = None  # None: nothing was asked of Harvest (clear data)
    unidentified_records: int = 0  # time-entry records that name no entry (no integer id)
    texts_altered: int = 0  # time entries whose text lost characters PostgreSQL cannot store
    seconds: float = 0.0

    @property
    def prunes(self) -> bool:
        """Whether the load deletes the work logs of entries Harvest no longer lists in the plan's window. Not
        when a record named no entry: any such work log could be the one that record is a version of."""
        return self.plan.prune and not self.unidentified_records


@dataclass(frozen=True)
class Transformed:
    """transform → the summary: what the rules made of the staged entries."""

    worklogs: int = 0  # staged work logs
    skipped: int = 0  # staged entries kept aside
    rechecked_people: int = 0  # Harvest users whose synced work logs were judged again (match changed)
    write_seconds: float = 0.0  # writing staging: part of the load's cost
    seconds: float = 0.0


@dataclass(frozen=True)
class Loaded:
    """load → report, the asset event and the summary: what changed in primetric.worklogs."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    previous_versions_kept: int = 0  # work logs left as they were: Harvest's newer version was kept aside
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        return self.inserted + self.updated + self.deleted


@dataclass(frozen=True)
class MissingTeammate:
    """One person whose Harvest hours cannot land, with what a manager needs to add them."""

    harvest_user_id: int
    email: str | None
    name: str | None
    reason: str  # a SkipReason code
    entries: int
    hours: str  # decimal text: the XCom keeps it exact
    first_work_date: dt.date | None
    last_work_date: dt.date | None


@dataclass(frozen=True)
class Reported:
    """report → the summary: the missing-teammate report and the entries kept aside."""

    missing_teammates: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    missing: tuple[MissingTeammate, ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True)
class StepSeconds:
    extract: float | None = None
    transform: float | None = None
    load: float | None = None
    report: float | None = None


@dataclass(frozen=True)
class RunSummary:
    """The numbers of one run: the `report` task's XCom `summary` and its last log line."""

    mode: str
    entries_fetched: int
    worklogs_inserted: int
    worklogs_updated: int
    worklogs_deleted: int
    skipped_by_reason: dict[str, int]
    missing_teammates: int
    harvest_requests: int
    harvest_429s: int  # 429s, and the 503s the hook waits out the same way
    seconds: StepSeconds
    previous_versions_kept: int = 0  # work logs left at their last readable version (Loaded)
    texts_altered: int = 0  # entries whose text lost characters PostgreSQL cannot store (Extracted)
    unidentified_records: int = 0  # records that named no entry: nothing was pruned (Extracted)
    line: str = ""

    @classmethod
    def of(cls, extracted: Extracted, transformed: Transformed, loaded: Loaded, reported: Reported) -> RunSummary:
        harvest = extracted.harvest or HarvestRequests()
        return cls(
            mode=str(extracted.plan.mode),
            entries_fetched=extracted.entries_fetched,
            worklogs_inserted=loaded.inserted,
            worklogs_updated=loaded.updated,
            worklogs_deleted=loaded.deleted,
            skipped_by_reason=dict(reported.skipped_by_reason),
            missing_teammates=reported.missing_teammates,
            harvest_requests=harvest.requests,
            harvest_429s=harvest.throttled,
            seconds=StepSeconds(extracted.seconds, transformed.seconds, loaded.seconds, reported.seconds),
            previous_versions_kept=loaded.previous_versions_kept,
            texts_altered=extracted.texts_altered,
            unidentified_records=extracted.unidentified_records,
        )


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def _adapter(cls: type[T]) -> TypeAdapter[T]:
    """pydantic's (de)serializer of ``cls``, built once per class (pydantic is imported when first needed)."""
    if cls not in _ADAPTERS:
        from pydantic import TypeAdapter

        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


def to_xcom(value: Any) -> Any:
    """A step result as JSON values (what Airflow stores as the task's XCom)."""
    return _adapter(type(value)).dump_python(value, mode="json")


def from_xcom(cls: type[T], data: Any) -> T:
    """A step result back from its XCom; a value of another shape raises pydantic's ValidationError."""
    return _adapter(cls).validate_python(data)

"""The four steps of a project's sync. Each is called by one Airflow task (through tasks.py) and holds no
business rule: the rules are in transform.py and plan.py, the SQL in include/sql/.

Data passes between steps in run-scoped UNLOGGED staging tables (any worker can reach them, unlike a
local file); only the small typed results of results.py travel as XCom.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import pandas as pd
import psycopg

from primetric_harvest import records
from primetric_harvest import transform as rules_
from primetric_harvest.db import connect, one_row, query
from primetric_harvest.harvest_hook import HarvestHook
from primetric_harvest.names import HARVEST_CONN_ID, PRIMETRIC_CONN_ID, ConnectionUse, connection_name
from primetric_harvest.plan import SyncRequest, new_high_water_mark, parse_sync_request, plan_sync, superseded
from primetric_harvest.progress import RunProgress
from primetric_harvest.rate_limit import PostgresRateLimiter
from primetric_harvest.results import (
    Extracted,
    HarvestRequests,
    Loaded,
    MissingTeammate,
    Reported,
    Transformed,
    to_xcom,
)
from primetric_harvest.skip_reasons import SkipReason

log = logging.getLogger(__name__)

TRANSFORM_CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class Staging:
    entries: str
    users: str
    worklogs: str
    skipped: str

    @classmethod
    def for_run(cls, project_id: int, run_id: str) -> Staging:
        key = f"p{project_id}_{hashlib.sha1(run_id.encode()).hexdigest()[:12]}"
        return cls(*(f"harvest_staging.{kind}_{key}" for kind in ("entries", "users", "worklogs", "skipped")))

    def names(self) -> dict[str, str]:
        return {"entries": self.entries, "users": self.users, "worklogs": self.worklogs, "skipped": self.skipped}


class ProjectNotLinked(RuntimeError):
    pass


def project_rules(conn: psycopg.Connection, project_id: int) -> dict:
    cur = conn.execute(query("project", "rules"), {"project_id": project_id})
    row = cur.fetchone()
    if row is None:
        raise ProjectNotLinked(
            f"Primetric project {project_id} has no row in primetric.harvest_settings: "
            "link it (harvest_settings + harvest_project_links) before syncing"
        )
    return dict(zip([c.name for c in cur.description or ()], row, strict=True))


def _frame(conn: psycopg.Connection, statement, params: dict | None = None) -> pd.DataFrame:
    cur = conn.execute(statement, params or {})
    return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description or ()])


def _native(frame: pd.DataFrame, columns: list[str]) -> Iterator[tuple]:
    """Rows of python values (None for missing) that psycopg's COPY can write."""
    cols = [frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in columns]
    return zip(*cols, strict=True)


def _copy(cur: psycopg.Cursor, statement, rows: Iterable[tuple]) -> int:
    n = 0
    with cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def _prefetch(pages: Iterator[list], depth: int = 1) -> Iterator[list]:
    """The pages of ``pages``, while a thread already fetches the next one: Harvest's response time and
    our COPY overlap. At most ``depth`` pages wait in memory; an error of the fetch is raised here."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for page in pages:
                if not put(("page", page)):
                    return
            put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread, which raises it
            put(("error", exc))

    threading.Thread(target=pump, name="harvest-prefetch", daemon=True).start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "error":
                raise value
            if kind == "end":
                return
            yield value
    finally:
        stop.set()


# -- extract -------------------------------------------------------------------------------------
def extract(
    project_id: int,
    run_id: str,
    params: Mapping[str, Any],
    *,
    backfill: tuple[dt.date, dt.date] | None = None,
    backfill_run: bool | None = None,
    harvest_conn_id: str = HARVEST_CONN_ID,
    primetric_conn_id: str = PRIMETRIC_CONN_ID,
) -> Extracted:
    """Check what the run was asked, decide its plan, fetch its Harvest users and time entries into staging.

    ``params``: what the run was asked (the dag run's conf over the trigger form's values), checked by
    :func:`plan.parse_sync_request` before anything is touched; ``backfill``: the inclusive spent_date range of
    a backfill run's data interval; ``backfill_run``: an Airflow backfill run (default: ``backfill`` given).
    """
    started = time.monotonic()
    staging = Staging.for_run(project_id, run_id)
    backfill_run = backfill is not None if backfill_run is None else backfill_run
    # ONE connection for the whole task (autocommit): the account's rate limiter and the run's progress use it
    # between the short transactions that write staging (the setup, each page's COPY). The prefetch thread's
    # rate-limit statement takes turns with those transactions (``turns``), so its row lock on the account's
    # bucket never lasts longer than its own statement. Staging is run-scoped: pages committed by a failed try
    # are dropped by the next try's create.
    turns = threading.Lock()
    with connect(
        primetric_conn_id, autocommit=True, application_name=connection_name(ConnectionUse.EXTRACT, project_id)
    ) as conn:
        project = project_rules(conn, project_id)

        def checked(today: dt.date) -> SyncRequest:
            return parse_sync_request(params, today=today, project_name=project["name"], backfill=backfill_run)

        request = checked(dt.date.max)  # all but "not after today", which needs Harvest's clock (below)
        (extract_started_at,) = one_row(conn.execute(query("staging", "now")))
        plan = plan_sync(
            since=request.since,
            clear_data=request.clear_data,
            sync_since=project["sync_since"],
            project_start=project["start_date"],
            high_water_mark=project["high_water_mark"],
            now=extract_started_at,
            window_days=project["reconcile_window_days"],
            full_reconcile_every_days=project["full_reconcile_every_days"],
            last_full_reconcile_at=project["last_full_reconcile_at"],
            backfill=backfill,
        )
        harvest_project_ids = tuple(int(h) for h in project["harvest_project_ids"])
        hook = harvest_time_at_start = None
        if plan.fetches:
            if not harvest_project_ids:
                raise ProjectNotLinked(
                    f"Primetric project {project_id} has no Harvest project linked (primetric.harvest_project_links)"
                )
            where = f"Primetric project {project_id}"
            settings = HarvestHook.settings_for(harvest_conn_id)
            limiter = PostgresRateLimiter(conn, settings.account_id, *settings.rate_limit, turns=turns)
            hook = HarvestHook(harvest_conn_id, context=where, settings=settings, rate_limiter=limiter)
            progress = RunProgress(conn, project_id, run_id)  # pages so far, for the Harvest sync page
            progress.start()
            hook.require_administrator()
            # Harvest's clock before the first listing: whatever changes after it, the next run sees.
            harvest_time_at_start = hook.last_response_date
            # A `since` after Harvest's today is refused here, before any table is touched.
            checked((harvest_time_at_start or extract_started_at).astimezone(dt.UTC).date())
        with conn.transaction():
            for _, stale_run_id in conn.execute(query("staging", "stale"), {"project_id": project_id}).fetchall():
                stale = Staging.for_run(project_id, stale_run_id)
                conn.execute(query("staging", "drop", **stale.names()))
                conn.execute(query("staging", "unregister"), {"entries": stale.entries})
                log.info("dropped the staging tables of run %s, which never reached its load", stale_run_id)
            conn.execute(query("staging", "create", **staging.names()))
            conn.execute(
                query("staging", "register"), {"entries": staging.entries, "project_id": project_id, "run_id": run_id}
            )
        if hook is None:
            log.info("%s: nothing to fetch from Harvest for project %s", plan.mode, project_id)
            return Extracted(plan=plan, harvest_project_ids=harvest_project_ids, extract_started_at=extract_started_at)

        def staged(statement, rows: Iterable[tuple]) -> int:
            """COPY ``rows`` in a transaction of their own, taking turns with the rate limiter's statements. The
            rows are made before the turn is taken: the prefetch thread's next request waits for the COPY only."""
            rows = list(rows)
            with turns, conn.transaction(), conn.cursor() as cur:
                return _copy(cur, statement, rows)

        entries_fetched = 0
        read = RecordsRead()
        # All users first (the rate limiter needs the connection between pages; a later record of a user wins).
        users = read.users([u for page in hook.users() for u in page])
        users_fetched = staged(query("staging", "copy_users", **staging.names()), users)
        for harvest_project_id in harvest_project_ids:
            for listing in plan.listings:
                for page in _prefetch(hook.time_entries(project_id=harvest_project_id, **listing.filters())):
                    copied = staged(query("staging", "copy_entries", **staging.names()), read.entries(page))
                    entries_fetched += copied
                    progress.page(copied)
        # A token demoted while we listed would have seen part of the entries, silently: ask again.
        hook.require_administrator()
        harvest = HarvestRequests(**hook.stats.as_dict())
    read.log(project_id)
    log.info(
        "extract (%s): %d time entries and %d Harvest users fetched in %d requests",
        plan.mode,
        entries_fetched,
        users_fetched,
        harvest.requests,
    )
    return Extracted(
        plan=plan,
        harvest_project_ids=harvest_project_ids,
        extract_started_at=extract_started_at,
        harvest_time_at_start=harvest_time_at_start,
        entries_fetched=entries_fetched,
        users_fetched=users_fetched,
        harvest=harvest,
        unidentified_records=read.unidentified,
        texts_altered=read.texts_altered,
        seconds=round(time.monotonic() - started, 3),
    )


@dataclass
class RecordsRead:
    """Staged rows of the records Harvest sent (primetric_harvest.records), and what reading them found."""

    unidentified: int = 0  # time-entry records that name no entry
    texts_altered: int = 0  # time-entry records whose text lost characters PostgreSQL cannot store
    users_unusable: int = 0  # user records without an integer id (no entry can refer to them)
    users_repeated: int = 0  # a user listed twice (paging under changes): the later record counts
    emails_unusable: int = 0  # e-mails that are not text PostgreSQL can store: they match nobody

    def entries(self, page: list) -> Iterator[tuple]:
        for record in page:
            row = records.entry_row(record)
            self.unidentified += row[0] is None
            self.texts_altered += row[-1] is not None
            yield row

    def users(self, listed: Iterable) -> list[tuple]:
        rows: dict[int, tuple] = {}
        for record in listed:
            row = records.user_row(record)
            if row is None:
                self.users_unusable += 1
                continue
            self.users_repeated += row[0] in rows
            self.emails_unusable += row[1] is None and record.get("email") is not None
            rows[row[0]] = row
        return list(rows.values())

    def log(self, project_id: int) -> None:
        if self.unidentified:
            log.warning(
                "project %s: %d time-entry records name no entry (no integer id): kept aside as unreadable_entry, "
                "and this run deletes no work log of an entry Harvest no longer lists (any could be one of them)",
                project_id,
                self.unidentified,
            )
        if self.texts_altered:
            log.warning(
                "project %s: the text of %d time entries held characters PostgreSQL cannot store (U+0000, lone "
                "surrogates): stored without them, each noted in harvest_sync.entry_text_changes",
                project_id,
                self.texts_altered,
            )
        if self.users_unusable or self.emails_unusable or self.users_repeated:
            log.warning(
                "Harvest users: %d records without an integer id (ignored: their entries show as "
                "unknown_harvest_user), %d e-mails that are not storable text (they match nobody), %d listed twice",
                self.users_unusable,
                self.emails_unusable,
                self.users_repeated,
            )


# -- transform -------------------------------------------------------------------------------------
def _rules(project: dict) -> rules_.ProjectRules:
    return rules_.ProjectRules(
        project_id=project["project_id"],
        start_date=project["start_date"],
        end_date=project["end_date"],
        prevent_new_assignment_creation=project["prevent_new_assignment_creation"],
        trim_assignments_to_worklogs=project["trim_assignments_to_worklogs"],
    )


def transform(
    project_id: int, run_id: str, extracted: Extracted, *, primetric_conn_id: str = PRIMETRIC_CONN_ID
) -> Transformed:
    """Apply the business rules to the staged entries, chunk by chunk, into staged work logs."""
    started = time.monotonic()
    plan = extracted.plan
    staging = Staging.for_run(project_id, run_id)
    worklogs = skipped = 0
    write_seconds = 0.0
    if plan.clears_data:
        return Transformed()
    with connect(primetric_conn_id, application_name=connection_name(ConnectionUse.TRANSFORM, project_id)) as conn:
        project = project_rules(conn, project_id)
        rules = _rules(project)
        users = _frame(conn, query("staging", "users", **staging.names()))
        employees = _frame(conn, query("project", "employees"))
        assignments = _frame(conn, query("project", "assignments"), {"project_id": project_id})
        synced_people = _frame(conn, query("project", "synced_people"), {"project_id": project_id})
        recheck = rules_.people_to_recheck(synced_people, users, employees, assignments, rules)
        linked = set(project["harvest_project_ids"])
        conn.execute(query("staging", "truncate_transform_output", **staging.names()))
        with conn.cursor(name="transform_input") as reader, conn.cursor() as writer:
            reader.execute(
                query("staging", "transform_input", **staging.names()),
                {
                    "project_id": project_id,
                    "prune": extracted.prunes,
                    "prune_from": plan.prune_from,
                    "prune_to": plan.prune_to,
                    "recheck_users": recheck,
                    "unreadable_reason": SkipReason.UNREADABLE_ENTRY.value,
                },
            )
            while rows := reader.fetchmany(TRANSFORM_CHUNK_ROWS):
                entries = rules_.entries_frame(rows)
                result = rules_.plan_work_logs(entries, users, employees, assignments, rules, linked)
                writing = time.monotonic()
                worklogs += _copy(
                    writer,
                    query("staging", "copy_worklogs", **staging.names()),
                    _native(result.worklogs, rules_.WORKLOG_COLUMNS),
                )
                skipped += _copy(
                    writer,
                    query("staging", "copy_skipped", **staging.names()),
                    _native(result.skipped, rules_.SKIPPED_COLUMNS),
                )
                write_seconds += time.monotonic() - writing
        writing = time.monotonic()
        conn.commit()
        write_seconds += time.monotonic() - writing
    log.info("transform: %d work logs, %d entries kept aside", worklogs, skipped)
    return Transformed(
        worklogs=worklogs,
        skipped=skipped,
        rechecked_people=len(recheck),
        write_seconds=round(write_seconds, 3),  # the staging write: part of the load's cost
        seconds=round(time.monotonic() - started, 3),
    )


# -- load ----------------------------------------------------------------------------------------
class SupersededRun(RuntimeError):
    """A run that fetched earlier must not overwrite what a later run already loaded."""


def load(
    project_id: int,
    run_id: str,
    extracted: Extracted,
    *,
    account_id: str,
    primetric_conn_id: str = PRIMETRIC_CONN_ID,
) -> Loaded:
    """Apply the staged work logs to the Primetric tables in ONE transaction."""
    started = time.monotonic()
    plan = extracted.plan
    staging = Staging.for_run(project_id, run_id)
    names = staging.names()
    p = {"project_id": project_id}
    inserted = updated = deleted = 0
    name = connection_name(ConnectionUse.LOAD, project_id)
    with connect(primetric_conn_id, application_name=name) as conn, conn.transaction():
        conn.execute(query("load", "lock_project"), p)
        if not one_row(conn.execute(query("staging", "exists"), {"entries": staging.entries}))[0]:
            raise RuntimeError(f"staging tables of run {run_id!r} are gone: clear the run's extract task to re-fetch")
        row = conn.execute(query("load", "last_extract_started_at"), p).fetchone()
        last_loaded = row[0] if row else None
        if superseded(extracted.extract_started_at, last_loaded):
            raise SupersededRun(
                f"another sync of project {project_id} fetched later ({last_loaded:%Y-%m-%d %H:%M:%S}) and loaded "
                f"while this run ({run_id}) was under way; nothing was changed: trigger this run again"
            )
        kept = 0
        if plan.clears_data:
            deleted += conn.execute(query("load", "clear_synced_worklogs"), p).rowcount
            conn.execute(query("load", "clear_skipped"), p)
            conn.execute(query("load", "clear_text_changes"), p)
        else:
            project = project_rules(conn, project_id)
            removing = {**p, "removing_reasons": [r.value for r in SkipReason if r.removes_work_log]}
            conn.execute(query("load", "upsert_harvest_users", **names), {"account_id": account_id})
            conn.execute(query("load", "create_sync_assignments", **names), p)
            inserted, updated = one_row(conn.execute(query("load", "upsert_worklogs", **names), p))
            if extracted.prunes:
                deleted += conn.execute(
                    query("load", "prune_worklogs", **names),
                    {**p, "prune_from": plan.prune_from, "prune_to": plan.prune_to},
                ).rowcount
            deleted += conn.execute(query("load", "delete_worklogs_now_skipped", **names), removing).rowcount
            (kept,) = one_row(conn.execute(query("load", "previous_versions_kept", **names), removing))
            conn.execute(query("load", "drop_unskipped", **names), p)
            conn.execute(query("load", "upsert_skipped", **names), p)
            conn.execute(query("load", "unskip_landed", **names), p)
            conn.execute(query("load", "drop_text_changes", **names), p)
            conn.execute(query("load", "upsert_text_changes", **names), p)
            _set_assignment_spans(conn, project)
        conn.execute(query("load", "delete_empty_sync_assignments"), p)
        high_water_mark = None
        if plan.advances_mark:
            (newest_updated_at,) = one_row(conn.execute(query("load", "fetched_high_water_mark", **names)))
            high_water_mark = new_high_water_mark(plan, extracted.harvest_time_at_start, newest_updated_at)
        loaded = Loaded(
            inserted=inserted,
            updated=updated,
            deleted=deleted,
            previous_versions_kept=kept,
            seconds=round(time.monotonic() - started, 3),
        )
        conn.execute(
            query("load", "save_state"),
            {
                **p,
                "high_water_mark": high_water_mark,
                "run_id": run_id,
                "summary": json.dumps({"mode": str(plan.mode), **to_xcom(loaded)}),
                "clear": plan.clears_data,
                "full_reconcile": plan.full_reconcile and extracted.prunes,
                "extract_started_at": extracted.extract_started_at,
            },
        )
        if plan.new_sync_since is not None:
            conn.execute(query("load", "set_sync_since"), {**p, "since": plan.new_sync_since})
        conn.execute(query("staging", "drop", **names))
        conn.execute(query("staging", "unregister"), {"entries": staging.entries})
    log.info("load (%s): %d work logs inserted, %d updated, %d deleted", plan.mode, inserted, updated, deleted)
    if kept:
        log.warning(
            "project %s: %d work logs keep their last readable version: Harvest's newer version of each was kept "
            "aside (harvest_sync.skipped_entries says why)",
            project_id,
            kept,
        )
    return loaded


def _set_assignment_spans(conn: psycopg.Connection, project: dict) -> None:
    rules = _rules(project)
    spans = rules_.assignment_spans(
        _frame(conn, query("load", "sync_assignment_work_spans"), {"project_id": project["project_id"]}), rules
    )
    if spans.empty:
        return
    conn.execute(
        query("load", "set_assignment_spans"),
        {
            "assignment_id": spans["assignment_id"].tolist(),
            "start_date": spans["start_date"].tolist(),
            "end_date": [None if pd.isna(d) else d for d in spans["end_date"]],
        },
    )


# -- report --------------------------------------------------------------------------------------
def describe_skipped(by_reason: dict[str, int]) -> str:
    """E.g. "3 entries: 2 invalid_hours (hours missing, not a number, ...), 1 ..." or "none"."""
    if not by_reason:
        return "none"
    parts = [f"{n} {reason} ({SkipReason.describe(reason)})" for reason, n in sorted(by_reason.items())]
    return f"{sum(by_reason.values())} entries: " + ", ".join(parts)


def report(project_id: int, *, account_id: str, primetric_conn_id: str = PRIMETRIC_CONN_ID) -> Reported:
    """Replace the project's missing-teammate report and say who is missing, readably."""
    started = time.monotonic()
    name = connection_name(ConnectionUse.REPORT, project_id)
    with connect(primetric_conn_id, application_name=name) as conn, conn.transaction():
        p = {"project_id": project_id}
        skipped = _frame(conn, query("load", "missing_teammate_entries"), p)
        users = _frame(conn, query("load", "known_harvest_users"), {"account_id": account_id})
        missing = rules_.summarize_missing_teammates(skipped, users)
        conn.execute(query("load", "clear_missing_teammates"), p)
        if not missing.empty:
            conn.execute(
                query("load", "insert_missing_teammates"),
                {
                    **p,
                    **{c: [None if pd.isna(v) else v for v in missing[c]] for c in missing.columns},
                },
            )
        by_reason: dict[str, int] = dict(conn.execute(query("load", "skipped_by_reason"), p).fetchall())
    for row in missing.itertuples():
        log.warning(
            "Missing teammate in project %s: %s <%s> (Harvest user %s) — %s: %d entries, %s h, %s to %s",
            project_id,
            row.name,
            row.email,
            row.harvest_user_id,
            row.reason,
            row.entries,
            row.hours,
            row.first_work_date,
            row.last_work_date,
        )
    log.info(
        "Missing teammates of project %s:\n%s",
        project_id,
        missing.to_string(index=False) if not missing.empty else "(none)",
    )
    log.log(
        logging.WARNING if by_reason else logging.INFO,
        "Harvest entries of project %s kept aside, not synced: %s",
        project_id,
        describe_skipped(by_reason),
    )
    return Reported(
        missing_teammates=len(missing),
        skipped_by_reason=by_reason,
        missing=tuple(
            MissingTeammate(
                harvest_user_id=int(row.harvest_user_id),
                email=None if pd.isna(row.email) else row.email,
                name=None if pd.isna(row.name) else row.name,
                reason=row.reason,
                entries=int(row.entries),
                hours=str(row.hours),
                first_work_date=None if pd.isna(row.first_work_date) else row.first_work_date,
                last_work_date=None if pd.isna(row.last_work_date) else row.last_work_date,
            )
            for row in cast("Iterable[Any]", missing.itertuples())  # a frame's rows are not typed by column
        ),
        seconds=round(time.monotonic() - started, 3),
    )

"""One daily DAG per linked Primetric project: extract → transform → load → report."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, Param, get_parsing_context, task
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from primetric_harvest import tasks
from primetric_harvest.names import (
    DAG_TAGS,
    HARVEST_CONN_ID,
    HARVEST_POOL,
    PRIMETRIC_CONN_ID,
    dag_id,
    dag_shard,
    worklogs_asset,
    worklogs_changed_alias,
)
from primetric_harvest.notify import FailureAlert, freshness_alert
from primetric_harvest.plan import CLEAR_DATA, CONFIRM_PROJECT_NAME, SINCE
from primetric_harvest.registry import LinkedProject, dag_shards, linked_projects
from primetric_harvest.results import Extracted, Loaded, Transformed, from_xcom, to_xcom
from primetric_harvest.tasks import SyncRun

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=2),
    "retry_exponential_backoff": True,
}

FIRST_START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # projects linked before the page armed their schedule
DAILY = "daily at 00:00 UTC (the project's *Daily sync* setting on the Harvest sync page)."
ON_DEMAND = "none: runs only when triggered (*Daily sync* is off on the Harvest sync page)."
FRESH = (
    "a daily run whose work logs are not loaded {hours} h after its scheduled time is reported late on the "
    "failure alerts' channel (`primetric.harvest_settings.freshness_deadline_hours`)."
)

DOC = """\
### Harvest → Primetric work logs: {name} (project {project_id})

Copies the Harvest time entries of Harvest project(s) **{harvest}** into Primetric work logs of
project **{name}**, matching people by e-mail. People who log time in Harvest but cannot get work logs
(no Primetric manager or employee with their e-mail; not assigned while the project prevents new
assignments) are the project's *missing teammates*: listed on the Harvest sync page, in
`primetric.missing_teammates` and in the `report` task's log.

**Schedule:** {schedule}

**Freshness:** {freshness}

**What each kind of run does** (per linked Harvest project):

- *Daily run* (scheduled): lists every entry of the last `reconcile_window_days` (60 by default) of
  spent_dates in full (the *reconcile window*), plus older entries updated since the high-water mark;
  upserts what changed and deletes the synced work logs in the window that Harvest no longer lists.
- *Weekly full reconcile* (a daily run, every `full_reconcile_every_days`, 7 by default): lists every
  entry from `sync_since`; anything Harvest no longer lists goes.
- *First run of the project*: every entry from `sync_since` (or the project's start date).
- *Reset and sync* (trigger with `{{"since": "YYYY-MM-DD"}}`, or the page's "Save, reset and sync all work
  logs"): every entry from `since` replaces the project's synced work logs, in one transaction; `since`
  becomes `sync_since`.
- *Backfill* over a date range: each run replaces exactly the spent_dates of its data interval.
- *Clear data* (trigger with `{{"clear_data": true, "confirm_project_name": "{name}"}}`): fetches nothing;
  deletes the project's synced work logs, the assignments the sync created that hold none, the entries
  kept aside and the high-water mark.

Hand-made work logs and assignments are never changed. The work logs of a Harvest project unlinked since
stay until *Clear data*.

**Trigger with config** (only these keys, spelled exactly; anything else is refused)
- `since` (YYYY-MM-DD, up to today): *reset and sync* — replaces this project's synced work logs with
  every Harvest entry from that date on, and makes it the project's sync start.
- `clear_data` (true) with `confirm_project_name` = **{name}**: deletes this project's synced work
  logs, the assignments the sync created that hold none, the entries kept aside and the sync's
  high-water mark. Hand-made work logs and assignments are never touched. The next daily run syncs
  everything again from the sync start, unless the project's sync is switched off
  (`primetric.harvest_settings.enabled`) or the DAG paused.
- `since` and `clear_data` cannot be combined, and a backfill takes neither (it replaces exactly
  the dates of its runs).

Tasks: `extract` (Harvest → staging, in pool `{pool}`), `transform` (e-mail matching, assignment
rules), `load` (one transaction), `report` (missing teammates). Connections: `{harvest_conn}`,
`{primetric_conn}`.
"""


def _literal(text: str) -> str:
    """``text`` as a regular expression matching itself, in the syntax Python and ECMAScript share."""
    return "".join("\\" + c if c in "\\^$.|?*+()[]{}/" else c for c in text)


def trigger_form(project_name: str) -> dict[str, Param]:
    """The trigger form (and the REST API's conf): what Airflow's Param JSON schemas can refuse before the run is
    created. Each Param is checked on its own, so "since and clear_data together", unknown keys and "since after
    Harvest's today" are refused by the run itself, at once, in its extract (plan.parse_sync_request)."""
    return {
        SINCE: Param(
            None,
            type=["null", "string"],
            format="date",
            title="Reset and sync from (YYYY-MM-DD)",
            description="Optional, up to today. Replaces this project's synced work logs with Harvest's entries "
            "from this date on, and makes it the project's sync start. Not together with Clear data.",
        ),
        CLEAR_DATA: Param(
            False,
            type="boolean",
            title="Clear data",
            description="Deletes this project's synced work logs, the assignments the sync created for them, the "
            "entries kept aside and the sync's high-water mark; hand-made rows stay. The next daily run syncs "
            "everything again, unless the project's sync is switched off. Needs the project's name below.",
        ),
        CONFIRM_PROJECT_NAME: Param(
            None,
            # Empty, or the project's name (a misspelt confirmation is refused before the run exists). A pattern,
            # not an enum: the form would offer an enum's values in a list, and the name must be typed.
            type=["null", "string"],
            pattern=f"^(\\s*{_literal(project_name.strip())}\\s*)?$",
            title=f"Confirm Clear data: type {project_name}",
            description=f"Only with Clear data: type the project's name, {project_name}, to confirm the deletion.",
        ),
    }


def freshness_deadline(project: LinkedProject) -> DeadlineAlert | None:
    """The daily run's deadline: its work logs loaded ``freshness_deadline_hours`` after the scheduled time, else
    the failure alerts' channel says the project is late (notify.freshness_alert, in the triggerer). A run with
    a logical date gets the deadline; the callback alerts for scheduled runs only. Runs triggered without a
    logical date (Sync now, the REST API's trigger with ``"logical_date": null``) get none. No schedule, none."""
    if not project.daily_schedule:
        return None
    hours = project.freshness_deadline_hours
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=dt.timedelta(hours=hours),
        callback=AsyncCallback(
            freshness_alert,
            kwargs={"project_id": project.project_id, "project_name": project.name, "hours": hours},
        ),
        name=f"work logs of {project.name} loaded within {hours:g} h",
    )


class SyncDAG(DAG):
    """A project's DAG. ``dag.test()`` (and ``airflow dags test``) run it without its freshness deadline: Airflow
    3.3.2's dag.test() fails on any DAG with Deadline Alerts when the run ends (it looks the alerts up by the
    database ids only the dag-processor's serialization gives them: "'dict' object has no attribute 'hex'"), and a
    test run is not a scheduled daily run anyway."""

    def test(self, *args: Any, **kwargs: Any) -> Any:
        deadline, self.deadline = self.deadline, None
        try:
            return super().test(*args, **kwargs)
        finally:
            self.deadline = deadline


def build_dag(project: LinkedProject) -> DAG:
    project_id = project.project_id
    with SyncDAG(
        dag_id=dag_id(project_id),
        description=f"Harvest time entries → Primetric work logs of {project.name}",
        # The daily schedule is the project's setting (Harvest sync page): Airflow's pause stays the operator's
        # switch. Its start is when the schedule was (re)armed, so appearing or being unpaused starts no missed
        # daily run.
        schedule="@daily" if project.daily_schedule else None,
        start_date=project.daily_schedule_since or FIRST_START,
        catchup=False,
        max_active_runs=1,
        tags=[*DAG_TAGS, f"project:{project_id}"],
        default_args={**DEFAULT_ARGS, "on_failure_callback": FailureAlert(project_id, project.name)},
        deadline=freshness_deadline(project),
        doc_md=DOC.format(
            name=project.name,
            project_id=project_id,
            pool=HARVEST_POOL,
            harvest_conn=HARVEST_CONN_ID,
            primetric_conn=PRIMETRIC_CONN_ID,
            harvest=", ".join(map(str, project.harvest_project_ids)) or "none yet",
            schedule=DAILY if project.daily_schedule else ON_DEMAND,
            freshness=FRESH.format(hours=f"{project.freshness_deadline_hours:g}")
            if project.daily_schedule
            else "no deadline (no daily schedule).",
        ),
        params=trigger_form(project.name),
    ) as dag:
        # Each task is one call into tasks.py (imported when the task runs: the parse stays light); the typed
        # results travel as XCom (results.to_xcom / from_xcom).
        def run(context) -> SyncRun:
            return SyncRun.from_context(project_id, project.name, context)

        @task(pool=HARVEST_POOL)
        def extract(**context) -> dict:
            return to_xcom(tasks.extract(run(context)))

        @task
        def transform(extracted: dict, **context) -> dict:
            return to_xcom(tasks.transform(run(context), from_xcom(Extracted, extracted)))

        # The asset event goes through an alias: emitted only when the run changed work logs (a re-run, or a
        # backfill of days without changes, wakes no DAG scheduled on the project's work logs).
        @task(outlets=[worklogs_changed_alias(project_id)])
        def load(extracted: dict, transformed: dict, **context) -> dict:
            loaded = tasks.load(run(context), from_xcom(Extracted, extracted))
            if loaded.changed:
                context["outlet_events"][worklogs_changed_alias(project_id)].add(
                    worklogs_asset(project_id), extra={"run_id": context["run_id"], **to_xcom(loaded)}
                )
            return to_xcom(loaded)

        @task
        def report(extracted: dict, transformed: dict, loaded: dict, **context) -> dict:
            reported, summary = tasks.report(
                run(context),
                from_xcom(Extracted, extracted),
                from_xcom(Transformed, transformed),
                from_xcom(Loaded, loaded),
                context,
            )
            context["ti"].xcom_push(key="summary", value=to_xcom(summary))
            return to_xcom(reported)

        # TaskFlow: at definition, an upstream task's XComArg stands for the dict it returns (Airflow's types
        # cannot say so).
        extracted = extract()
        transformed = transform(extracted)  # type: ignore[arg-type]
        report(extracted, transformed, load(extracted, transformed))  # type: ignore[arg-type]
    return dag


def build_linked_project_dags(shard: int = 0) -> dict[str, DAG]:
    """Every linked project's DAG of DAG file ``shard`` (all of them unless PRIMETRIC_DAG_SHARDS splits them);
    in a task process only the DAG of its task.

    A task process parses the DAG file again before its task runs, and tells which DAG it wants (Airflow's
    parsing context): building the other N−1 DAGs there cost ~3 ms each per task (bench parse-N, README
    "Sizing"), i.e. seconds per task at 1,000 projects. The dag-processor has no context and builds them all.
    """
    shards = dag_shards()
    if shard >= shards:  # a shard file beyond the setting holds nothing (and asks the database nothing)
        return {}
    wanted = get_parsing_context().dag_id
    projects = [p for p in linked_projects() if dag_shard(p.project_id, shards) == shard]
    if wanted is not None:
        projects = [p for p in projects if dag_id(p.project_id) == wanted]
    return {dag.dag_id: dag for dag in map(build_dag, projects)}

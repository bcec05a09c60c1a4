"""One daily DAG per linked Primetric project: extract → transform → load → report."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, task

from primetric_harvest.names import (
    DAG_TAGS,
    HARVEST_CONN_ID,
    HARVEST_POOL,
    PRIMETRIC_CONN_ID,
    dag_id,
    worklogs_asset,
)
from primetric_harvest.notify import FailureAlert
from primetric_harvest.registry import LinkedProject, linked_projects

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=2),
    "retry_exponential_backoff": True,
}

DOC = """\
### Harvest → Primetric work logs: {name} (project {project_id})

Copies the Harvest time entries of Harvest project(s) **{harvest}** into Primetric work logs of
project **{name}**, matching people by e-mail. Runs daily, incrementally (entries updated since the
last run). People Harvest knows but Primetric does not are listed in `primetric.missing_teammates`
and named in the `report` task's log.

**Trigger with config**
- `since` (YYYY-MM-DD): *reset and sync* — replaces this project's synced work logs with every
  Harvest entry from that date on, and makes it the project's sync start.
- `clear_data` (true): deletes this project's synced work logs and stops. Hand-made work logs and
  assignments are never touched.

Tasks: `extract` (Harvest → staging, in pool `{pool}`), `transform` (e-mail matching, assignment
rules), `load` (one transaction), `report` (missing teammates). Connections: `{harvest_conn}`,
`{primetric_conn}`.
"""


def build_dag(project: LinkedProject) -> DAG:
    project_id = project.project_id
    with DAG(
        dag_id=dag_id(project_id),
        description=f"Harvest time entries → Primetric work logs of {project.name}",
        schedule="@daily",
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        tags=[*DAG_TAGS, f"project:{project_id}"],
        default_args={**DEFAULT_ARGS, "on_failure_callback": FailureAlert(project_id, project.name)},
        doc_md=DOC.format(
            name=project.name,
            project_id=project_id,
            pool=HARVEST_POOL,
            harvest_conn=HARVEST_CONN_ID,
            primetric_conn=PRIMETRIC_CONN_ID,
            harvest=", ".join(map(str, project.harvest_project_ids)) or "none yet",
        ),
        params={
            "since": Param(
                None,
                type=["null", "string"],
                format="date",
                title="Reset and sync from (YYYY-MM-DD)",
                description="Optional. YYYY-MM-DD: replace this project's work logs with Harvest's "
                "entries from this date on.",
            ),
            "clear_data": Param(
                False,
                type="boolean",
                title="Clear data",
                description="Delete this project's synced work logs and stop.",
            ),
        },
    ) as dag:

        @task(pool=HARVEST_POOL)
        def extract(**context) -> dict:
            from airflow.sdk.exceptions import AirflowFailException

            from primetric_harvest import pipeline
            from primetric_harvest.harvest_api import HarvestAccessError
            from primetric_harvest.plan import InvalidSyncRequest, backfill_window

            window = backfill_window(
                context["dag_run"].run_type, context.get("data_interval_start"), context.get("data_interval_end")
            )
            try:
                return pipeline.extract(
                    project_id, context["run_id"], context["params"], backfill=window, harvest_conn_id=HARVEST_CONN_ID
                )
            except (HarvestAccessError, InvalidSyncRequest) as exc:
                # A refused token or a bad request does not heal by itself: fail now, no retries.
                raise AirflowFailException(str(exc)) from exc

        @task
        def transform(extracted: dict, **context) -> dict:
            from primetric_harvest import pipeline

            return pipeline.transform(project_id, context["run_id"], extracted)

        @task(outlets=[worklogs_asset(project_id)])
        def load(extracted: dict, transformed: dict, **context) -> dict:
            from primetric_harvest import pipeline

            loaded = pipeline.load(project_id, context["run_id"], extracted, account_id=_account_id())
            context["outlet_events"][worklogs_asset(project_id)].extra = {"run_id": context["run_id"], **loaded}
            return loaded

        @task
        def report(extracted: dict, transformed: dict, loaded: dict, **context) -> dict:
            from primetric_harvest import notify, pipeline

            reported = pipeline.report(project_id, account_id=_account_id())
            notify.finish_run(project_id, project.name, context, extracted, transformed, loaded, reported)
            return reported

        extracted = extract()
        transformed = transform(extracted)
        report(extracted, transformed, load(extracted, transformed))
    return dag


def _account_id() -> str:
    from airflow.sdk import BaseHook

    from primetric_harvest.harvest_api import harvest_account_id

    return harvest_account_id(BaseHook.get_connection(HARVEST_CONN_ID), HARVEST_CONN_ID)


def build_linked_project_dags() -> dict[str, DAG]:
    return {dag.dag_id: dag for dag in map(build_dag, linked_projects())}

"""The body of each task of a project's DAG, in one place: the DAG's tasks call these (dag_factory.py), and so
do the tests (tests/fixtures.py `World.sync`) and the benchmark, so the glue they run is the DAG's own.

The glue is: which run this is (a backfill replaces exactly its dates), where the Harvest account id comes
from, which failures may not be retried, and passing each step's typed result on as XCom.

The DAG file imports this module at parse time: pandas and the pipeline are imported when a task runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from primetric_harvest import notify
from primetric_harvest.harvest_api import HarvestAccessError, harvest_account_id
from primetric_harvest.names import HARVEST_CONN_ID, PRIMETRIC_CONN_ID
from primetric_harvest.plan import InvalidSyncRequest, backfill_window
from primetric_harvest.results import Extracted, Loaded, Reported, RunSummary, Transformed, from_xcom, to_xcom


@dataclass(frozen=True)
class SyncRun:
    """One run of one project's sync, as the tasks see it."""

    project_id: int
    project_name: str
    run_id: str
    params: Mapping[str, Any] = field(default_factory=dict)  # the trigger form / conf (since, clear_data)
    backfill: tuple[dt.date, dt.date] | None = None  # a backfill run's spent_dates (inclusive)
    harvest_conn_id: str = HARVEST_CONN_ID
    primetric_conn_id: str = PRIMETRIC_CONN_ID

    @classmethod
    def from_context(cls, project_id: int, project_name: str, context: Mapping[str, Any]) -> SyncRun:
        """The run of an Airflow task's context."""
        window = backfill_window(
            context["dag_run"].run_type, context.get("data_interval_start"), context.get("data_interval_end")
        )
        return cls(project_id, project_name, context["run_id"], dict(context.get("params") or {}), window)

    def account_id(self) -> str:
        from airflow.sdk import BaseHook

        return harvest_account_id(BaseHook.get_connection(self.harvest_conn_id), self.harvest_conn_id)


def extract(run: SyncRun) -> Extracted:
    from airflow.sdk.exceptions import AirflowFailException

    from primetric_harvest import pipeline

    try:
        return pipeline.extract(
            run.project_id,
            run.run_id,
            run.params,
            backfill=run.backfill,
            harvest_conn_id=run.harvest_conn_id,
            primetric_conn_id=run.primetric_conn_id,
        )
    except AirflowFailException:
        raise
    except (HarvestAccessError, InvalidSyncRequest) as exc:
        # A refused token or a bad request does not heal by itself: fail now, no retries.
        raise AirflowFailException(str(exc)) from exc


def transform(run: SyncRun, extracted: Extracted) -> Transformed:
    from primetric_harvest import pipeline

    return pipeline.transform(run.project_id, run.run_id, extracted, primetric_conn_id=run.primetric_conn_id)


def load(run: SyncRun, extracted: Extracted) -> Loaded:
    from primetric_harvest import pipeline

    return pipeline.load(
        run.project_id,
        run.run_id,
        extracted,
        account_id=run.account_id(),
        primetric_conn_id=run.primetric_conn_id,
    )


def report(
    run: SyncRun,
    extracted: Extracted,
    transformed: Transformed,
    loaded: Loaded,
    context: Mapping[str, Any] | None = None,
) -> tuple[Reported, RunSummary]:
    """The missing-teammate report, the day's notice and the run summary."""
    from primetric_harvest import pipeline

    reported = pipeline.report(run.project_id, account_id=run.account_id(), primetric_conn_id=run.primetric_conn_id)
    summary = notify.finish_run(
        run.project_id, run.project_name, extracted, transformed, loaded, reported, run_id=run.run_id, context=context
    )
    return reported, summary


@dataclass(frozen=True)
class RunOutcome:
    extracted: Extracted
    transformed: Transformed
    loaded: Loaded
    reported: Reported
    summary: RunSummary


def run_steps(run: SyncRun) -> RunOutcome:
    """The four tasks in order, in this process, each result passed on through an XCom round trip as Airflow
    passes it between task processes (for tests and the benchmark; the DAG runs each step in its own task)."""

    def handed_on(value: Any) -> Any:
        return from_xcom(type(value), to_xcom(value))

    extracted = handed_on(extract(run))
    transformed = handed_on(transform(run, extracted))
    loaded = handed_on(load(run, extracted))
    reported, summary = report(run, extracted, transformed, loaded)
    return RunOutcome(extracted, transformed, loaded, reported, summary)

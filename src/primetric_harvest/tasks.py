"""The body of each task of a project's DAG, in one place: the DAG's tasks call these (dag_factory.py), and so
do the tests (tests/fixtures.py `World.sync`) and the benchmark, so the glue they run is the DAG's own.

The glue is: which run this is and what it was asked (a backfill replaces exactly its dates), where the Harvest
account id comes from, which failures may not be retried (:func:`failing_at_once`, the one place), and passing
each step's typed result on as XCom.

The DAG file imports this module at parse time: pandas and the pipeline are imported when a task runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from primetric_harvest import notify
from primetric_harvest.harvest_api import HarvestAccessError, harvest_account_id
from primetric_harvest.names import HARVEST_CONN_ID, PRIMETRIC_CONN_ID
from primetric_harvest.plan import REQUEST_KEYS, InvalidSyncRequest, backfill_window
from primetric_harvest.results import Extracted, Loaded, Reported, RunSummary, Transformed, from_xcom, to_xcom


@dataclass(frozen=True)
class SyncRun:
    """One run of one project's sync, as the tasks see it."""

    project_id: int
    project_name: str
    run_id: str
    # What the run was asked (since, clear_data, confirm_project_name): the dag run's conf over the trigger form's
    # values; checked by plan.parse_sync_request in the extract, unknown keys included.
    params: Mapping[str, Any] = field(default_factory=dict)
    backfill: tuple[dt.date, dt.date] | None = None  # a backfill run's spent_dates (inclusive)
    harvest_conn_id: str = HARVEST_CONN_ID
    primetric_conn_id: str = PRIMETRIC_CONN_ID
    backfill_run: bool | None = None  # an Airflow backfill run (None: one when ``backfill`` is given)

    @classmethod
    def from_context(cls, project_id: int, project_name: str, context: Mapping[str, Any]) -> SyncRun:
        """The run of an Airflow task's context."""
        dag_run = context["dag_run"]
        window = backfill_window(dag_run.run_type, context.get("data_interval_start"), context.get("data_interval_end"))
        return cls(
            project_id,
            project_name,
            context["run_id"],
            asked(context.get("params") or {}, getattr(dag_run, "conf", None) or {}),
            window,
            backfill_run=str(getattr(dag_run.run_type, "value", dag_run.run_type)) == "backfill",
        )

    def account_id(self) -> str:
        from airflow.sdk import BaseHook

        return harvest_account_id(BaseHook.get_connection(self.harvest_conn_id), self.harvest_conn_id)


def asked(params: Mapping[str, Any], conf: Mapping[str, Any]) -> dict[str, Any]:
    """What a run was asked: the dag run's own conf (with any key someone typed, ``Since`` included) over the values
    of the DAG's declared params (``params`` holds every declared param, with its default when not given)."""
    return {**{key: params[key] for key in REQUEST_KEYS if key in params}, **conf}


# -- failures that retrying cannot fix ------------------------------------------------------------------------
def cannot_heal(exc: BaseException) -> bool:
    """A failure another try would meet again: a refused token, a bad parameter, a project not linked, a run
    superseded by a later one, or the database refusing our own statement (its data or a constraint: psycopg's
    DataError, IntegrityError, ProgrammingError, NotSupportedError). Network faults, Harvest's 5xx and a
    database restart (OperationalError) can heal: Airflow retries those."""
    import psycopg

    from primetric_harvest.pipeline import ProjectNotLinked, SupersededRun

    refused = (
        HarvestAccessError,
        InvalidSyncRequest,
        ProjectNotLinked,
        SupersededRun,
        psycopg.DataError,
        psycopg.IntegrityError,
        psycopg.ProgrammingError,
        psycopg.NotSupportedError,
    )
    return isinstance(exc, refused)


def failure_message(exc: BaseException) -> str:
    import psycopg

    if isinstance(exc, psycopg.Error):
        state = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
        return (
            f"the Primetric database refused a statement of the sync{state}: {type(exc).__name__}: {exc}. "
            "Retrying cannot fix this: nothing was changed; tell the sync's maintainers (the log has the statement)"
        )
    return str(exc)


@contextlib.contextmanager
def failing_at_once() -> Iterator[None]:
    """Around each task's work: a failure that cannot heal fails the task now (AirflowFailException: no retries,
    no minutes of backoff), with its message; any other propagates and Airflow retries it."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except AirflowFailException:
        raise
    except Exception as exc:
        if cannot_heal(exc):
            raise AirflowFailException(failure_message(exc)) from exc
        raise


def extract(run: SyncRun) -> Extracted:
    from primetric_harvest import pipeline

    with failing_at_once():
        return pipeline.extract(
            run.project_id,
            run.run_id,
            run.params,
            backfill=run.backfill,
            backfill_run=run.backfill_run,
            harvest_conn_id=run.harvest_conn_id,
            primetric_conn_id=run.primetric_conn_id,
        )


def transform(run: SyncRun, extracted: Extracted) -> Transformed:
    from primetric_harvest import pipeline

    with failing_at_once():
        return pipeline.transform(run.project_id, run.run_id, extracted, primetric_conn_id=run.primetric_conn_id)


def load(run: SyncRun, extracted: Extracted) -> Loaded:
    from primetric_harvest import pipeline

    with failing_at_once():
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

    with failing_at_once():
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

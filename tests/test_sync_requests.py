"""What a run may be asked, checked by the run itself whatever started it (issue 10), and which failures fail a task
at once: through the DAG's task code (World.sync) and through real Airflow (dag.test()), against the simulator.

- `since` after Harvest's today (its Date header), `since` with `clear_data`, unknown or miscased keys, and
  `since`/`clear_data` in a backfill are refused before anything is touched, at once (no retries).
- `clear_data` needs `confirm_project_name` repeating the project's name; the trigger form's schema refuses a
  misspelt name before the run exists.
- A failure retrying cannot fix (the database refusing our own statement, a bad parameter) fails the task at once;
  one that can heal (Harvest's 5xx) is retried and the run succeeds.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from types import SimpleNamespace

import psycopg
import pytest

from primetric_harvest.plan import InvalidSyncRequest
from primetric_harvest.tasks import SyncRun, cannot_heal
from tests.fixtures import DagParser, fails_at_once

D = dt.date
dagbag = DagParser()


@pytest.fixture
def apollo(apollo):
    """The shared Apollo (tests/fixtures.py), with two of Bobby's work logs in Harvest."""
    apollo.entry("bobby", 701, "2026-02-01", 2.5)
    apollo.entry("bobby", 701, "2026-02-02", 1)
    return apollo


def untouched(world, before: dict) -> None:
    """Every table as it was, and no staging made."""
    assert world.snapshot() == before
    assert world.sql("SELECT count(*) FROM harvest_sync.staging_runs") == [(0,)]
    assert world.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'harvest_staging'") == [(0,)]


# -- the run itself refuses, whatever started it ----------------------------------------------------------------
@pytest.mark.db
def test_a_since_after_harvests_today_is_refused_before_anything_is_touched(apollo):
    """Harvest's today, not ours: the simulator's clock says 2026-03-01 while this machine's is later."""
    apollo.sync(7)
    before = apollo.snapshot()
    apollo.sim.state.now = dt.datetime(2026, 3, 1, 23, 59, tzinfo=dt.UTC)
    apollo.sim.reset_stats()
    with fails_at_once(InvalidSyncRequest, match=r"since=2026-03-02 is after today \(2026-03-01\): a reset from a"):
        apollo.sync(7, since="2026-03-02")
    untouched(apollo, before)
    assert apollo.sim.stats["by_path"] == {"/v2/users/me": 1}  # Harvest's clock, asked once; nothing listed
    result = apollo.sync(7, since="2026-03-01")  # today itself is fine
    assert result.extracted.plan.mode == "reset"


@pytest.mark.db
@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"since": "2026-01-01", "clear_data": True, "confirm_project_name": "Apollo"}, "cannot be combined"),
        ({"Since": "2026-01-01"}, "unknown parameter 'Since': the accepted parameters are since, clear_data, "),
        ({"clear_data": True}, "repeat the project's name exactly in confirm_project_name"),
        ({"clear_data": True, "confirm_project_name": "Apolo"}, "(got 'Apolo')"),
        ({"clear_data": "yes", "confirm_project_name": "Apollo"}, "clear_data='yes' is not true or false"),
        ({"since": "2099-01-01"}, "since=2099-01-01 is after today"),
    ],
)
def test_a_request_the_run_cannot_take_touches_nothing(apollo, conf, message):
    apollo.sync(7)
    before = apollo.snapshot()
    with fails_at_once(InvalidSyncRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        apollo.sync(7, **conf)
    untouched(apollo, before)


@pytest.mark.db
def test_clear_data_with_the_project_name_clears(apollo):
    apollo.sync(7)
    assert len(apollo.worklogs(7)) == 2
    apollo.sim.reset_stats()
    apollo.sync(7, clear_data=True, confirm_project_name=" Apollo ")
    assert apollo.worklogs(7) == []
    assert apollo.sim.stats["requests"] == 0  # a clear asks nothing of Harvest


@pytest.mark.db
@pytest.mark.parametrize(
    "conf", [{"since": "2026-01-01"}, {"clear_data": True, "confirm_project_name": "Apollo"}], ids=["since", "clear"]
)
def test_a_backfill_replaces_exactly_its_dates_whatever_its_conf_says(apollo, conf):
    apollo.sync(7)
    before = apollo.snapshot()
    with fails_at_once(InvalidSyncRequest, match="a backfill replaces exactly the dates of its own runs"):
        apollo.sync(7, backfill=(D(2026, 2, 1), D(2026, 2, 1)), **conf)
    untouched(apollo, before)
    apollo.sync(7, backfill=(D(2026, 2, 1), D(2026, 2, 1)))  # without them it runs


@pytest.mark.unit
def test_a_run_is_asked_what_its_dag_run_conf_says_and_a_backfill_is_told_by_its_run_type():
    """Unknown keys come from the dag run's conf (params hold every declared param, with its default)."""
    params = {"since": None, "clear_data": False, "confirm_project_name": None}
    start = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    for run_type, backfill in (("backfill", True), ("manual", False), ("scheduled", False)):
        dag_run = SimpleNamespace(run_type=run_type, conf={"Since": "2026-01-01"})
        context = {"dag_run": dag_run, "run_id": "r", "params": params, "data_interval_start": start,
                   "data_interval_end": start + dt.timedelta(days=1)}  # fmt: skip
        run = SyncRun.from_context(7, "Apollo", context)
        assert run.params == {**params, "Since": "2026-01-01"}
        assert run.backfill_run is backfill
        assert (run.backfill is not None) is backfill


# -- failures that cannot heal fail at once; the others are retried ------------------------------------------------
@pytest.mark.unit
def test_which_failures_can_heal():
    assert cannot_heal(psycopg.errors.CheckViolation()) and cannot_heal(psycopg.errors.NumericValueOutOfRange())
    assert cannot_heal(psycopg.errors.UndefinedTable()) and cannot_heal(InvalidSyncRequest("x"))
    assert not cannot_heal(psycopg.errors.AdminShutdown()) and not cannot_heal(psycopg.OperationalError())
    assert not cannot_heal(psycopg.errors.SerializationFailure()) and not cannot_heal(ConnectionError())


def _dag(retry_delay: dt.timedelta | None = None):
    dag = dagbag.dag(7)
    if retry_delay is not None:  # the DAG's own retries, without the minutes of backoff between them
        for task in dag.tasks:
            task.retry_delay, task.retry_exponential_backoff = retry_delay, False
    return dag


def _tries(run) -> dict[str, tuple[str, int]]:
    return {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}


@pytest.mark.airflow
@pytest.mark.parametrize(
    ("change", "notes"),
    [
        # Another tool's rule on the Primetric tables: our upsert violates it (IntegrityError).
        ("ALTER TABLE primetric.worklogs ADD CONSTRAINT hours_short CHECK (hours < 2)", "n"),
        # A narrower column: our notes no longer fit (DataError).
        ("ALTER TABLE primetric.worklogs ALTER COLUMN description TYPE varchar(10)", "a long description"),
    ],
    ids=["constraint", "data"],
)
def test_the_database_refusing_our_statement_fails_the_task_at_once(apollo, airflow_db, change, notes, capfd):
    apollo.entry("bobby", 701, "2026-02-03", 3, notes)
    apollo.sql(change)
    before = apollo.snapshot()
    run = _dag(dt.timedelta(0)).test(run_conf={"since": "2026-01-01"})
    assert run.state == "failed"
    assert _tries(run)["load"] == ("failed", 1)  # not up_for_retry: another try meets the same refusal
    assert apollo.snapshot() == before
    logged = "".join(capfd.readouterr())  # the task's log
    assert "the Primetric database refused a statement of the sync (SQLSTATE" in logged
    assert "Retrying cannot fix this" in logged


@pytest.mark.airflow
def test_a_request_refused_by_the_run_fails_the_extract_at_once(apollo, airflow_db):
    before = apollo.snapshot()
    run = _dag(dt.timedelta(0)).test(run_conf={"Since": "2026-01-01"})  # Airflow's Params let unknown keys pass
    assert run.state == "failed"
    assert _tries(run)["extract"] == ("failed", 1)
    assert apollo.snapshot() == before


@pytest.mark.airflow
def test_harvest_failing_for_a_while_is_retried_and_the_run_succeeds(apollo, airflow_db, monkeypatch):
    conn = json.loads(os.environ["AIRFLOW_CONN_HARVEST_DEFAULT"])
    conn["extra"] |= {"max_attempts": 1}  # the hook gives up at once: the task's retry must heal it
    monkeypatch.setenv("AIRFLOW_CONN_HARVEST_DEFAULT", json.dumps(conn))
    fault = apollo.sim.faults.add("status", path="/v2/users", status=502, times=1)
    run = _dag(dt.timedelta(0)).test(run_conf={"since": "2026-01-01"})
    assert fault.fired == 1
    assert run.state == "success", _tries(run)
    assert _tries(run)["extract"] == ("success", 2)  # the first try failed, the retry healed it
    assert len(apollo.worklogs(7)) == 2


# -- the trigger form ----------------------------------------------------------------------------------------------
@pytest.mark.airflow
def test_the_trigger_form_refuses_a_misspelt_confirmation_before_the_run_exists(apollo, airflow_db):
    from airflow.sdk.definitions.param import ParamValidationError

    apollo.sync(7)
    before = apollo.snapshot()
    with pytest.raises(ParamValidationError, match="'Apolo' does not match"):
        _dag().test(run_conf={"clear_data": True, "confirm_project_name": "Apolo"})
    assert apollo.snapshot() == before


@pytest.mark.airflow
def test_the_trigger_form_clears_with_the_name_and_says_what_it_deletes(apollo, airflow_db):
    dag = _dag()
    form = dag.params
    assert "next daily run syncs everything again" in form.get_param("clear_data").description
    assert "and stop" not in form.get_param("clear_data").description
    assert form.get_param("confirm_project_name").schema["title"] == "Confirm Clear data: type Apollo"
    assert "`confirm_project_name` = **Apollo**" in dag.doc_md
    apollo.sync(7)
    run = dag.test(run_conf={"clear_data": True, "confirm_project_name": "Apollo"})
    assert run.state == "success"
    assert apollo.worklogs(7) == []

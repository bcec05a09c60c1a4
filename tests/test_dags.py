"""End-to-end runs through real Airflow: dag.test() and `airflow dags test`, against the simulator."""

import json
import os
from decimal import Decimal

import pytest

from tests.fixtures import airflow_cli

pytestmark = pytest.mark.airflow


@pytest.mark.parametrize("since", ["2026-13-01", "yesterday"])
def test_trigger_form_rejects_a_since_that_is_not_a_date(apollo, airflow_db, dagbag, since):
    from airflow.sdk.definitions.param import ParamValidationError

    dag = dagbag.dag(7)
    with pytest.raises(ParamValidationError, match="date"):
        dag.test(run_conf={"since": since})
    assert apollo.worklogs(7) == []


def test_dag_test_runs_the_whole_sync(apollo, airflow_db, dagbag):
    entry = apollo.entry("bobby", 701, "2026-02-01", 2.5, "design")
    apollo.entry("nina", 701, "2026-02-02", 1)
    dag = dagbag.dag(7)
    run = dag.test(run_conf={"since": "2026-01-01"})
    assert run.state == "success", run.state
    assert [(r[0], r[1], r[3]) for r in apollo.worklogs(7)] == [(entry, 1, Decimal("2.5"))]
    assert [r[2] for r in apollo.missing(7)] == ["no_matching_employee"]


def test_airflow_dags_test_cli_runs_the_dag(apollo, airflow_db, dagbag):
    entry = apollo.entry("bobby", 701, "2026-03-01", 4)
    proc = airflow_cli("dags", "test", "harvest_sync_7", "--conf", json.dumps({"since": "2026-01-01"}))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [(r[0], r[3]) for r in apollo.worklogs(7)] == [(entry, Decimal("4"))]


def test_a_refused_token_fails_the_run_at_once_without_retries(apollo, airflow_db, dagbag, monkeypatch):
    conn = json.loads(os.environ["AIRFLOW_CONN_HARVEST_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_HARVEST_DEFAULT", json.dumps({**conn, "password": "revoked"}))
    before = apollo.snapshot()
    run = dagbag.dag(7).test()
    assert run.state == "failed"
    extract = next(ti for ti in run.get_task_instances() if ti.task_id == "extract")
    assert (extract.state, extract.try_number) == ("failed", 1)  # not up_for_retry: retrying cannot help
    assert apollo.snapshot() == before


def test_an_account_id_given_as_login_is_the_account_the_dag_stores_users_under(
    apollo, airflow_db, dagbag, monkeypatch
):
    """One rule for the account id (primetric_harvest.harvest_api.harvest_account_id), in the hook and the DAG:
    a personal-token connection with the account id as its login syncs, and its Harvest users are stored
    under that account, not under an empty one."""
    conn = json.loads(os.environ["AIRFLOW_CONN_HARVEST_DEFAULT"])
    account_id = conn["extra"].pop("account_id")
    monkeypatch.setenv("AIRFLOW_CONN_HARVEST_DEFAULT", json.dumps({**conn, "login": account_id}))
    apollo.entry("bobby", 701, "2026-02-01", 1)
    run = dagbag.dag(7).test(run_conf={"since": "2026-01-01"})
    assert run.state == "success", run.state
    stored = apollo.sql("SELECT DISTINCT account_id FROM harvest_sync.harvest_users")
    assert stored == [(account_id,)]

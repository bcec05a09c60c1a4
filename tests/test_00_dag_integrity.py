"""DAG integrity over the DagBag: named test_00 so that it runs first in the suite."""

import datetime as dt
from pathlib import Path

import pytest

pytestmark = pytest.mark.db


@pytest.fixture
def linked(apollo):
    apollo.project(8, [801], name="Zephyr", prevent=True)
    apollo.project(9, [901], name="Switched off", enabled=False)
    return apollo


def test_dag_file_parses_one_dag_per_enabled_project(linked, dagbag):
    bag = dagbag()
    assert bag.import_errors == {}
    assert sorted(bag.dags) == ["harvest_sync_7", "harvest_sync_8"]
    dag = bag.dags["harvest_sync_7"]
    assert {"harvest", "primetric"} <= set(dag.tags)
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert dag.doc_md and "Apollo" in dag.doc_md
    assert [t.task_id for t in dag.topological_sort()] == ["extract", "transform", "load", "report"]
    assert all(t.retries >= 1 for t in dag.tasks)
    assert dag.get_task("extract").pool == "harvest_api"
    assert set(dag.params) == {"since", "clear_data", "confirm_project_name"}


def test_a_task_process_builds_only_the_dag_of_its_task(linked, dagbag, monkeypatch):
    """Airflow's task runner parses the file again for each task and says which DAG it wants (the parsing
    context): only that one is built, so a task does not pay for every linked project's DAG."""
    from airflow.sdk.definitions.context import _AIRFLOW_PARSING_CONTEXT_DAG_ID

    monkeypatch.setenv(_AIRFLOW_PARSING_CONTEXT_DAG_ID, "harvest_sync_8")
    bag = dagbag()
    assert bag.import_errors == {}
    assert sorted(bag.dags) == ["harvest_sync_8"]
    assert [t.task_id for t in bag.dags["harvest_sync_8"].topological_sort()] == [
        "extract",
        "transform",
        "load",
        "report",
    ]


def test_shards_split_the_projects_over_dag_files_and_keep_the_dag_ids(linked, dagbag, monkeypatch):
    """PRIMETRIC_DAG_SHARDS=2: project p's DAG comes from shard p % 2's file, under the same DAG id; every DAG
    once, and the shard files beyond the setting hold nothing."""
    from primetric_harvest.names import DAG_SHARDS_ENV

    monkeypatch.setenv(DAG_SHARDS_ENV, "2")
    bag = dagbag()
    assert bag.import_errors == {}
    where = {d: Path(dag.fileloc).name for d, dag in bag.dags.items()}
    assert where == {"harvest_sync_7": "harvest_sync_shard_1.py", "harvest_sync_8": "harvest_sync.py"}
    monkeypatch.setenv(DAG_SHARDS_ENV, "1")
    assert {d: Path(dag.fileloc).name for d, dag in dagbag().dags.items()} == {
        "harvest_sync_7": "harvest_sync.py",
        "harvest_sync_8": "harvest_sync.py",
    }


def test_linking_a_project_makes_its_dag_appear_at_the_next_parse(linked, dagbag):
    assert "harvest_sync_10" not in dagbag().dags
    linked.project(10, [1001])
    assert "harvest_sync_10" in dagbag().dags


def test_parse_survives_a_database_that_is_down(linked, dagbag, monkeypatch):
    assert sorted(dagbag().dags) == ["harvest_sync_7", "harvest_sync_8"]  # a good parse fills the cache
    # Nothing listens on port 1: the parse must neither fail nor hang, and keeps the last DAGs.
    monkeypatch.setenv("AIRFLOW_CONN_PRIMETRIC_DB", "postgresql://postgres@127.0.0.1:1/nowhere")
    bag = dagbag()
    assert bag.import_errors == {}
    assert sorted(bag.dags) == ["harvest_sync_7", "harvest_sync_8"]


def test_parse_with_database_down_and_no_cache_gives_no_dags_and_no_error(dagbag, monkeypatch, tmp_path):
    monkeypatch.setenv("PRIMETRIC_DAG_CACHE", str(tmp_path / "none.json"))
    monkeypatch.setenv("AIRFLOW_CONN_PRIMETRIC_DB", "postgresql://postgres@127.0.0.1:1/nowhere")
    bag = dagbag()
    assert bag.import_errors == {} and bag.dags == {}


def test_the_daily_schedule_is_the_project_s_setting_and_starts_when_it_was_armed(linked, dagbag):
    armed = dt.datetime(2026, 11, 30, 19, 42, 7, tzinfo=dt.UTC)
    linked.sql("UPDATE primetric.harvest_settings SET daily_schedule_since = %s WHERE project_id = 7", (armed,))
    linked.sql("UPDATE primetric.harvest_settings SET daily_schedule = false WHERE project_id = 8")
    bag = dagbag()
    daily, on_demand = bag.dags["harvest_sync_7"], bag.dags["harvest_sync_8"]
    assert daily.schedule == "@daily" and daily.start_date == armed  # no daily run is due before it
    assert on_demand.schedule is None  # runs only when triggered: unpausing it starts nothing
    assert "**Schedule:** daily at 00:00 UTC" in daily.doc_md
    assert "**Schedule:** none: runs only when triggered" in on_demand.doc_md


def test_the_dag_s_docs_say_how_each_kind_of_run_behaves(linked, dagbag):
    doc = dagbag().dags["harvest_sync_7"].doc_md
    assert "Runs daily, incrementally" not in doc
    for kind in (
        "*Daily run*",
        "*Weekly full reconcile*",
        "*First run of the project*",
        "*Reset and sync*",
        "*Backfill*",
        "*Clear data*",
        "reconcile window",
        "exactly the spent_dates of its data interval",
    ):
        assert kind in doc, kind

"""Run summaries (XCom `summary` + one log line) and the work-logs Asset, through real dag.test() runs."""

from __future__ import annotations

import logging

import pytest

from primetric_harvest.names import worklogs_asset_uri, worklogs_changed_alias

pytestmark = pytest.mark.airflow
URI = worklogs_asset_uri(7)


def _xcom(run_id: str, task_id: str, key: str):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(run_id=run_id, task_id=task_id, key=key).one_or_none()
        return None if row is None else XComModel.deserialize_value(row)


def _asset_events(uri: str) -> list[tuple[str, dict]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .filter(AssetModel.uri == uri)
            .order_by(AssetEvent.id)
            .all()
        )
        return [(e.source_run_id, dict(e.extra or {})) for e in rows]


def test_a_run_ends_with_a_summary_in_the_log_and_as_xcom(apollo, airflow_db, dagbag, caplog):
    apollo.entry("bobby", 701, "2026-02-01", 2.5)
    apollo.entry("bobby", 701, "2026-02-02", 1)
    apollo.entry("nina", 701, "2026-02-03", 3)
    # Harvest throttles the first listing twice: the hook waits (Retry-After 0) and counts it.
    apollo.sim.faults.add("status", path="/v2/time_entries", status=429, retry_after=0, times=2)
    apollo.sim.reset_stats()

    with caplog.at_level(logging.INFO, logger="primetric_harvest.notify"):
        run = dagbag.dag(7).test(run_conf={"since": "2026-01-01"})
    assert run.state == "success", run.state

    summary = _xcom(run.run_id, "report", "summary")
    assert summary is not None, "the report task pushed no XCom 'summary'"
    stats = apollo.sim.stats
    assert {k: summary[k] for k in summary if k not in ("seconds", "line")} == {
        "mode": "reset",
        "entries_fetched": 3,
        "worklogs_inserted": 2,
        "worklogs_updated": 0,
        "worklogs_deleted": 0,
        "skipped_by_reason": {"no_matching_employee": 1},
        "missing_teammates": 1,
        "harvest_requests": stats["requests"],
        "harvest_429s": stats["status_429"],
        "previous_versions_kept": 0,
        "texts_altered": 0,
        "unidentified_records": 0,
    }
    assert stats["status_429"] == 2
    assert set(summary["seconds"]) == {"extract", "transform", "load", "report"}
    assert all(isinstance(v, float) and v >= 0 for v in summary["seconds"].values()), summary["seconds"]

    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Run summary of project 7")]
    assert lines == [summary["line"]], lines
    line = summary["line"]
    for part in (
        "3 entries fetched",
        "2 inserted, 0 updated, 0 deleted",
        "no_matching_employee 1",
        "1 missing teammates",
        f"{stats['requests']} Harvest requests, 2 answered 429",
        "extract ",
        "report ",
    ):
        assert part in line, (part, line)

    # A second run, with nothing changed in Harvest, has its own summary: nothing written.
    apollo.sim.reset_stats()
    again = dagbag.dag(7).test()
    assert again.state == "success"
    second = _xcom(again.run_id, "report", "summary")
    assert second["mode"] != "reset"
    assert (second["worklogs_inserted"], second["worklogs_updated"], second["worklogs_deleted"]) == (0, 0, 0)
    assert second["harvest_429s"] == 0 and second["harvest_requests"] == apollo.sim.stats["requests"]


def test_the_load_task_updates_the_projects_worklogs_asset(apollo, airflow_db, dagbag):
    from airflow.sdk import AssetAlias

    dag = dagbag.dag(7)
    assert [(a.name, type(a)) for a in dag.get_task("load").outlets] == [(worklogs_changed_alias(7).name, AssetAlias)]
    assert all(not t.outlets for t in dag.tasks if t.task_id != "load")

    apollo.entry("bobby", 701, "2026-02-01", 2.5)
    before = _asset_events(URI)
    run = dag.test(run_conf={"since": "2026-01-01"})
    assert run.state == "success"
    events = _asset_events(URI)[len(before) :]
    assert [(run_id, e["inserted"], e["updated"], e["deleted"]) for run_id, e in events] == [(run.run_id, 1, 0, 0)]


def test_a_run_that_changes_no_worklog_emits_no_asset_event(apollo, airflow_db, dagbag):
    """A re-run, or a backfill of days without changes, must not wake the DAGs scheduled on the work logs."""
    apollo.entry("bobby", 701, "2026-02-01", 2.5)
    dag = dagbag.dag(7)
    assert dag.test(run_conf={"since": "2026-01-01"}).state == "success"
    before = _asset_events(URI)

    again = dag.test()  # Harvest unchanged: the daily run loads, writes nothing
    assert again.state == "success"
    assert _xcom(again.run_id, "load", "return_value")["inserted"] == 0
    assert _asset_events(URI) == before

    apollo.entry("bobby", 701, "2026-02-02", 1)  # a change: exactly one event, of that run
    changed = dag.test()
    assert changed.state == "success"
    events = _asset_events(URI)[len(before) :]
    assert [(run_id, e["inserted"], e["updated"], e["deleted"]) for run_id, e in events] == [(changed.run_id, 1, 0, 0)]


def test_a_failed_run_updates_no_asset(apollo, airflow_db, dagbag, monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.test:8080")
    apollo.sim.faults.add("unauthorized", times=None)
    dag = dagbag.dag(7, retries=0)
    before = _asset_events(URI)
    run = dag.test(run_conf={"since": "2026-01-01"})
    assert run.state == "failed"
    assert _asset_events(URI) == before
    assert _xcom(run.run_id, "report", "summary") is None

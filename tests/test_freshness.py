"""Freshness: a project's scheduled daily run carries an Airflow Deadline Alert; when its work logs are not loaded
``freshness_deadline_hours`` after the scheduled time, the failure alerts' channel says which project is late and
since when. Seen for real on the `make airflow` stack (scheduler marks the deadline missed, the triggerer runs the
callback, which posts to a local Slack-webhook stand-in); the callback's rules on their own below."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time

import psycopg
import pytest
import requests

from primetric_harvest import notify
from primetric_harvest.names import ALERTS_SLACK_CONN_ID, dag_id
from tests.airflow_server import run_path, set_paused, trigger, wait_for_run
from tests.test_alerts import SlackWebhook

pytestmark = pytest.mark.airflow

PROJECT = 90  # a project of its own in the stack's demo database, fed by the demo's unlinked Harvest project 3001
NAME = "Freshness check"
HOURS = 0.01  # 36 s after the scheduled time (00:00 UTC): any daily run the scheduler starts today is late


@pytest.fixture
def slack_on_stack(airflow_server):
    """A Slack webhook stand-in, as the stack's `harvest_alerts_slack` connection (metadata database)."""
    hook = SlackWebhook()
    hook.thread.start()
    api = airflow_server.session()
    answer = api.post(
        f"{airflow_server.url}/api/v2/connections",
        json={"connection_id": ALERTS_SLACK_CONN_ID, "conn_type": "slackwebhook", "password": hook.url},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    try:
        yield hook
    finally:
        api.delete(f"{airflow_server.url}/api/v2/connections/{ALERTS_SLACK_CONN_ID}", timeout=30)
        hook.server.shutdown()
        hook.server.server_close()
        hook.thread.join(5)


@pytest.fixture
def late_project(airflow_server):
    """Project 90, daily schedule armed since January, a deadline of 36 s; its DAG parsed. Removed afterwards."""
    with psycopg.connect(airflow_server.primetric_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO primetric.projects (id, name, start_date) VALUES (%s, %s, '2026-01-01')", (PROJECT, NAME)
        )
        conn.execute(
            "INSERT INTO primetric.harvest_settings (project_id, enabled, sync_since, daily_schedule, "
            "daily_schedule_since, freshness_deadline_hours) VALUES (%s, true, '2026-09-01', true, '2026-01-01', %s)",
            (PROJECT, HOURS),
        )
        conn.execute(
            "INSERT INTO primetric.harvest_project_links (harvest_project_id, project_id) VALUES (3001, %s)", (PROJECT,)
        )
    _reparse(airflow_server)
    airflow_server.wait_for_dags([dag_id(PROJECT)])
    try:
        yield dag_id(PROJECT)
    finally:
        set_paused(airflow_server, dag_id(PROJECT), True)
        with psycopg.connect(airflow_server.primetric_dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM primetric.projects WHERE id = %s", (PROJECT,))  # every row of it cascades
        _reparse(airflow_server)


def _reparse(server) -> None:
    api = server.session()
    details = api.get(f"{server.url}/api/v2/dags/harvest_sync_1/details", timeout=30)
    assert details.status_code == 200, details.text
    answer = api.put(f"{server.url}/api/v2/parseDagFile/{details.json()['file_token']}", timeout=30)
    assert answer.status_code in (200, 201), answer.text


def _runs(server, dag: str) -> list[dict]:
    answer = server.session().get(f"{server.url}/api/v2/dags/{dag}/dagRuns", params={"limit": 100}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["dag_runs"]


def _deadlines(server, dag: str) -> list[tuple[str, bool]]:
    """(run type, missed) of every deadline Airflow keeps for the DAG's runs (its metadata database)."""
    with psycopg.connect(server.meta_dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT r.run_type, d.missed FROM deadline d JOIN dag_run r ON r.id = d.dagrun_id WHERE r.dag_id = %s "
            "ORDER BY r.id",
            (dag,),
        ).fetchall()


class StackConnections:
    """Samples the server's client connections to the stack's two databases (Airflow's metadata, Primetric)
    twice a second while the test runs: the figures behind the README's "Connections" paragraph."""

    def __init__(self, server):
        self.server = server
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.server.meta_dsn, autocommit=True, application_name="stack-sampler") as conn:
            while not self._stop.is_set():
                rows = conn.execute(
                    "SELECT datname, count(*) FROM pg_stat_activity WHERE datname = ANY(%s) "
                    "AND backend_type = 'client backend' AND application_name <> 'stack-sampler' GROUP BY 1",
                    ([self.server.meta_db, self.server.primetric_db],),
                ).fetchall()
                for name, n in rows:
                    self.peaks[name] = max(self.peaks.get(name, 0), n)
                self._stop.wait(0.5)

    def __enter__(self) -> StackConnections:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


def _late(slack) -> list[str]:
    """The freshness alerts Slack received (the runs' missing-teammate notices go there too)."""
    return [p["text"] for p in slack.posts if "Harvest sync late" in p["text"]]


def _wait(what: str, check, seconds: float = 180.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except requests.RequestException:  # a busy API server (2 cores shared): ask again
            pass
        time.sleep(1)
    pytest.fail(f"gave up waiting for {what}")


def test_a_late_daily_run_is_reported_with_its_project_and_since_when(airflow_server, late_project, slack_on_stack):
    dag = late_project
    details = airflow_server.session().get(f"{airflow_server.url}/api/v2/dags/{dag}/details", timeout=30).json()
    assert details["timetable_summary"], details  # daily

    # Unpausing starts today's daily run (scheduled at 00:00 UTC): its deadline, 36 s later, has passed.
    sampler = StackConnections(airflow_server).__enter__()
    set_paused(airflow_server, dag, False)
    scheduled = _wait(
        "the scheduled run", lambda: [r for r in _runs(airflow_server, dag) if r["run_type"] == "scheduled"]
    )
    run = scheduled[0]
    posts = _wait("the freshness alert on Slack", lambda: _late(slack_on_stack))
    text = posts[0]
    print(f"\nthe freshness alert as Slack received it:\n{text}")
    logical = dt.datetime.fromisoformat(run["logical_date"].replace("Z", "+00:00")).astimezone(dt.UTC)
    late_since = logical + dt.timedelta(hours=HOURS)
    for part in (
        f"Harvest sync late: {NAME} (project {PROJECT})",
        f"scheduled for {logical:%Y-%m-%d %H:%M} UTC",
        "had not loaded its work logs 36 s later",
        f"late since {late_since:%Y-%m-%d %H:%M} UTC",
        f"Run {run['dag_run_id']}",
    ):
        assert part in text, (part, text)
    assert _deadlines(airflow_server, dag) == [("scheduled", True)]
    wait_for_run(airflow_server, dag, run["dag_run_id"], timeout=240)

    # A manual run (Sync now, the REST API's trigger without a logical date) carries no deadline.
    manual = trigger(airflow_server, dag)
    assert wait_for_run(airflow_server, dag, manual)["state"] == "success"
    assert _deadlines(airflow_server, dag) == [("scheduled", True)]
    assert len(_late(slack_on_stack)) == 1, slack_on_stack.posts
    answer = airflow_server.session().get(airflow_server.url + run_path(dag, manual), timeout=30).json()
    assert answer["run_type"] == "manual" and answer["logical_date"] is None
    sampler.__exit__()
    meta, primetric = (sampler.peaks.get(db) for db in (airflow_server.meta_db, airflow_server.primetric_db))
    print(
        "\npeak client connections while two runs went (LocalExecutor, parallelism 4): "
        f"Airflow's metadata database {meta}, the Primetric database {primetric}"
    )


# -- the callback's rules -----------------------------------------------------------------------------------
def _context(run_type: str) -> dict:
    return {
        "dag_run": {
            "dag_id": "harvest_sync_7",
            "dag_run_id": f"{run_type}__2026-11-30T00:00:00+00:00",
            "run_type": run_type,
            "logical_date": "2026-11-30T00:00:00Z",
            "state": "running",
        },
        "deadline": {"id": "0199", "deadline_time": "2026-11-30T06:00:00+00:00"},
    }


def test_only_a_scheduled_run_is_reported_late(airflow_db, caplog):
    # a backfill's logical dates lie in the past: its deadlines pass at once, and say nothing
    assert asyncio.run(notify.freshness_alert(7, "Apollo", 6, context=_context("backfill"))) == "not scheduled"
    assert asyncio.run(notify.freshness_alert(7, "Apollo", 6, context=_context("manual"))) == "not scheduled"
    assert asyncio.run(notify.freshness_alert(7, "Apollo", 6, context=_context("scheduled"))) == "log"
    message = notify.freshness_message(7, "Apollo", 6, _context("scheduled"))
    assert message.subject == "Harvest sync late: Apollo (project 7), work logs not loaded"
    assert (
        "scheduled for 2026-11-30 00:00 UTC had not loaded its work logs 6 h later: late since 2026-11-30 06:00 UTC"
        in message.lines[0]
    )

"""End to end through Airflow's REST API, against a real local Airflow (``make airflow``'s launcher).

Token from /auth/token, the demo's DAGs, unpause, trigger with {"since": ...}, poll to success, task logs
through the API, the Primetric tables; invalid "since" refused by the DAG's params; pause; a three-day backfill.
What the tables must hold is derived from the simulator's demo data and the Primetric employees, not typed in.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
import time

import psycopg
import pytest
import requests

from harvest_simulator.demo import demo
from scripts.airflow_local import AirflowLocal, _alive, _ours, main, parse_args, stop_from_pid_file
from tests.airflow_server import run_path, set_paused, task_log, trigger, wait_for_run

pytestmark = pytest.mark.airflow

SINCE = "2026-09-01"
DAG = "harvest_sync_1"
PROJECT = 1


def sql(dsn: str, statement: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(statement, params).fetchall()


def expected_sync(dsn: str, project_id: int, since: str) -> tuple[set[int], dict[int, tuple[int, float]]]:
    """(Harvest entry ids that must become work logs, {harvest user id: (entries, hours)} of missing people).

    From the simulator's demo data and the demo Primetric database: entries of the project's linked Harvest
    projects from ``since`` on; a person lands when a manager or employee has their e-mail (trimmed, any case).
    """
    state = demo()
    linked = {
        r[0]
        for r in sql(
            dsn, "SELECT harvest_project_id FROM primetric.harvest_project_links WHERE project_id = %s", (project_id,)
        )
    }
    people = {
        r[0]
        for r in sql(dsn, "SELECT lower(btrim(email)) FROM primetric.employees WHERE role IN ('manager', 'employee')")
    }
    emails = {int(u.id): u.email.strip().lower() for u in state.users_df().itertuples()}
    entries = state.entries_df()
    entries = entries[entries["project_id"].isin(linked) & (entries["spent_date"] >= since)]
    landed = {int(e.id) for e in entries.itertuples() if emails[int(e.user_id)] in people}
    missing: dict[int, tuple[int, float]] = {}
    for e in entries.itertuples():
        if emails[int(e.user_id)] not in people:
            n, h = missing.get(int(e.user_id), (0, 0.0))
            missing[int(e.user_id)] = (n + 1, h + float(e.hours))
    return landed, missing


@pytest.fixture(scope="module")
def api(airflow_server) -> requests.Session:
    return airflow_server.session()


def test_token_from_auth_token_and_the_demo_dags_are_listed(airflow_server, api):
    answer = requests.post(
        f"{airflow_server.url}/auth/token",
        json={"username": "admin", "password": airflow_server.passwords["admin"]},
        timeout=10,
    )
    assert answer.status_code == 201 and answer.json()["access_token"]
    wrong = requests.post(f"{airflow_server.url}/auth/token", json={"username": "admin", "password": "x"}, timeout=10)
    assert wrong.status_code == 401
    assert requests.get(f"{airflow_server.url}/api/v2/dags", timeout=10).status_code == 401  # no token, no DAGs

    enabled = sql(airflow_server.primetric_dsn, "SELECT project_id FROM primetric.harvest_settings WHERE enabled")
    dags = api.get(f"{airflow_server.url}/api/v2/dags", params={"dag_id_pattern": "harvest_sync_"}, timeout=10).json()
    assert {d["dag_id"] for d in dags["dags"]} == {f"harvest_sync_{r[0]}" for r in enabled}
    assert len(enabled) >= 2  # the demo links Apollo and Zephyr; Internal tools is switched off


@pytest.mark.parametrize("since", ["2026-13-01", "yesterday"])
def test_an_invalid_since_is_refused_with_the_expected_format(airflow_server, api, since):
    runs = f"{airflow_server.url}/api/v2/dags/{DAG}/dagRuns"
    before = api.get(runs, timeout=10).json()["total_entries"]
    answer = api.post(runs, json={"logical_date": None, "conf": {"since": since}}, timeout=10)
    assert answer.status_code == 400, answer.text
    detail = answer.json()["detail"]
    assert "param since" in detail and repr(since) in detail and "YYYY-MM-DD" in detail, detail
    assert api.get(runs, timeout=10).json()["total_entries"] == before  # no run was created


def test_unpause_trigger_since_poll_logs_and_tables_then_pause(airflow_server, api):
    dag_url = f"{airflow_server.url}/api/v2/dags/{DAG}"
    assert api.get(dag_url, timeout=10).json()["is_paused"] is True  # DAGs start paused
    assert set_paused(airflow_server, DAG, False)["is_paused"] is False
    assert api.get(dag_url, timeout=10).json()["is_paused"] is False

    run_id = trigger(airflow_server, DAG, {"since": SINCE})
    assert ":" in run_id and "+" in run_id  # what makes URL-encoding the run id necessary
    run = wait_for_run(airflow_server, DAG, run_id)
    assert run["state"] == "success" and run["conf"] == {"since": SINCE}
    tasks = api.get(f"{airflow_server.url}{run_path(DAG, run_id)}/taskInstances", timeout=10).json()
    assert {t["task_id"]: t["state"] for t in tasks["task_instances"]} == {
        "extract": "success",
        "transform": "success",
        "load": "success",
        "report": "success",
    }

    landed, missing = expected_sync(airflow_server.primetric_dsn, PROJECT, SINCE)
    dsn = airflow_server.primetric_dsn
    synced = sql(
        dsn,
        "SELECT harvest_time_entry_id FROM primetric.worklogs "
        "WHERE project_id = %s AND harvest_time_entry_id IS NOT NULL",
        (PROJECT,),
    )
    assert {r[0] for r in synced} == landed and len(landed) > 0
    reported = sql(
        dsn,
        "SELECT harvest_user_id, name, entries, hours FROM primetric.missing_teammates WHERE project_id = %s",
        (PROJECT,),
    )
    assert {r[0]: (r[2], float(r[3])) for r in reported} == missing and missing
    assert sql(dsn, "SELECT sync_since FROM primetric.harvest_settings WHERE project_id = %s", (PROJECT,)) == [
        (dt.date.fromisoformat(SINCE),)
    ]

    # The task logs, read through the API, say what happened in words.
    load_log = task_log(airflow_server, DAG, run_id, "load")
    # (Unpausing also starts the latest scheduled run, which may have loaded them first: inserted or unchanged.)
    counts = re.search(r"load \(reset\): (\d+) work logs inserted, (\d+) updated, (\d+) deleted", load_log)
    assert counts and int(counts[1]) <= len(landed), load_log[-2000:]
    report_log = task_log(airflow_server, DAG, run_id, "report")
    for _, name, entries, _hours in reported:
        assert f"Missing teammate in project {PROJECT}: {name}" in report_log
        assert f"{entries} entries" in report_log
    assert "demo-token" not in load_log + report_log  # the Harvest token never reaches a log

    assert set_paused(airflow_server, DAG, True)["is_paused"] is True
    assert api.get(dag_url, timeout=10).json()["is_paused"] is True


def test_a_three_day_backfill_through_the_api(airflow_server, api):
    dsn = airflow_server.primetric_dsn
    worklogs = "SELECT harvest_time_entry_id, hours, work_date FROM primetric.worklogs WHERE project_id = %s ORDER BY 1"
    before = sql(dsn, worklogs, (PROJECT,))
    assert before, "needs the project synced by the test above"
    days = ["2026-10-12", "2026-10-13", "2026-10-14"]
    set_paused(airflow_server, DAG, False)  # a paused DAG's backfill runs stay queued
    try:
        answer = api.post(
            f"{airflow_server.url}/api/v2/backfills",
            json={
                "dag_id": DAG,
                "from_date": f"{days[0]}T00:00:00Z",
                "to_date": f"{days[-1]}T00:00:00Z",
                "max_active_runs": 1,
                "reprocess_behavior": "none",
                "dag_run_conf": {},
            },
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        backfill_id = answer.json()["id"]
        runs = api.get(
            f"{airflow_server.url}/api/v2/dags/{DAG}/dagRuns", params={"run_type": "backfill"}, timeout=10
        ).json()["dag_runs"]
        assert sorted(r["logical_date"][:10] for r in runs) == days
        for run in runs:
            assert wait_for_run(airflow_server, DAG, run["dag_run_id"])["state"] == "success"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            backfill = api.get(f"{airflow_server.url}/api/v2/backfills/{backfill_id}", timeout=10).json()
            if backfill["completed_at"]:
                break
            time.sleep(1)
        assert backfill["completed_at"], backfill
    finally:
        set_paused(airflow_server, DAG, True)
    # Each backfill run re-read exactly its day from Harvest: nothing changed there, so nothing changed here.
    assert sql(dsn, worklogs, (PROJECT,)) == before


# -- make airflow's launcher: it leaves no process behind (cheap: plain Python processes, no Airflow) ---------
TREE = """
import os, subprocess, sys, time
sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
subprocess.Popen(sleeper)  # a child in the group
subprocess.Popen(sleeper, start_new_session=True)  # a descendant that left the group, like a task process
time.sleep(600)
"""
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"
)


def _launcher(tmp_path) -> AirflowLocal:
    server = AirflowLocal(home=tmp_path, port=0, quiet=True)
    server.log_dir.mkdir(parents=True)
    server._prepare_secrets()
    return server


def _wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    pytest.fail("timed out")


def test_airflow_stop_stops_what_a_killed_launcher_left(tmp_path):
    server = _launcher(tmp_path)
    server._spawn("tree", [sys.executable, "-c", TREE], server.env())
    pids = _wait_for(lambda: (p := _ours(server.marker, server._groups())) and len(p) == 3 and p)
    # The launcher is gone (kill -9): `make airflow-stop` works from the pid file alone.
    assert stop_from_pid_file(tmp_path) is True
    assert not [p for p in pids if _alive(p)]
    assert not (tmp_path / "airflow-local.pid").exists()
    assert stop_from_pid_file(tmp_path) is False  # nothing left to stop


def test_stop_kills_what_ignores_sigterm(tmp_path):
    server = _launcher(tmp_path)
    proc = server._spawn("stubborn", [sys.executable, "-c", STUBBORN], server.env())
    _wait_for(lambda: "ready" in (server.log_dir / "stubborn.log").read_text())
    server.stop(timeout=1)
    assert proc.poll() is not None and not _alive(proc.pid)


def test_the_launchers_command_line(tmp_path, capsys):
    args = parse_args(["run", "--auth", "fab", "--fresh", "--port", "9999"])  # options after the command
    assert (args.command, args.auth, args.fresh, args.port, args.rest) == ("run", "fab", True, 9999, [])
    assert parse_args(["stop"]).auth == "simple"  # the simple auth manager unless asked otherwise
    with pytest.raises(SystemExit):
        parse_args(["run", "--auth", "keycloak"])
    with pytest.raises(SystemExit):
        parse_args(["run", "--bogus"])  # an unknown option is refused, never taken for a command
    args = parse_args(["--home", str(tmp_path), "exec", "airflow", "users", "create", "--role", "Public"])
    assert (args.command, args.home, args.rest) == (
        "exec",
        tmp_path,
        ["airflow", "users", "create", "--role", "Public"],
    )

    # exec: the command runs with the local Airflow's environment (its home, metadata database, auth manager).
    assert main(["--home", str(tmp_path), "exec", "true"]) == 1  # nothing started from this home yet
    assert "start it first" in capsys.readouterr().err
    AirflowLocal(home=tmp_path, auth="fab", quiet=True)._prepare_secrets()
    check = (
        "import os, sys; e = os.environ; sys.exit(0 if (e['AIRFLOW_HOME'], e['AIRFLOW__CORE__AUTH_MANAGER'][-14:], "
        "e['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'].rsplit('/', 1)[1]) == (sys.argv[1], 'FabAuthManager', 'meta_x') "
        "else 3)"
    )
    argv = ["--home", str(tmp_path), "--meta-db", "meta_x", "--auth", "fab", "exec", sys.executable, "-c", check]
    assert main([*argv, str(tmp_path)]) == 0
    assert main(["--home", str(tmp_path), "--meta-db", "meta_x", "exec", sys.executable, "-c", check, "x"]) == 3
    assert main(["--home", str(tmp_path), "exec"]) == 2  # no command

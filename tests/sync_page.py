"""Helpers for the Harvest sync page's tests on the session's Airflow (tests/airflow_server.py): Primetric
projects made by SQL, Harvest projects, people and entries made through the simulator's control API, and
waiting for what Airflow does (a DAG appearing, a run ending)."""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse

import psycopg
import pytest
import requests

from scripts.airflow_local import AirflowLocal
from tests.airflow_server import run_path

TERMINAL = ("success", "failed")


def sql(server: AirflowLocal, statement: str, params: tuple | dict = ()) -> list[tuple]:
    with psycopg.connect(server.primetric_dsn, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def sim(server: AirflowLocal, method: str, path: str, body: dict | None = None) -> dict:
    """The Harvest simulator's control API (no auth), e.g. sim(server, "POST", "/_sim/projects", {...})."""
    answer = requests.request(method, f"{server.harvest_url}{path}", json=body, timeout=10)
    assert answer.status_code < 300, answer.text
    return answer.json()


def harvest_project(
    server: AirflowLocal, project_id: int, name: str, client: str = "NASA", client_id: int = 77
) -> None:
    sim(
        server,
        "POST",
        "/_sim/projects",
        {"id": project_id, "name": name, "code": f"P{project_id}", "client_id": client_id, "client_name": client},
    )


def harvest_person(server: AirflowLocal, first: str, last: str, email: str) -> int:
    return sim(server, "POST", "/_sim/users", {"first_name": first, "last_name": last, "email": email})["id"]


def harvest_entries(server: AirflowLocal, user_id: int, project_id: int, days: list[str], hours: float) -> list[int]:
    return [
        sim(
            server,
            "POST",
            "/_sim/entries",
            {
                "user_id": user_id,
                "project_id": project_id,
                "spent_date": day,
                "hours": hours,
                "notes": f"work on {day}",
            },
        )["id"]
        for day in days
    ]


def primetric_project(server: AirflowLocal, project_id: int, name: str, start: str | None = "2026-01-01") -> None:
    sql(server, "INSERT INTO primetric.projects (id, name, start_date) VALUES (%s, %s, %s)", (project_id, name, start))


def link_by_sql(server: AirflowLocal, project_id: int, harvest_ids: list[int], **settings) -> None:
    """Set a project up the old way, by hand: a harvest_settings row and its links."""
    columns = {"enabled": True, "sync_since": "2026-09-01", **settings}
    names = ", ".join(["project_id", *columns])
    marks = ", ".join(["%s"] * (len(columns) + 1))
    sql(server, f"INSERT INTO primetric.harvest_settings ({names}) VALUES ({marks})", (project_id, *columns.values()))
    for harvest_id in harvest_ids:
        sql(server, "INSERT INTO primetric.harvest_project_links VALUES (%s, %s)", (harvest_id, project_id))


def page_session(server: AirflowLocal, user: str) -> requests.Session:
    """A client of the page's JSON API as ``user`` (Bearer token, like a script; writes send JSON)."""
    return server.session(user)


def wait_for_dag(server: AirflowLocal, dag_id: str, timeout: float = 150.0) -> dict:
    api = server.session()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = api.get(f"{server.url}/api/v2/dags/{dag_id}/details", timeout=60)
        if answer.status_code == 200 and not answer.json()["is_stale"]:
            return answer.json()
        time.sleep(1)
    pytest.fail(f"DAG {dag_id} did not appear within {timeout:.0f} s")


def wait_for_end(server: AirflowLocal, dag_id: str, run_id: str, timeout: float = 150.0) -> dict:
    """The run once it succeeded or failed (a failure is what some tests want)."""
    api = server.session()
    deadline = time.monotonic() + timeout
    run: dict = {}
    while time.monotonic() < deadline:
        run = api.get(server.url + run_path(dag_id, run_id), timeout=60).json()
        if run.get("state") in TERMINAL:
            return run
        time.sleep(1)
    pytest.fail(f"run {run_id} of {dag_id} still {run.get('state')!r} after {timeout:.0f} s")


def wait_ready(base: str, headers: dict, project_id: int, timeout: float = 120) -> dict:
    """The page's view of the project's DAG once it is as the settings say (parsed; no missed daily run due)."""
    deadline = time.monotonic() + timeout
    dag: dict = {}
    while time.monotonic() < deadline:
        dag = requests.get(f"{base}/api/projects/{project_id}/dag", headers=headers, timeout=10).json()
        if dag["ready"] and not (dag["dag"] or {}).get("run_due"):
            return dag
        time.sleep(1)
    pytest.fail(f"project {project_id}'s DAG is not as its settings say after {timeout} s: {dag}")


def runs(server: AirflowLocal, dag_id: str) -> list[dict]:
    answer = server.session().get(f"{server.url}/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["dag_runs"]


def quoted(run_id: str) -> str:
    return urllib.parse.quote(run_id, safe="")


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()

"""The "Harvest sync" page over HTTP, served by the real API server (plugin loaded by Airflow itself).

Logged-in users only (anonymous and forged tokens refused), in the UI's navigation, one row per linked
project with its settings, "Reset from date…" triggering the DAG with the user's own permissions (a viewer
is refused, by name, and sees no buttons), a detail view that matches the Primetric tables, and no secret anywhere.
"""

from __future__ import annotations

import json

import psycopg
import pytest
import requests

from harvest_simulator.demo import DEMO_TOKEN
from tests.airflow_server import wait_for_run

pytestmark = pytest.mark.airflow

PROJECT = 1
DAG = "harvest_sync_1"


def rows(dsn: str, statement: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(statement, params).fetchall()


@pytest.fixture(scope="module")
def page(airflow_server):
    """(base URL of the page, admin's Bearer headers)."""
    return f"{airflow_server.url}/harvest", {"Authorization": f"Bearer {airflow_server.token('admin')}"}


@pytest.fixture(scope="module")
def reset_run(airflow_server, page):
    """A "Reset from date…" through the page's own endpoint, waited for: the data the detail view shows."""
    base, headers = page
    answer = requests.post(
        f"{base}/api/projects/{PROJECT}/runs", json={"since": "2026-09-01"}, headers=headers, timeout=30
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["dag_id"] == DAG and body["conf"] == {"since": "2026-09-01"}
    assert wait_for_run(airflow_server, DAG, body["dag_run_id"])["state"] == "success"
    return body


def test_anonymous_and_forged_requests_are_refused(airflow_server, page):
    base, _ = page
    runs_before = airflow_server.session().get(f"{airflow_server.url}/api/v2/dags/{DAG}/dagRuns").json()
    html = requests.get(f"{base}/", allow_redirects=False, timeout=10)
    assert html.status_code == 303 and html.headers["location"].startswith("/auth/login")
    assert "Apollo" not in html.text
    for url in (f"{base}/api/projects", f"{base}/api/projects/{PROJECT}", f"{base}/projects/{PROJECT}"):
        answer = requests.get(url, allow_redirects=False, timeout=10)
        assert answer.status_code in (303, 401), (url, answer.status_code)
        assert "Apollo" not in answer.text
    forged = {"Authorization": "Bearer not.a.jwt"}
    assert requests.get(f"{base}/api/projects", headers=forged, timeout=10).status_code in (401, 403)
    assert requests.get(f"{base}/api/projects", cookies={"_token": "not.a.jwt"}, timeout=10).status_code in (401, 403)
    trigger = requests.post(f"{base}/api/projects/{PROJECT}/runs", json={}, timeout=10)
    assert trigger.status_code == 401
    runs_after = airflow_server.session().get(f"{airflow_server.url}/api/v2/dags/{DAG}/dagRuns").json()
    assert runs_after["total_entries"] == runs_before["total_entries"]


def test_the_page_is_in_the_ui_navigation(airflow_server):
    plugins = airflow_server.session().get(f"{airflow_server.url}/api/v2/plugins", timeout=10).json()["plugins"]
    ours = next(p for p in plugins if p["name"] == "harvest_sync_ui")
    assert [a["url_prefix"] for a in ours["fastapi_apps"]] == ["/harvest"]
    (view,) = ours["external_views"]
    assert view["destination"] == "nav" and view["url_route"] == "harvest-sync" and view["href"] == "harvest/"


def test_one_row_per_linked_project_with_its_settings(airflow_server, page):
    base, headers = page
    projects = requests.get(f"{base}/api/projects", headers=headers, timeout=10).json()["projects"]
    settings = rows(
        airflow_server.primetric_dsn,
        "SELECT s.project_id, p.name, s.enabled, s.prevent_new_assignment_creation, s.trim_assignments_to_worklogs,"
        " COALESCE((SELECT array_agg(harvest_project_id ORDER BY harvest_project_id)"
        " FROM primetric.harvest_project_links l WHERE l.project_id = s.project_id), '{}')"
        " FROM primetric.harvest_settings s JOIN primetric.projects p ON p.id = s.project_id ORDER BY 1",
    )
    assert [
        (
            p["project_id"],
            p["name"],
            p["enabled"],
            p["prevent_new_assignment_creation"],
            p["trim_assignments_to_worklogs"],
            p["harvest_project_ids"],
        )
        for p in projects
    ] == [tuple(r) for r in settings]
    by_id = {p["project_id"]: p for p in projects}
    for project_id, _name, enabled, *_ in settings:
        assert by_id[project_id]["dag_exists"] is enabled  # a switched-off project has no DAG
        assert by_id[project_id]["links"]["dag"] == f"/dags/harvest_sync_{project_id}"
    html = requests.get(f"{base}/", headers=headers, timeout=10)
    assert html.status_code == 200
    for _id, name, *_ in settings:
        assert name in html.text
    assert html.text.count('data-action="sync"') == sum(1 for r in settings if r[2])  # buttons for enabled only


def test_reset_from_date_runs_and_the_detail_view_matches_the_tables(airflow_server, page, reset_run):
    base, headers = page
    dsn = airflow_server.primetric_dsn
    detail = requests.get(f"{base}/api/projects/{PROJECT}", headers=headers, timeout=10).json()

    missing = rows(
        dsn,
        "SELECT name, email, reason, entries, hours, first_work_date::text, last_work_date::text "
        "FROM primetric.missing_teammates WHERE project_id = %s ORDER BY hours DESC, name",
        (PROJECT,),
    )
    assert missing, "the demo has a missing teammate in Apollo"
    assert [
        (m["name"], m["email"], m["reason"], m["entries"], m["hours"], m["first_work_date"], m["last_work_date"])
        for m in detail["missing"]
    ] == [(*r[:4], float(r[4]), *r[5:]) for r in missing]
    assert "Nina Novak" in [m["name"] for m in detail["missing"]]  # the demo's known missing teammate
    assert detail["missing_teammates"] == len(missing)

    skipped = rows(
        dsn,
        "SELECT reason, count(*) FROM harvest_sync.skipped_entries WHERE project_id = %s GROUP BY 1 ORDER BY 1",
        (PROJECT,),
    )
    assert sorted((s["reason"], s["entries"]) for s in detail["skipped_by_reason"]) == [tuple(r) for r in skipped]
    (count, hours), *_ = rows(
        dsn,
        "SELECT count(*), COALESCE(sum(hours), 0) FROM primetric.worklogs "
        "WHERE project_id = %s AND harvest_time_entry_id IS NOT NULL",
        (PROJECT,),
    )
    assert detail["worklogs"] == count > 0 and detail["hours"] == pytest.approx(float(hours))
    assert detail["last_success_at"] and detail["last_success_age"]

    runs = {r["dag_run_id"]: r for r in detail["runs"]}
    assert runs[reset_run["dag_run_id"]]["state"] == "success"
    assert runs[reset_run["dag_run_id"]]["url"] == f"/dags/{DAG}/runs/{reset_run['dag_run_id']}"
    html = requests.get(f"{base}/projects/{PROJECT}", headers=headers, timeout=10).text
    for name, email, *_ in missing:
        assert name in html and email in html
    assert f'href="/dags/{DAG}"' in html and reset_run["dag_run_id"] in html


def test_an_invalid_date_is_refused_with_the_expected_format(page):
    base, headers = page
    answer = requests.post(f"{base}/api/projects/{PROJECT}/runs", json={"since": "yesterday"}, headers=headers)
    assert answer.status_code == 400, answer.text
    assert "YYYY-MM-DD" in answer.json()["detail"] and "yesterday" in answer.json()["detail"]
    form = requests.post(f"{base}/api/projects/{PROJECT}/runs", data={"since": ""}, headers=headers, timeout=10)
    assert form.status_code in (415, 422)  # JSON only: no cross-site form posts


def test_a_viewer_sees_the_page_without_buttons_and_is_refused_a_trigger(airflow_server, page):
    base, _ = page
    viewer = {"Authorization": f"Bearer {airflow_server.token('viewer')}"}
    html = requests.get(f"{base}/", headers=viewer, timeout=10)
    assert html.status_code == 200 and "Apollo" in html.text
    assert 'data-action="sync"' not in html.text and "view only" in html.text  # no button that answers 403
    projects = requests.get(f"{base}/api/projects", headers=viewer, timeout=10).json()["projects"]
    assert projects and not [p for p in projects if p["may_operate"]]
    before = airflow_server.session().get(f"{airflow_server.url}/api/v2/dags/{DAG}/dagRuns").json()["total_entries"]
    answer = requests.post(f"{base}/api/projects/{PROJECT}/runs", json={}, headers=viewer, timeout=30)
    assert answer.status_code == 403, answer.text
    assert answer.json()["detail"] == (
        f"Airflow user 'viewer' may not operate the Harvest sync {DAG}: it needs the Airflow role user or higher "
        "(it has viewer). Ask an Airflow administrator."
    )
    after = airflow_server.session().get(f"{airflow_server.url}/api/v2/dags/{DAG}/dagRuns").json()["total_entries"]
    assert after == before


def test_no_secret_is_ever_shown(airflow_server, page, reset_run):
    base, headers = page
    token = headers["Authorization"].split()[1]
    secrets = json.loads((airflow_server.home / "local-secrets.json").read_text())
    forbidden = [DEMO_TOKEN, token, *airflow_server.passwords.values(), *secrets.values()]
    for url in (f"{base}/", f"{base}/projects/{PROJECT}", f"{base}/api/projects", f"{base}/api/projects/{PROJECT}"):
        body = requests.get(url, headers=headers, timeout=10).text
        leaked = [s[:4] + "…" for s in forbidden if s in body]
        assert not leaked, f"{url} shows a secret: {leaked}"

"""The "Harvest sync" page over HTTP, served by the real API server of the session's Airflow (plugin loaded by
Airflow itself): who may see and do what (Airflow's auth manager decides), every write checked (422 naming the
field, 404 for what cannot exist, 409 for two saves at once), no cross-site write and no framing by another
origin, exactly one run per "Sync now" on a paused DAG, a failed run shown with its step, error and log, and
no secret anywhere. The whole story in a browser: tests/test_ui_browser.py.
"""

from __future__ import annotations

import json

import pytest
import requests

from harvest_simulator.demo import DEMO_TOKEN
from tests import sync_page as sp
from tests.airflow_server import set_paused, wait_for_run

pytestmark = pytest.mark.airflow

PROJECT = 1
DAG = "harvest_sync_1"
SWITCHED_OFF = 3  # the demo's "Internal tools": a harvest_settings row with the sync off, no DAG


@pytest.fixture(scope="module")
def page(airflow_server):
    """(base URL of the page, admin's Bearer headers)."""
    return f"{airflow_server.url}/harvest", {"Authorization": f"Bearer {airflow_server.token('admin')}"}


@pytest.fixture(scope="module")
def as_user(airflow_server):
    """Bearer headers per user, made once."""
    tokens = {u: {"Authorization": f"Bearer {airflow_server.token(u)}"} for u in ("admin", "viewer", "manager")}
    return tokens.__getitem__


@pytest.fixture(scope="module")
def reset_run(airflow_server, page):
    """A "reset and sync" through the page's own endpoint, waited for: the data the detail view shows."""
    base, headers = page
    answer = requests.post(
        f"{base}/api/projects/{PROJECT}/runs", json={"since": "2026-09-01"}, headers=headers, timeout=60
    )
    if answer.status_code == 409 and answer.json().get("code") == "run_due":  # paused with a daily run due
        assert requests.post(f"{base}/api/projects/{PROJECT}/schedule/rearm", json={}, headers=headers).ok
        sp.wait_ready(base, headers, PROJECT)
        answer = requests.post(f"{base}/api/projects/{PROJECT}/runs", json={"since": "2026-09-01"}, headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["dag_id"] == DAG and body["conf"] == {"since": "2026-09-01"}
    assert wait_for_run(airflow_server, DAG, body["dag_run_id"])["state"] == "success"
    return body


def _runs_total(airflow_server, dag: str = DAG) -> int:
    return airflow_server.session().get(f"{airflow_server.url}/api/v2/dags/{dag}/dagRuns").json()["total_entries"]


# -- who may see and do what ------------------------------------------------------------------------------------
WRITES = [
    ("PUT", f"/api/projects/{PROJECT}/settings", {"version": "x", "enabled": False}),
    ("POST", f"/api/projects/{PROJECT}/runs", {}),
    ("POST", f"/api/projects/{PROJECT}/dag/parse", {}),
    ("POST", f"/api/projects/{PROJECT}/schedule/rearm", {}),
]


def test_anonymous_and_forged_requests_are_refused(airflow_server, page):
    base, _ = page
    runs_before = _runs_total(airflow_server)
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
    for method, path, body in WRITES:
        assert requests.request(method, base + path, json=body, timeout=10).status_code == 401, path
    assert _runs_total(airflow_server) == runs_before


def test_the_page_is_in_the_ui_navigation_with_a_label_that_fits(airflow_server):
    plugins = airflow_server.session().get(f"{airflow_server.url}/api/v2/plugins", timeout=10).json()["plugins"]
    ours = next(p for p in plugins if p["name"] == "harvest_sync_ui")
    assert [a["url_prefix"] for a in ours["fastapi_apps"]] == ["/harvest"]
    (view,) = ours["external_views"]
    assert view["destination"] == "nav" and view["url_route"] == "harvest-sync" and view["href"] == "harvest/"
    assert view["name"] == "Harvest"  # the navigation shows ~7 characters: "Harvest sync" was cut


def test_a_viewer_sees_a_read_only_page_and_every_write_is_refused(airflow_server, page, as_user):
    base, _ = page
    viewer = as_user("viewer")
    listing = requests.get(f"{base}/", headers=viewer, timeout=60)
    assert listing.status_code == 200 and "Apollo" in listing.text
    assert 'data-action="sync"' not in listing.text and "Set up Harvest sync" not in listing.text
    project = requests.get(f"{base}/projects/{PROJECT}", headers=viewer, timeout=60)
    assert project.status_code == 200 and "Read-only" in project.text
    for button in ('id="save"', 'id="save-reset"', 'id="clear"', 'data-action="sync"', 'id="harvest-refresh"'):
        assert button not in project.text, button
    assert 'id="enabled" name="enabled" checked disabled' in project.text
    detail = requests.get(f"{base}/api/projects/{PROJECT}", headers=viewer, timeout=60).json()
    assert detail["may"] == {"view": True, "operate": False, "edit": False}
    before = (
        _runs_total(airflow_server),
        sp.sql(airflow_server, "SELECT * FROM primetric.harvest_settings ORDER BY 1"),
    )
    for method, path, body in WRITES:
        answer = requests.request(method, base + path, json=body, headers=viewer, timeout=60)
        assert answer.status_code == 403, (path, answer.text)
        # The simple auth manager's refusal names the role that is missing (FAB's: the permissions).
        assert "'viewer' may not" in answer.json()["detail"], answer.json()
        assert "the Airflow role user or higher (it has viewer)" in answer.json()["detail"], answer.json()
    refresh = requests.get(f"{base}/api/projects/{PROJECT}/harvest-projects?refresh=true", headers=viewer, timeout=60)
    assert refresh.status_code == 403  # a refresh spends the account's Harvest requests: editors only
    # Setting up a project with no DAG yet needs the right to edit DAGs.
    setup = requests.put(f"{base}/api/projects/{SWITCHED_OFF}/settings", json={"version": "x"}, headers=viewer)
    assert setup.status_code == 403 and "role user or higher" in setup.json()["detail"], setup.json()
    after = (_runs_total(airflow_server), sp.sql(airflow_server, "SELECT * FROM primetric.harvest_settings ORDER BY 1"))
    assert after == before


def test_the_list_shows_every_primetric_project_set_up_or_not(airflow_server, page):
    base, headers = page
    projects = requests.get(f"{base}/api/projects", headers=headers, timeout=60).json()["projects"]
    expected = sp.sql(
        airflow_server,
        "SELECT p.id, p.name, s.project_id IS NOT NULL, COALESCE(s.enabled, false),"
        " COALESCE((SELECT array_agg(harvest_project_id ORDER BY harvest_project_id)"
        " FROM primetric.harvest_project_links l WHERE l.project_id = p.id), '{}')"
        " FROM primetric.projects p LEFT JOIN primetric.harvest_settings s ON s.project_id = p.id",
    )
    shown = {(p["project_id"], p["name"], p["linked"], p["enabled"], tuple(p["harvest_project_ids"])) for p in projects}
    assert shown == {(i, n, linked, enabled, tuple(h)) for i, n, linked, enabled, h in expected}
    by_id = {p["project_id"]: p for p in projects}
    for project_id, *_, enabled, _h in expected:
        assert (by_id[project_id]["dag"] is not None) is enabled  # a switched-off project has no DAG
    assert by_id[PROJECT]["dag"]["url"] == f"/dags/{DAG}"
    html = requests.get(f"{base}/", headers=headers, timeout=60).text
    assert f'href="/dags/harvest_sync_{SWITCHED_OFF}"' not in html  # no link to a DAG that does not exist
    found = requests.get(f"{base}/", params={"q": "zeph"}, headers=headers, timeout=60).text
    assert "Zephyr" in found and "Apollo" not in found  # search by name


def test_reset_and_sync_runs_and_the_project_page_matches_the_tables(airflow_server, page, reset_run):
    base, headers = page
    detail = requests.get(f"{base}/api/projects/{PROJECT}", headers=headers, timeout=60).json()
    missing = sp.sql(
        airflow_server,
        "SELECT name, email, reason, entries, hours FROM primetric.missing_teammates WHERE project_id = %s"
        " ORDER BY hours DESC, name",
        (PROJECT,),
    )
    assert missing and "Nina Novak" in [m[0] for m in missing]  # the demo's known missing teammate
    assert [(m["name"], m["email"], m["reason"], m["entries"], m["hours"]) for m in detail["missing"]] == [
        (*r[:4], float(r[4])) for r in missing
    ]
    assert all(
        m["action"] == "add them to Primetric as a Manager or Employee with this e-mail" for m in detail["missing"]
    )
    (count,) = sp.sql(
        airflow_server,
        "SELECT count(*) FROM primetric.worklogs WHERE project_id = %s AND harvest_time_entry_id IS NOT NULL",
        (PROJECT,),
    )[0]
    assert detail["worklogs"] == detail["synced"]["worklogs"] == count > 0
    # The run: its four steps, what the extract fetched (recorded per page), and its result.
    run = requests.get(
        f"{base}/api/projects/{PROJECT}/runs/{reset_run['dag_run_id']}", headers=headers, timeout=30
    ).json()
    assert [(s["task_id"], s["state"]) for s in run["steps"]] == [
        ("extract", "success"),
        ("transform", "success"),
        ("load", "success"),
        ("report", "success"),
    ]
    ((pages, entries),) = sp.sql(
        airflow_server,
        "SELECT pages, entries FROM harvest_sync.run_progress WHERE project_id = %s AND run_id = %s",
        (PROJECT, reset_run["dag_run_id"]),
    )
    assert run["extract"] == {"pages": pages, "entries": entries} and pages >= 2 and entries > 0
    assert run["result"]["mode"] == "reset" and run["result"]["fetched"] == entries
    ((last_run, loaded),) = sp.sql(
        airflow_server,
        "SELECT last_run_id, last_summary FROM harvest_sync.sync_state WHERE project_id = %s",
        (PROJECT,),
    )
    assert last_run == reset_run["dag_run_id"]  # what the load recorded is what the page shows
    assert [run["result"][k] for k in ("inserted", "updated", "deleted")] == [
        loaded[k] for k in ("inserted", "updated", "deleted")
    ]
    html = requests.get(f"{base}/projects/{PROJECT}", params={"run": reset_run["dag_run_id"]}, headers=headers).text
    for name, email, *_ in missing:
        assert name in html and email in html
    assert f'href="/dags/{DAG}"' in html and reset_run["dag_run_id"] in html and 'id="run-result"' in html


# -- every write is checked ----------------------------------------------------------------------------------------
def test_each_refused_run_request_is_422_naming_the_field(page, as_user):
    base, _ = page
    manager = as_user("manager")
    cases = [
        ({"since": "yesterday"}, "since", "YYYY-MM-DD"),
        ({"since": "2999-01-01"}, "since", "after today"),
        ({"since": "2026-09-01", "clear_data": True}, "clear_data", "cannot be combined"),
        ({"clear_data": True}, "confirm_project_name", "repeat the project's name"),
        ({"clear_data": True, "confirm_project_name": "Apolo"}, "confirm_project_name", "'Apolo'"),
        ({"unpause": True}, "unpause", "unknown parameter"),
    ]
    for body, field, words in cases:
        answer = requests.post(f"{base}/api/projects/{PROJECT}/runs", json=body, headers=manager, timeout=60)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["field"] == field and words in answer.json()["detail"], answer.json()


def test_each_refused_save_is_422_naming_the_field(page, as_user):
    base, _ = page
    manager = as_user("manager")
    version = requests.get(f"{base}/api/projects/{PROJECT}", headers=manager, timeout=60).json()["version"]
    good = {"version": version, "enabled": True, "harvest_project_ids": [1001, 1002], "sync_since": "2026-09-01"}
    cases = [
        ({"sync_since": "2026-13-01"}, "sync_since", "YYYY-MM-DD"),
        ({"sync_since": "2999-01-01"}, "sync_since", "after today"),
        ({"harvest_project_ids": [1001, 424242]}, "harvest_project_ids", "Harvest does not list project id(s) 424242"),
        ({"harvest_project_ids": [1001, 2001]}, "harvest_project_ids", "feeds Primetric project 'Zephyr' (#2)"),
        ({"enabled": "on"}, "enabled", "true or false"),
        ({"since": "2026-09-01"}, "since", "unknown field"),
    ]
    for change, field, words in cases:
        answer = requests.put(f"{base}/api/projects/{PROJECT}/settings", json={**good, **change}, headers=manager)
        assert answer.status_code == 422, (change, answer.text)
        assert answer.json()["field"] == field and words in answer.json()["detail"], answer.json()


def test_what_cannot_exist_is_not_found_and_an_error_repeats_little(page):
    base, headers = page
    for project in ("0", "99999999999999999999", "9223372036854775808", "abc", "424242"):
        for method, path in (
            ("GET", f"/api/projects/{project}"),
            ("GET", f"/projects/{project}"),
            ("PUT", f"/api/projects/{project}/settings"),
            ("POST", f"/api/projects/{project}/runs"),
        ):
            answer = requests.request(method, base + path, json={"version": "x"}, headers=headers, timeout=60)
            assert answer.status_code == 404, (method, path, answer.status_code, answer.text[:200])
    huge = "2" * 2_000_000
    answer = requests.post(f"{base}/api/projects/{PROJECT}/runs", json={"since": huge}, headers=headers, timeout=60)
    assert answer.status_code == 422 and len(answer.text) < 1000 and answer.text.count("2222") < 20
    answer = requests.put(f"{base}/api/projects/{PROJECT}/settings", json={huge: 1}, headers=headers, timeout=60)
    assert answer.status_code == 422 and len(answer.text) < 1000


def test_a_switched_off_or_unlinked_project_shows_a_page_not_raw_json(page):
    base, headers = page
    html = requests.get(f"{base}/projects/{SWITCHED_OFF}", headers=headers, timeout=60)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "switched off" in html.text and f'href="/dags/harvest_sync_{SWITCHED_OFF}"' not in html.text
    missing = requests.get(f"{base}/projects/424242", headers=headers, timeout=60)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "Primetric has no project" in missing.text


def test_a_harvest_project_linked_elsewhere_is_marked_with_where(page, as_user):
    base, _ = page
    listed = requests.get(f"{base}/api/projects/{SWITCHED_OFF}/harvest-projects", headers=as_user("manager")).json()
    by_id = {p["id"]: p for p in listed["projects"]}
    assert by_id[1001]["linked_to"] == {"project_id": 1, "name": "Apollo"}
    assert by_id[1001]["label"] == "Example Client — Apollo web (P1001)"
    assert by_id[3001]["linked_to"] is None or by_id[3001]["linked_to"]["project_id"] != SWITCHED_OFF


def test_two_saves_from_the_same_version_the_second_is_refused_and_the_history_shows_the_first(page, as_user):
    base, _ = page
    manager = as_user("manager")
    detail = requests.get(f"{base}/api/projects/{PROJECT}", headers=manager, timeout=60).json()
    form = {"version": detail["version"], **detail["settings"]}
    first = requests.put(
        f"{base}/api/projects/{PROJECT}/settings",
        headers=manager,
        json={**form, "prevent_new_assignment_creation": not form["prevent_new_assignment_creation"]},
    )
    second = requests.put(
        f"{base}/api/projects/{PROJECT}/settings",
        headers=as_user("admin"),
        json={**form, "trim_assignments_to_worklogs": not form["trim_assignments_to_worklogs"]},
    )
    assert first.status_code == 200 and first.json()["changed"], first.text
    assert second.status_code == 409 and "changed meanwhile by manager" in second.json()["detail"]
    after = requests.get(f"{base}/api/projects/{PROJECT}", headers=manager, timeout=60).json()
    assert after["settings"]["trim_assignments_to_worklogs"] == form["trim_assignments_to_worklogs"]
    (latest, *_) = after["history"]
    assert latest["changed_by"] == "manager"
    was, now = ("on", "off") if form["prevent_new_assignment_creation"] else ("off", "on")
    assert latest["changes"] == [["Prevent new assignment creation", was, now]]
    html = requests.get(f"{base}/projects/{PROJECT}", headers=manager, timeout=60).text
    assert 'id="settings-history"' in html and "Prevent new assignment creation" in html
    # Put it back (the other tests expect the demo's settings).
    back = {
        "version": after["version"],
        **after["settings"],
        "prevent_new_assignment_creation": form["prevent_new_assignment_creation"],
    }
    assert requests.put(f"{base}/api/projects/{PROJECT}/settings", headers=manager, json=back).status_code == 200


def test_harvest_unreachable_the_form_says_so_keeps_the_links_and_saves_no_unchecked_link(
    airflow_server, page, as_user
):
    base, _ = page
    manager = as_user("manager")
    requests.get(f"{base}/api/projects/{PROJECT}/harvest-projects", headers=manager, timeout=60)  # a list exists
    sp.sim(
        airflow_server, "POST", "/_sim/faults", {"mode": "status", "path": "/v2/projects", "status": 500, "times": None}
    )
    try:
        listed = requests.get(
            f"{base}/api/projects/{PROJECT}/harvest-projects?refresh=true", headers=manager, timeout=120
        ).json()
        assert listed["error"] and "/v2/projects" in listed["error"]
        assert {1001, 1002} <= {p["id"] for p in listed["projects"]}  # the last list, still offered
        html = requests.get(f"{base}/projects/{PROJECT}", headers=manager, timeout=60).text
        assert 'data-id="1001"' in html and "Apollo web (P1001)" in html  # the current links
        detail = requests.get(f"{base}/api/projects/{SWITCHED_OFF}", headers=manager, timeout=60).json()
        form = {"version": detail["version"], **detail["settings"], "enabled": True, "harvest_project_ids": [31337]}
        saved = requests.put(f"{base}/api/projects/{SWITCHED_OFF}/settings", json=form, headers=manager, timeout=120)
        assert saved.status_code == 503 and saved.json()["field"] == "harvest_project_ids"
        assert "Harvest could not be reached" in saved.json()["detail"]
    finally:
        sp.sim(airflow_server, "DELETE", "/_sim/faults")
    assert sp.sql(
        airflow_server, "SELECT enabled FROM primetric.harvest_settings WHERE project_id = %s", (SWITCHED_OFF,)
    ) == [(False,)]


# -- nothing from another origin -----------------------------------------------------------------------------------
FRAME = {"content-security-policy": "frame-ancestors 'self'", "x-frame-options": "SAMEORIGIN"}


def test_every_answer_of_both_apps_may_be_framed_by_airflow_only(airflow_server, page):
    base, headers = page
    urls = [
        (f"{base}/", headers),
        (f"{base}/projects/{PROJECT}", headers),
        (f"{base}/api/projects", headers),
        (f"{base}/projects/424242", headers),
        (f"{base}/api/projects/abc", headers),
        (f"{base}/", {}),
        (f"{airflow_server.url}/harvest-install/", headers),
        (f"{airflow_server.url}/harvest-install/", {}),
    ]
    for url, who in urls:
        answer = requests.get(url, headers=who, allow_redirects=False, timeout=60)
        for header, value in FRAME.items():
            assert answer.headers.get(header) == value, (url, answer.status_code, header, answer.headers.get(header))


def test_a_write_from_another_origin_or_as_a_form_is_refused(airflow_server, page):
    base, headers = page
    before = (
        _runs_total(airflow_server),
        sp.sql(airflow_server, "SELECT * FROM primetric.harvest_settings ORDER BY 1"),
    )
    same_site = f"http://localhost:{airflow_server.port}"  # another origin on the same site (same host name rules)
    attempts = [
        dict(json={}, headers={**headers, "Origin": same_site}),
        dict(json={}, headers={**headers, "Origin": "https://evil.example"}),
        dict(json={}, headers={**headers, "Sec-Fetch-Site": "cross-site"}),
        dict(data={"since": ""}, headers=headers),  # a plain HTML form
        dict(data=json.dumps({}), headers={**headers, "Content-Type": "text/plain"}),  # a form's JSON trick
    ]
    for attempt in attempts:
        answer = requests.post(f"{base}/api/projects/{PROJECT}/runs", timeout=30, **attempt)
        assert answer.status_code in (403, 415), (attempt, answer.status_code, answer.text)
    settings = requests.put(
        f"{base}/api/projects/{PROJECT}/settings",
        json={"version": "x"},
        headers={**headers, "Origin": same_site},
        timeout=30,
    )
    assert settings.status_code == 403 and "another site" in settings.json()["detail"]
    after = (_runs_total(airflow_server), sp.sql(airflow_server, "SELECT * FROM primetric.harvest_settings ORDER BY 1"))
    assert after == before


# -- runs: exactly one per "Sync now" on a paused DAG; a failure with its step, error and log ---------------------
def test_sync_now_on_a_paused_dag_starts_exactly_one_run_and_no_missed_daily_run(airflow_server, page, as_user):
    base, _ = page
    manager = as_user("manager")
    sp.harvest_project(airflow_server, 5101, "Ceres ops")
    sp.primetric_project(airflow_server, 51, "Ceres")
    sp.link_by_sql(airflow_server, 51, [5101])  # linked by SQL: daily schedule from the DAG's first start
    assert requests.post(f"{base}/api/projects/51/dag/parse", json={}, headers=manager).ok
    details = sp.wait_for_dag(airflow_server, "harvest_sync_51")
    assert details["is_paused"] and details["timetable_summary"]  # paused at creation, with a daily schedule
    first = requests.post(f"{base}/api/projects/51/runs", json={}, headers=manager, timeout=60)
    assert first.status_code == 409 and first.json()["code"] == "run_due", first.text  # unpausing would start it
    assert sp.runs(airflow_server, "harvest_sync_51") == []
    rearm = requests.post(f"{base}/api/projects/51/schedule/rearm", json={}, headers=manager, timeout=60)
    assert rearm.status_code == 200
    sp.wait_ready(base, manager, 51)
    started = requests.post(f"{base}/api/projects/51/runs", json={}, headers=manager, timeout=60)
    assert started.status_code == 200 and started.json()["unpaused"] is True, started.text
    assert sp.wait_for_end(airflow_server, "harvest_sync_51", started.json()["dag_run_id"])["state"] == "success"
    import time

    time.sleep(8)  # several scheduler loops: a scheduled run would have been created by now
    runs = sp.runs(airflow_server, "harvest_sync_51")
    assert [(r["dag_run_id"], r["run_type"]) for r in runs] == [(started.json()["dag_run_id"], "manual")]
    dag = airflow_server.session().get(f"{airflow_server.url}/api/v2/dags/harvest_sync_51/details").json()
    assert not dag["is_paused"] and dag["next_dagrun_run_after"] > rearm.json()["daily_schedule_since"]
    # The page says whether the daily schedule is on; the history names the re-arm.
    html = requests.get(f"{base}/projects/51", headers=manager, timeout=60).text
    assert 'id="daily"' in html and "synced daily" in html
    history = requests.get(f"{base}/api/projects/51", headers=manager).json()["history"]
    assert history[0]["changed_by"] == "manager" and history[0]["changes"][0][0] == "Daily sync armed from"
    # With Daily sync off, a paused DAG runs once and nothing else is scheduled.
    set_paused(airflow_server, "harvest_sync_51", True)
    detail = requests.get(f"{base}/api/projects/51", headers=manager).json()
    off = requests.put(
        f"{base}/api/projects/51/settings",
        headers=manager,
        json={"version": detail["version"], **detail["settings"], "daily_schedule": False},
    )
    assert off.status_code == 200
    assert requests.post(f"{base}/api/projects/51/dag/parse", json={}, headers=manager).ok
    dag = sp.wait_ready(base, manager, 51)
    assert dag["dag"]["daily"] is False and dag["dag"]["next_run_after"] is None
    again = requests.post(f"{base}/api/projects/51/runs", json={}, headers=manager, timeout=60)
    assert again.status_code == 200 and again.json()["unpaused"] is True
    sp.wait_for_end(airflow_server, "harvest_sync_51", again.json()["dag_run_id"])
    assert len(sp.runs(airflow_server, "harvest_sync_51")) == 2
    assert "on demand only" in requests.get(f"{base}/projects/51", headers=manager, timeout=60).text


def test_a_failed_run_shows_its_step_the_first_line_of_its_error_and_a_link_to_its_log(airflow_server, page, as_user):
    base, _ = page
    manager = as_user("manager")
    sp.harvest_project(airflow_server, 5201, "Vesta ops")
    sp.primetric_project(airflow_server, 52, "Vesta")
    sp.link_by_sql(airflow_server, 52, [5201])
    assert requests.post(f"{base}/api/projects/52/dag/parse", json={}, headers=manager).ok
    sp.wait_for_dag(airflow_server, "harvest_sync_52")
    assert requests.post(f"{base}/api/projects/52/schedule/rearm", json={}, headers=manager).ok
    sp.wait_ready(base, manager, 52)
    # Harvest refuses the token once: the extract fails at once (no retries).
    sp.sim(airflow_server, "POST", "/_sim/faults", {"mode": "unauthorized", "path": "/v2/users/me", "times": 1})
    started = requests.post(f"{base}/api/projects/52/runs", json={}, headers=manager, timeout=60).json()
    run_id = started["dag_run_id"]
    assert sp.wait_for_end(airflow_server, "harvest_sync_52", run_id)["state"] == "failed"
    log_url = f"/dags/harvest_sync_52/runs/{sp.quoted(run_id)}/tasks/extract?try_number=1"
    detail = requests.get(f"{base}/api/projects/52", headers=manager, timeout=60).json()
    failure = detail["run"]["failure"]
    assert failure["task_id"] == "extract" and failure["log_url"] == log_url
    assert failure["error"].startswith("HarvestAccessError: Harvest answered HTTP 401 for /v2/users/me")
    assert "\n" not in failure["error"]
    # After a reload, the list and the project page still say so.
    listed = {p["project_id"]: p for p in requests.get(f"{base}/api/projects", headers=manager).json()["projects"]}
    assert listed[52]["last_run_state"] == "failed" and listed[52]["last_run"]["failure"] == failure
    for url in (f"{base}/", f"{base}/projects/52"):
        html = requests.get(url, headers=manager, timeout=60).text
        assert 'data-failed-task="extract"' in html and "HarvestAccessError: Harvest answered HTTP 401" in html
        assert f'href="{log_url}"' in html.replace("&amp;", "&")


def test_the_dag_says_how_each_kind_of_run_behaves(airflow_server):
    doc = airflow_server.session().get(f"{airflow_server.url}/api/v2/dags/{DAG}/details").json()["doc_md"]
    assert "incrementally (entries updated since the last run)" not in doc
    for words in (
        "reconcile window",
        "Weekly full reconcile",
        "Backfill",
        "exactly the spent_dates of its data interval",
        "Reset and sync",
        "Clear data",
        "confirm_project_name",
        "**Schedule:** daily at 00:00 UTC",
    ):
        assert words in doc, words


def test_no_secret_is_ever_shown(airflow_server, page, reset_run):
    base, headers = page
    token = headers["Authorization"].split()[1]
    secrets = json.loads((airflow_server.home / "local-secrets.json").read_text())
    forbidden = [DEMO_TOKEN, token, *airflow_server.passwords.values(), *secrets.values()]
    urls = (
        f"{base}/",
        f"{base}/projects/{PROJECT}",
        f"{base}/api/projects",
        f"{base}/api/projects/{PROJECT}",
        f"{base}/api/projects/{PROJECT}/harvest-projects",
        f"{base}/api/projects/{PROJECT}/dag",
    )
    for url in urls:
        body = requests.get(url, headers=headers, timeout=60).text
        leaked = [s[:4] + "…" for s in forbidden if s in body]
        assert not leaked, f"{url} shows a secret: {leaked}"

"""Real roles for a real team, on `make airflow AUTH=fab`'s Airflow (the FAB auth manager of production).

Three users created through FAB: ``admin`` (FAB role Admin) and ``viewer`` (Viewer) by the launcher with
`airflow users create`, and ``apollo``, made the way the README says: `airflow users create --role Public`,
then `scripts/grant_project_manager.py apollo 1`, both through `scripts/airflow_local.py exec`. Through
Airflow's REST API, the Harvest sync page's own endpoints and the page itself in Chromium (reached through
Airflow's navigation, inside its iframe), each may do exactly what the rules say:

- apollo sees and acts on Apollo (project 1 of include/sql/demo_seed.sql) only: no Zephyr row, 403 on its
  endpoints;
- viewer sees every project and acts on none (no buttons, 403 on every write);
- admin acts on everything and alone reaches the Install Harvest page.

Every refusal is a 403 whose message names the missing permission. Screenshots: test-artifacts/roles-fab/.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import requests

from primetric_harvest.fab_roles import project_manager_permissions
from primetric_harvest.names import dag_id, project_manager_role
from tests.airflow_server import run_path, wait_for_run
from tests.browser import ARTIFACTS, chromium_page
from tests.sync_page import wait_ready

ROOT = Path(__file__).resolve().parents[1]
APOLLO, ZEPHYR, SWITCHED_OFF = 1, 2, 3  # include/sql/demo_seed.sql
WITH_DAG = {APOLLO, ZEPHYR}  # the switched-off project has no DAG
USERS = ("admin", "viewer", "apollo")
# Who may see (list, open) and operate (trigger) which project: the rules of the issue.
MAY_VIEW = {"admin": {1, 2, 3}, "viewer": {1, 2, 3}, "apollo": {1}}
MAY_OPERATE = {"admin": {1, 2, 3}, "viewer": set(), "apollo": {1}}  # buttons only where a DAG exists


def cli(server, args: list[str], stdin: str | None = None) -> str:
    """A command run the README's way: `scripts/airflow_local.py exec` (the local Airflow's environment)."""
    launcher = [sys.executable, "scripts/airflow_local.py", "--home", str(server.home), "--port", str(server.port),
                "--meta-db", server.meta_db, "--primetric-db", server.primetric_db, "exec"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}  # nothing of the test session's
    done = subprocess.run(
        [*launcher, *args], env=env, cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{args[:3]} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def fab(airflow_fab_server):
    """The FAB stack plus the Apollo manager, made with the README's recipe; the grant script's output."""
    server = airflow_fab_server
    password = secrets.token_urlsafe(12)
    created = cli(
        server,
        ["airflow", "users", "create", "--username", "apollo", "--role", "Public", "--firstname", "Apollo",
         "--lastname", "Manager", "--email", "apollo@example.invalid"],
        stdin=f"{password}\n{password}\n",  # FAB asks twice; never on a command line
    )  # fmt: skip
    assert 'User "apollo" created with role "Public"' in created, created
    server.passwords["apollo"] = password
    granted = cli(server, ["python", "scripts/grant_project_manager.py", "apollo", str(APOLLO)])
    # The demo's DAGs start paused with a daily run already due (the seed links them in the past): "Sync now"
    # would start that run too, so the page refuses (409 run_due) until the schedule is re-armed from now.
    admin = headers(server, "admin")
    for project in WITH_DAG:
        rearmed = requests.post(f"{server.url}/harvest/api/projects/{project}/schedule/rearm", json={}, headers=admin)
        assert rearmed.status_code == 200, rearmed.text
        wait_ready(f"{server.url}/harvest", admin, project)
    return server, granted


def headers(server, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(user)}"}


def run_count(server, dag: str) -> int:
    return server.session().get(f"{server.url}/api/v2/dags/{dag}/dagRuns", timeout=10).json()["total_entries"]


def drop_run(server, dag: str, run_id: str) -> None:
    """Delete a run a test triggered through the REST API on a paused DAG (still queued), so it never runs."""
    answer = server.session().delete(server.url + run_path(dag, run_id), timeout=30)
    assert answer.status_code == 204, answer.text


def assert_refused(answer: requests.Response, *missing: str) -> None:
    """A 403 whose message names every one of ``missing``."""
    assert answer.status_code == 403, (answer.status_code, answer.text[:500])
    detail = answer.json()["detail"]
    for words in missing:
        assert words in detail, (words, detail)


# --------------------------------------------------------------------------------------------------------------
@pytest.mark.airflow
def test_the_grant_script_gives_one_projects_role_and_nothing_more(fab):
    server, granted = fab
    role = project_manager_role(APOLLO)
    assert f"apollo: role '{role}' added; may read and trigger {dag_id(APOLLO)}" in granted, granted
    admin = server.session()
    user = admin.get(f"{server.url}/auth/fab/v1/users/apollo", timeout=10).json()
    assert sorted(r["name"] for r in user["roles"]) == ["Public", role]
    body = admin.get(f"{server.url}/auth/fab/v1/roles/{urllib.parse.quote(role)}", timeout=10).json()
    held = {(p["action"]["name"], p["resource"]["name"]) for p in body["actions"]}
    assert held == set(project_manager_permissions(APOLLO))
    # Granting again changes nothing.
    again = cli(server, ["python", "scripts/grant_project_manager.py", "apollo", str(APOLLO)])
    assert f"apollo: role '{role}' already held" in again and "permission(s) added" not in again, again


@pytest.mark.airflow
def test_the_rest_api_follows_the_roles(fab):
    server, _ = fab
    for user in USERS:
        h = headers(server, user)
        listed = requests.get(f"{server.url}/api/v2/dags", headers=h, timeout=10).json()["dags"]
        assert {d["dag_id"] for d in listed} == {dag_id(p) for p in MAY_VIEW[user] & WITH_DAG}, user
        for project in (APOLLO, ZEPHYR):
            dag = dag_id(project)
            seen = requests.get(f"{server.url}/api/v2/dags/{dag}", headers=h, timeout=10)
            assert seen.status_code == (200 if project in MAY_VIEW[user] else 403), (user, dag, seen.text)
            before = run_count(server, dag)
            trigger = requests.post(
                f"{server.url}/api/v2/dags/{dag}/dagRuns",
                json={"logical_date": None, "conf": {}},
                headers=h,
                timeout=30,
            )
            if project in MAY_OPERATE[user]:
                assert trigger.status_code == 200, (user, dag, trigger.text)
                drop_run(server, dag, trigger.json()["dag_run_id"])
            else:
                assert trigger.status_code == 403, (user, dag, trigger.text)
                assert run_count(server, dag) == before


@pytest.mark.airflow
def test_the_harvest_sync_pages_endpoints_follow_the_roles(fab):
    server, _ = fab
    base = f"{server.url}/harvest"
    for user in USERS:
        h = headers(server, user)
        projects = requests.get(f"{base}/api/projects", headers=h, timeout=30).json()["projects"]
        assert {p["project_id"] for p in projects} == MAY_VIEW[user], user
        assert {p["project_id"] for p in projects if p["may"]["operate"]} == MAY_OPERATE[user] & WITH_DAG, user
        # Editing settings: where one may operate, plus setting up a project with no DAG yet (edit DAGs).
        assert {p["project_id"] for p in projects if p["may"]["edit"]} == MAY_OPERATE[user], user
        page = requests.get(f"{base}/", headers=h, timeout=30).text
        assert page.count('data-action="sync"') == len(MAY_OPERATE[user] & WITH_DAG), user  # only where allowed
        assert ("Zephyr" in page) is (ZEPHYR in MAY_VIEW[user]), user

        for project in (APOLLO, ZEPHYR):
            dag = dag_id(project)
            detail = requests.get(f"{base}/api/projects/{project}", headers=h, timeout=30)
            run_status = requests.get(f"{base}/api/projects/{project}/runs/any-run", headers=h, timeout=30)
            html = requests.get(f"{base}/projects/{project}", headers=h, timeout=30)
            if project in MAY_VIEW[user]:
                assert detail.status_code == 200 and detail.json()["may"]["operate"] is (project in MAY_OPERATE[user])
                assert html.status_code == 200
            else:
                for answer in (detail, run_status):
                    assert_refused(answer, f"'{user}' may not view the Harvest sync {dag}", f"can_read on DAG:{dag}")
                assert html.status_code == 403 and f"can_read on DAG:{dag}" in html.text
                assert "Missing teammates" not in html.text

            before = run_count(server, dag)
            posted = requests.post(f"{base}/api/projects/{project}/runs", json={}, headers=h, timeout=30)
            if project in MAY_OPERATE[user]:
                assert posted.status_code == 200, (user, dag, posted.text)
                # The page unpaused the DAG for this run: it runs, as its user (and ends before the next one).
                run = wait_for_run(server, dag, posted.json()["dag_run_id"], timeout=300)
                assert run["state"] == "success" and run["triggering_user_name"] == user, run
            elif project in MAY_VIEW[user]:  # the viewer: may read the DAG, not edit it or create runs
                assert_refused(posted, f"'{user}' may not operate the Harvest sync {dag}",
                               f"can_edit on DAG:{dag} (or on DAGs)", "can_create on DAG Runs")  # fmt: skip
            else:  # apollo on Zephyr: neither read nor edit that DAG
                assert_refused(posted, f"can_read on DAG:{dag} (or on DAGs)", f"can_edit on DAG:{dag} (or on DAGs)")
            if project not in MAY_OPERATE[user]:
                assert run_count(server, dag) == before, (user, dag)


@pytest.mark.airflow
def test_only_the_admin_reaches_the_install_page(fab):
    server, _ = fab
    page = f"{server.url}/harvest-install/"
    assert "Install the Harvest integration" in requests.get(page, headers=headers(server, "admin"), timeout=30).text
    for user in ("viewer", "apollo"):
        answer = requests.get(page, headers=headers(server, user), timeout=30)
        assert answer.status_code == 403, (user, answer.status_code)
        assert f"&#39;{user}&#39; is not an administrator: it needs FAB&#39;s Admin role" in answer.text, answer.text
        assert "can_edit on Roles" in answer.text and "Install the Harvest integration" not in answer.text


# --------------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(
    not (shutil.which("chromium") or os.path.exists("/usr/bin/chromium")),
    reason="Debian chromium is not installed: make browser",
)
@pytest.mark.browser
def test_each_user_in_the_airflow_ui(fab):
    """Sign in through FAB's login form, open Harvest sync from Airflow's navigation, act as allowed."""
    server, _ = fab
    shutil.rmtree(ARTIFACTS / "roles-fab", ignore_errors=True)
    for user in USERS:
        with chromium_page("roles-fab") as (page, screenshot):
            try:
                page.goto(f"{server.url}/")
                page.wait_for_url("**/auth/login**")  # FAB's own login page
                page.fill("#username", user)
                page.fill("#password", server.passwords[user])
                page.get_by_role("button", name="Sign In").click()
                page.wait_for_url(lambda url: "/auth/login" not in url, timeout=30_000)
                page.get_by_role("link", name="Harvest", exact=True).first.click()  # Airflow's navigation
                page.wait_for_url("**/plugin/harvest-sync", timeout=30_000)
                frame = page.frame_locator("iframe[title='Harvest']")
                frame.locator("table#projects").wait_for(timeout=30_000)
                screenshot(f"{user}-projects")

                rows = frame.locator("tr[data-project-id]")
                assert sorted(int(r) for r in rows.evaluate_all("rs => rs.map(r => r.dataset.projectId)")) == sorted(
                    MAY_VIEW[user]
                ), user
                for project in MAY_VIEW[user]:
                    buttons = frame.locator(f"tr[data-project-id='{project}'] button[data-action='sync']")
                    expected = 1 if project in MAY_OPERATE[user] & WITH_DAG else 0
                    assert buttons.count() == expected, (user, project)

                # The page's own session (the UI's cookie): writes the user may not do are refused, named.
                inner = next(f for f in page.frames if f.url.startswith(f"{server.url}/harvest/"))
                for project in {APOLLO, ZEPHYR} - MAY_OPERATE[user]:
                    answer = inner.evaluate(
                        """async (id) => {
                            const r = await fetch("api/projects/" + id + "/runs", {method: "POST",
                              headers: {"Content-Type": "application/json"}, body: "{}"});
                            return {status: r.status, detail: (await r.json()).detail};
                        }""",
                        project,
                    )
                    assert answer["status"] == 403 and f"DAG:{dag_id(project)}" in answer["detail"], (user, answer)

                if user == "apollo":  # acts on Apollo: Sync now runs the DAG to success
                    row = frame.locator(f"tr[data-project-id='{APOLLO}']")
                    with page.expect_response(
                        lambda r: r.request.method == "POST" and r.url.endswith(f"/harvest/api/projects/{APOLLO}/runs")
                    ) as posted:
                        row.get_by_role("button", name="Sync now").click()
                        dialog = frame.get_by_role("dialog")  # a paused DAG: the page asks first, in the page
                        try:
                            dialog.wait_for(timeout=5_000)
                        except Exception:  # noqa: BLE001 - not paused: no question, the run starts at once
                            pass
                        else:
                            dialog.get_by_role("button", name="Sync now").click()
                    assert posted.value.status == 200, posted.value.text()
                    # The list hands over to the project page, which follows the run to its end.
                    frame.locator("#run[data-state='success'], #run[data-state='failed']").wait_for(timeout=150_000)
                    screenshot("apollo-synced")
                    assert frame.locator("#run").get_attribute("data-state") == "success"
                    run = wait_for_run(server, dag_id(APOLLO), posted.value.json()["dag_run_id"], timeout=10)
                    assert run["state"] == "success" and run["triggering_user_name"] == "apollo"

                # Install Harvest (Admin menu; it opens in a tab of its own): the admin's page only.
                page.get_by_role("button", name="Admin").click()
                with page.context.expect_page(timeout=15_000) as opened:
                    page.get_by_role("menuitem", name="Install Harvest").click()
                install = opened.value
                install.wait_for_load_state()
                if user == "admin":
                    install.wait_for_selector("#redirect-url", timeout=30_000)
                else:
                    text = install.inner_text("body")
                    assert f"'{user}' is not an administrator: it needs FAB's Admin role" in text, text
                install.screenshot(path=str(ARTIFACTS / "roles-fab" / f"{user}-install.png"), full_page=True)
            except Exception:
                screenshot(f"{user}-failure")
                raise


@pytest.mark.airflow
def test_the_refusals_hold_no_secret(fab):
    server, _ = fab
    secrets_ = json.loads((server.home / "local-secrets.json").read_text())
    forbidden = [*server.passwords.values(), *secrets_.values()]
    h = headers(server, "apollo")
    for answer in (
        requests.post(f"{server.url}/harvest/api/projects/{ZEPHYR}/runs", json={}, headers=h, timeout=30),
        requests.get(f"{server.url}/harvest/projects/{ZEPHYR}", headers=h, timeout=30),
        requests.get(f"{server.url}/harvest-install/", headers=h, timeout=30),
    ):
        assert answer.status_code == 403
        assert not [s[:3] for s in forbidden if s in answer.text]

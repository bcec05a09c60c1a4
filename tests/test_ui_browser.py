"""The "Harvest sync" page in a real headless Chromium (Debian's, driven by Playwright), inside Airflow's UI.

Sign in through Airflow's login form, find the page in the navigation, see the demo projects, press
"Sync now" and watch the run finish, then see the known missing teammate in the project's detail view.
Screenshots: test-artifacts/ui-browser/.
"""

from __future__ import annotations

import os
import shutil

import psycopg
import pytest

from tests.airflow_server import wait_for_run
from tests.browser import ARTIFACTS, chromium_page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (shutil.which("chromium") or os.path.exists("/usr/bin/chromium")),
        reason="Debian chromium is not installed: make browser",
    ),
]
PROJECT = 1
DAG = "harvest_sync_1"
MISSING = "Nina Novak"  # the demo's person who logs Apollo time in Harvest but is not in Primetric


def test_sync_page_in_the_airflow_ui(airflow_server):
    with psycopg.connect(airflow_server.primetric_dsn) as conn:
        linked = "SELECT p.name FROM primetric.harvest_settings s JOIN primetric.projects p ON p.id = s.project_id"
        names = sorted(r[0] for r in conn.execute(linked))
    shutil.rmtree(ARTIFACTS / "ui-browser", ignore_errors=True)  # this run's screenshots only
    with chromium_page("ui-browser") as (page, screenshot):
        try:
            page.goto(f"{airflow_server.url}/plugin/harvest-sync")
            page.wait_for_url("**/auth/login**")  # not signed in: Airflow's login page first
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(airflow_server.passwords["admin"])
            screenshot("login")
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/plugin/harvest-sync", timeout=30_000)

            frame = page.frame_locator("iframe[title='Harvest sync']")
            for name in names:
                frame.get_by_role("link", name=name, exact=True).wait_for(timeout=30_000)
            page.get_by_role("link", name="Harvest sync").first.wait_for(timeout=10_000)  # in the UI's navigation
            screenshot("projects")

            row = frame.locator(f"tr[data-project-id='{PROJECT}']")
            with page.expect_response(
                lambda r: r.request.method == "POST" and r.url.endswith(f"/harvest/api/projects/{PROJECT}/runs")
            ) as posted:
                row.get_by_role("button", name="Sync now").click()
            assert posted.value.status == 200, posted.value.text()
            run_id = posted.value.json()["dag_run_id"]
            status = frame.locator(f"#status-{PROJECT}")
            status.and_(frame.locator("[data-state='ok'], [data-state='bad']")).wait_for(timeout=150_000)
            screenshot("sync-finished")
            assert "success" in status.inner_text(), status.inner_text()
            assert wait_for_run(airflow_server, DAG, run_id, timeout=10)["state"] == "success"

            page.wait_for_timeout(1500)  # the page reloads itself after a successful run
            frame.get_by_role("link", name=names[0], exact=True).first.wait_for(timeout=30_000)
            frame.locator(f"tr[data-project-id='{PROJECT}']").get_by_role("link").first.click()
            frame.get_by_role("cell", name=MISSING).wait_for(timeout=30_000)
            frame.get_by_role("link", name=run_id).wait_for(timeout=10_000)  # the run is among the last runs
            screenshot("project-detail")
        except Exception:
            screenshot("failure")
            raise

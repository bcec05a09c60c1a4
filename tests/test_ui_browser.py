"""The Harvest sync page in a real headless Chromium (Debian's, driven by Playwright), inside Airflow's UI, as
people reach it: through Airflow's login and navigation, in the iframe Airflow shows plugin pages in.

The acceptance story: a manager (an Airflow user who may trigger and edit DAGs, not an administrator) opens
Harvest from the navigation, sets up "Apollo 11", ticks Harvest, types two Harvest project names and picks
them (one linked elsewhere cannot be picked), sets the date, "Save, reset and sync all work logs", confirms in
the page, watches the run to its end and sees the missing teammate; the person is added to
primetric.employees by SQL (as Primetric would), "Sync now", the missing list empties and their hours appear.
At 1024 px, in the user's timezone, in light and dark mode. Screenshots: test-artifacts/ui-browser/.

Then the page refuses to be framed by another origin, and a cross-site form post changes nothing.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import threading
import time

import pytest

from scripts.airflow_local import free_port
from tests import sync_page as sp
from tests.browser import ARTIFACTS, chromium_page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (shutil.which("chromium") or os.path.exists("/usr/bin/chromium")),
        reason="Debian chromium is not installed: make browser",
    ),
]
PROJECT, NAME, DAG = 60, "Apollo 11", "harvest_sync_60"
LUNAR, COMMAND = 6101, 6102  # Harvest projects of the story (client NASA)
NEIL = ("Neil", "Armstrong", "neil@nasa.test")  # logs time in Harvest, not yet in Primetric
TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def sign_in(page, server, user: str) -> None:
    page.goto(f"{server.url}/plugin/harvest-sync")
    page.wait_for_url("**/auth/login**")  # not signed in: Airflow's login page first
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(server.passwords[user])
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def story(airflow_server):
    """Harvest and Primetric as the story starts: a Primetric project with no Harvest sync; two Harvest projects
    where Bobby (in Primetric) and Neil (not yet) log time."""
    server = airflow_server
    sp.harvest_project(server, LUNAR, "Lunar module")
    sp.harvest_project(server, COMMAND, "Command module")
    neil = sp.harvest_person(server, *NEIL)
    bobby = 502  # the demo's Bobby Tables (bobby@acme.test), Primetric employee 1
    sp.harvest_entries(server, bobby, LUNAR, ["2026-10-05", "2026-10-06", "2026-10-07"], 4.0)
    sp.harvest_entries(server, neil, COMMAND, ["2026-10-05", "2026-10-06"], 7.5)
    sp.harvest_entries(server, neil, LUNAR, ["2026-08-20"], 1.0)  # before the sync's start: never synced
    sp.primetric_project(server, PROJECT, NAME)
    # Other tests on this Airflow may have cached Harvest's project list (minutes) before these two existed.
    sp.sql(server, "DELETE FROM harvest_sync.harvest_projects")
    return server


def test_a_manager_sets_up_a_project_syncs_it_and_sees_the_missing_teammate_land(story):
    server = story
    shutil.rmtree(ARTIFACTS / "ui-browser", ignore_errors=True)  # this run's screenshots only
    with chromium_page("ui-browser") as (page, screenshot):
        page.set_viewport_size({"width": 1024, "height": 768})
        try:
            sign_in(page, server, "manager")
            page.wait_for_url("**/plugin/harvest-sync", timeout=30_000)
            nav = page.get_by_role("link", name="Harvest", exact=True)
            nav.wait_for(timeout=10_000)  # in Airflow's navigation, its label not cut
            assert nav.evaluate("a => [...a.querySelectorAll('*')].every(e => e.scrollWidth <= e.clientWidth + 1)")
            frame = page.frame_locator("iframe[title='Harvest']")
            frame.get_by_role("link", name="Apollo", exact=True).wait_for(timeout=30_000)
            assert frame.locator("body").evaluate("b => b.scrollWidth <= b.clientWidth + 1")  # fits at 1024 px
            screenshot("projects")

            # Find the project and set it up.
            frame.get_by_role("searchbox", name="Search projects by name").fill(NAME)
            frame.get_by_role("button", name="Search").click()
            row = frame.locator(f"tr[data-project-id='{PROJECT}']")
            row.get_by_role("link", name="Set up Harvest sync").click()
            frame.get_by_role("heading", name="Integration settings").wait_for(timeout=30_000)
            frame.get_by_label("Sync work logs from Harvest").check()
            search = frame.get_by_role("combobox", name="Select projects")
            frame.locator("#harvest-list-status", has_text="Harvest projects, active and archived").wait_for()
            search.fill("lunar")
            frame.get_by_role("option", name="NASA — Lunar module (P6101)").click()
            search.fill("command mod")
            frame.get_by_role("option", name="NASA — Command module (P6102)").click()
            # A Harvest project that feeds another Primetric project is shown with where, and cannot be picked.
            search.fill("apollo web")
            taken = frame.get_by_role("option", name=re.compile(r"Apollo web .*linked to Apollo \(#1\)"))
            assert taken.get_attribute("aria-disabled") == "true"
            taken.click(force=True)
            chips = frame.locator("#picked .chip")
            assert [c.get_attribute("data-id") for c in chips.all()] == [str(LUNAR), str(COMMAND)]
            search.fill("")
            frame.get_by_label("Sync work logs from", exact=True).fill("2026-09-01")
            screenshot("integration-settings")

            frame.get_by_role("button", name="Save, reset and sync all work logs").click()
            dialog = frame.get_by_role("dialog")
            dialog.wait_for()  # in the page: Airflow's iframe ignores window.confirm()
            assert f"{NAME} has no synced work logs yet" in dialog.inner_text()
            screenshot("confirm-in-page")
            clicked = time.monotonic()
            dialog.get_by_role("button", name="Reset and sync").click()
            while not (_dag_exists(server) and sp.runs(server, DAG)):
                assert time.monotonic() - clicked < 180, "no run queued within 180 s of the button"
                time.sleep(0.25)
            queued_after = time.monotonic() - clicked
            print(f"\nbutton → run queued on the make-airflow stack: {queued_after:.1f} s")

            # The page shows each step (parse, DAG, run), then the run's steps while it goes, refreshing itself.
            frame.locator("#run[data-state='running'], #run[data-state='queued'], #run[data-state='success']").wait_for(
                timeout=60_000
            )
            screenshot("run-in-progress")
            frame.locator("#run[data-state='success']").wait_for(timeout=180_000)
            result = frame.locator("#run-result")
            result.wait_for(timeout=30_000)
            assert re.search(r"Work logs: \d+ inserted, 0 updated, 0 deleted", result.inner_text())
            missing = frame.locator("#missing-teammates")
            assert "Neil Armstrong" in missing.inner_text()
            assert "Add them to Primetric as a Manager or Employee with this e-mail" in missing.inner_text()
            assert "neil@nasa.test" in frame.locator("#run").inner_text()  # the run panel names them too
            extract = frame.locator("#run [data-step='extract']").inner_text()
            assert re.search(r"\d+ pages, [\d,]+ entries fetched", extract), extract
            assert frame.locator("body").evaluate("b => b.scrollWidth <= b.clientWidth + 1")  # fits at 1024 px
            missing.scroll_into_view_if_needed()
            screenshot("run-finished-missing-teammate")

            # Primetric learns about Neil; the next sync gives him his hours.
            sp.sql(
                server,
                "INSERT INTO primetric.employees (id, email, name, role) VALUES (60, %s, %s, 'employee')",
                (NEIL[2], f"{NEIL[0]} {NEIL[1]}"),
            )
            first_run = frame.locator("#run").get_attribute("data-run-id")
            frame.get_by_role("button", name="Sync now").click()
            frame.locator(f"#run[data-state='success']:not([data-run-id='{first_run}'])").wait_for(timeout=180_000)
            frame.locator("#nobody-missing").wait_for(timeout=30_000)
            hours = frame.locator("#hours-by-person").inner_text()
            assert "Neil Armstrong" in hours and "15.00" in hours  # 2 × 7.5 h from 2026-09-01 on
            assert sp.sql(
                server, "SELECT count(*) FROM primetric.missing_teammates WHERE project_id = %s", (PROJECT,)
            ) == [(0,)]
            frame.locator("#hours-by-person").scroll_into_view_if_needed()
            screenshot("after-sync-now-hours-landed")

            # Times in the user's Airflow timezone, one format; dark mode follows Airflow's.
            first_time = frame.locator("time").first
            assert TIME.match(first_time.inner_text()), first_time.inner_text()
            page.evaluate("() => { localStorage.setItem('timezone', JSON.stringify('Asia/Tokyo')); }")
            page.reload()
            frame = page.frame_locator("iframe[title='Harvest']")
            stamp = frame.locator("time").first
            stamp.wait_for(timeout=30_000)
            assert stamp.get_attribute("title") == "Asia/Tokyo" and TIME.match(stamp.inner_text())
            page.evaluate("() => localStorage.setItem('theme', 'dark')")
            frame.locator("html[data-theme='dark']").wait_for(timeout=10_000)
            screenshot("dark-mode")
            page.evaluate("() => localStorage.setItem('theme', 'light')")

            # Clear data: the confirmation names the project and how many work logs go; its name must be typed.
            frame.get_by_role("button", name="Clear data").click()  # (a reload keeps the iframe on the project)
            dialog = frame.get_by_role("dialog")
            assert f"deletes the 5 synced work logs of {NAME}" in dialog.inner_text()
            dialog.get_by_role("button", name="Clear data").click()  # without the name: nothing happens
            assert dialog.is_visible() and frame.get_by_label("Type the project's name to confirm").get_attribute(
                "aria-invalid"
            )
            frame.get_by_label("Type the project's name to confirm").fill(NAME)
            screenshot("clear-data-confirm")
            dialog.get_by_role("button", name="Clear data").click()
            frame.locator("#run[data-state='success'] .muted", has_text="clear data").wait_for(timeout=180_000)
            frame.locator("#synced-count", has_text="0").wait_for(timeout=30_000)
            assert sp.sql(server, "SELECT count(*) FROM primetric.worklogs WHERE project_id = %s", (PROJECT,)) == [(0,)]
            screenshot("cleared")
            assert len(sp.runs(server, DAG)) == 3  # the reset, the Sync now and the clear: no other run
        except Exception:
            screenshot("failure")
            raise


def _dag_exists(server) -> bool:
    return server.session().get(f"{server.url}/api/v2/dags/{DAG}", timeout=60).status_code == 200


class _OtherOrigin(http.server.BaseHTTPRequestHandler):
    html = ""

    def do_GET(self):
        body = self.html.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_another_origin_can_neither_frame_the_page_nor_post_a_form_to_it(airflow_server):
    """A page of another origin on the same site (another port of 127.0.0.1: the session cookie goes with it)."""
    server = airflow_server
    before = len(sp.runs(server, "harvest_sync_1"))
    _OtherOrigin.html = f"""<!doctype html><html><body>
      <iframe id="framed" src="{server.url}/harvest/projects/1" width="900" height="600"></iframe>
      <iframe name="sink" id="sink"></iframe>
      <form id="post" method="post" target="sink" enctype="text/plain"
            action="{server.url}/harvest/api/projects/1/runs">
        <input name='{{"since": "2026-09-01", "x": "' value='"}}'></form>
      <form id="form" method="post" target="sink" action="{server.url}/harvest/api/projects/1/runs">
        <input name="since" value="2026-09-01"></form>
    </body></html>"""
    port = free_port()
    other = http.server.ThreadingHTTPServer(("127.0.0.1", port), _OtherOrigin)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        with chromium_page("ui-browser-other-origin") as (page, screenshot):
            sign_in(page, server, "admin")
            page.wait_for_url("**/plugin/harvest-sync", timeout=30_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_timeout(3000)
            framed = [f for f in page.frames if f.url.startswith(f"{server.url}/harvest")]
            shown = [f for f in framed if "Integration settings" in (f.content() if not f.is_detached() else "")]
            assert not shown, "our page rendered inside another origin's frame"
            screenshot("framed-by-another-origin-refused")
            page.evaluate("() => document.getElementById('post').submit()")
            page.wait_for_timeout(2000)
            page.evaluate("() => document.getElementById('form').submit()")
            page.wait_for_timeout(2000)
    finally:
        other.shutdown()
    assert len(sp.runs(server, "harvest_sync_1")) == before  # no run was started

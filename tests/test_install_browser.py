"""End to end in a real browser: headless Debian Chromium (Playwright) against a running `airflow api-server`
(simple auth manager, our plugin) and the simulator's Harvest ID; then `airflow dags test` syncs with the
stored tokens. Screenshots of each step land in test-artifacts/install-harvest/.

The shared tests/airflow_server.py fixture does not fit here: it defines harvest_default by environment
variable for every Airflow process, which would hide the connection this page stores in the metadata
database. So this module starts its own minimal Airflow: `airflow db migrate` and one api-server.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from harvest_simulator.harvest_id import HarvestID

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
D = dt.date

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()), reason="Chromium is needed: make browser"
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def airflow_api(tmp_path_factory, template_db):
    """`airflow api-server` on a free port, temp AIRFLOW_HOME (SQLite metadata DB), users admin and vic, and a
    Primetric database of its own (the install claims each OAuth state there once)."""
    from tests.fixtures import PG, _admin

    states_db = f"primetric_install_{os.getpid()}"
    _admin(f"DROP DATABASE IF EXISTS {states_db} WITH (FORCE)")
    _admin(f"CREATE DATABASE {states_db} TEMPLATE {template_db}")
    home = tmp_path_factory.mktemp("airflow-install")
    (home / "passwords.json").write_text(json.dumps({"admin": "admin-pw", "vic": "vic-pw"}))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,vic:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "OAUTHLIB_INSECURE_TRANSPORT": "1",  # the simulated Harvest ID speaks http on 127.0.0.1
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "PRIMETRIC_DAG_CACHE": str(home / "cache" / "dags.json"),
            "AIRFLOW_CONN_PRIMETRIC_DB": f"{PG}/{states_db}",
        }
    )
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    subprocess.run(
        [str(BIN / "airflow"), "pools", "set", "harvest_api", "4", "Harvest API calls"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    log = open(home / "api-server.log", "wb")  # closed in teardown
    proc = subprocess.Popen(
        [str(BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{url}/api/v2/monitor/health", timeout=10).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # starting, or a busy machine
                pass
            assert proc.poll() is None, (home / "api-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "api-server did not answer in 180 s"
            time.sleep(0.5)
        yield {"url": url, "env": env, "home": home}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
        _admin(f"DROP DATABASE IF EXISTS {states_db} WITH (FORCE)")


def test_install_in_the_browser_then_a_dag_run_syncs(airflow_api, world):
    from tests.browser import chromium_page

    url = airflow_api["url"]
    env = {**airflow_api["env"], "AIRFLOW_CONN_PRIMETRIC_DB": world.dsn}
    world.employee(1, "bobby@acme.test", "Bobby")
    world.harvest_user("bobby", "bobby@acme.test")
    world.project(7, [701], name="Apollo", start=D(2026, 1, 1), sync_since=D(2026, 1, 1))
    entry = world.entry("bobby", 701, "2026-02-01", 2.5, "design")
    harvest_id = HarvestID(world.sim)

    # The page refuses who is not an Airflow administrator (details: test_install_page.py).
    assert requests.get(f"{url}/harvest-install/", timeout=10).status_code == 401
    viewer = requests.post(f"{url}/auth/token", json={"username": "vic", "password": "vic-pw"}, timeout=10)
    assert (
        requests.get(
            f"{url}/harvest-install/", timeout=10, headers={"Authorization": f"Bearer {viewer.json()['access_token']}"}
        ).status_code
        == 403
    )

    with chromium_page("install-harvest") as (page, screenshot):
        page.goto(f"{url}/harvest-install/")
        page.wait_for_selector("input[name=username]", timeout=30_000)  # sent to Airflow's login page
        screenshot("login")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", "admin-pw")
        page.keyboard.press("Enter")
        page.wait_for_selector("#redirect-url", timeout=30_000)
        assert page.url.startswith(f"{url}/harvest-install/")
        screenshot("install-page")

        # Step 1: copy the Name and Redirect URL into a new OAuth2 application at (simulated) Harvest.
        from primetric_harvest.oauth_install import APP_NAME  # imports Airflow: not at collection (make test-unit)

        assert page.input_value("#app-name") == APP_NAME
        redirect_url = page.input_value("#redirect-url")
        assert redirect_url == f"{url}/harvest-install/callback"
        page.click("#copy-redirect-url")
        assert page.inner_text("#copy-redirect-url") == "Copied"
        client_id, client_secret = harvest_id.register_app(page.input_value("#app-name"), redirect_url)

        # Step 2: Client ID and secret (and, under Advanced, the simulator's URLs); step 3: Authorize.
        page.fill("#client_id", client_id)
        page.fill("#client_secret", client_secret)
        page.click("details summary")
        page.fill("#api_url", world.sim.url)
        page.fill("#id_url", harvest_id.url)
        screenshot("client-id-and-secret")
        page.click("#authorize")
        page.wait_for_selector("#approve", timeout=30_000)
        assert page.url.startswith(harvest_id.url + "/oauth2/authorize")
        screenshot("harvest-consent")
        page.click("#approve")
        page.wait_for_selector("#result", timeout=30_000)
        screenshot("installed")
        assert "The integration is properly installed." in page.inner_text("#result")
        assert page.url.startswith(f"{url}/harvest-install/callback")

    # Then a DAG run syncs with the stored connection (metadata DB) and tokens (Primetric DB).
    proc = subprocess.run(
        [str(BIN / "airflow"), "dags", "test", "harvest_sync_7", "--conf", json.dumps({"since": "2026-01-01"})],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert [r[0] for r in world.worklogs(7)] == [entry]
    assert harvest_id.grants("authorization_code") == 1 and harvest_id.grants("refresh_token") == 1
    assert world.sql("SELECT refresh_count FROM harvest_sync.oauth_tokens WHERE conn_id = 'harvest_default'") == [(1,)]
    assert client_secret not in proc.stdout + proc.stderr
    assert world.sim.stats["by_status"].get("401") is None

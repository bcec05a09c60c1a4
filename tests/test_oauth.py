"""Harvest OAuth2 tokens that renew themselves: real PostgreSQL token store, the simulator's Harvest ID over
real HTTP, the real pipeline (world.sync) and real Airflow (`airflow dags test`) for the log check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import requests
from cryptography.fernet import Fernet

from harvest_simulator.harvest_id import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, HarvestID
from tests.fixtures import ACCOUNT_ID, airflow_cli

ROOT = Path(__file__).resolve().parents[1]
REDIRECT = "http://127.0.0.1:9/harvest-install/callback"


@pytest.fixture
def oauth_env(monkeypatch):
    """Airflow's Fernet key (tokens are stored encrypted with it); http:// allowed for the local Harvest ID."""
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", key)
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    return key


@pytest.fixture
def harvest_id(harvest) -> HarvestID:
    return HarvestID(harvest)


def approve(harvest_id: HarvestID, redirect_uri: str = REDIRECT, decision: str = "approve") -> dict:
    """Go through Harvest ID's consent page like a browser: GET the page, press a button; the redirect's query."""
    from primetric_harvest import oauth_install

    url = oauth_install.authorization_url(DEFAULT_CLIENT_ID, redirect_uri, "st4te", harvest_id.url)
    page = requests.get(url, allow_redirects=False, timeout=5)
    assert page.status_code == 200 and "Authorize application" in page.text
    params = dict(parse_qs(urlsplit(url).query, keep_blank_values=True))
    form = {k: v[0] for k, v in params.items()} | {"decision": decision}
    answer = requests.post(harvest_id.url + "/oauth2/authorize", data=form, allow_redirects=False, timeout=5)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(redirect_uri)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def set_oauth_connection(monkeypatch, sim, harvest_id: HarvestID, refresh_token: str, **extra) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_HARVEST_DEFAULT",
        json.dumps(
            {
                "conn_type": "http",
                "host": sim.url,
                "login": DEFAULT_CLIENT_ID,
                "password": DEFAULT_CLIENT_SECRET,
                "extra": {
                    "account_id": ACCOUNT_ID,
                    "refresh_token": refresh_token,
                    "oauth_base_url": harvest_id.url,
                    "timeout": 5,
                    **extra,
                },
            }
        ),
    )


@pytest.fixture
def installed(apollo, harvest_id, oauth_env, monkeypatch):
    """A world whose harvest_default connection is an OAuth2 installation (the code flow done for real)."""
    from primetric_harvest import oauth_install

    code = approve(harvest_id)["code"]
    tokens = oauth_install.exchange_code(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, code, REDIRECT, harvest_id.url)
    set_oauth_connection(monkeypatch, apollo.sim, harvest_id, tokens.refresh_token)
    apollo.seed_refresh_token = tokens.refresh_token
    apollo.harvest_id = harvest_id
    return apollo


def token_row(world) -> dict:
    rows = world.sql(
        "SELECT access_token, refresh_token, extract(epoch FROM expires_at - now()), refresh_count, rotations, "
        "expires_at "
        "FROM harvest_sync.oauth_tokens WHERE conn_id = 'harvest_default'"
    )
    if not rows:
        return {}
    keys = ("access_token", "refresh_token", "expires_in", "refresh_count", "rotations", "expires_at")
    return dict(zip(keys, rows[0], strict=True))


def decrypted(world) -> tuple[str, str]:
    from primetric_harvest import oauth_tokens

    row = token_row(world)
    return oauth_tokens.decrypt(row["access_token"], "test"), oauth_tokens.decrypt(row["refresh_token"], "test")


def expire_stored_token(world, seconds_left: int = 5) -> None:
    """The stored access token is about to run out (within the hook's refresh margin)."""
    world.sql("UPDATE harvest_sync.oauth_tokens SET expires_at = now() + make_interval(secs => %s)", (seconds_left,))


def statuses(sim) -> dict:
    return sim.stats["by_status"]


# --------------------------------------------------------------------------- happy paths
@pytest.mark.db
def test_personal_access_token_still_works(apollo, oauth_env):
    entry = apollo.entry("bobby", 701, "2026-02-01", 2)
    apollo.sync(7)
    assert [r[0] for r in apollo.worklogs(7)] == [entry]
    assert apollo.sql("SELECT count(*) FROM harvest_sync.oauth_tokens") == [(0,)]


@pytest.mark.db
def test_oauth_run_gets_a_token_and_stores_it_encrypted(installed):
    entry = installed.entry("bobby", 701, "2026-02-01", 2.5)
    installed.sync(7)
    assert [r[0] for r in installed.worklogs(7)] == [entry]
    row = token_row(installed)
    access, refresh = decrypted(installed)
    assert access in installed.sim.tokens and refresh == installed.seed_refresh_token
    assert access not in row["access_token"] and refresh not in row["refresh_token"]  # encrypted at rest
    assert 3500 < row["expires_in"] <= 3600 and row["refresh_count"] == 1
    assert installed.harvest_id.grants("refresh_token") == 1

    # A second run uses the stored token: no new refresh.
    installed.sync(7)
    assert installed.harvest_id.grants("refresh_token") == 1


@pytest.mark.db
def test_token_expires_during_a_run_the_run_refreshes_and_finishes(installed):
    installed.sync(7)  # the installation's first access token
    installed.harvest_user("nina", "nina@acme.test")
    installed.employee(2, "nina@acme.test")
    entries = [installed.entry("bobby", 701, "2026-03-01", 1), installed.entry("nina", 701, "2026-03-02", 2)]
    # users/me and users pass; the time-entries listing meets a 401.
    assert installed.harvest_id.expire_after(2)
    result = installed.sync(7, since="2026-01-01")
    assert sorted(r[0] for r in installed.worklogs(7)) == sorted(entries)
    assert statuses(installed.sim).get("401") == 1
    assert installed.harvest_id.grants("refresh_token") == 2
    assert result.extracted.entries_fetched == 2


@pytest.mark.db
def test_refreshes_before_expiry_without_meeting_a_401(installed):
    installed.sync(7)
    first_access, _ = decrypted(installed)
    expire_stored_token(installed, 5)
    installed.entry("bobby", 701, "2026-03-01", 1)
    installed.sync(7)
    assert "401" not in statuses(installed.sim)
    assert installed.harvest_id.grants("refresh_token") == 2
    assert decrypted(installed)[0] != first_access


@pytest.mark.db
def test_rotated_refresh_tokens_are_stored_and_used(installed):
    installed.harvest_id.rotate_refresh_tokens = True
    installed.sync(7)
    for _ in range(2):
        expire_stored_token(installed)
        installed.sync(7)
    _, stored_refresh = decrypted(installed)
    assert token_row(installed)["rotations"] == 3
    assert installed.harvest_id.valid_refresh_tokens() == [stored_refresh]
    assert stored_refresh != installed.seed_refresh_token  # the connection's one is spent; the store has the new one
    entry = installed.entry("bobby", 701, "2026-04-01", 3)
    expire_stored_token(installed)
    installed.sync(7)
    assert entry in [r[0] for r in installed.worklogs(7)]


@pytest.mark.db
@pytest.mark.parametrize("how", ["revoked", "app removed"])
def test_revoked_refresh_token_fails_at_once_and_touches_nothing(installed, how):
    from airflow.sdk.exceptions import AirflowFailException

    from primetric_harvest.oauth_tokens import HarvestReauthorizationRequired

    installed.entry("bobby", 701, "2026-02-01", 2)
    installed.sync(7)
    before, row_before = installed.snapshot(), token_row(installed)
    row_before.pop("expires_in")
    installed.entry("bobby", 701, "2026-02-02", 5)
    if how == "revoked":
        installed.harvest_id.revoke()
    else:
        installed.harvest_id.remove_client()
    with pytest.raises(HarvestReauthorizationRequired, match="Install Harvest page") as caught:
        installed.sync(7)
    assert isinstance(caught.value, AirflowFailException)  # Airflow fails the task without retries
    assert "harvest_default" in str(caught.value)
    assert installed.snapshot() == before
    row_after = token_row(installed)
    row_after.pop("expires_in")
    assert row_after == row_before
    # One 401, one refused refresh, and nothing after it.
    assert statuses(installed.sim).get("401") == 1
    assert installed.harvest_id.grants("refresh_token", status=None) - installed.harvest_id.grants("refresh_token") == 1


@pytest.mark.db
def test_two_runs_refreshing_at_once_keep_the_newer_token(installed):
    """Rotation on and a slow token endpoint: without the row lock the second refresher would spend the
    already-rotated refresh token (invalid_grant) or overwrite the newer one."""
    from primetric_harvest.harvest_hook import HarvestHook

    installed.harvest_id.rotate_refresh_tokens = True
    installed.sync(7)
    expire_stored_token(installed)
    installed.harvest_id.token_delay = 0.5
    hooks = [HarvestHook(context=f"run {i}") for i in range(2)]
    barrier = threading.Barrier(2)
    results, errors = {}, []

    def run(i):
        try:
            barrier.wait()
            results[i] = hooks[i].me()["email"]
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and sorted(results) == [0, 1]
    assert installed.harvest_id.grants("refresh_token") == 2  # the install's first + exactly one now
    assert installed.harvest_id.grants("refresh_token", status=400) == 0
    assert sorted(h.token_source.refreshes for h in hooks) == [0, 1] and sum(h.token_source.adopted for h in hooks) == 1
    assert installed.harvest_id.valid_refresh_tokens() == [decrypted(installed)[1]]
    assert hooks[0].access_token() == hooks[1].access_token() == decrypted(installed)[0]


@pytest.mark.db
def test_installing_again_starts_from_the_new_refresh_token(installed, monkeypatch):
    from primetric_harvest import oauth_install

    installed.harvest_id.rotate_refresh_tokens = True
    installed.sync(7)
    old_access, _ = decrypted(installed)
    code = approve(installed.harvest_id)["code"]
    tokens = oauth_install.exchange_code(
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, code, REDIRECT, installed.harvest_id.url
    )
    set_oauth_connection(monkeypatch, installed.sim, installed.harvest_id, tokens.refresh_token)
    installed.harvest_id.revoke(installed.seed_refresh_token)  # the old installation's chain is gone
    installed.sync(7)
    access, _ = decrypted(installed)
    assert access != old_access and access in installed.sim.tokens


@pytest.mark.db
def test_wrong_fernet_key_asks_for_reinstall(installed, monkeypatch):
    from primetric_harvest.harvest_hook import HarvestHook
    from primetric_harvest.oauth_tokens import HarvestReauthorizationRequired

    installed.sync(7)
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
    with pytest.raises(HarvestReauthorizationRequired, match="fernet_key"):
        HarvestHook().me()


@pytest.mark.db
def test_missing_fernet_key_is_refused_not_stored_in_plain_text(installed, monkeypatch):
    from primetric_harvest.harvest_hook import HarvestHook
    from primetric_harvest.oauth_tokens import HarvestOAuthError

    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "")
    with pytest.raises(HarvestOAuthError, match="fernet_key is not set"):
        HarvestHook().me()
    assert token_row(installed) == {}


@pytest.mark.db
def test_oauth_extra_keys_are_never_sent_as_headers(installed):
    from primetric_harvest.harvest_hook import HarvestHook

    hook = HarvestHook()
    hook.me()
    sent = {k.lower() for k in hook.session.headers}
    assert "harvest-account-id" in sent  # the headers were looked at
    assert not sent & {"refresh_token", "oauth_base_url", "account_id", "token_store_conn_id", "timeout"}


# --------------------------------------------------------------------------- the code exchange
@pytest.mark.db
def test_denied_consent_redirects_with_access_denied(harvest_id, oauth_env):
    answer = approve(harvest_id, decision="deny")
    assert answer == {"error": "access_denied", "state": "st4te"}


@pytest.mark.db
def test_code_exchange_errors_say_what_went_wrong(harvest_id, oauth_env):
    from primetric_harvest import oauth_install as oauth

    code = approve(harvest_id)["code"]
    with pytest.raises(oauth.HarvestOAuthError, match="Client ID or Client secret"):
        oauth.exchange_code(DEFAULT_CLIENT_ID, "wrong", code, REDIRECT, harvest_id.url)
    harvest_id.expire_codes()
    with pytest.raises(oauth.HarvestOAuthError, match="expired"):
        oauth.exchange_code(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, code, REDIRECT, harvest_id.url)


@pytest.mark.unit
def test_pasted_redirect_url_is_checked(oauth_env):
    from primetric_harvest import oauth_install as oauth

    assert oauth.parse_pasted(f"{REDIRECT}?code=abc&state=s1", "s1") == "abc"
    assert oauth.parse_pasted("  abc \n", "s1") == "abc"
    with pytest.raises(oauth.HarvestOAuthError, match="state does not match"):
        oauth.parse_pasted(f"{REDIRECT}?code=abc&state=evil", "s1")
    with pytest.raises(oauth.HarvestOAuthError, match="access_denied"):
        oauth.parse_pasted(f"{REDIRECT}?error=access_denied&state=s1", "s1")


@pytest.mark.db
def test_non_administrator_is_refused(harvest, harvest_id, oauth_env):
    from primetric_harvest import oauth_install as oauth

    member = harvest.state.add_user("Mo", "Member", "mo@acme.test", access_roles=["member"])["id"]
    harvest_id.user_id = member
    code = approve(harvest_id)["code"]
    tokens = oauth.exchange_code(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, code, REDIRECT, harvest_id.url)
    user, accounts = oauth.harvest_accounts(tokens.access_token, harvest_id.url)
    assert user["email"] == "mo@acme.test" and [a["product"] for a in accounts] == ["harvest"]
    with pytest.raises(oauth.HarvestOAuthError, match=r"mo@acme\.test.*not an administrator"):
        oauth.check_administrator(tokens.access_token, ACCOUNT_ID, harvest.url)


# --------------------------------------------------------------------------- the command line
@pytest.mark.airflow
def test_command_line_install_stores_the_connection(harvest, harvest_id, oauth_env, tmp_path):
    """scripts/harvest_authorize.py in its own process: prints the URL, takes the pasted redirect URL."""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db",
        "HARVEST_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    env.pop("AIRFLOW_CONN_HARVEST_DEFAULT", None)
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "harvest_authorize.py"),
            "--client-id",
            DEFAULT_CLIENT_ID,
            "--redirect-uri",
            REDIRECT,
            "--api-url",
            harvest.url,
            "--id-url",
            harvest_id.url,
        ],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = ""
        while "oauth2/authorize" not in url:
            url = proc.stdout.readline()
            assert url, proc.stderr.read()
        state = parse_qs(urlsplit(url.strip()).query)["state"][0]
        page = requests.get(url.strip(), timeout=5)
        assert page.status_code == 200
        form = {k: v[0] for k, v in parse_qs(urlsplit(url.strip()).query).items()} | {"decision": "approve"}
        location = requests.post(
            harvest_id.url + "/oauth2/authorize", data=form, allow_redirects=False, timeout=5
        ).headers["Location"]
        assert f"state={state}" in location
        out, err = proc.communicate(location + "\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "properly installed" in out and DEFAULT_CLIENT_SECRET not in out + err
    airflow = str(Path(sys.executable).parent / "airflow")
    shown = subprocess.run(
        [airflow, "connections", "get", "harvest_default", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert str(json.loads(shown.stdout)[0]["is_encrypted"]) == "True"  # Airflow's Fernet key covers it at rest
    subprocess.run(
        [airflow, "connections", "export", str(tmp_path / "conns.json"), "--file-format", "json"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    stored = json.loads((tmp_path / "conns.json").read_text())["harvest_default"]
    assert stored["login"] == DEFAULT_CLIENT_ID and stored["password"] == DEFAULT_CLIENT_SECRET
    assert stored["host"] == harvest.url
    extra = json.loads(stored["extra"])
    assert extra["account_id"] == ACCOUNT_ID and extra["refresh_token"] in harvest_id.valid_refresh_tokens()


# --------------------------------------------------------------------------- real Airflow: no secret in the logs
def _secrets(world) -> list[str]:
    secrets = [DEFAULT_CLIENT_SECRET, *world.harvest_id.refresh_tokens]
    return secrets + [t for t, info in world.sim.tokens.items() if info.get("_oauth")]


@pytest.mark.airflow
def test_dag_run_with_oauth_refreshes_and_logs_no_secret(installed, airflow_db, tmp_path):
    """`airflow dags test`; the access token expires mid-run (401, refresh) and the refresh token rotates.
    Then every token and the client secret are searched for in the task logs (stdout and log files).

    Runs at Airflow's default INFO level: at DEBUG, Airflow 3.3.2's in-process test supervisor (the one
    `dags test` uses) itself logs every secret it is asked to mask ("Sending request … MaskSecret(value=…)")
    and every connection it hands out, whatever the task does. Our own DEBUG output is checked below."""
    installed.harvest_id.rotate_refresh_tokens = True
    installed.sync(7)
    entry = installed.entry("bobby", 701, "2026-03-01", 4)
    installed.harvest_id.expire_after(1)
    log_dir = tmp_path / "logs"
    proc = airflow_cli(
        "dags", "test", "harvest_sync_7", "--conf", json.dumps({"since": "2026-01-01"}),
        env={"AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(log_dir)},
    )  # fmt: skip
    logs = proc.stdout + proc.stderr + "".join(p.read_text(errors="replace") for p in log_dir.rglob("*") if p.is_file())
    assert proc.returncode == 0, logs[-3000:]
    assert entry in [r[0] for r in installed.worklogs(7)]
    assert statuses(installed.sim).get("401") == 1
    assert "Harvest answered 401" in logs and "Renewed the Harvest access token" in logs  # the logs are these
    secrets = _secrets(installed)
    assert len(secrets) >= 6  # seed + rotated refresh tokens, several access tokens: the search had work to do
    leaked = [s[:12] + "…" for s in secrets if s in logs]
    assert leaked == [], f"secrets in the task logs: {leaked}"
    with psycopg.connect(installed.dsn) as conn:
        assert conn.execute("SELECT rotations FROM harvest_sync.oauth_tokens").fetchone()[0] >= 2


@pytest.mark.db
def test_refresh_logs_no_secret_even_at_debug(installed, caplog, capsys):
    """requests-oauthlib logs token request bodies and responses at DEBUG: oauth_tokens.py holds it at INFO."""
    import logging

    caplog.set_level(logging.DEBUG)
    installed.harvest_id.rotate_refresh_tokens = True
    installed.sync(7)
    installed.harvest_id.expire_after(1)
    installed.sync(7, since="2026-01-01")
    assert installed.harvest_id.grants("refresh_token") == 2
    out = caplog.text + "".join(capsys.readouterr())
    assert "urllib3" in out or "Renewed" in out  # debug output was captured
    leaked = [s[:12] + "…" for s in _secrets(installed) if s in out]
    assert leaked == []

"""The "Install Harvest" page inside the real Airflow API server app (``create_app()``: the real auth
manager, JWTs from ``/auth/token``, our plugin mounted by Airflow's plugin manager), against the
simulator's Harvest ID over real HTTP, storing into the real metadata database."""

from __future__ import annotations

import html
import json
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.fernet import Fernet

from harvest_simulator.harvest_id import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, HarvestID
from tests.fixtures import ACCOUNT_ID

pytestmark = pytest.mark.airflow

USERS = {"admin": "admin", "opal": "op", "vic": "viewer"}  # user: simple-auth-manager role
PREFIX = "/harvest-install"


@pytest.fixture(scope="module")
def api(airflow_db, tmp_path_factory):
    """The Airflow API server app with simple-auth-manager users, on the test session's metadata DB."""
    mp = pytest.MonkeyPatch()
    passwords = tmp_path_factory.mktemp("auth") / "passwords.json"
    passwords.write_text(json.dumps({u: f"{u}-pw" for u in USERS}))
    mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ",".join(f"{u}:{r}" for u, r in USERS.items()))
    mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
    mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(64))
    mp.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    app = create_app()
    with TestClient(app) as client:
        tokens = {}
        for user in USERS:
            answer = client.post("/auth/token", json={"username": user, "password": f"{user}-pw"})
            assert answer.status_code in (200, 201), answer.text
            tokens[user] = answer.json()["access_token"]
        client.tokens = tokens
        yield client
    mp.undo()


@pytest.fixture
def admin(api, monkeypatch, primetric_db):
    """A browser-like client signed in as the Airflow administrator (the UI's ``_token`` cookie); the Primetric
    database (where each OAuth state is claimed once) is a fresh one."""
    from fastapi.testclient import TestClient

    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    monkeypatch.delenv("AIRFLOW_CONN_HARVEST_DEFAULT", raising=False)
    _delete_connection()
    client = TestClient(api.app, follow_redirects=False)
    client.cookies.set("_token", api.tokens["admin"])
    yield client
    _delete_connection()


@pytest.fixture
def harvest_id(harvest, monkeypatch) -> HarvestID:
    # The harvest fixture defines harvest_default by environment variable: the page must store it in the DB.
    monkeypatch.delenv("AIRFLOW_CONN_HARVEST_DEFAULT", raising=False)
    return HarvestID(harvest)


def _delete_connection() -> None:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == "harvest_default").delete()


def stored() -> dict | None:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        conn = session.query(Connection).filter(Connection.conn_id == "harvest_default").one_or_none()
        if conn is None:
            return None
        return {"login": conn.login, "password": conn.password, "host": conn.host, "extra": conn.extra_dejson}


def start(client, sim, harvest_id, secret: str = DEFAULT_CLIENT_SECRET) -> str:
    """Steps 2 and 3 up to Harvest: the authorize URL the page sends the browser to."""
    answer = client.post(
        f"{PREFIX}/authorize",
        data={"client_id": DEFAULT_CLIENT_ID, "client_secret": secret, "api_url": sim.url, "id_url": harvest_id.url},
    )
    assert answer.status_code == 303, answer.text
    assert "harvest_install" in answer.cookies
    return answer.headers["location"]


def consent(authorize_url: str, harvest_id: HarvestID, decision: str = "approve") -> str:
    """What the administrator does at Harvest: the consent page, a click; the URL Harvest sends the browser to."""
    assert requests.get(authorize_url, timeout=5).status_code == 200
    form = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()} | {"decision": decision}
    answer = requests.post(harvest_id.url + "/oauth2/authorize", data=form, allow_redirects=False, timeout=5)
    return answer.headers["Location"]


def back(client, location: str):
    parts = urlsplit(location)
    assert parts.path == f"{PREFIX}/callback"
    return client.get(f"{parts.path}?{parts.query}")


# --------------------------------------------------------------------------- who may use the page
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/"), ("POST", "/authorize"), ("GET", "/callback?code=x&state=y"), ("POST", "/account")],
)
def test_anonymous_requests_are_refused(api, method, path):
    from fastapi.testclient import TestClient

    client = TestClient(api.app, follow_redirects=False)
    answer = client.request(method, PREFIX + path)
    assert answer.status_code == 401
    assert "Install the Harvest integration" not in answer.text


def test_anonymous_browser_is_sent_to_the_login_page(api):
    from fastapi.testclient import TestClient

    answer = TestClient(api.app, follow_redirects=False).get(f"{PREFIX}/", headers={"Accept": "text/html"})
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/auth/login") and "next=" in answer.headers["location"]


@pytest.mark.parametrize("user", ["opal", "vic"])
@pytest.mark.parametrize("how", ["cookie", "bearer"])
def test_non_admin_users_are_refused(api, user, how):
    from fastapi.testclient import TestClient

    client = TestClient(api.app, follow_redirects=False)
    if how == "cookie":
        client.cookies.set("_token", api.tokens[user])
    else:
        client.headers["Authorization"] = f"Bearer {api.tokens[user]}"
    for method, path in (("GET", "/"), ("POST", "/authorize")):
        answer = client.request(method, PREFIX + path, data={"client_id": "x", "client_secret": "y"})
        assert answer.status_code == 403
        assert f"{user!r} is not an administrator" in html.unescape(answer.text)
    assert stored() is None


def test_forged_token_is_refused(api):
    from fastapi.testclient import TestClient

    client = TestClient(api.app, follow_redirects=False)
    client.headers["Authorization"] = "Bearer " + api.tokens["admin"][:-4] + "AAAA"
    assert client.get(f"{PREFIX}/").status_code in (401, 403)


def test_admin_sees_the_name_and_the_exact_redirect_url(admin):
    page = admin.get(f"{PREFIX}/")
    assert page.status_code == 200
    assert 'value="Primetric Airflow sync"' in page.text
    assert 'value="http://testserver/harvest-install/callback"' in page.text


def test_cross_site_form_post_is_refused(admin, harvest, harvest_id):
    answer = admin.post(
        f"{PREFIX}/authorize",
        data={"client_id": DEFAULT_CLIENT_ID, "client_secret": "s"},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403 and "Cross-site" in answer.text


# --------------------------------------------------------------------------- the flow
def test_install_stores_the_connection(admin, harvest, harvest_id):
    location = start(admin, harvest, harvest_id)
    query = parse_qs(urlsplit(location).query)
    assert location.startswith(harvest_id.url + "/oauth2/authorize")
    assert query["client_id"] == [DEFAULT_CLIENT_ID] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == ["http://testserver/harvest-install/callback"] and len(query["state"][0]) > 20
    page = back(admin, consent(location, harvest_id))
    assert page.status_code == 200, page.text
    assert "The integration is properly installed." in page.text and ACCOUNT_ID in page.text
    conn = stored()
    assert conn["login"] == DEFAULT_CLIENT_ID and conn["password"] == DEFAULT_CLIENT_SECRET
    assert conn["host"] == harvest.url
    assert conn["extra"]["account_id"] == ACCOUNT_ID and conn["extra"]["oauth_base_url"] == harvest_id.url
    assert conn["extra"]["refresh_token"] in harvest_id.valid_refresh_tokens()
    assert DEFAULT_CLIENT_SECRET not in page.text and conn["extra"]["refresh_token"] not in page.text
    dropped = page.headers.get("set-cookie", "").lower()
    assert "harvest_install=" in dropped and "max-age=0" in dropped  # the pending install is deleted
    # The page now says what is installed.
    assert "oauth2" in admin.get(f"{PREFIX}/").text


def test_state_mismatch_is_refused(admin, harvest, harvest_id):
    location = consent(start(admin, harvest, harvest_id), harvest_id)
    forged = location.replace("state=", "state=forged")
    page = back(admin, forged)
    assert page.status_code == 400 and "state mismatch" in page.text
    assert stored() is None
    assert harvest_id.grants("authorization_code", status=None) == 0  # the code was never even tried


def test_callback_without_a_started_install_is_refused(admin, harvest, harvest_id):
    page = admin.get(f"{PREFIX}/callback?code=abc&state=xyz")
    assert page.status_code == 400 and "No installation is in progress" in page.text
    assert stored() is None


def test_denied_consent_shows_a_clear_error(admin, harvest, harvest_id):
    page = back(admin, consent(start(admin, harvest, harvest_id), harvest_id, decision="deny"))
    assert page.status_code == 400 and "you denied access" in page.text
    assert stored() is None


def test_wrong_secret_shows_a_clear_error(admin, harvest, harvest_id):
    page = back(admin, consent(start(admin, harvest, harvest_id, secret="not-the-secret"), harvest_id))
    assert page.status_code == 400 and "refused the Client ID or Client secret" in page.text
    assert stored() is None


def test_expired_code_shows_a_clear_error(admin, harvest, harvest_id):
    location = consent(start(admin, harvest, harvest_id), harvest_id)
    harvest_id.expire_codes()
    page = back(admin, location)
    assert page.status_code == 400 and "expired" in page.text
    assert stored() is None


def test_no_harvest_account_shows_a_clear_error(admin, harvest, harvest_id):
    harvest_id.accounts = [{"id": 1, "name": "Acme Forecast", "product": "forecast"}]
    page = back(admin, consent(start(admin, harvest, harvest_id), harvest_id))
    assert page.status_code == 400 and "has no Harvest account" in page.text
    assert stored() is None


def test_harvest_user_who_is_not_an_administrator_is_refused(admin, harvest, harvest_id):
    harvest_id.user_id = harvest.state.add_user("Mo", "Member", "mo@acme.test", access_roles=["manager"])["id"]
    page = back(admin, consent(start(admin, harvest, harvest_id), harvest_id))
    assert (
        page.status_code == 400 and "mo@acme.test" in page.text and "not an administrator" in html.unescape(page.text)
    )
    assert stored() is None


def test_several_accounts_the_administrator_chooses(admin, harvest, harvest_id):
    harvest_id.accounts = [
        {"id": 555, "name": "Other Co", "product": "harvest"},
        {"id": 9, "name": "Acme Forecast", "product": "forecast"},
        {"id": int(ACCOUNT_ID), "name": "Acme", "product": "harvest"},
    ]
    page = back(admin, consent(start(admin, harvest, harvest_id), harvest_id))
    assert page.status_code == 200 and "Choose the Harvest account" in page.text
    assert "Other Co (555)" in page.text and f"Acme ({ACCOUNT_ID})" in page.text and "Forecast" not in page.text
    assert stored() is None
    assert admin.post(f"{PREFIX}/account", data={"account_id": "12"}).status_code == 400  # not offered
    page = back(admin, consent(start(admin, harvest, harvest_id), harvest_id))
    done = admin.post(f"{PREFIX}/account", data={"account_id": ACCOUNT_ID})
    assert done.status_code == 200 and "properly installed" in done.text
    assert stored()["extra"]["account_id"] == ACCOUNT_ID


def test_connection_hidden_by_an_environment_variable_disables_authorize_and_says_why(
    admin, harvest, harvest_id, monkeypatch
):
    location = start(admin, harvest, harvest_id)  # an install started before the variable appeared
    started = admin.cookies.get("harvest_install")
    monkeypatch.setenv("AIRFLOW_CONN_HARVEST_DEFAULT", json.dumps({"conn_type": "http", "password": "pat"}))
    page = admin.get(f"{PREFIX}/").text
    assert "environment variable AIRFLOW_CONN_HARVEST_DEFAULT" in page and "can never take effect" in page
    assert 'id="authorize" disabled' in page and "Authorize is disabled" in page
    refused = admin.post(f"{PREFIX}/authorize", data={"client_id": DEFAULT_CLIENT_ID, "client_secret": "s"})
    assert refused.status_code == 409 and "AIRFLOW_CONN_HARVEST_DEFAULT" in refused.text
    assert "location" not in refused.headers  # not sent to Harvest
    admin.cookies.set("harvest_install", started)
    finished = back(admin, consent(location, harvest_id))
    assert finished.status_code == 400 and "environment variable AIRFLOW_CONN_HARVEST_DEFAULT" in finished.text
    assert stored() is None


@pytest.mark.parametrize("field", ["api_url", "id_url"])
def test_an_http_harvest_url_is_refused_saying_it_must_be_https(admin, harvest, harvest_id, monkeypatch, field):
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT")  # as in production: oauthlib refuses http
    form = {"client_id": DEFAULT_CLIENT_ID, "client_secret": "s", "api_url": "https://api.harvestapp.com",
            "id_url": "https://id.getharvest.com", field: "http://id.example.test"}  # fmt: skip
    answer = admin.post(f"{PREFIX}/authorize", data=form)
    label = "Harvest API URL" if field == "api_url" else "Harvest ID URL"
    assert answer.status_code == 400, answer.text
    assert f"{label} must be an https:// URL" in html.unescape(answer.text) and "http://id.example.test" in answer.text
    assert stored() is None


def test_a_replayed_callback_is_refused_before_harvest_is_asked_again(admin, harvest, harvest_id):
    location = consent(start(admin, harvest, harvest_id), harvest_id)
    cookie = admin.cookies.get("harvest_install")
    assert back(admin, location).status_code == 200 and stored() is not None
    assert harvest_id.grants("authorization_code", status=None) == 1
    admin.cookies.set("harvest_install", cookie)  # the same callback, the same cookie, again
    replay = back(admin, location)
    assert replay.status_code == 400 and "already used" in replay.text
    assert harvest_id.grants("authorization_code", status=None) == 1  # the code was not even tried again


def test_the_install_page_may_be_framed_by_airflow_only(admin, api):
    from fastapi.testclient import TestClient

    anonymous = TestClient(api.app, follow_redirects=False)
    for answer in (
        admin.get(f"{PREFIX}/"),
        admin.get(f"{PREFIX}/callback?code=x&state=y"),
        anonymous.get(f"{PREFIX}/"),
    ):
        assert answer.headers["content-security-policy"] == "frame-ancestors 'self'", answer.status_code
        assert answer.headers["x-frame-options"] == "SAMEORIGIN"


def test_pending_install_of_another_airflow_user_is_refused(admin, api, harvest, harvest_id):
    from fastapi.testclient import TestClient

    location = consent(start(admin, harvest, harvest_id), harvest_id)
    other = TestClient(api.app, follow_redirects=False)
    other.cookies.set("_token", api.tokens["opal"])
    other.cookies.set("harvest_install", admin.cookies.get("harvest_install"))
    parts = urlsplit(location)
    assert other.get(f"{parts.path}?{parts.query}").status_code == 403  # not even an admin
    assert stored() is None

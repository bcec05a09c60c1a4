"""The Harvest connection form's "Test" button, pressed through Airflow's REST API (``POST /api/v2/connections/test``,
what the UI's button sends) on ``make airflow``'s Airflow (``[core] test_connection = Enabled``), against its
Harvest simulator (demo account): each case answers its exact message. Also the form the UI gets for the type."""

from __future__ import annotations

import json
import socket

import pytest
import requests

from harvest_simulator.demo import DEMO_ACCOUNT_ID, DEMO_TOKEN, demo
from primetric_harvest.harvest_api import DEFAULT_BASE_URL

MEMBER = 502  # Bobby, a member of the demo account
DEMO_USERS = len(demo().users_df())

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def api(airflow_server) -> requests.Session:
    return airflow_server.session()


@pytest.fixture(scope="module")
def sim(airflow_server) -> str:
    """The stack's simulator, with a member's token and a token that gets revoked."""
    url = airflow_server.harvest_url
    for body in ({"token": "member-token", "role": "member", "user_id": MEMBER}, {"token": "revoked-token"}):
        assert requests.post(f"{url}/_sim/tokens", json={"account_id": DEMO_ACCOUNT_ID, **body}, timeout=5).ok
    assert requests.delete(f"{url}/_sim/tokens/revoked-token", timeout=5).status_code == 200
    return url


def press_test(server, api: requests.Session, **form) -> tuple[bool, str]:
    body = {"connection_id": "harvest_form", "conn_type": "harvest", **form}
    if isinstance(body.get("extra"), dict):
        body["extra"] = json.dumps(body["extra"])
    answer = api.post(f"{server.url}/api/v2/connections/test", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["status"], answer.json()["message"]


def test_an_administrator_token(airflow_server, api, sim):
    assert press_test(airflow_server, api, host=sim, password=DEMO_TOKEN, extra={"account_id": DEMO_ACCOUNT_ID}) == (
        True,
        f"Harvest answered: administrator token for account {DEMO_ACCOUNT_ID} ({DEMO_USERS} users), of ada@acme.test.",
    )


def test_a_token_that_is_not_an_administrators(airflow_server, api, sim):
    assert press_test(
        airflow_server, api, host=sim, password="member-token", extra={"account_id": DEMO_ACCOUNT_ID}
    ) == (
        False,
        f"Not an administrator (account {DEMO_ACCOUNT_ID}): it belongs to bobby@acme.test with roles member, not an "
        "administrator; only an administrator's token sees every time entry. Use an administrator's token.",
    )


def test_a_wrong_account_id(airflow_server, api, sim):
    assert press_test(airflow_server, api, host=sim, password=DEMO_TOKEN, extra={"account_id": "7654321"}) == (
        False,
        "Harvest refused account 7654321 for this token (HTTP 403): check the Account ID, the number shown next "
        "to the token at id.getharvest.com/developers.",
    )


def test_a_revoked_token(airflow_server, api, sim):
    assert press_test(
        airflow_server, api, host=sim, password="revoked-token", extra={"account_id": DEMO_ACCOUNT_ID}
    ) == (
        False,
        "Harvest refused the token (HTTP 401): it is invalid, expired or revoked. Create a personal access token "
        "at id.getharvest.com/developers and paste it as the password.",
    )


def test_an_unreachable_api_url(airflow_server, api, sim):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # released when the block ends: nothing listens there
    assert press_test(airflow_server, api, host=url, password=DEMO_TOKEN, extra={"account_id": DEMO_ACCOUNT_ID}) == (
        False,
        f"Harvest is unreachable at {url}: no answer. Check the API URL (Harvest's is https://api.harvestapp.com) "
        "and that this server can reach it.",
    )


def test_the_stored_harvest_default_connection_with_its_stored_token(airflow_server, api, sim):
    """The UI sends the form without the password it never shows: Airflow takes the stored one."""
    assert press_test(
        airflow_server, api, connection_id="harvest_default", host=sim, extra={"account_id": DEMO_ACCOUNT_ID}
    ) == (
        True,
        f"Harvest answered: administrator token for account {DEMO_ACCOUNT_ID} ({DEMO_USERS} users), of ada@acme.test.",
    )


def test_the_ui_gets_the_harvest_connection_form(airflow_server, api):
    answer = api.get(f"{airflow_server.url}/ui/connections/hook_meta", timeout=30)
    assert answer.status_code == 200, answer.text
    (meta,) = [m for m in answer.json() if m["connection_type"] == "harvest"]
    assert meta["hook_name"] == "Harvest"
    assert meta["standard_fields"]["host"] == {"hidden": False, "title": "API URL", "placeholder": DEFAULT_BASE_URL}
    assert meta["standard_fields"]["port"]["hidden"] and meta["standard_fields"]["url_schema"]["hidden"]
    assert meta["extra_fields"]["account_id"]["schema"]["title"] == "Account ID"

"""The Harvest connection: its settings, the hook's Test button answer (``HarvestHook.test_connection``) against
the simulator over real HTTP, the way Airflow builds the hook (from the connection id alone, the connection as
a URI in an environment variable), and the provider's connection form as Airflow reads it."""

from __future__ import annotations

import json
import os
import socket

import pytest

from primetric_harvest.harvest_api import DEFAULT_BASE_URL, HarvestConnectionSettings, HarvestError
from primetric_harvest.harvest_hook import HarvestHook
from tests.fixtures import ACCOUNT_ID, TOKEN

# The OAuth2 installation of test_oauth.py (the code flow done for real), and its helpers.
from tests.test_oauth import expire_stored_token, harvest_id, installed, oauth_env, token_row  # noqa: F401

MEMBER_TOKEN = "member-token"


@pytest.fixture
def sim(harvest):
    """The simulator with four users, one of them Mo, a member with a token of his own."""
    harvest.state.add_user("Bea", "Builder", "bea@acme.test")
    harvest.state.add_user("Cy", "Coder", "cy@acme.test", is_active=False)  # archived people count too
    mo = harvest.state.add_user("Mo", "Member", "mo@acme.test", access_roles=["member"])["id"]
    harvest.add_token(MEMBER_TOKEN, role="member", user_id=mo)
    return harvest


def set_connection(monkeypatch, conn_id: str, **conn) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def harvest_conn(sim, conn_type: str = "harvest", token: str = TOKEN, account_id: str = ACCOUNT_ID, **extra) -> dict:
    return {
        "conn_type": conn_type,
        "host": sim.url,
        "password": token,
        "extra": {"account_id": account_id, "timeout": 5, **extra},
    }


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.db
def test_settings_are_read_once_with_their_defaults(monkeypatch, sim):
    set_connection(monkeypatch, "h", conn_type="harvest", password="pat", extra={"account_id": " 42 "})
    settings = HarvestHook.settings_for("h")
    assert settings == HarvestConnectionSettings(conn_id="h", account_id="42", personal_token="pat")
    assert settings.api_url == DEFAULT_BASE_URL and settings.rate_limit == (100, 15.0)
    assert "pat" not in repr(settings)  # secrets never in a repr (logs, tracebacks)


@pytest.mark.db
def test_a_bad_extra_value_names_the_key(monkeypatch, sim):
    set_connection(monkeypatch, "h", **harvest_conn(sim, timeout="soon"))
    with pytest.raises(HarvestError, match=r"Connection 'h': extra 'timeout' must be a number, not 'soon'"):
        HarvestHook("h")


@pytest.mark.db
@pytest.mark.parametrize("conn_type", ["harvest", "http"])
def test_an_administrator_token_answers_its_account_and_users(monkeypatch, sim, conn_type):
    """The http connections made before the provider read and test the same."""
    set_connection(monkeypatch, "h", **harvest_conn(sim, conn_type))
    users = len(sim.state.users_df())
    assert users == 4
    assert HarvestHook("h").test_connection() == (
        True,
        f"Harvest answered: administrator token for account {ACCOUNT_ID} ({users} users), of ada@acme.test.",
    )


@pytest.mark.db
def test_a_member_token_is_not_an_administrator(monkeypatch, sim):
    set_connection(monkeypatch, "h", **harvest_conn(sim, token=MEMBER_TOKEN))
    assert HarvestHook("h").test_connection() == (
        False,
        f"Not an administrator (account {ACCOUNT_ID}): it belongs to mo@acme.test with roles member, not an "
        "administrator; only an administrator's token sees every time entry. Use an administrator's token.",
    )


@pytest.mark.db
def test_a_wrong_account_id_is_named(monkeypatch, sim):
    set_connection(monkeypatch, "h", **harvest_conn(sim, account_id="999999"))
    assert HarvestHook("h").test_connection() == (
        False,
        "Harvest refused account 999999 for this token (HTTP 403): check the Account ID, the number shown next "
        "to the token at id.getharvest.com/developers.",
    )


@pytest.mark.db
def test_a_revoked_token_is_named(monkeypatch, sim):
    sim.add_token("soon-revoked")
    set_connection(monkeypatch, "h", **harvest_conn(sim, token="soon-revoked"))
    assert HarvestHook("h").test_connection()[0] is True
    del sim.tokens["soon-revoked"]
    assert HarvestHook("h").test_connection() == (
        False,
        "Harvest refused the token (HTTP 401): it is invalid, expired or revoked. Create a personal access token "
        "at id.getharvest.com/developers and paste it as the password.",
    )


@pytest.mark.db
def test_an_unreachable_api_url_is_named_after_one_attempt(monkeypatch, sim):
    url = f"http://127.0.0.1:{closed_port()}"
    set_connection(monkeypatch, "h", conn_type="harvest", host=url, password=TOKEN, extra={"account_id": ACCOUNT_ID})
    hook = HarvestHook("h")
    assert hook.test_connection() == (
        False,
        f"Harvest is unreachable at {url}: no answer. Check the API URL (Harvest's is "
        "https://api.harvestapp.com) and that this server can reach it.",
    )
    assert hook.stats.requests == 1 and hook.stats.retries == 0  # someone waits at the form: no retries


@pytest.mark.db
def test_airflow_builds_the_hook_from_the_connection_type(monkeypatch, sim):
    """What the connections test endpoint does: the form's values as a URI in an environment variable under a
    throwaway id, the hook class looked up by the connection type (our provider), then ``test_connection``."""
    from airflow.models.connection import Connection

    form = Connection(
        conn_id="tmp_x1",
        conn_type="harvest",
        host=sim.url,
        password=TOKEN,
        extra=json.dumps({"account_id": ACCOUNT_ID}),
    )
    monkeypatch.setenv("AIRFLOW_CONN_TMP_X1", form.get_uri())
    assert isinstance(form.get_hook(), HarvestHook)
    status, message = form.test_connection()
    assert status is True and message.startswith(f"Harvest answered: administrator token for account {ACCOUNT_ID}")


@pytest.mark.unit
def test_the_provider_gives_airflow_a_harvest_connection_form():
    """Airflow's UI reads the form from the provider's metadata (no hook import, no flask-appbuilder)."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "harvest"]
    assert meta.hook_name == "Harvest" and meta.hook_class_name == "primetric_harvest.harvest_hook.HarvestHook"
    fields = meta.standard_fields
    assert fields.host.title == "API URL" and fields.host.placeholder == DEFAULT_BASE_URL
    assert fields.password.title == "Personal access token (or OAuth2 client secret)"
    assert fields.port.hidden and fields.url_schema.hidden
    extras = meta.extra_fields
    assert extras["account_id"]["schema"]["title"] == "Account ID"
    assert "next to your token" in extras["account_id"]["description"]
    assert extras["refresh_token"]["schema"]["format"] == "password"  # masked in the form
    # Every field of the form is a key the hook reads.
    read = set(HarvestConnectionSettings.__dataclass_fields__) | {"refresh_token", "oauth_base_url"}
    assert set(extras) <= read, set(extras) - read


@pytest.mark.unit
def test_the_hook_and_the_oauth_modules_import_each_other_in_one_direction_only():
    """harvest_api (errors, defaults, settings) <- oauth_tokens <- harvest_hook <- oauth_install: no cycle."""
    import ast
    from pathlib import Path

    import primetric_harvest

    package = Path(primetric_harvest.__file__).parent

    def imports(module: str) -> set[str]:
        tree = ast.parse((package / f"{module}.py").read_text())
        found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        found |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        return {m.rsplit(".", 1)[-1] for m in found if m.startswith("primetric_harvest.")}

    assert imports("harvest_api") <= {"names"}
    assert imports("oauth_tokens") <= {"db", "harvest_api", "names"}
    assert imports("harvest_hook") <= {"harvest_api", "names", "oauth_tokens"}
    assert "oauth_install" not in imports("harvest_hook") | imports("oauth_tokens")


# --------------------------------------------------------------------------- OAuth2 installations
@pytest.mark.db
def test_an_oauth_installation_is_tested_with_its_stored_tokens(installed, monkeypatch):  # noqa: F811
    """Under a throwaway connection id (as Airflow tests), the installation's own token-store row is used:
    no second token chain, no refresh token spent. Before any run, it says why it does not test."""
    conn = json.loads(os.environ["AIRFLOW_CONN_HARVEST_DEFAULT"])
    conn["conn_type"] = "harvest"
    set_connection(monkeypatch, "tmp_oauth", **conn)
    status, message = HarvestHook("tmp_oauth").test_connection()
    assert status is False and message.startswith(
        f"Not tested: the OAuth2 installation for account {ACCOUNT_ID} has not been used by a sync yet"
    )
    assert installed.harvest_id.grants("refresh_token") == 0

    installed.sync(7)
    before = token_row(installed)
    before.pop("expires_in")  # seconds left: moves with the clock
    users = len(installed.sim.state.users_df())
    assert HarvestHook("tmp_oauth").test_connection() == (
        True,
        f"Harvest answered: administrator OAuth2 authorization for account {ACCOUNT_ID} ({users} users), "
        "of ada@acme.test.",
    )
    assert installed.sql("SELECT conn_id FROM harvest_sync.oauth_tokens") == [("harvest_default",)]
    after = token_row(installed)
    after.pop("expires_in")
    assert installed.harvest_id.grants("refresh_token") == 1 and after == before


@pytest.mark.db
def test_a_revoked_oauth_installation_sends_the_administrator_to_the_install_page(installed):  # noqa: F811
    installed.sync(7)
    expire_stored_token(installed)
    installed.harvest_id.revoke()
    status, message = HarvestHook().test_connection()
    assert status is False
    assert "Harvest refused to renew the access token" in message and "Install Harvest page" in message

"""Tests of the Harvest API v2 simulator: real HTTP against a started server."""

from __future__ import annotations

import http.client
import json
import math
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from harvest_simulator import HarvestSimulator, SimulatorState

pytestmark = pytest.mark.db

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = [1001, 1002, 1003]
HEADERS = {
    "Authorization": "Bearer test-token",
    "Harvest-Account-Id": "123456",
    "User-Agent": "primetric-sync-tests (dev@example.com)",
}
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def make_state(seed: int = 42, n_entries: int = 3000) -> SimulatorState:
    return SimulatorState.generate(
        seed=seed,
        n_entries=n_entries,
        n_users=12,
        project_ids=PROJECTS,
        start=date(2026, 1, 1),
        end=date(2026, 10, 31),
    )


@pytest.fixture
def make_sim():
    started: list[HarvestSimulator] = []

    def _make(state: SimulatorState | None = None, **kwargs) -> HarvestSimulator:
        sim = HarvestSimulator(state if state is not None else make_state(), **kwargs)
        started.append(sim.start())
        return sim

    yield _make
    for sim in started:
        sim.stop()


@pytest.fixture(scope="module")
def shared():
    """Read-only simulator shared by the query tests (never mutate its state)."""
    with HarvestSimulator(make_state()) as sim:
        yield sim


@pytest.fixture
def session():
    with requests.Session() as s:
        s.headers.update(HEADERS)
        yield s


def expected_ids(df: pd.DataFrame) -> list[int]:
    """Harvest order: spent_date DESC, then id DESC."""
    return df.sort_values(["spent_date", "id"], ascending=False)["id"].tolist()


def fetch_all_entries(session, sim, **params) -> tuple[list[dict], list[dict]]:
    """Follow links.next; returns (entries, page payloads without the entries)."""
    url, entries, pages = f"{sim.url}/v2/time_entries", [], []
    first = True
    while url:
        r = session.get(url, params=params if first else None)
        first = False
        assert r.status_code == 200, r.text
        body = r.json()
        entries += body.pop("time_entries")
        pages.append(body)
        url = body["links"]["next"]
    return entries, pages


# ----------------------------------------------------------------------------- auth
def test_users_me_and_json_headers(shared, session):
    r = session.get(f"{shared.url}/v2/users/me")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert int(r.headers["Content-Length"]) == len(r.content)
    me = r.json()
    assert me["access_roles"] == ["administrator"]
    assert me["id"] == shared.state.default_admin_id()
    for key in ("first_name", "last_name", "email", "is_active", "timezone"):
        assert key in me
    assert TS_RE.match(me["created_at"]) and TS_RE.match(me["updated_at"])


def test_missing_user_agent_is_400(shared, session):
    # requests/urllib3 always add a User-Agent, so send this one with http.client
    conn = http.client.HTTPConnection("127.0.0.1", shared.port, timeout=5)
    try:
        conn.request("GET", "/v2/users/me", headers={k: v for k, v in HEADERS.items() if k != "User-Agent"})
        resp = conn.getresponse()
        assert resp.status == 400
        assert "User-Agent" in json.loads(resp.read())["message"]
    finally:
        conn.close()
    assert session.get(f"{shared.url}/v2/users/me", headers={"User-Agent": ""}).status_code == 400


@pytest.mark.parametrize("auth", ["Bearer wrong-token", None, "Basic dGVzdA=="])
def test_bad_token_is_401(shared, session, auth):
    r = session.get(f"{shared.url}/v2/time_entries", headers={"Authorization": auth})
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_token"
    assert r.json()["error_description"]


@pytest.mark.parametrize("account", ["999", None])
def test_wrong_account_is_403(shared, session, account):
    r = session.get(f"{shared.url}/v2/users/me", headers={"Harvest-Account-Id": account})
    assert r.status_code == 403
    assert r.json()["message"]


def test_unknown_path_is_404_json(shared, session):
    r = session.get(f"{shared.url}/v2/nope")
    assert r.status_code == 404
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["message"]


def test_keep_alive_reuses_one_connection(make_sim, session):
    sim = make_sim(make_state(n_entries=10))
    for _ in range(5):
        assert session.get(f"{sim.url}/v2/users/me").status_code == 200
    assert sim.connections_opened == 1


# ----------------------------------------------------------------------------- users
def test_users_cursor_pagination(shared, session):
    users = shared.state.users_df()
    url, seen, pages = f"{shared.url}/v2/users?per_page=5", [], 0
    while url:
        body = session.get(url).json()
        pages += 1
        assert body["per_page"] == 5
        assert body["total_entries"] == len(users)
        assert body["total_pages"] == math.ceil(len(users) / 5)
        assert body["page"] is None and body["next_page"] is None
        assert body["links"]["first"].startswith(shared.url)
        nxt = body["links"]["next"]
        if nxt is not None:
            assert nxt.startswith(f"{shared.url}/v2/users?") and "cursor=" in nxt
            assert "per_page=5" in nxt
        seen += body["users"]
        url = nxt
    assert pages == 3
    assert [u["id"] for u in seen] == users["id"].tolist()  # sorted by id, no gaps
    assert [u["email"] for u in seen] == users["email"].tolist()
    assert all("@example.com" in u["email"] for u in seen)


def test_users_filters(shared, session):
    users = shared.state.users_df()
    body = session.get(f"{shared.url}/v2/users", params={"is_active": "false"}).json()
    assert [u["id"] for u in body["users"]] == users.loc[~users["is_active"], "id"].tolist()
    since = users["updated_at"].sort_values().iloc[len(users) // 2]
    params = {"updated_since": since.strftime("%Y-%m-%dT%H:%M:%SZ")}
    body = session.get(f"{shared.url}/v2/users", params=params).json()
    assert [u["id"] for u in body["users"]] == users.loc[users["updated_at"] >= since, "id"].tolist()


def test_per_page_over_2000_is_422(shared, session):
    for path in ("/v2/time_entries", "/v2/users", "/v2/projects"):
        r = session.get(f"{shared.url}{path}", params={"per_page": 2001})
        assert r.status_code == 422
        assert r.json() == {"message": "per_page must be between 1 and 2000"}


def test_projects(shared, session):
    body = session.get(f"{shared.url}/v2/projects", params={"per_page": 2}).json()
    assert [p["id"] for p in body["projects"]] == PROJECTS[:2]
    assert "cursor=" in body["links"]["next"]
    p = body["projects"][0]
    assert set(p) >= {"id", "name", "code", "is_active", "starts_on", "ends_on", "client"}
    assert set(p["client"]) >= {"id", "name"}
    rest = session.get(body["links"]["next"]).json()
    assert [p["id"] for p in rest["projects"]] == PROJECTS[2:]
    assert rest["links"]["next"] is None


# ----------------------------------------------------------------------------- time entries
def test_time_entries_pagination_and_order(shared, session):
    df = shared.state.entries_df()
    entries, pages = fetch_all_entries(session, shared, per_page=500)
    assert [e["id"] for e in entries] == expected_ids(df)
    assert len(pages) == math.ceil(len(df) / 500)
    assert [p["page"] for p in pages] == list(range(1, len(pages) + 1))
    assert pages[0]["previous_page"] is None and pages[0]["links"]["previous"] is None
    assert pages[-1]["next_page"] is None and pages[-1]["links"]["next"] is None
    assert all(p["total_entries"] == len(df) and p["total_pages"] == len(pages) for p in pages)
    assert pages[1]["links"]["next"].startswith(f"{shared.url}/v2/time_entries?")
    assert "page=3" in pages[1]["links"]["next"] and "per_page=500" in pages[1]["links"]["next"]
    # newest first: spent_date descending, ties by id descending
    keys = [(e["spent_date"], e["id"]) for e in entries]
    assert keys == sorted(keys, reverse=True)


def test_time_entry_shape(shared, session):
    e = session.get(f"{shared.url}/v2/time_entries", params={"per_page": 1}).json()["time_entries"][0]
    for key in (
        "id", "spent_date", "hours", "hours_without_timer", "rounded_hours", "notes", "is_locked",
        "locked_reason", "is_closed", "is_billed", "timer_started_at", "started_time", "ended_time",
        "is_running", "billable", "budgeted", "billable_rate", "cost_rate", "created_at",
        "updated_at", "user", "client", "project", "task", "user_assignment", "task_assignment",
        "invoice", "external_reference", "approval_status",
    ):  # fmt: skip
        assert key in e, key
    assert set(e["user"]) == {"id", "name"}  # no e-mail in time entries
    assert re.match(r"^\d{4}-\d{2}-\d{2}$", e["spent_date"])
    assert TS_RE.match(e["created_at"]) and TS_RE.match(e["updated_at"])
    assert isinstance(e["hours"], float) and e["hours"] * 4 == int(e["hours"] * 4)
    assert e["client"]["currency"] == "USD" and {"id", "name", "code"} <= set(e["project"])
    row = shared.state.get_entry(e["id"])
    assert e["user"]["id"] == row["user_id"] and e["project"]["id"] == row["project_id"]


def test_time_entries_filters(shared, session):
    df = shared.state.entries_df()
    user_id = int(df["user_id"].iloc[0])
    since = df["updated_at"].sort_values().iloc[len(df) * 3 // 4]
    cases = [
        ({"project_id": 1002}, df["project_id"] == 1002),
        ({"user_id": user_id}, df["user_id"] == user_id),
        ({"from": "2026-03-01", "to": "2026-03-31"},
         (df["spent_date"] >= "2026-03-01") & (df["spent_date"] <= "2026-03-31")),
        ({"updated_since": since.strftime("%Y-%m-%dT%H:%M:%SZ")}, df["updated_at"] >= since),
        ({"updated_since": (since + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00")},
         df["updated_at"] >= since),
        ({"project_id": 1001, "from": "2026-05-01", "user_id": user_id},
         (df["project_id"] == 1001) & (df["spent_date"] >= "2026-05-01") & (df["user_id"] == user_id)),
        ({"client_id": int(df["client_id"].iloc[0])}, df["client_id"] == df["client_id"].iloc[0]),
        ({"is_running": "true"}, df["is_running"]),
        ({"to": "2025-01-01"}, df["id"] < 0),
    ]  # fmt: skip
    for params, mask in cases:
        entries, pages = fetch_all_entries(session, shared, per_page=250, **params)
        assert [e["id"] for e in entries] == expected_ids(df[mask]), params
        assert pages[0]["total_entries"] == int(mask.sum()), params
        if len(pages) > 1:  # links keep the filters
            for key in params:
                assert f"{key}=" in pages[0]["links"]["next"]


def test_invalid_filter_values_are_422(shared, session):
    for params in ({"project_id": "x"}, {"from": "03/01/2026"}, {"updated_since": "yesterday"}):
        assert session.get(f"{shared.url}/v2/time_entries", params=params).status_code == 422


# ----------------------------------------------------------------------------- mutations
def test_mutations_via_python_api(make_sim, session):
    state = make_state(n_entries=200)
    sim = make_sim(state)
    state.now = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
    since = {"updated_since": "2026-11-20T12:00:00Z"}
    url = f"{sim.url}/v2/time_entries"
    assert session.get(url, params=since).json()["total_entries"] == 0

    new_id = state.add_entry(state.default_admin_id(), 1003, "2026-11-19", 1.333, notes=None)
    old_id = int(state.entries_df()["id"].iloc[5])
    state.now = datetime(2026, 11, 20, 12, 5, tzinfo=UTC)
    state.update_entry(old_id, hours=None, project_id=1001, notes="moved")
    body = session.get(url, params=since).json()
    by_id = {e["id"]: e for e in body["time_entries"]}
    assert set(by_id) == {new_id, old_id}
    assert by_id[new_id]["hours"] == 1.33 and by_id[new_id]["notes"] is None
    assert by_id[new_id]["created_at"] == "2026-11-20T12:00:00Z"
    assert by_id[old_id]["hours"] is None and by_id[old_id]["notes"] == "moved"
    assert by_id[old_id]["project"]["id"] == 1001
    assert by_id[old_id]["updated_at"] == "2026-11-20T12:05:00Z"
    assert body["time_entries"][0]["id"] == new_id  # newest spent_date first

    state.delete_entry(new_id)
    ids = [e["id"] for e in session.get(url, params={"per_page": 2000}).json()["time_entries"]]
    assert new_id not in ids and old_id in ids and len(ids) == 200

    state.update_user(state.default_admin_id(), email="new.mail@example.com")
    assert session.get(f"{sim.url}/v2/users/me").json()["email"] == "new.mail@example.com"


def test_mutations_via_control_endpoints(make_sim, session):
    sim = make_sim(make_state(n_entries=50))
    url = f"{sim.url}/v2/time_entries"
    r = requests.post(f"{sim.url}/_sim/clock", json={"now": "2026-11-21T08:00:00Z"})
    assert r.json()["now"] == "2026-11-21T08:00:00Z"
    r = requests.post(
        f"{sim.url}/_sim/entries",
        json={"user_id": 3000002, "project_id": 1002, "spent_date": "2026-11-02", "hours": 2.5},
    )
    assert r.status_code == 201
    new_id = r.json()["id"]
    first = session.get(url).json()["time_entries"][0]
    assert first["id"] == new_id and first["hours"] == 2.5
    assert first["updated_at"] == "2026-11-21T08:00:00Z"

    r = requests.patch(f"{sim.url}/_sim/entries/{new_id}", json={"hours": 3, "is_running": True})
    assert r.status_code == 200
    e = session.get(url, params={"is_running": "true"}).json()["time_entries"]
    assert [x["id"] for x in e] == [new_id] and e[0]["hours"] == 3.0
    assert e[0]["timer_started_at"] == "2026-11-21T08:00:00Z"

    assert requests.delete(f"{sim.url}/_sim/entries/{new_id}").status_code == 200
    assert requests.delete(f"{sim.url}/_sim/entries/{new_id}").status_code == 404
    assert session.get(url).json()["total_entries"] == 50

    r = requests.post(f"{sim.url}/_sim/users", json={"first_name": "Ada", "last_name": "Lovelace"})
    assert r.status_code == 201
    uid = r.json()["id"]
    r = requests.patch(f"{sim.url}/_sim/users/{uid}", json={"is_active": False, "email": "ada@x.org"})
    assert r.json()["is_active"] is False
    users = session.get(f"{sim.url}/v2/users", params={"is_active": "false"}).json()["users"]
    assert {"id": uid, "email": "ada@x.org"}.items() <= next(u for u in users if u["id"] == uid).items()

    r = requests.post(
        f"{sim.url}/_sim/tokens",
        json={"token": "member-token", "account_id": "777", "role": "member", "user_id": 3000002},
    )
    assert r.status_code == 201
    member = {"Authorization": "Bearer member-token", "Harvest-Account-Id": "777"}
    assert session.get(f"{sim.url}/v2/users/me", headers=member).json()["access_roles"] == ["member"]
    assert session.get(f"{sim.url}/v2/users", headers=member).status_code == 403
    own = session.get(url, headers=member).json()["time_entries"]
    assert own and {x["user"]["id"] for x in own} == {3000002}  # a silent subset
    assert session.get(url, headers={"Harvest-Account-Id": "777"}).status_code == 403

    # Revoked at id.getharvest.com: the token stops working at once.
    assert requests.delete(f"{sim.url}/_sim/tokens/member-token").status_code == 200
    assert session.get(f"{sim.url}/v2/users/me", headers=member).status_code == 401
    assert requests.delete(f"{sim.url}/_sim/tokens/member-token").status_code == 404


def test_fault_modes_need_nothing_of_the_server_module():
    """faults.py answers with the simulator's error type from api_error.py; the server imports faults.py, so
    faults.py importing the server back would be a cycle."""
    import ast

    tree = ast.parse((ROOT / "src/harvest_simulator/faults.py").read_text())
    ours = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0}
    assert ours == {"api_error"}


# ----------------------------------------------------------------------------- rate limit
def test_rate_limit_429_and_retry_after(make_sim, session):
    sim = make_sim(make_state(n_entries=10), rate_limit=(5, 1.0))
    sim.add_token("other-token", account_id="999")
    url = f"{sim.url}/v2/users/me"
    assert [session.get(url).status_code for _ in range(5)] == [200] * 5
    started = time.monotonic()
    r = session.get(url)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "1"
    assert r.json()["message"]
    assert session.get(url).status_code == 429  # 429s do not consume the window
    other = {"Authorization": "Bearer other-token", "Harvest-Account-Id": "999"}
    assert session.get(url, headers=other).status_code == 200  # limit is per account
    time.sleep(max(0.0, 1.05 - (time.monotonic() - started)))
    assert session.get(url).status_code == 200
    stats = sim.stats
    assert stats["status_429"] == 2
    assert stats["requests"] == 9


# ----------------------------------------------------------------------------- determinism, stats
def test_generation_is_deterministic():
    a, b, c = make_state(seed=7), make_state(seed=7), make_state(seed=8)
    pd.testing.assert_frame_equal(a.entries_df(), b.entries_df())
    pd.testing.assert_frame_equal(a.users_df(), b.users_df())
    assert not a.entries_df()["hours"].equals(c.entries_df()["hours"])
    df = a.entries_df()
    assert df["id"].is_unique and df["id"].dtype == np.int64
    assert df["hours"].between(0.25, 8).all() and ((df["hours"] * 4) % 1 == 0).all()
    assert df["spent_date"].min() >= pd.Timestamp("2026-01-01")
    assert df["spent_date"].max() <= pd.Timestamp("2026-10-31")
    anchor = pd.Timestamp("2026-11-01", tz="UTC")
    assert (df["updated_at"] <= anchor).all() and (df["created_at"] >= anchor - pd.Timedelta(days=30)).all()
    assert (df["updated_at"] >= df["created_at"]).all()
    assert set(df["project_id"]) == set(PROJECTS)
    users = a.users_df()
    assert users["email"].is_unique


def test_stats_counting(make_sim, session):
    sim = make_sim(make_state(n_entries=10))
    session.get(f"{sim.url}/v2/users/me")
    session.get(f"{sim.url}/v2/time_entries")
    session.get(f"{sim.url}/v2/time_entries", params={"page": 2})
    session.get(f"{sim.url}/v2/users/me", headers={"Authorization": "Bearer bad"})
    stats = sim.stats
    assert stats["requests"] == 4
    assert stats["by_path"] == {"/v2/users/me": 2, "/v2/time_entries": 2}
    assert stats["by_status"] == {"200": 3, "401": 1}
    assert requests.get(f"{sim.url}/_sim/stats").json() == stats  # control calls not counted
    assert requests.post(f"{sim.url}/_sim/reset_stats").status_code == 200
    assert sim.stats["requests"] == 0
    session.get(f"{sim.url}/v2/users/me")
    sim.reset_stats()
    assert sim.stats == {"requests": 0, "by_path": {}, "by_status": {}, "status_429": 0}


def test_before_request_hook(make_sim, session):
    sim = make_sim(make_state(n_entries=10))

    class Faults:
        def before_request(self, handler):
            if handler.sim_request.path == "/v2/time_entries":
                return 503, {"message": "maintenance"}, {"Retry-After": "2"}
            return None

    sim.faults = Faults()
    r = session.get(f"{sim.url}/v2/time_entries")
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"
    assert session.get(f"{sim.url}/v2/users/me").status_code == 200


# ----------------------------------------------------------------------------- CLI
def test_cli_serves_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "harvest_simulator", "--port", "0", "--entries", "30", "--users", "3",
         "--projects", "11,12", "--token", "cli-token", "--account-id", "42"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline().strip()
        m = re.fullmatch(r"Harvest simulator on (http://127\.0\.0\.1:\d+)", line)
        assert m, line
        headers = {**HEADERS, "Authorization": "Bearer cli-token", "Harvest-Account-Id": "42"}
        body = requests.get(f"{m.group(1)}/v2/time_entries", headers=headers, timeout=5).json()
        assert body["total_entries"] == 30
        assert {e["project"]["id"] for e in body["time_entries"]} == {11, 12}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0

"""Harvest on a bad day: each fault mode of the simulator against the real pipeline (real PostgreSQL, real
HTTP). A run either ends with exactly Harvest's data, or fails with a message that says what went wrong
and where, leaving every table as it was. Retries are bounded and logged; nothing is counted twice.

The expected work logs are computed here, independently of the pipeline, from the simulator's state.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
from decimal import Decimal

import pandas as pd
import pytest
import requests

from harvest_simulator import HarvestSimulator, SimulatorState
from primetric_harvest.harvest_hook import HarvestAccessError, HarvestError, HarvestHook, HarvestResponseError
from primetric_harvest.skip_reasons import SkipReason
from tests.fixtures import fails_at_once

pytestmark = pytest.mark.db

D = dt.date
SINCE = D(2026, 1, 1)
LINKED = (101, 102)
HOOK_LOG = "primetric_harvest.harvest_hook"
ENTRIES = "/v2/time_entries"
WHERE = r"connection 'harvest_default', Primetric project 1"
MAX_ATTEMPTS = 3
HEADERS = {"Authorization": "Bearer test-token", "Harvest-Account-Id": "123456", "User-Agent": "faults-test (t@x)"}


def use_harvest(monkeypatch, sim: HarvestSimulator, **extra) -> None:
    """Connection harvest_default with few attempts and a tiny backoff (fast tests)."""
    settings = {
        "account_id": "123456",
        "timeout": 5,
        "max_attempts": MAX_ATTEMPTS,
        "retry_wait_seconds": 0.01,
        "retry_max_wait_seconds": 0.05,
        "rate_limit_requests": 100_000,
        "rate_limit_seconds": 1,
        **extra,
    }
    conn = {"conn_type": "http", "host": sim.url, "password": "test-token", "extra": settings}
    monkeypatch.setenv("AIRFLOW_CONN_HARVEST_DEFAULT", json.dumps(conn))


@pytest.fixture
def fw(world, monkeypatch):
    """Project 1 ← Harvest 101 + 102; Bobby (assigned) and Sam are employees, Nina is not; 40 entries."""
    world.teammate("bobby", 1, "bobby@acme.test")
    world.teammate("sam", 2, "sam@acme.test", harvest_email="SAM@acme.test")
    world.harvest_user("nina", "nina@acme.test")
    world.linked_project(1, LINKED, since=SINCE, assigned=(1,))
    rng = random.Random(7)
    for _ in range(40):
        day = SINCE + dt.timedelta(days=rng.randrange(180))
        world.entry(rng.choice(["bobby", "sam", "nina"]), rng.choice(LINKED), day.isoformat(), rng.randint(1, 32) / 4)
    world.entry("bobby", 999, "2026-02-01", 3)  # a Harvest project not linked here
    world.entry("bobby", 101, "2025-12-31", 3)  # before sync_since
    use_harvest(monkeypatch, world.sim)
    return world


# -- what Harvest holds, computed from the simulator's state ------------------------------------------
def employees_of(world) -> dict[int, int]:
    return {world.users[name]: employee for name, employee in (("bobby", 1), ("sam", 2)) if name in world.users}


def harvest_truth(world, since: D = SINCE) -> dict[int, tuple]:
    """harvest id -> (employee, date, hours) of every entry that must be a work log of project 1."""
    df = world.sim.state.entries_df()
    people = employees_of(world)
    df = df[df["project_id"].isin(LINKED) & (df["spent_date"] >= pd.Timestamp(since)) & df["user_id"].isin(people)]
    return {
        int(r.id): (people[int(r.user_id)], r.spent_date.date(), Decimal(repr(float(r.hours)))) for r in df.itertuples()
    }


def synced(world) -> dict[int, tuple]:
    rows = world.worklogs(1)
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), "a Harvest entry became two work logs"
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def assert_exact(world, since: D = SINCE) -> None:
    truth, got = harvest_truth(world, since), synced(world)
    assert set(got) - set(truth) == set(), "work logs that Harvest does not hold"
    assert set(truth) - set(got) == set(), "Harvest entries that did not land"
    assert got == truth
    total = world.sql("SELECT sum(hours) FROM primetric.worklogs WHERE project_id = 1 AND harvest_time_entry_id > 0")
    assert total[0][0] == sum(v[2] for v in truth.values())


def warnings_of(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == HOOK_LOG and text in r.getMessage()]


def synced_then_changed(world) -> dict:
    """A good first run, then Harvest changes (so a faulty run has something to get wrong); the snapshot."""
    world.sync(1)
    assert_exact(world)
    state = world.sim.state
    first = int(state.entries_df().query("project_id == 101")["id"].iloc[0])
    state.update_entry(first, hours=7.75)
    world.entry("sam", 102, "2026-03-03", 2.5)
    return world.snapshot()


# -- throttling and server errors ------------------------------------------------------------------------
def test_a_burst_of_429_is_waited_out_as_retry_after_asks(fw, caplog):
    fault = fw.sim.faults.add("status", path=ENTRIES, status=429, retry_after=0.05, times=4)
    result = fw.sync(1)
    assert_exact(fw)
    assert fault.fired == 4
    assert len(warnings_of(caplog, "Harvest answered 429; waiting")) == 4
    assert result.extracted.harvest.throttled == 4


def test_429_without_end_fails_after_a_bounded_number_of_waits(fw):
    before = synced_then_changed(fw)
    fw.sim.reset_stats()
    fw.sim.faults.add("status", path=ENTRIES, status=429, retry_after=0.01, times=None)
    with pytest.raises(HarvestError, match=rf"kept answering 429 for /v2/time_entries; {WHERE}"):
        fw.sync(1, since="2026-01-01")
    assert fw.sim.stats["by_path"][ENTRIES] == 21  # the first answer and 20 waits, then it gives up
    assert fw.snapshot() == before


@pytest.mark.parametrize(
    ("status", "retry_after", "logged"),
    [(500, None, "HTTP 500"), (502, None, "HTTP 502"), (503, 0.05, "Harvest answered 503; waiting")],
)
def test_server_errors_are_retried_and_the_run_is_exact(fw, caplog, status, retry_after, logged):
    fault = fw.sim.faults.add("status", path=ENTRIES, status=status, retry_after=retry_after, times=2)
    fw.sync(1)
    assert_exact(fw)
    assert fault.fired == 2
    assert len(warnings_of(caplog, logged)) == 2


def test_server_errors_that_persist_fail_after_max_attempts_and_touch_nothing(fw, caplog):
    before = synced_then_changed(fw)
    fw.sim.reset_stats()
    # switched on from outside the process, as a separately started simulator would be
    r = requests.post(
        f"{fw.sim.url}/_sim/faults", json={"mode": "status", "status": 502, "times": None, "path": ENTRIES}
    )
    assert r.status_code == 201
    with pytest.raises(
        HarvestError, match=rf"/v2/time_entries kept failing after {MAX_ATTEMPTS} attempts \(HTTP 502\)"
    ):
        fw.sync(1, since="2026-01-01")
    assert fw.sim.stats["by_path"][ENTRIES] == MAX_ATTEMPTS
    assert len(warnings_of(caplog, "(HTTP 502), attempt")) == MAX_ATTEMPTS - 1  # logged before each retry
    assert requests.get(f"{fw.sim.url}/_sim/faults").json()["faults"][0]["fired"] == MAX_ATTEMPTS
    assert fw.snapshot() == before


# -- the network ------------------------------------------------------------------------------------------
def test_a_connection_dropped_mid_body_is_retried(fw, caplog):
    fault = fw.sim.faults.add("drop", path=ENTRIES, keep=0.4, times=2)
    fw.sync(1)
    assert_exact(fw)
    assert fault.fired == 2
    assert len(warnings_of(caplog, "Connection broken")) == 2


def test_connections_dropped_every_time_fail_clearly(fw):
    before = synced_then_changed(fw)
    fw.sim.faults.add("drop", path="/v2/users", keep=0.5, times=None)
    with pytest.raises(HarvestError, match=rf"/v2/users kept failing after {MAX_ATTEMPTS} attempts .*{WHERE}"):
        fw.sync(1, since="2026-01-01")
    assert fw.snapshot() == before


def test_an_answer_slower_than_the_timeout_is_retried(fw, caplog, monkeypatch):
    use_harvest(monkeypatch, fw.sim, timeout=1)
    fault = fw.sim.faults.add("slow", path=ENTRIES, delay=1.5, times=1)
    fw.sync(1)
    assert_exact(fw)
    assert fault.fired == 1
    assert len(warnings_of(caplog, "timed out")) == 1


@pytest.mark.parametrize(("mode", "options"), [("truncate", {"keep": 0.6}), ("not_json", {})])
def test_a_body_cut_short_or_not_json_is_retried(fw, caplog, mode, options):
    fault = fw.sim.faults.add(mode, path=ENTRIES, times=2, **options)
    fw.sync(1)
    assert_exact(fw)
    assert fault.fired == 2
    assert len(warnings_of(caplog, "a body that is not JSON")) == 2


def test_an_html_page_every_time_fails_saying_what_was_expected(fw):
    before = synced_then_changed(fw)
    fw.sim.faults.add("not_json", path=ENTRIES, times=None)
    with pytest.raises(
        HarvestResponseError,
        match=rf"kept failing after {MAX_ATTEMPTS} attempts \(answered with a body that is not JSON "
        rf"\(content-type 'text/html.*expected a JSON object\); {WHERE}",
    ):
        fw.sync(1, since="2026-01-01")
    assert fw.snapshot() == before


# -- answers that are not Harvest's --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (ENTRIES, {"data": []}, r"without a 'time_entries' list.*expected Harvest API v2 pagination"),
        (ENTRIES, [], r"/v2/time_entries answered list, expected a JSON object"),
        ("/v2/users", {"data": []}, r"without a 'users' list and 'links'.*expected Harvest API v2 pagination"),
        ("/v2/users/me", {"data": []}, r"/v2/users/me answered without an 'access_roles' list.*expected the token's"),
    ],
)
def test_an_answer_not_in_harvest_shape_fails_the_run_saying_what_was_expected(fw, path, body, message):
    before = synced_then_changed(fw)
    fault = fw.sim.faults.add("shape", path=path, body=body, times=None)
    with pytest.raises(HarvestResponseError, match=rf"{message}.*{WHERE}"):
        fw.sync(1, since="2026-01-01")
    assert fault.fired == 1  # not retried: another try would get the same
    assert fw.snapshot() == before


# -- the token ----------------------------------------------------------------------------------------------
def test_a_token_revoked_mid_run_fails_clearly_and_touches_nothing(fw):
    before = synced_then_changed(fw)
    fault = fw.sim.faults.add("unauthorized", nth=3, times=None)  # users/me and users answered, then 401
    with fails_at_once(HarvestAccessError, match=rf"HTTP 401 for /v2/time_entries: the access token is.*{WHERE}"):
        fw.sync(1, since="2026-01-01")
    assert 1 <= fault.fired <= 2  # no retry loop on 401 (at most one try after a token refresh)
    assert fw.snapshot() == before


def test_a_member_token_is_refused_before_anything_is_fetched(fw):
    before = synced_then_changed(fw)
    fw.sim.reset_stats()
    fw.sim.faults.add("role", role="member")
    with fails_at_once(HarvestAccessError, match=rf"{WHERE}: it belongs to .* with roles member, not an administrator"):
        fw.sync(1, since="2026-01-01")
    assert fw.sim.stats["by_path"] == {"/v2/users/me": 1}
    assert fw.snapshot() == before


def test_a_token_demoted_to_manager_while_listing_is_caught(fw):
    """A manager's listing holds only part of the entries, with no error: the run must not load it."""
    before = synced_then_changed(fw)
    fw.sim.faults.add("role", role="manager", nth=3)  # after users/me and users
    with fails_at_once(HarvestAccessError, match=rf"{WHERE}: it belongs to .* with roles manager"):
        fw.sync(1, since="2026-01-01")
    seen = requests.get(f"{fw.sim.url}{ENTRIES}", params={"project_id": 101}, headers=HEADERS).json()
    assert seen["total_entries"] < len(fw.sim.state.entries_df().query("project_id == 101"))  # a real subset
    assert fw.snapshot() == before


# -- bad records in a good answer ----------------------------------------------------------------------------
def test_bad_records_are_kept_aside_with_their_reason_and_the_run_goes_on(fw, caplog):
    caplog.set_level(logging.INFO)
    truth = harvest_truth(fw)
    bad = sorted(truth)[:7]
    damage = [
        {"set": {"user.id": 987654}},  # unknown user
        {"unset": ["spent_date"]},
        {"set": {"hours": None}},
        {"set": {"hours": -1.5}},
        {"set": {"hours": 24.5}},
        {"set": {"spent_date": "2026-02-30"}},
        {"set": {"project.id": 999}},  # a project we did not ask for
    ]
    fault = fw.sim.faults.add(
        "bad_records", path=ENTRIES, times=None, records=[{"id": i, **d} for i, d in zip(bad, damage, strict=True)]
    )
    result = fw.sync(1)
    assert fault.fired >= 1
    assert synced(fw) == {k: v for k, v in truth.items() if k not in bad}
    kept = fw.sql(
        "SELECT harvest_time_entry_id, reason, detail FROM harvest_sync.skipped_entries "
        "WHERE harvest_time_entry_id = ANY(%s) ORDER BY harvest_time_entry_id",
        (bad,),
    )
    assert [(k[0], k[1]) for k in kept] == list(
        zip(
            bad,
            [
                "unknown_harvest_user",
                "invalid_spent_date",
                "invalid_hours",
                "invalid_hours",
                "invalid_hours",
                "invalid_spent_date",
                "unlinked_harvest_project",
            ],
            strict=True,
        )
    )
    assert "2026-02-30" in kept[5][2] and "987654" in kept[0][2] and "999" in kept[6][2]
    by_reason = result.reported.skipped_by_reason
    assert {k: v for k, v in by_reason.items() if k not in ("no_matching_employee",)} == {
        "invalid_hours": 3,
        "invalid_spent_date": 2,
        "unknown_harvest_user": 1,
        "unlinked_harvest_project": 1,
    }
    line = next(r.getMessage() for r in caplog.records if "kept aside, not synced" in r.getMessage())
    assert f"{sum(by_reason.values())} entries: " in line
    for reason, n in (("invalid_hours", 3), ("invalid_spent_date", 2), ("unlinked_harvest_project", 1)):
        assert f"{n} {reason} ({SkipReason(reason).text})" in line
    assert all(m[0] != 987654 for m in fw.missing(1))  # a bad record is not a missing teammate

    fw.sim.faults.clear()  # Harvest answers well again: a reset brings everything in, and nothing is kept aside
    fw.sync(1, since=SINCE.isoformat())
    assert_exact(fw)
    assert fw.sql("SELECT count(*) FROM harvest_sync.skipped_entries WHERE reason LIKE 'invalid%%'")[0][0] == 0


# -- pages that change while we read them -------------------------------------------------------------------
@pytest.fixture
def busy(world, monkeypatch):
    """4,500 entries of Harvest project 101 over the last 55 days: three pages of 2000."""
    world.employee(1, "bobby@acme.test", "Bobby")
    world.employee(2, "sam@acme.test", "Sam")
    world.harvest_user("bobby", "bobby@acme.test")
    world.harvest_user("sam", "sam@acme.test")
    today = dt.datetime.now(dt.UTC).date()
    since = today - dt.timedelta(days=100)
    world.project(1, LINKED, start=since, sync_since=since)
    world.sql("UPDATE primetric.harvest_settings SET reconcile_window_days = 90")
    rng = random.Random(11)
    for _ in range(4500):
        day = today - dt.timedelta(days=rng.randrange(55))
        world.entry(rng.choice(["bobby", "sam"]), 101, day.isoformat(), rng.randint(1, 32) / 4)
    world.sim.state.advance(120)  # the entries were made two minutes before the run (Harvest's clock stops here)
    use_harvest(monkeypatch, world.sim)
    world.since = since
    return world


SHIFTS = {"delete": 5, "delete_and_insert": 5, "move": 1}  # how many entries page-number paging misses


def _shift_faults(world, kind: str) -> list[int]:
    """Once page 1 is served, change Harvest as a colleague would: "delete" 5 entries of that page (the
    later entries slide to earlier pages); "delete_and_insert" also adds 5 entries dated before all
    (the total stays the same); "move" edits the oldest entry to today (it jumps to page 1)."""
    inserted: list[int] = []
    old_day = world.since + dt.timedelta(days=1)

    def insert_old(sim, req, payload):
        for _ in range(5):
            inserted.append(sim.state.add_entry(world.users["sam"], 101, old_day, 1.0, "logged late"))

    def move_oldest(sim, req, payload):
        df = sim.state.entries_df().query("project_id == 101").sort_values(["spent_date", "id"])
        sim.state.update_entry(int(df["id"].iloc[0]), spent_date=dt.datetime.now(dt.UTC).date())

    world.sim.faults.add(
        "page_shift",
        path=ENTRIES,
        params={"project_id": "101"},
        delete_served=0 if kind == "move" else 5,
        action={"delete_and_insert": insert_old, "move": move_oldest}.get(kind),
    )
    return inserted


@pytest.mark.parametrize("kind", sorted(SHIFTS))
def test_entries_changed_while_paging_make_no_entry_go_missing(busy, kind, caplog):
    # The fault is real: a client that follows page numbers misses the entries that slid back.
    _shift_faults(busy, kind)
    hook = HarvestHook(context="page-number check")
    naive = {e["id"] for page in hook.paginate("time_entries", "time_entries", {"project_id": 101}) for e in page}
    now = set(busy.sim.state.entries_df().query("project_id == 101")["id"].tolist())
    assert len(now - naive) == SHIFTS[kind]
    busy.sim.faults.clear()

    # The sync under the same fault: every entry that was in Harvest all along lands, none twice.
    before = set(busy.sim.state.entries_df()["id"].tolist())
    inserted = _shift_faults(busy, kind)
    result = busy.sync(1)
    after = set(busy.sim.state.entries_df()["id"].tolist())
    got = synced(busy)
    truth = harvest_truth(busy, busy.since)
    assert {k for k in truth if k in before} - set(got) == set()  # nothing missed
    assert set(got) - after == before - after  # what was deleted mid-run had been read before it went
    assert len(before - after) == (0 if kind == "move" else 5)
    assert len(inserted) == (5 if kind == "delete_and_insert" else 0)
    assert result.extracted.plan.mode == "full"
    assert len(warnings_of(caplog, "changed while being paged")) == 1

    # The next daily run removes what was deleted and brings what was added meanwhile: exactly Harvest.
    busy.sync(1)
    assert_exact(busy, busy.since)


def test_a_listing_nobody_changes_is_read_once_plus_one_check(busy, caplog):
    busy.sim.reset_stats()
    busy.sync(1)
    assert_exact(busy, busy.since)
    # 4,500 entries of Harvest project 101: 3 pages and 1 "anything updated since page 1?"; 102: 1 page
    assert busy.sim.stats["by_path"][ENTRIES] == 3 + 1 + 1
    assert warnings_of(caplog, "changed while being paged") == []


def test_a_day_with_more_entries_than_a_page_is_listed_again_when_it_shifts(world, monkeypatch, caplog):
    world.employee(1, "bobby@acme.test", "Bobby")
    world.harvest_user("bobby", "bobby@acme.test")
    world.project(1, LINKED, start=SINCE, sync_since=SINCE)
    world.sql("UPDATE primetric.harvest_settings SET reconcile_window_days = 1000")  # daily runs re-list it all
    for k in range(2100):
        world.entry("bobby", 101, "2026-05-04", 0.25 + (k % 4) / 4)
    for day in ("2026-05-01", "2026-05-02", "2026-05-07"):
        world.entry("bobby", 101 if day < "2026-05-04" else 102, day, 1)
    world.sim.state.advance(120)
    use_harvest(monkeypatch, world.sim)
    # Page 1 of the listing loses an entry (so it is read again by date), then page 1 of the busy day,
    # which is paged by number, loses 3 before its page 2 is read.
    shifts = [
        world.sim.faults.add("page_shift", path=ENTRIES, params=params, delete_served=n)
        for params, n in (({"from": "2026-01-01"}, 1), ({"from": "2026-05-04"}, 3))
    ]
    before = set(world.sim.state.entries_df()["id"].tolist())
    world.sync(1)
    assert [f.fired for f in shifts] == [1, 1]
    assert len(warnings_of(caplog, "of 2026-05-04 changed while being paged")) == 1
    after = set(world.sim.state.entries_df()["id"].tolist())
    got = synced(world)
    assert set(harvest_truth(world)) - set(got) == set()  # nothing missed
    assert set(got) - after == before - after and len(before - after) == 4  # deleted after being read
    world.sync(1)  # the next daily run removes them
    assert_exact(world)


# -- many faults at once -------------------------------------------------------------------------------------
def test_a_seeded_storm_of_faults_still_ends_exact(busy, monkeypatch, caplog):
    use_harvest(monkeypatch, busy.sim, max_attempts=10)
    faults = busy.sim.faults
    faults.add("status", status=500, probability=0.2, seed=1, times=None)
    faults.add("status", status=429, retry_after=0.01, probability=0.1, seed=2, times=None)
    faults.add("drop", path=ENTRIES, probability=0.25, seed=3, times=None)
    faults.add("truncate", path=ENTRIES, probability=0.2, seed=4, times=None)
    faults.add("page_shift", path=ENTRIES, delete_served=2, times=2)  # the first two answers the others spare
    before = set(busy.sim.state.entries_df()["id"].tolist())
    busy.sync(1)
    assert {k for k in harvest_truth(busy, busy.since) if k in before} - set(synced(busy)) == set()  # none missed
    fired = [f["fired"] for f in faults.list()]
    print("faults fired (500, 429, drop, truncate, page_shift):", fired)
    assert sum(fired) >= 6 and fired[-1] == 2, fired
    faults.clear()
    busy.sync(1)  # what was deleted while the first run read goes now
    assert_exact(busy, busy.since)


# -- the switchboard itself ------------------------------------------------------------------------------------
def test_faults_fire_on_the_nth_request_k_times_or_by_seeded_chance():
    state = SimulatorState()
    state.add_user("Ada", "Admin", "ada@acme.test", id=1, access_roles=["administrator"])
    with HarvestSimulator(state) as sim, requests.Session() as s:
        s.headers.update(HEADERS)
        sim.faults.add("status", path="/v2/users/me", status=502, nth=2, times=2)
        assert [s.get(f"{sim.url}/v2/users/me").status_code for _ in range(5)] == [200, 502, 502, 200, 200]
        sim.faults.clear()

        def pattern(seed: int) -> list[int]:
            r = requests.post(
                f"{sim.url}/_sim/faults",
                json={"mode": "status", "status": 500, "probability": 0.5, "seed": seed, "times": None},
            )
            assert r.status_code == 201
            codes = [s.get(f"{sim.url}/v2/users/me").status_code for _ in range(30)]
            assert requests.delete(f"{sim.url}/_sim/faults").json() == {"removed": 1}
            return codes

        first, again, other = pattern(3), pattern(3), pattern(4)
        assert first == again != other
        assert 5 < first.count(500) < 25
        bad = requests.post(f"{sim.url}/_sim/faults", json={"mode": "status", "colour": "red"})
        assert bad.status_code == 422 and "colour" in bad.json()["message"]

"""The core sync against real PostgreSQL and the Harvest simulator over HTTP (no Airflow scheduler)."""

import datetime as dt
from decimal import Decimal

import pytest

from primetric_harvest.harvest_hook import HarvestAccessError
from tests.fixtures import fails_at_once

pytestmark = pytest.mark.db

D = dt.date


@pytest.fixture
def apollo(world):
    """Project 1 fed by Harvest projects 101 and 102; Bobby is assigned, Sam is not."""
    world.teammate("bobby", 1, "bobby@acme.test")
    world.teammate("sam", 2, "Sam@Acme.test ", harvest_email="sam@acme.test")
    world.linked_project(1, [101, 102], since=D(2026, 1, 1), assigned=(1,))
    return world


def test_entries_of_all_linked_projects_become_work_logs(apollo):
    a = apollo.entry("bobby", 101, "2026-02-01", 1.5, "web")
    b = apollo.entry("bobby", 102, "2026-02-02", 2.25, "mobile")
    apollo.entry("bobby", 999, "2026-02-03", 8)  # a Harvest project not linked here
    apollo.sync(1)
    rows = apollo.worklogs(1)
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        (a, 1, D(2026, 2, 1), Decimal("1.5"), "web"),
        (b, 1, D(2026, 2, 2), Decimal("2.25"), "mobile"),
    ]
    assert len({r[5] for r in rows}) == 1  # both on Bobby's assignment
    synced = apollo.sql(
        "SELECT harvest_project_id, harvest_user_id, synced_at IS NOT NULL FROM primetric.worklogs "
        "ORDER BY harvest_time_entry_id"
    )
    assert synced == [(101, apollo.users["bobby"], True), (102, apollo.users["bobby"], True)]


def test_prevent_creation_lands_only_assigned_people_and_reports_the_rest(apollo):
    """Bobby and Sam log time in Harvest project A; Sam is not assigned and prevent-creation is on."""
    apollo.sql("UPDATE primetric.harvest_settings SET prevent_new_assignment_creation = true")
    bobby = apollo.entry("bobby", 101, "2026-02-01", 1)
    apollo.entry("sam", 101, "2026-02-02", 2)
    apollo.entry("sam", 101, "2026-02-09", 3)
    result = apollo.sync(1)
    assert [r[0] for r in apollo.worklogs(1)] == [bobby]
    assert apollo.missing(1) == [
        (apollo.users["sam"], "sam@acme.test", "not_assigned_to_project", 2, Decimal("5"), D(2026, 2, 2), D(2026, 2, 9))
    ]
    assert apollo.assignments(1) == [(1, D(2026, 1, 1), None, False)]  # no assignment created
    assert result.reported.skipped_by_reason == {"not_assigned_to_project": 2}


def test_trim_creates_one_assignment_from_first_to_last_work_log(apollo):
    """Bobby logs Feb 1 and Mar 19 with trim on → one assignment Feb 1–Mar 19 (here: Sam, who had none)."""
    apollo.sql("UPDATE primetric.harvest_settings SET trim_assignments_to_worklogs = true")
    apollo.entry("sam", 101, "2026-02-01", 1)
    apollo.entry("sam", 102, "2026-03-19", 1)
    apollo.sync(1)
    assert apollo.assignments(1) == [(1, D(2026, 1, 1), None, False), (2, D(2026, 2, 1), D(2026, 3, 19), True)]
    sam_assignment = apollo.sql("SELECT id FROM primetric.assignments WHERE employee_id = 2")[0][0]
    assert {r[5] for r in apollo.worklogs(1) if r[1] == 2} == {sam_assignment}


def test_without_trim_a_new_assignment_spans_the_project(apollo):
    apollo.sql("UPDATE primetric.projects SET end_date = '2026-12-31'")
    apollo.entry("sam", 101, "2026-02-01", 1)
    apollo.sync(1)
    assert apollo.assignments(1)[1] == (2, D(2026, 1, 1), D(2026, 12, 31), True)


def test_hand_made_assignments_are_never_changed(apollo):
    apollo.sql("UPDATE primetric.harvest_settings SET trim_assignments_to_worklogs = true")
    apollo.entry("bobby", 101, "2025-06-01", 1)  # before the assignment starts: attaches to the nearest
    apollo.entry("bobby", 101, "2026-05-01", 1)
    apollo.sync(1, since="2025-01-01")
    assert apollo.assignments(1) == [(1, D(2026, 1, 1), None, False)]


def test_unknown_person_is_reported_missing(apollo):
    apollo.harvest_user("nina", "nina@acme.test", "Nina", "Novak")
    apollo.entry("nina", 101, "2026-03-01", 7.25)
    apollo.sync(1)
    assert apollo.worklogs(1) == []
    assert apollo.missing(1) == [
        (
            apollo.users["nina"],
            "nina@acme.test",
            "no_matching_employee",
            1,
            Decimal("7.25"),
            D(2026, 3, 1),
            D(2026, 3, 1),
        )
    ]


def test_running_the_same_sync_twice_changes_nothing(apollo):
    apollo.entry("bobby", 101, "2026-02-01", 1)
    apollo.entry("sam", 101, "2026-02-02", 2)
    apollo.sync(1, since="2026-01-01")
    before = apollo.snapshot()
    second = apollo.sync(1)
    after = apollo.snapshot()
    state = "harvest_sync.sync_state"
    before.pop(state), after.pop(state)  # last_run_id and last_success_at move, by design
    before.pop("primetric.missing_teammates"), after.pop("primetric.missing_teammates")  # reported_at moves
    assert after == before
    assert second.loaded.inserted == second.loaded.updated == 0


def test_daily_run_is_incremental_and_ignores_entries_before_sync_since(apollo):
    first = apollo.entry("bobby", 101, "2026-02-01", 1)
    apollo.entry("bobby", 101, "2025-12-31", 1)  # before sync_since
    apollo.sync(1)
    assert [r[0] for r in apollo.worklogs(1)] == [first]
    apollo.sim.state.advance(3600)
    second = apollo.entry("bobby", 102, "2026-02-05", 2)
    apollo.sim.state.update_entry(first, hours=1.75)
    apollo.sim.reset_stats()
    result = apollo.sync(1)
    assert [(r[0], r[3]) for r in apollo.worklogs(1)] == [(first, Decimal("1.75")), (second, Decimal("2"))]
    assert result.extracted.plan.mode == "incremental"
    assert result.extracted.entries_fetched == 2  # only what changed since the high-water mark
    assert (result.loaded.inserted, result.loaded.updated) == (1, 1)


def test_reset_replaces_the_synced_work_logs_from_since_and_keeps_hand_made_ones(apollo):
    apollo.sql(
        "INSERT INTO primetric.worklogs (id, project_id, employee_id, work_date, hours, description) "
        "VALUES (1, 1, 1, '2026-01-05', 3, 'typed by hand')"
    )
    old = apollo.entry("bobby", 101, "2026-01-10", 1)
    new = apollo.entry("bobby", 101, "2026-03-10", 1)
    apollo.sync(1)
    assert [r[0] for r in apollo.worklogs(1)] == [old, new]
    apollo.sync(1, since="2026-03-01")
    assert [r[0] for r in apollo.worklogs(1)] == [new]
    assert apollo.sql("SELECT sync_since FROM primetric.harvest_settings")[0][0] == D(2026, 3, 1)
    assert apollo.sql("SELECT description FROM primetric.worklogs WHERE harvest_time_entry_id IS NULL") == [
        ("typed by hand",)
    ]


def test_first_run_without_sync_since_starts_at_the_project_start(apollo):
    apollo.sql("UPDATE primetric.harvest_settings SET sync_since = NULL")
    apollo.sql("UPDATE primetric.projects SET start_date = '2026-03-01'")
    apollo.entry("bobby", 101, "2026-02-28", 1)
    kept = apollo.entry("bobby", 101, "2026-03-01", 1)
    result = apollo.sync(1)
    assert result.extracted.plan.mode == "full"
    assert [r[0] for r in apollo.worklogs(1)] == [kept]


def test_clear_data_deletes_synced_work_logs_and_sync_assignments_only(apollo):
    apollo.sql("UPDATE primetric.harvest_settings SET trim_assignments_to_worklogs = true")
    apollo.sql(
        "INSERT INTO primetric.worklogs (id, project_id, employee_id, work_date, hours) "
        "VALUES (1, 1, 1, '2026-01-05', 3)"
    )
    apollo.entry("bobby", 101, "2026-02-01", 1)
    apollo.entry("sam", 101, "2026-02-01", 1)
    apollo.sync(1)
    assert len(apollo.worklogs(1)) == 2 and len(apollo.assignments(1)) == 2
    apollo.sync(1, clear_data=True, confirm_project_name="Project 1")
    assert apollo.worklogs(1) == []
    assert apollo.assignments(1) == [(1, D(2026, 1, 1), None, False)]
    assert apollo.sql("SELECT count(*) FROM primetric.worklogs")[0][0] == 1
    assert apollo.sql("SELECT high_water_mark FROM harvest_sync.sync_state")[0][0] is None


def test_missing_teammate_added_later_gets_all_their_entries(apollo):
    apollo.harvest_user("nina", "nina@acme.test")
    old = apollo.entry("nina", 101, "2026-02-01", 3)
    apollo.sync(1)
    assert apollo.worklogs(1) == [] and len(apollo.missing(1)) == 1
    apollo.employee(3, "nina@acme.test")
    apollo.sync(1)  # Nina's entry has not changed in Harvest: it comes from the kept-aside entries
    assert [(r[0], r[1]) for r in apollo.worklogs(1)] == [(old, 3)]
    assert apollo.missing(1) == []


def test_a_non_admin_token_is_refused_and_nothing_is_touched(apollo):
    apollo.entry("bobby", 101, "2026-02-01", 1)
    for token in apollo.sim.tokens.values():
        token["role"] = "member"
    before = apollo.snapshot()
    with fails_at_once(HarvestAccessError, match="administrator"):
        apollo.sync(1)
    assert apollo.snapshot() == before


def test_a_bad_token_names_the_connection_and_project(apollo, monkeypatch):
    import json
    import os

    conn = json.loads(os.environ["AIRFLOW_CONN_HARVEST_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_HARVEST_DEFAULT", json.dumps({**conn, "password": "wrong"}))
    with fails_at_once(HarvestAccessError, match=r"401.*harvest_default.*Primetric project 1"):
        apollo.sync(1)


def test_a_failing_load_leaves_the_tables_exactly_as_they_were(apollo, monkeypatch):
    from primetric_harvest import pipeline

    apollo.entry("bobby", 101, "2026-02-01", 1)
    apollo.sync(1)
    apollo.entry("sam", 101, "2026-02-03", 1)
    before = apollo.snapshot()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline, "_set_assignment_spans", broken)  # fails mid-transaction
    with pytest.raises(RuntimeError, match="disk full"):
        apollo.sync(1, since="2026-01-01")
    assert apollo.snapshot() == before

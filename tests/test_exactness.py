"""Harvest changes that must show up in Primetric after the next run (issue: stay exactly right)."""

import datetime as dt
import threading
import time
from decimal import Decimal

import pytest

from primetric_harvest import pipeline

pytestmark = pytest.mark.db

D = dt.date
TODAY = dt.datetime.now(dt.UTC).date()


def day(offset: int) -> str:
    """A spent_date `offset` days from today (negative: past), inside the 60-day reconcile window."""
    return (TODAY + dt.timedelta(days=offset)).isoformat()


@pytest.fixture
def team(world):
    world.teammate("bobby", 1, "bobby@acme.test")
    world.teammate("sam", 2, "sam@acme.test")
    world.linked_project(1, [101], since=D(2025, 1, 1), assigned=(1, 2))
    return world


def daily(world, project_id=1):
    """A daily run: the clock moves on a little, so entries changed now are newer than the mark."""
    world.sim.state.advance(60)
    return world.sync(project_id)


def ids(world, project_id=1):
    return [r[0] for r in world.worklogs(project_id)]


def test_deleted_entry_disappears_at_the_next_daily_run(team):
    keep = team.entry("bobby", 101, day(-3), 1)
    gone = team.entry("bobby", 101, day(-2), 2)
    team.sync(1)
    assert ids(team) == [keep, gone]
    team.sim.state.delete_entry(gone)
    result = daily(team)
    assert result.extracted.plan.mode == "incremental"
    assert ids(team) == [keep]
    assert result.loaded.deleted == 1


def test_delete_older_than_the_window_waits_for_the_weekly_full_reconcile(team):
    old = team.entry("bobby", 101, day(-100), 1)
    team.sync(1)
    team.sim.state.delete_entry(old)
    daily(team)
    assert ids(team) == [old]  # outside the 60-day window: not seen yet
    team.sql("UPDATE harvest_sync.sync_state SET last_full_reconcile_at = now() - interval '8 days'")
    result = daily(team)
    assert result.extracted.plan.mode == "reconcile"
    assert ids(team) == []


def test_edits_follow_hours_notes_date_and_user(team):
    entry = team.entry("bobby", 101, day(-5), 1, "first")
    team.sync(1)
    team.sim.state.advance(60)
    team.sim.state.update_entry(
        entry, hours=2.5, notes="second", spent_date=D.fromisoformat(day(-4)), user_id=team.users["sam"]
    )
    daily(team)
    [(entry_id, employee, work_date, hours, notes, _)] = team.worklogs(1)
    assert (entry_id, employee, work_date, hours, notes) == (
        entry,
        2,
        D.fromisoformat(day(-4)),
        Decimal("2.5"),
        "second",
    )


def test_entry_moved_to_another_project_leaves_and_lands_where_linked(team):
    team.project(2, [201], sync_since=D(2025, 1, 1))
    moved_away = team.entry("bobby", 101, day(-3), 1)
    moved_over = team.entry("bobby", 101, day(-3), 2)
    team.sync(1)
    team.sync(2)
    assert ids(team, 1) == [moved_away, moved_over]
    team.sim.state.advance(60)
    team.sim.state.update_entry(moved_away, project_id=999)  # a Harvest project linked nowhere
    team.sim.state.update_entry(moved_over, project_id=201)  # linked to Primetric project 2
    daily(team, 1)
    daily(team, 2)
    assert ids(team, 1) == []
    assert ids(team, 2) == [moved_over]
    assert team.sql("SELECT count(*) FROM primetric.worklogs")[0][0] == 1


def test_entry_moved_between_linked_projects_lands_whichever_project_runs_first(team):
    team.project(2, [201], sync_since=D(2025, 1, 1))
    entry = team.entry("bobby", 101, day(-3), 1)
    team.sync(1)
    team.sync(2)
    team.sim.state.advance(60)
    team.sim.state.update_entry(entry, project_id=201)
    daily(team, 2)  # the new owner first: the upsert moves the work log
    assert ids(team, 2) == [entry] and ids(team, 1) == []
    daily(team, 1)
    assert ids(team, 2) == [entry] and ids(team, 1) == []


def test_changed_harvest_email_moves_the_work_logs_at_the_next_run(team):
    # Outside the re-listed window and unchanged for a week: only the new e-mail can move it.
    last_week = dt.datetime.now(dt.UTC) - dt.timedelta(days=7)
    entry = team.entry("bobby", 101, day(-100), 1, updated_at=last_week)
    team.sync(1)
    assert team.worklogs(1)[0][1] == 1
    # Bobby's Harvest account now carries Sam's e-mail; the entry itself is unchanged in Harvest.
    team.sim.state.update_user(team.users["bobby"], email="SAM@acme.test")
    daily(team)
    assert [(r[0], r[1]) for r in team.worklogs(1)] == [(entry, 2)]
    team.sim.state.update_user(team.users["bobby"], email="someone.else@acme.test")
    daily(team)
    assert team.worklogs(1) == []
    assert [r[2] for r in team.missing(1)] == ["no_matching_employee"]


def test_assigned_later_with_prevent_creation_brings_all_their_entries(team):
    team.sql("UPDATE primetric.harvest_settings SET prevent_new_assignment_creation = true")
    team.employee(3, "nina@acme.test", "Nina")
    team.harvest_user("nina", "nina@acme.test")
    last_week = dt.datetime.now(dt.UTC) - dt.timedelta(days=7)
    old = team.entry("nina", 101, day(-200), 3, updated_at=last_week)  # outside the window, long unchanged
    recent = team.entry("nina", 101, day(-1), 2)
    team.sync(1)
    assert 3 not in {r[1] for r in team.worklogs(1)}
    assert [r[2] for r in team.missing(1)] == ["not_assigned_to_project"]
    team.assign(1, 3, D(2025, 1, 1))
    result = daily(team)
    assert sorted(r[0] for r in team.worklogs(1) if r[1] == 3) == sorted([old, recent])
    assert result.extracted.entries_fetched == 1  # only the recent one: the old came from what was kept aside
    assert team.missing(1) == []


def test_losing_the_assignment_with_prevent_creation_takes_the_work_logs_out(team):
    team.sql("UPDATE primetric.harvest_settings SET prevent_new_assignment_creation = true")
    entry = team.entry("sam", 101, day(-200), 3)
    team.sync(1)
    assert ids(team) == [entry]
    team.sql("DELETE FROM primetric.assignments WHERE employee_id = 2")
    daily(team)
    assert ids(team) == []
    assert [(r[0], r[2]) for r in team.missing(1)] == [(team.users["sam"], "not_assigned_to_project")]


def test_sync_created_trimmed_assignment_grows_and_shrinks(team):
    team.sql("UPDATE primetric.harvest_settings SET trim_assignments_to_worklogs = true")
    team.employee(3, "nina@acme.test", "Nina")
    team.harvest_user("nina", "nina@acme.test")
    first = team.entry("nina", 101, day(-20), 1)
    team.entry("nina", 101, day(-10), 1)
    team.sync(1)
    nina = [a for a in team.assignments(1) if a[0] == 3]
    assert nina == [(3, D.fromisoformat(day(-20)), D.fromisoformat(day(-10)), True)]
    team.entry("nina", 101, day(-2), 1)
    daily(team)
    assert [a[1:3] for a in team.assignments(1) if a[0] == 3] == [(D.fromisoformat(day(-20)), D.fromisoformat(day(-2)))]
    team.sim.state.delete_entry(first)
    daily(team)
    assert [a[1:3] for a in team.assignments(1) if a[0] == 3] == [(D.fromisoformat(day(-10)), D.fromisoformat(day(-2)))]
    # Hand-made assignments (Bobby's and Sam's) never move.
    assert [a for a in team.assignments(1) if a[0] != 3] == [
        (1, D(2025, 1, 1), None, False),
        (2, D(2025, 1, 1), None, False),
    ]


def test_running_timer_hours_are_current_after_each_run(team):
    timer = team.entry("bobby", 101, day(0), 0.5, is_running=True)
    team.sync(1)
    stamp = team.sim.state.get_entry(timer)["updated_at"]
    # Harvest may or may not move updated_at while a timer runs: assume it does not.
    team.sim.state.update_entry(timer, hours=1.75, updated_at=stamp)
    daily(team)
    assert team.worklogs(1)[0][3] == Decimal("1.75")


def backfill(world, first: str, last: str, project_id=1):
    outcome = world.sync(project_id, backfill=(D.fromisoformat(first), D.fromisoformat(last)))
    return outcome.extracted, outcome.loaded


def test_backfill_replaces_exactly_the_spent_dates_of_its_window(team):
    before = team.entry("bobby", 101, day(-30), 1)
    inside_deleted = team.entry("bobby", 101, day(-20), 1)
    inside_edited = team.entry("bobby", 101, day(-19), 1)
    after_deleted = team.entry("bobby", 101, day(-10), 1)
    team.sync(1)
    team.sim.state.delete_entry(inside_deleted)
    team.sim.state.delete_entry(after_deleted)
    team.sim.state.update_entry(inside_edited, hours=4)
    inside_new = team.entry("sam", 101, day(-18), 2)
    mark = team.sql("SELECT high_water_mark FROM harvest_sync.sync_state")
    extracted, _ = backfill(team, day(-21), day(-18))
    assert extracted.plan.mode == "backfill"
    assert {lst.from_date.isoformat() for lst in extracted.plan.listings} == {day(-21)}
    # Inside the window: exactly Harvest; outside it: untouched (the delete on day -10 is not seen).
    assert [(r[0], r[3]) for r in team.worklogs(1)] == [
        (before, Decimal("1")),
        (inside_edited, Decimal("4")),
        (after_deleted, Decimal("1")),
        (inside_new, Decimal("2")),
    ]
    assert team.sql("SELECT high_water_mark FROM harvest_sync.sync_state") == mark  # the mark does not move
    snapshot = team.snapshot()
    backfill(team, day(-21), day(-18))
    again = team.snapshot()
    for table in ("harvest_sync.sync_state", "primetric.missing_teammates"):
        snapshot.pop(table), again.pop(table)
    assert again == snapshot  # running it twice changes nothing


def test_clear_data_starts_clean_and_keeps_hand_made_rows(team):
    team.sql("UPDATE primetric.harvest_settings SET trim_assignments_to_worklogs = true")
    team.employee(3, "nina@acme.test", "Nina")
    team.harvest_user("nina", "nina@acme.test")
    team.harvest_user("zoe", "zoe@acme.test")
    team.sql(
        "INSERT INTO primetric.worklogs (id, project_id, employee_id, assignment_id, work_date, hours) "
        "SELECT 5, 1, 1, id, '2026-01-05', 3 FROM primetric.assignments WHERE employee_id = 1"
    )
    team.entry("bobby", 101, day(-3), 1)
    team.entry("nina", 101, day(-3), 1)  # gets a sync-created assignment
    team.entry("zoe", 101, day(-3), 1)  # missing: kept aside
    team.sync(1)
    assert len(team.worklogs(1)) == 2
    assert team.sql("SELECT count(*) FROM harvest_sync.skipped_entries")[0][0] == 1
    team.sync(1, clear_data=True, confirm_project_name="Project 1")
    assert team.worklogs(1) == []
    assert team.sql("SELECT count(*) FROM harvest_sync.skipped_entries")[0][0] == 0
    assert team.sql("SELECT high_water_mark FROM harvest_sync.sync_state") == [(None,)]
    assert team.missing(1) == []
    assert [a[0] for a in team.assignments(1)] == [1, 2]  # Nina's sync-created one is gone
    assert team.sql("SELECT id FROM primetric.worklogs") == [(5,)]  # hand-made stays
    result = team.sync(1, since=day(-5))
    assert result.extracted.plan.mode == "reset"
    assert len(team.worklogs(1)) == 2


def test_a_run_that_fetched_before_a_later_loaded_run_is_refused_untouched(team):
    from tests.fixtures import ACCOUNT_ID

    team.entry("bobby", 101, day(-3), 1)
    team.sync(1)
    slow = pipeline.extract(1, "slow_run", {})
    team.sim.state.advance(60)
    team.entry("bobby", 101, day(-2), 1)
    daily(team)  # started later, finished first
    before = team.snapshot()
    pipeline.transform(1, "slow_run", slow)
    with pytest.raises(pipeline.SupersededRun, match="trigger this run again"):
        pipeline.load(1, "slow_run", slow, account_id=ACCOUNT_ID)
    assert team.snapshot() == before


def test_loads_of_one_project_wait_for_each_other(team):
    """The per-project advisory lock: a load cannot start while another holds the project."""
    import psycopg

    from primetric_harvest.db import query
    from tests.fixtures import ACCOUNT_ID

    team.entry("bobby", 101, day(-3), 1)
    extracted = pipeline.extract(1, "waiting_run", {})
    pipeline.transform(1, "waiting_run", extracted)
    done = threading.Event()
    errors = []

    def run_load():
        try:
            pipeline.load(1, "waiting_run", extracted, account_id=ACCOUNT_ID)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        done.set()

    with psycopg.connect(team.dsn) as holder:
        holder.execute(query("load", "lock_project"), {"project_id": 1})  # another run's load, mid-transaction
        worker = threading.Thread(target=run_load)
        worker.start()
        waited = False
        for _ in range(100):
            waiting = team.sql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%%pg_advisory_xact_lock%%'"
            )[0][0]
            if waiting:
                waited = True
                break
            time.sleep(0.05)
        assert waited and not done.is_set() and team.worklogs(1) == []
        holder.rollback()  # the other run ends
    worker.join(timeout=30)
    assert done.is_set() and not errors
    assert len(team.worklogs(1)) == 1


def test_staging_of_a_run_that_died_before_its_load_is_dropped_later(team):
    team.entry("bobby", 101, day(-3), 1)
    pipeline.extract(1, "died_run", {})  # never transformed nor loaded
    dead = pipeline.Staging.for_run(1, "died_run")
    exists = "SELECT to_regclass(%s) IS NOT NULL"
    assert team.sql(exists, (dead.entries,)) == [(True,)]
    team.sync(1)
    assert team.sql(exists, (dead.entries,)) == [(True,)]  # recent: it may still be retried
    team.sql("UPDATE harvest_sync.staging_runs SET created_at = now() - interval '4 days'")
    team.sync(1)
    assert team.sql(exists, (dead.entries,)) == [(False,)]
    assert team.sql("SELECT count(*) FROM harvest_sync.staging_runs") == [(0,)]

"""Edges of the pure rules (plan.py, transform.py) that mutation testing found unchecked (`make mutation`).

Each test states a behaviour a manager or the sync relies on; the cases sit on the boundary a small change of
the code would move (a ``<=`` become ``<``, a default, a tie-break). Kept apart from test_plan.py and
test_transform.py, which hold the main cases.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from primetric_harvest import transform as t
from primetric_harvest.plan import (
    BACKFILL,
    CLEAR,
    FULL,
    INCREMENTAL,
    RECONCILE,
    RESET,
    InvalidSyncRequest,
    Listing,
    SyncPlan,
    SyncRequest,
    backfill_window,
    parse_since,
    parse_sync_request,
    plan_sync,
    shown,
)
from primetric_harvest.skip_reasons import SkipReason
from tests.test_plan import MARK, NOW, plan  # a daily run, as in test_plan.py
from tests.test_transform import NO_ASSIGNMENTS, entries  # staged time entries, as in test_transform.py

pytestmark = pytest.mark.unit

D = dt.date
TODAY = NOW.date()
CHANGED_SINCE = MARK - dt.timedelta(minutes=10)
SINCE = D(2026, 1, 1)  # plan()'s sync_since


def flags(p: SyncPlan) -> dict[str, object]:
    return {
        "mode": p.mode,
        "prune": p.prune,
        "advances_mark": p.advances_mark,
        "full_reconcile": p.full_reconcile,
        "clears_data": p.clears_data,
        "fetches": p.fetches,
    }


# == plan.py ===================================================================================================
# -- what each kind of run may do: prune, move the high-water mark, count as a full reconcile
@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"since": "2026-03-01"}, (RESET, True, True, True, False, True)),
        ({"high_water_mark": None}, (FULL, True, True, True, False, True)),
        ({"last_full_reconcile_at": None}, (RECONCILE, True, True, True, False, True)),
        ({}, (INCREMENTAL, True, True, False, False, True)),
        ({"window_days": 0}, (INCREMENTAL, False, True, False, False, True)),
        ({"backfill": (D(2026, 3, 1), D(2026, 3, 2))}, (BACKFILL, True, False, False, False, True)),
        ({"backfill": (D(2025, 3, 1), D(2025, 3, 2))}, (BACKFILL, False, False, False, False, False)),
        ({"clear_data": True}, (CLEAR, True, False, False, True, False)),
    ],
    ids=["reset", "first-run", "reconcile", "daily", "daily-no-window", "backfill", "backfill-before-sync", "clear"],
)
def test_each_kind_of_run_prunes_moves_the_mark_and_counts_as_full_only_when_it_listed_enough(kw, expected):
    keys = ("mode", "prune", "advances_mark", "full_reconcile", "clears_data", "fetches")
    assert flags(plan(**kw)) == dict(zip(keys, expected, strict=True))


def test_a_complete_relist_prunes_everything_it_listed_and_keeps_or_moves_sync_since():
    for p in (plan(high_water_mark=None), plan(last_full_reconcile_at=None)):
        assert (p.prune_from, p.prune_to, p.new_sync_since) == (None, None, SINCE)
    reset = plan(since="2026-03-01")
    assert (reset.prune_from, reset.prune_to, reset.new_sync_since) == (None, None, D(2026, 3, 1))
    clear = plan(clear_data=True)
    assert (clear.listings, clear.prune_from, clear.prune_to, clear.new_sync_since) == ((), None, None, SINCE)


def test_a_window_of_zero_or_less_lists_changes_and_running_timers_and_prunes_nothing():
    for window_days in (0, -1):
        p = plan(window_days=window_days)
        assert p.listings == (Listing(SINCE, None, CHANGED_SINCE), Listing(SINCE, running_only=True))
        assert (p.prune, p.prune_from, p.prune_to, p.new_sync_since) == (False, None, None, SINCE)


def test_a_daily_run_keeps_sync_since():
    assert plan().new_sync_since == SINCE
    assert plan(sync_since=D(2026, 11, 1)).new_sync_since == D(2026, 11, 1)


def test_a_window_of_one_day_lists_yesterday_and_today_in_full():
    p = plan(window_days=1)
    assert p.listings == (
        Listing(TODAY - dt.timedelta(days=1)),
        Listing(SINCE, TODAY - dt.timedelta(days=2), CHANGED_SINCE),
    )
    assert (p.prune, p.prune_from, p.prune_to) == (True, TODAY - dt.timedelta(days=1), None)


def test_the_overlap_rereads_changes_made_just_before_the_mark():
    p = plan(overlap=dt.timedelta(hours=1))
    assert p.listings[1].updated_since == MARK - dt.timedelta(hours=1)
    assert plan(overlap=dt.timedelta(0)).listings[1].updated_since == MARK


def test_a_window_that_starts_exactly_at_sync_since_is_one_listing():
    window_from = TODAY - dt.timedelta(days=60)
    p = plan(sync_since=window_from)
    assert p.listings == (Listing(window_from),)
    assert p.prune_from == window_from
    day_before = plan(sync_since=window_from - dt.timedelta(days=1))
    assert day_before.listings == (
        Listing(window_from),
        Listing(window_from - dt.timedelta(days=1), window_from - dt.timedelta(days=1), CHANGED_SINCE),
    )


def test_a_project_without_any_start_lists_older_changes_from_the_beginning():
    p = plan(sync_since=None, project_start=None)
    window_from = TODAY - dt.timedelta(days=60)
    assert p.listings == (Listing(window_from), Listing(None, window_from - dt.timedelta(days=1), CHANGED_SINCE))
    assert (p.prune_from, p.new_sync_since) == (window_from, None)
    first = plan(sync_since=None, project_start=None, high_water_mark=None)
    assert (first.mode, first.listings) == (FULL, (Listing(None),))


def test_without_sync_since_the_window_starts_no_earlier_than_the_project():
    start = TODAY - dt.timedelta(days=10)
    p = plan(sync_since=None, project_start=start)
    assert p.listings == (Listing(start),)
    assert (p.prune_from, p.new_sync_since) == (start, None)


def test_today_and_now_default_to_the_clock():
    before = dt.datetime.now(dt.UTC).date()
    p = plan_sync(sync_since=SINCE, project_start=None, high_water_mark=MARK, last_full_reconcile_at=None)
    assert p.mode == RECONCILE  # no last reconcile: due
    p = plan_sync(
        sync_since=SINCE, project_start=None, high_water_mark=MARK, last_full_reconcile_at=dt.datetime.now(dt.UTC)
    )
    assert p.prune_from in (before - dt.timedelta(days=60), dt.datetime.now(dt.UTC).date() - dt.timedelta(days=60))
    assert plan(today=D(2026, 6, 30)).prune_from == D(2026, 5, 1)  # today given: the window counts from it


def test_a_full_reconcile_is_due_after_its_period_to_the_second():
    period = dt.timedelta(days=7)
    assert plan(last_full_reconcile_at=NOW - period).mode == RECONCILE
    assert plan(last_full_reconcile_at=NOW - period + dt.timedelta(seconds=1)).mode == INCREMENTAL
    assert plan(last_full_reconcile_at=NOW - dt.timedelta(days=1), full_reconcile_every_days=1).mode == RECONCILE
    assert plan(last_full_reconcile_at=NOW, full_reconcile_every_days=0).mode == RECONCILE


# -- backfill
def test_a_one_day_backfill_lists_and_replaces_that_day():
    day = D(2026, 3, 1)
    p = plan(backfill=(day, day))
    assert p.listings == (Listing(day, day),)
    assert (p.prune, p.prune_from, p.prune_to, p.new_sync_since) == (True, day, day, SINCE)


def test_a_backfill_reaching_before_sync_since_starts_at_sync_since():
    p = plan(backfill=(D(2025, 12, 30), D(2026, 1, 1)))
    assert p.listings == (Listing(SINCE, SINCE),)
    assert (p.prune_from, p.prune_to) == (SINCE, SINCE)
    p = plan(backfill=(D(2025, 12, 30), D(2026, 1, 2)), sync_since=None)  # the project's start then
    assert p.listings == (Listing(D(2025, 12, 30), D(2026, 1, 2)),)
    p = plan(backfill=(D(2025, 12, 30), D(2026, 1, 2)), sync_since=None, project_start=None)
    assert p.listings == (Listing(D(2025, 12, 30), D(2026, 1, 2)),)


def test_a_backfill_wholly_before_sync_since_fetches_and_deletes_nothing():
    p = plan(backfill=(D(2025, 12, 30), D(2025, 12, 31)))
    assert (p.listings, p.prune, p.prune_from, p.prune_to) == ((), False, SINCE, D(2025, 12, 31))


def test_a_backfill_runs_whatever_the_mark_and_the_reconcile_say():
    day = (D(2026, 3, 1), D(2026, 3, 1))
    for kw in ({"high_water_mark": None}, {"last_full_reconcile_at": None}, {"window_days": 0}):
        assert plan(backfill=day, **kw).mode == BACKFILL


def test_backfill_window_is_the_data_interval_end_exclusive():
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)

    class RunType:  # Airflow's DagRunType: an enum whose value is "backfill"
        value = "backfill"

    assert backfill_window(RunType(), start, start + dt.timedelta(days=3)) == (D(2026, 3, 1), D(2026, 3, 3))
    assert backfill_window("backfill", start, start + dt.timedelta(days=1, microseconds=1)) == (
        D(2026, 3, 1),
        D(2026, 3, 2),
    )
    assert backfill_window("backfill", start, start) == (D(2026, 3, 1), D(2026, 3, 1))  # an empty interval
    assert backfill_window("backfill", start, None) is None
    assert backfill_window("backfill", None, start) is None
    assert backfill_window("manual", start, start + dt.timedelta(days=1)) is None


# -- the trigger's parameters
@pytest.mark.parametrize("empty", [None, ""])
def test_an_empty_since_is_a_daily_run(empty):
    assert parse_since(empty) is None
    assert plan(since=empty) == plan()
    assert parse_sync_request({"since": empty}, today=TODAY, project_name="Apollo") == SyncRequest()


def test_since_may_be_a_date_or_its_text_with_spaces_around():
    assert parse_since(D(2026, 3, 1)) == D(2026, 3, 1)
    assert parse_since(" 2026-03-01\n") == D(2026, 3, 1)
    assert plan(since=" 2026-03-01 ").listings == (Listing(D(2026, 3, 1)),)
    with pytest.raises(InvalidSyncRequest, match=r"since=datetime\.datetime") as caught:
        parse_since(dt.datetime(2026, 3, 1))  # a timestamp is not a day
    assert caught.value.field == "since"


def test_since_today_is_allowed_tomorrow_is_not():
    assert parse_sync_request({"since": TODAY.isoformat()}, today=TODAY, project_name="A").since == TODAY
    with pytest.raises(InvalidSyncRequest, match="after today"):
        parse_sync_request({"since": (TODAY + dt.timedelta(days=1)).isoformat()}, today=TODAY, project_name="A")


def test_the_first_unknown_parameter_is_named_and_all_of_them_listed():
    with pytest.raises(InvalidSyncRequest) as caught:
        parse_sync_request({"zeta": 1, "alpha": 2, "since": None}, today=TODAY, project_name="A")
    assert caught.value.field == "alpha"
    assert str(caught.value).startswith("unknown parameter 'alpha', 'zeta': the accepted parameters are since, ")


@pytest.mark.parametrize(
    ("conf", "kw", "field", "message"),
    [
        ({"clear_data": "yes"}, {}, "clear_data", "clear_data='yes' is not true or false"),
        (
            {"since": "2026-11-26"},
            {},
            "since",
            "since=2026-11-26 is after today (2026-11-25): a reset from a future date would delete every synced work "
            "log and sync nothing; give a date up to today",
        ),
        (
            {"since": "2026-01-01", "clear_data": True},
            {},
            "clear_data",
            "clear_data and since cannot be combined: clear the data first, then reset and sync from a date",
        ),
        (
            {"since": "2026-01-01"},
            {"backfill": True},
            "since",
            "a backfill replaces exactly the dates of its own runs: since and clear_data cannot be given to a backfill "
            "(trigger a reset or a clear as a run of its own)",
        ),
        (
            {"clear_data": True, "confirm_project_name": "A"},
            {"backfill": True},
            "clear_data",
            "a backfill replaces exactly the dates of its own runs: since and clear_data cannot be given to a backfill "
            "(trigger a reset or a clear as a run of its own)",
        ),
    ],
    ids=["clear-not-bool", "since-future", "clear-and-since", "backfill-since", "backfill-clear"],
)
def test_a_refused_request_says_exactly_what_to_do_and_names_its_field(conf, kw, field, message):
    with pytest.raises(InvalidSyncRequest) as caught:
        parse_sync_request(conf, today=TODAY, project_name="A", **kw)
    assert (str(caught.value), caught.value.field) == (message, field)


def test_clear_data_false_goes_with_since_and_a_backfill_names_clear_data():
    request = parse_sync_request({"since": "2026-01-01", "clear_data": False}, today=TODAY, project_name="A")
    assert request == SyncRequest(since=D(2026, 1, 1))
    with pytest.raises(InvalidSyncRequest) as caught:
        parse_sync_request(
            {"clear_data": True, "confirm_project_name": "A"}, today=TODAY, project_name="A", backfill=True
        )
    assert caught.value.field == "clear_data"


def test_clear_data_is_confirmed_by_the_name_without_surrounding_spaces():
    request = parse_sync_request(
        {"clear_data": True, "confirm_project_name": "Apollo"}, today=TODAY, project_name=" Apollo "
    )
    assert request == SyncRequest(clear_data=True)
    for typed in (7, None, "Apollo 2"):
        with pytest.raises(InvalidSyncRequest, match=f"got {shown(typed)}"):
            parse_sync_request({"clear_data": True, "confirm_project_name": typed}, today=TODAY, project_name="Apollo")


def test_an_error_message_shows_a_value_cut_to_its_limit():
    assert shown("x" * 38) == "'" + "x" * 38 + "'"  # 40 characters: whole
    assert shown("x" * 39) == "'" + "x" * 38 + "…"  # 41: cut to 40
    assert shown(12345, limit=4) == "123…"
    assert shown(1234, limit=4) == "1234"


def test_plan_refuses_clear_data_with_since_naming_both():
    with pytest.raises(InvalidSyncRequest, match=r"^clear_data and since cannot be combined: clear first"):
        plan(clear_data=True, since="2026-01-01")


# -- what one listing asks Harvest for
def test_a_listing_asks_for_its_dates_changes_and_running_timers_only():
    updated = dt.datetime(2026, 11, 24, 5, 50, tzinfo=dt.UTC)
    assert Listing(D(2026, 1, 1), D(2026, 1, 31), updated).filters() == {
        "from": "2026-01-01",
        "to": "2026-01-31",
        "updated_since": "2026-11-24T05:50:00+00:00",
    }
    assert Listing(D(2026, 1, 1), running_only=True).filters() == {"from": "2026-01-01", "is_running": "true"}
    assert Listing().filters() == {}
    assert Listing(None, D(2026, 1, 31)).filters() == {"to": "2026-01-31"}


# == transform.py ==============================================================================================
USERS = pd.DataFrame(
    [(10, "bobby@acme.test", "Bobby", "Tables"), (11, "sam@acme.test", "Sam", "Shaw")],
    columns=["harvest_user_id", "email", "first_name", "last_name"],
)
EMPLOYEES = pd.DataFrame(
    [(1, "bobby@acme.test", "Bobby", "employee"), (2, "sam@acme.test", "Sam", "manager")],
    columns=["employee_id", "email", "name", "role"],
)
ASSIGNMENT_COLUMNS = list(NO_ASSIGNMENTS.columns)
RULES = t.ProjectRules(project_id=1, start_date=D(2026, 1, 1), end_date=None)


def sync(data: pd.DataFrame, assignments: pd.DataFrame = NO_ASSIGNMENTS, rules: t.ProjectRules = RULES):
    return t.plan_work_logs(data, USERS, EMPLOYEES, assignments, rules, {7})


def kept_aside(result: t.TransformResult) -> list[list]:
    return result.skipped[["harvest_time_entry_id", "reason", "detail"]].values.tolist()


# -- hours and dates
@pytest.mark.parametrize("hours", ["0", "0.0", "24", "24.00", "0.01", "23.99"])
def test_zero_and_exactly_24_hours_are_work_logs(hours):
    result = sync(entries((1, 7, 10, "2026-02-01", hours)))
    assert result.skipped.empty
    assert result.worklogs[["harvest_time_entry_id", "hours"]].values.tolist() == [[1, hours]]


@pytest.mark.parametrize(
    ("hours", "detail"),
    [
        ("24.01", "hours 24.01 is not a number from 0 to 24"),
        ("-0.01", "hours -0.01 is not a number from 0 to 24"),
        ("abc", "hours abc is not a number from 0 to 24"),
        ("", "hours  is not a number from 0 to 24"),
        (None, "hours missing is not a number from 0 to 24"),
    ],
)
def test_hours_outside_0_to_24_or_not_a_number_are_kept_aside_saying_so(hours, detail):
    result = sync(entries((1, 7, 10, "2026-02-01", hours), (2, 7, 10, "2026-02-01", "1")))
    assert kept_aside(result) == [[1, SkipReason.INVALID_HOURS, detail]]
    assert result.worklogs["harvest_time_entry_id"].tolist() == [2]


@pytest.mark.parametrize(
    ("day", "detail"),
    [
        ("2026-02-30", "spent_date 2026-02-30 is not a YYYY-MM-DD date"),
        ("01/02/2026", "spent_date 01/02/2026 is not a YYYY-MM-DD date"),
        (None, "spent_date missing is not a YYYY-MM-DD date"),
    ],
)
def test_a_spent_date_that_is_not_a_day_is_kept_aside_saying_so(day, detail):
    assert kept_aside(sync(entries((1, 7, 10, day, "1")))) == [[1, SkipReason.INVALID_SPENT_DATE, detail]]


def test_a_record_wrong_in_several_ways_is_kept_aside_once_for_the_first():
    data = entries(
        (1, 8, 99, "2026-02-30", "abc"),  # everything wrong: the date is named
        (2, 8, 99, "2026-02-01", "abc"),  # then the hours
        (3, 8, 99, "2026-02-01", "1"),  # then the Harvest project
        (4, 7, 99, "2026-02-01", "1"),  # then the Harvest user
    )
    assert kept_aside(sync(data)) == [
        [1, SkipReason.INVALID_SPENT_DATE, "spent_date 2026-02-30 is not a YYYY-MM-DD date"],
        [2, SkipReason.INVALID_HOURS, "hours abc is not a number from 0 to 24"],
        [3, SkipReason.UNLINKED_HARVEST_PROJECT, "Harvest project 8 is not linked to this project"],
        [4, SkipReason.UNKNOWN_HARVEST_USER, "Harvest user 99 is not in Harvest's user list"],
    ]


def test_validation_gives_the_valid_entries_with_their_day_and_hours_and_the_rest_numbered_from_0():
    data = entries((1, 7, 10, "2026-02-01", "1.5"), (2, 7, 10, "bad", "1"), (3, 7, 10, "2026-02-02", "x"))
    data.index = [10, 20, 30]  # as a caller's filter may leave it
    valid, invalid = t.validate_entries(data, {7}, {10})
    assert list(valid.columns) == [*t.ENTRY_COLUMNS, "work_date", "hours_value"]
    assert valid[["harvest_time_entry_id", "work_date", "hours_value"]].values.tolist() == [[1, D(2026, 2, 1), 1.5]]
    assert list(invalid.columns) == t.SKIPPED_COLUMNS
    assert invalid[["harvest_time_entry_id", "reason"]].values.tolist() == [
        [2, SkipReason.INVALID_SPENT_DATE],
        [3, SkipReason.INVALID_HOURS],
    ]
    assert list(invalid.index) == [0, 1]


def test_an_entry_frame_without_optional_columns_is_kept_aside_with_every_column():
    data = entries((1, 8, 10, "2026-02-01", "1")).drop(columns=["notes", "updated_at"])
    _, invalid = t.validate_entries(data, {7}, {10})
    assert list(invalid.columns) == t.SKIPPED_COLUMNS
    assert invalid[["harvest_time_entry_id", "reason"]].values.tolist() == [[1, SkipReason.UNLINKED_HARVEST_PROJECT]]
    assert invalid[["notes", "updated_at"]].isna().all(axis=None)


def test_kept_aside_entries_of_every_kind_are_numbered_from_0():
    data = entries((1, 8, 10, "2026-02-01", "1"), (2, 7, 11, "2026-02-01", "1"), (3, 7, 10, "2026-02-01", "1"))
    unmatched = USERS.assign(email=["bobby@acme.test", "nobody@acme.test"])
    result = t.plan_work_logs(data, unmatched, EMPLOYEES, NO_ASSIGNMENTS, RULES, {7})
    assert result.skipped[["harvest_time_entry_id", "reason"]].values.tolist() == [
        [1, SkipReason.UNLINKED_HARVEST_PROJECT],
        [2, SkipReason.NO_MATCHING_EMPLOYEE],
    ]
    assert list(result.skipped.index) == [0, 1]


def test_missing_teammates_are_kept_aside_with_the_reasons_sentence():
    unmatched = USERS.assign(email=["nobody@acme.test", "sam@acme.test"])
    result = t.plan_work_logs(entries((1, 7, 10, "2026-02-01", "1")), unmatched, EMPLOYEES, NO_ASSIGNMENTS, RULES, {7})
    assert kept_aside(result) == [[1, SkipReason.NO_MATCHING_EMPLOYEE, SkipReason.NO_MATCHING_EMPLOYEE.text]]
    prevent = t.ProjectRules(project_id=1, start_date=None, end_date=None, prevent_new_assignment_creation=True)
    result = sync(entries((2, 7, 11, "2026-02-01", "1")), rules=prevent)
    assert kept_aside(result) == [[2, SkipReason.NOT_ASSIGNED_TO_PROJECT, SkipReason.NOT_ASSIGNED_TO_PROJECT.text]]


def test_kept_aside_entries_carry_what_harvest_sent():
    result = sync(entries((1, 8, 10, "2026-02-01", "1.5", "on the wrong project")))
    row = result.skipped.iloc[0]
    assert list(result.skipped.columns) == t.SKIPPED_COLUMNS
    assert (row.harvest_project_id, row.harvest_user_id, row.spent_date, row.hours, row.notes) == (
        8,
        10,
        "2026-02-01",
        "1.5",
        "on the wrong project",
    )
    assert row.updated_at == pd.Timestamp("2026-11-01T00:00:00Z")


# -- the work logs' shape
def test_work_log_ids_are_int64_and_the_assignment_a_nullable_int():
    assignments = pd.DataFrame([(50, 1, D(2026, 1, 1), None, False)], columns=ASSIGNMENT_COLUMNS)
    data = entries((1, 7, 10, "2026-02-01", "1"), (2, 7, 11, "2026-02-01", "2"))
    data = data.astype({"harvest_time_entry_id": "object", "harvest_project_id": "object", "harvest_user_id": "object"})
    worklogs = sync(data, assignments).worklogs
    assert list(worklogs.columns) == t.WORKLOG_COLUMNS
    assert (
        worklogs.dtypes[["harvest_time_entry_id", "employee_id", "harvest_project_id", "harvest_user_id"]].tolist()
        == ["int64"] * 4
    )
    assert str(worklogs.dtypes["assignment_id"]) == "Int64"
    assert worklogs["assignment_id"].tolist()[0] == 50 and pd.isna(worklogs["assignment_id"].tolist()[1])
    assert list(worklogs.index) == [0, 1]


def test_nothing_to_sync_gives_empty_frames_of_the_right_columns():
    result = sync(entries())
    assert result.worklogs.empty and list(result.worklogs.columns) == t.WORKLOG_COLUMNS
    assert result.skipped.empty and list(result.skipped.columns) == t.SKIPPED_COLUMNS


# -- which assignment a work log lands on
def assignments(*rows) -> pd.DataFrame:
    """rows: (assignment_id, employee_id, start, end or None)"""
    return pd.DataFrame([(*r, False) for r in rows], columns=ASSIGNMENT_COLUMNS)


def landed(data: pd.DataFrame, assigned: pd.DataFrame) -> dict[int, object]:
    worklogs = sync(data, assigned).worklogs
    return dict(zip(worklogs["harvest_time_entry_id"], worklogs["assignment_id"], strict=True))


def test_where_an_open_ended_and_a_bounded_assignment_overlap_the_earlier_start_wins():
    both = assignments((60, 1, D(2026, 2, 1), D(2026, 2, 28)), (61, 1, D(2026, 1, 1), None))
    data = entries((1, 7, 10, "2026-02-10", "1"), (2, 7, 10, "2026-03-10", "1"), (3, 7, 10, "2025-12-01", "1"))
    assert landed(data, both) == {1: 61, 2: 61, 3: 61}
    later_open = assignments((60, 1, D(2026, 1, 1), D(2026, 2, 28)), (61, 1, D(2026, 2, 1), None))
    data = entries((1, 7, 10, "2026-02-10", "1"), (2, 7, 10, "2026-03-01", "1"))
    assert landed(data, later_open) == {1: 60, 2: 61}


def test_a_date_between_two_assignments_lands_on_the_nearer_and_on_a_tie_the_earlier():
    two = assignments((70, 1, D(2026, 3, 2), D(2026, 3, 31)), (71, 1, D(2026, 1, 1), D(2026, 1, 31)))
    data = entries(
        (1, 7, 10, "2026-02-15", "1"),  # 15 days after the first, 15 before the second
        (2, 7, 10, "2026-02-14", "1"),  # nearer the first
        (3, 7, 10, "2026-02-16", "1"),  # nearer the second
        (4, 7, 10, "2026-01-31", "1"),  # the first's last day
        (5, 7, 10, "2026-03-02", "1"),  # the second's first day
    )
    assert landed(data, two) == {1: 71, 2: 71, 3: 70, 4: 71, 5: 70}


def test_two_assignments_starting_the_same_day_give_the_lower_id():
    same = assignments((81, 1, D(2026, 1, 1), None), (80, 1, D(2026, 1, 1), D(2026, 12, 31)))
    assert landed(entries((1, 7, 10, "2026-02-01", "1")), same) == {1: 80}


def test_only_the_persons_own_assignments_count():
    others = assignments((90, 2, D(2026, 2, 1), None), (91, 1, D(2025, 1, 1), D(2025, 1, 31)))
    data = entries((1, 7, 10, "2026-02-01", "1"), (2, 7, 11, "2026-02-01", "1"))
    assert landed(data, others) == {1: 91, 2: 90}
    worklogs = sync(data, assignments((90, 3, D(2026, 2, 1), None))).worklogs
    assert worklogs["assignment_id"].isna().all()


def test_attach_assignments_keeps_the_work_logs_order_and_index():
    worklogs = pd.DataFrame(
        {"employee_id": [1, 2, 1], "work_date": [D(2026, 3, 5), D(2026, 1, 5), D(2026, 1, 5)]}, index=[7, 3, 5]
    )
    two = assignments((60, 1, D(2026, 1, 1), D(2026, 1, 31)), (61, 1, D(2026, 3, 1), None))
    got = t.attach_assignments(worklogs, two)
    assert list(got.index) == [7, 3, 5]
    assert got.tolist()[0] == 61 and pd.isna(got.tolist()[1]) and got.tolist()[2] == 60
    assert str(got.dtype) == "Int64"
    empty = t.attach_assignments(worklogs.iloc[:0], two)
    assert empty.empty and str(empty.dtype) == "Int64"
    none = t.attach_assignments(worklogs, NO_ASSIGNMENTS)
    assert none.isna().all() and list(none.index) == [7, 3, 5] and str(none.dtype) == "Int64"


# -- who is who
def test_only_managers_and_employees_log_work_and_emails_match_however_spelled():
    employees = pd.DataFrame(
        [
            (1, "Bobby@ACME.test ", "Bobby", "manager"),
            (2, "sam@acme.test", "Sam", "administrator"),
            (3, "sam@acme.test", "Sam 2", "viewer"),
        ],
        columns=["employee_id", "email", "name", "role"],
    )
    users = USERS.assign(email=["  bobby@acme.TEST", "sam@acme.test"])
    matched = t.match_employees(users, employees)
    assert matched["employee_id"].tolist()[0] == 1 and pd.isna(matched["employee_id"].tolist()[1])
    assert str(matched["employee_id"].dtype) == "Int64"
    assert t.normalize_email(pd.Series([" A@B.c ", None])).tolist()[0] == "a@b.c"


# -- the missing-teammate summary
def test_a_missing_teammates_name_is_whatever_harvest_knows_of_it():
    users = pd.DataFrame(
        [
            (20, "first@acme.test", "Fiona", None),
            (21, "last@acme.test", None, "Lastly"),
            (22, "none@acme.test", None, None),
            (23, "both@acme.test", "Bo", "Th"),
        ],
        columns=["harvest_user_id", "email", "first_name", "last_name"],
    )
    data = entries(*[(i, 7, 20 + i, "2026-02-01", "1") for i in range(4)])
    result = t.plan_work_logs(data, users, EMPLOYEES, NO_ASSIGNMENTS, RULES, {7})
    missing = t.summarize_missing_teammates(result.skipped, users).set_index("harvest_user_id")
    assert missing["name"].to_dict() == {20: "Fiona", 21: "Lastly", 22: "", 23: "Bo Th"}
    assert missing["email"].to_dict() == {
        20: "first@acme.test",
        21: "last@acme.test",
        22: "none@acme.test",
        23: "both@acme.test",
    }


def test_summary_hours_are_rounded_to_the_hundredth_and_the_most_hours_come_first():
    users = pd.DataFrame(
        [(30, "a@acme.test", "A", "A"), (31, "b@acme.test", "B", "B"), (32, "c@acme.test", "C", "C")],
        columns=["harvest_user_id", "email", "first_name", "last_name"],
    )
    data = entries(
        (1, 7, 30, "2026-02-03", "0.333"),
        (2, 7, 30, "2026-02-01", "0.333"),
        (3, 7, 30, "2026-02-02", "0.333"),
        (4, 7, 31, "2026-02-05", "1.004"),
        (5, 7, 32, "2026-02-04", "2.5"),
    )
    result = t.plan_work_logs(data, users, EMPLOYEES, NO_ASSIGNMENTS, RULES, {7})
    missing = t.summarize_missing_teammates(result.skipped, users)
    assert missing[["harvest_user_id", "hours", "entries"]].values.tolist() == [
        [32, 2.5, 1],
        [30, 1.0, 3],
        [31, 1.0, 1],
    ]
    first = missing.iloc[1]
    assert (first.first_work_date, first.last_work_date) == (D(2026, 2, 1), D(2026, 2, 3))
    assert list(missing.columns) == [
        "harvest_user_id",
        "email",
        "name",
        "reason",
        "entries",
        "hours",
        "first_work_date",
        "last_work_date",
    ]


def test_a_person_both_unassigned_and_unmatched_is_reported_as_unassigned():
    skipped = pd.DataFrame(
        [
            (1, 7, 11, "2026-02-01", "1", None, None, SkipReason.NO_MATCHING_EMPLOYEE.value, ""),
            (2, 7, 11, "2026-02-02", "2", None, None, SkipReason.NOT_ASSIGNED_TO_PROJECT.value, ""),
            (3, 7, 10, "2026-02-02", "2", None, None, SkipReason.NO_MATCHING_EMPLOYEE.value, ""),
            (4, 8, 10, "2026-02-02", "2", None, None, SkipReason.UNLINKED_HARVEST_PROJECT.value, ""),
        ],
        columns=t.SKIPPED_COLUMNS,
    )
    missing = t.summarize_missing_teammates(skipped, USERS)
    assert missing[["harvest_user_id", "reason", "entries", "hours"]].values.tolist() == [
        [11, SkipReason.NOT_ASSIGNED_TO_PROJECT, 2, 3.0],
        [10, SkipReason.NO_MATCHING_EMPLOYEE, 1, 2.0],  # the unlinked entry is not a missing teammate's
    ]
    only_bad_records = skipped[skipped["reason"] == SkipReason.UNLINKED_HARVEST_PROJECT.value]
    assert t.summarize_missing_teammates(only_bad_records, USERS).empty


# -- assignments the sync created
def test_without_trimming_an_assignment_spans_the_project_widened_to_its_work_logs():
    work = pd.DataFrame(
        [(900, D(2026, 2, 1), D(2026, 3, 19)), (901, D(2026, 5, 1), D(2026, 5, 2))],
        columns=["assignment_id", "first_work_date", "last_work_date"],
    )
    no_dates = t.ProjectRules(project_id=1, start_date=None, end_date=None)
    assert t.assignment_spans(work, no_dates).values.tolist() == [
        [900, D(2026, 2, 1), None],
        [901, D(2026, 5, 1), None],
    ]
    project = t.ProjectRules(project_id=1, start_date=D(2026, 3, 1), end_date=D(2026, 4, 30))
    assert t.assignment_spans(work, project).values.tolist() == [
        [900, D(2026, 2, 1), D(2026, 4, 30)],
        [901, D(2026, 3, 1), D(2026, 5, 2)],
    ]
    trimmed = t.ProjectRules(project_id=1, start_date=D(2026, 3, 1), end_date=None, trim_assignments_to_worklogs=True)
    assert t.assignment_spans(work, trimmed).values.tolist() == [
        [900, D(2026, 2, 1), D(2026, 3, 19)],
        [901, D(2026, 5, 1), D(2026, 5, 2)],
    ]
    assert list(t.assignment_spans(work.iloc[1:], project).index) == [0]
    for rules in (no_dates, project, trimmed):
        assert list(t.assignment_spans(work, rules).columns) == ["assignment_id", "start_date", "end_date"]


# -- whose synced work logs are judged again
def test_people_to_recheck_are_those_whose_match_moved_or_vanished():
    synced = pd.DataFrame({"harvest_user_id": [10, 11, 12, 13], "employee_id": [1, 1, 3, 2]})
    users = pd.DataFrame(
        [(10, "bobby@acme.test", "B", "T"), (11, "sam@acme.test", "S", "S"), (12, "gone@acme.test", "G", "G")],
        columns=["harvest_user_id", "email", "first_name", "last_name"],
    )
    # 10 still Bobby (1): unchanged; 11 now matches Sam (2), not 1: moved; 12 matches nobody: vanished; 13 is
    # no longer among Harvest's users at all.
    assert t.people_to_recheck(synced, users, EMPLOYEES, NO_ASSIGNMENTS, RULES) == [11, 12, 13]
    assert t.people_to_recheck(synced.iloc[:0], users, EMPLOYEES, NO_ASSIGNMENTS, RULES) == []
    still = pd.DataFrame({"harvest_user_id": [11, 10], "employee_id": [2, 1]})
    assert t.people_to_recheck(still, users, EMPLOYEES, NO_ASSIGNMENTS, RULES) == []


def test_with_prevent_creation_people_without_an_assignment_are_rechecked():
    synced = pd.DataFrame({"harvest_user_id": [11, 10], "employee_id": [2, 1]})
    only_bobby = assignments((50, 1, D(2026, 1, 1), None))
    prevent = t.ProjectRules(project_id=1, start_date=None, end_date=None, prevent_new_assignment_creation=True)
    assert t.people_to_recheck(synced, USERS, EMPLOYEES, only_bobby, prevent) == [11]
    # Bobby's Harvest e-mail changed to Sam's: assigned, but his match moved, so he is judged again too.
    moved = USERS.assign(email=["sam@acme.test", "sam@acme.test"])
    assert t.people_to_recheck(synced, moved, EMPLOYEES, only_bobby, prevent) == [10, 11]
    assert t.people_to_recheck(synced, USERS, EMPLOYEES, only_bobby, RULES) == []  # creation allowed
    recheck = t.people_to_recheck(synced, USERS, EMPLOYEES, NO_ASSIGNMENTS, prevent)
    assert recheck == [10, 11] and all(type(u) is int for u in recheck)

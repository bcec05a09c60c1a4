"""What each run fetches and prunes: plan_sync is a pure function."""

import datetime as dt
import json
import re

import pytest

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
    new_high_water_mark,
    parse_sync_request,
    plan_sync,
    superseded,
)
from primetric_harvest.results import from_xcom, to_xcom

pytestmark = pytest.mark.unit

D = dt.date
NOW = dt.datetime(2026, 11, 25, 6, tzinfo=dt.UTC)
MARK = dt.datetime(2026, 11, 24, 6, tzinfo=dt.UTC)
RECENT_RECONCILE = NOW - dt.timedelta(days=2)


def plan(**kw):
    args = {
        "sync_since": D(2026, 1, 1),
        "project_start": D(2025, 1, 1),
        "high_water_mark": MARK,
        "now": NOW,
        "last_full_reconcile_at": RECENT_RECONCILE,
    }
    return plan_sync(**{**args, **kw})


def test_daily_run_lists_the_window_in_full_and_older_changes_since_the_mark():
    p = plan()
    assert p.mode == INCREMENTAL
    window_from = D(2026, 9, 26)  # 60 days before today
    assert p.listings == (
        Listing(window_from),
        Listing(D(2026, 1, 1), window_from - dt.timedelta(days=1), MARK - dt.timedelta(minutes=10)),
    )
    assert (p.prune, p.prune_from, p.prune_to) == (True, window_from, None)
    assert p.advances_mark and not p.full_reconcile


def test_window_never_reaches_before_sync_since():
    p = plan(sync_since=D(2026, 11, 1))
    assert p.listings == (Listing(D(2026, 11, 1)),)
    assert p.prune_from == D(2026, 11, 1)


def test_window_is_a_per_project_setting_and_zero_means_changes_only():
    assert plan(window_days=7).prune_from == D(2026, 11, 18)
    p = plan(window_days=0)
    assert not p.prune
    assert p.listings == (
        Listing(D(2026, 1, 1), None, MARK - dt.timedelta(minutes=10)),
        Listing(D(2026, 1, 1), running_only=True),
    )


def test_full_reconcile_runs_when_due():
    assert plan(last_full_reconcile_at=NOW - dt.timedelta(days=7)).mode == RECONCILE
    assert plan(last_full_reconcile_at=None).mode == RECONCILE
    p = plan(last_full_reconcile_at=NOW - dt.timedelta(days=3), full_reconcile_every_days=3)
    assert (p.mode, p.listings, p.prune_from, p.full_reconcile) == (RECONCILE, (Listing(D(2026, 1, 1)),), None, True)
    assert plan(last_full_reconcile_at=NOW - dt.timedelta(days=6)).mode == INCREMENTAL


def test_first_run_is_full_from_sync_since_or_project_start():
    assert plan(high_water_mark=None).listings == (Listing(D(2026, 1, 1)),)
    p = plan(high_water_mark=None, sync_since=None)
    assert (p.mode, p.listings, p.prune_from) == (FULL, (Listing(D(2025, 1, 1)),), None)


def test_reset_lists_from_since_prunes_everything_and_moves_sync_since():
    p = plan(since="2026-03-01")
    assert (p.mode, p.listings, p.prune, p.prune_from, p.new_sync_since) == (
        RESET,
        (Listing(D(2026, 3, 1)),),
        True,
        None,
        D(2026, 3, 1),
    )


def test_backfill_replaces_exactly_its_data_interval():
    p = plan(backfill=(D(2026, 3, 1), D(2026, 3, 3)))
    assert (p.mode, p.listings, p.prune_from, p.prune_to) == (
        BACKFILL,
        (Listing(D(2026, 3, 1), D(2026, 3, 3)),),
        D(2026, 3, 1),
        D(2026, 3, 3),
    )
    assert not p.advances_mark  # it saw one window, not every change since the mark
    assert plan(backfill=(D(2025, 3, 1), D(2025, 3, 3))).listings == ()  # before sync_since: nothing


def test_backfill_window_of_a_daily_data_interval():
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    assert backfill_window("backfill", start, start + dt.timedelta(days=1)) == (D(2026, 3, 1), D(2026, 3, 1))
    assert backfill_window("scheduled", start, start + dt.timedelta(days=1)) is None
    assert backfill_window("backfill", None, None) is None


def test_clear_data():
    p = plan(clear_data=True)
    assert (p.mode, p.listings) == (CLEAR, ())
    with pytest.raises(ValueError, match="cannot be combined"):
        plan(clear_data=True, since="2026-01-01")


def test_plan_survives_xcom():
    plans = (plan(), plan(since="2026-02-02"), plan(window_days=0), plan(backfill=(D(2026, 3, 1), D(2026, 3, 1))))
    for p in (*plans, plan(clear_data=True)):
        assert from_xcom(SyncPlan, json.loads(json.dumps(to_xcom(p)))) == p


def test_the_high_water_mark_is_harvests_clock_else_the_newest_change_and_only_after_a_complete_listing():
    harvest_clock = dt.datetime(2026, 11, 25, 6, 0, 5, tzinfo=dt.UTC)
    newest = dt.datetime(2026, 11, 25, 5, tzinfo=dt.UTC)
    assert new_high_water_mark(plan(), harvest_clock, newest) == harvest_clock
    assert new_high_water_mark(plan(), None, newest) == newest
    assert new_high_water_mark(plan(backfill=(D(2026, 3, 1), D(2026, 3, 2))), harvest_clock, newest) is None
    assert new_high_water_mark(plan(clear_data=True), harvest_clock, newest) is None


def test_a_run_that_fetched_before_the_last_loaded_one_is_superseded():
    started = dt.datetime(2026, 11, 25, 6, tzinfo=dt.UTC)
    assert superseded(started, started + dt.timedelta(seconds=1))
    assert not superseded(started, started)
    assert not superseded(started, started - dt.timedelta(seconds=1))
    assert not superseded(started, None)


def test_only_clear_data_clears_and_it_fetches_nothing():
    assert plan(clear_data=True).clears_data and not plan(clear_data=True).fetches
    for p in (plan(), plan(since="2026-02-02"), plan(high_water_mark=None), plan(backfill=(D(2026, 3, 1),) * 2)):
        assert not p.clears_data and p.fetches


# -- what a run may be asked for ---------------------------------------------------------------------------
TODAY = D(2026, 11, 25)


def request(conf, **kw):
    return parse_sync_request(conf, **{"today": TODAY, "project_name": "Apollo", **kw})


def test_a_request_is_since_and_clear_data_checked():
    assert request({}) == SyncRequest()
    assert request({"since": None, "clear_data": False, "confirm_project_name": ""}) == SyncRequest()
    assert request({"since": "2026-11-25"}) == SyncRequest(since=TODAY)
    assert request({"clear_data": True, "confirm_project_name": " Apollo "}) == SyncRequest(clear_data=True)


@pytest.mark.parametrize(
    ("conf", "field", "message"),
    [
        ({"since": "2026-11-26"}, "since", "since=2026-11-26 is after today (2026-11-25)"),
        ({"since": "2099-01-01"}, "since", "after today"),
        ({"since": "20261101"}, "since", "is not a date: expected YYYY-MM-DD"),
        ({"since": "2026-2-3"}, "since", "is not a date"),
        ({"since": "2026-02-30"}, "since", "is not a date"),
        ({"since": 20260101}, "since", "is not a date"),
        ({"since": "x" * 2_000_000}, "since", "is not a date"),
        ({"Since": "2026-01-01"}, "Since", "accepted parameters are since, clear_data, confirm_project_name"),
        ({"clear_data": "yes"}, "clear_data", "not true or false"),
        ({"since": "2026-01-01", "clear_data": True}, "clear_data", "cannot be combined"),
        ({"clear_data": True}, "confirm_project_name", "repeat the project's name exactly"),
        ({"clear_data": True, "confirm_project_name": "apollo"}, "confirm_project_name", "'Apollo'"),
    ],
)
def test_a_wrong_request_names_its_field_and_what_is_expected(conf, field, message):
    with pytest.raises(InvalidSyncRequest, match=re.escape(message)) as caught:
        request(conf)
    assert caught.value.field == field
    assert len(str(caught.value)) < 400  # a 2 MB value is not echoed back


@pytest.mark.parametrize("conf", [{"since": "2026-01-01"}, {"clear_data": True, "confirm_project_name": "Apollo"}])
def test_a_backfill_takes_neither_since_nor_clear_data(conf):
    with pytest.raises(InvalidSyncRequest, match="backfill replaces exactly the dates of its own runs"):
        request(conf, backfill=True)
    assert request({}, backfill=True) == SyncRequest()

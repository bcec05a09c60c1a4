"""What each run fetches and prunes: plan_sync is a pure function."""

import datetime as dt

import pytest

from primetric_harvest.plan import (
    BACKFILL,
    CLEAR,
    FULL,
    INCREMENTAL,
    RECONCILE,
    RESET,
    Listing,
    SyncPlan,
    backfill_window,
    plan_sync,
)

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
    for p in (plan(), plan(since="2026-02-02"), plan(window_days=0), plan(backfill=(D(2026, 3, 1), D(2026, 3, 1)))):
        assert SyncPlan.from_xcom(p.to_xcom()) == p

"""Harvest's projects for the page's "Select projects" field (primetric_harvest.harvest_projects): read with
GET /v2/projects through the sync's own connection and shared rate limiter, cached in PostgreSQL for a few
minutes, refreshed on demand, and the last list kept when Harvest cannot be reached. Real simulator over HTTP."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from primetric_harvest.harvest_projects import HarvestProject, harvest_projects
from tests.fixtures import ACCOUNT_ID

pytestmark = pytest.mark.db


def _projects_requests(sim) -> int:
    return sim.stats["by_path"].get("/v2/projects", 0)


def test_every_project_active_and_archived_as_client_project_code(primetric_db, harvest):
    harvest.state.add_project(
        id=1001, name="Apollo web", code="AW", client_id=11, client_name="Acme", starts_on=dt.date(2026, 1, 1)
    )
    harvest.state.add_project(
        id=1002, name="Apollo mobile", code=None, client_id=11, client_name="Acme", is_active=False
    )
    listed = harvest_projects()
    assert listed.error is None and listed.fetched_at is not None
    by_id = listed.by_id()
    assert by_id[1001].label == "Acme — Apollo web (AW)" and by_id[1001].is_active
    assert by_id[1002].label.startswith("Acme — Apollo mobile") and not by_id[1002].is_active  # archived too
    assert listed.projects[-1].id == 1002  # archived projects after the active ones


def test_a_second_read_comes_from_the_cache_and_refresh_asks_harvest_again(primetric_db, harvest):
    harvest.state.add_project(id=1001, name="Apollo web", client_id=11, client_name="Acme")
    first = harvest_projects()
    assert _projects_requests(harvest) == 1
    harvest.state.add_project(id=1003, name="Apollo API", client_id=11, client_name="Acme")
    cached = harvest_projects()
    assert _projects_requests(harvest) == 1 and cached.ids() == first.ids() == {1001}
    assert cached.fetched_at == first.fetched_at
    refreshed = harvest_projects(refresh=True)
    assert _projects_requests(harvest) == 2 and refreshed.ids() == {1001, 1003}
    assert harvest_projects(max_age_seconds=0).ids() == {1001, 1003} and _projects_requests(harvest) == 3  # expired


def test_the_cache_is_shared_through_the_database(primetric_db, harvest):
    harvest.state.add_project(id=1001, name="Apollo web", client_id=11, client_name="Acme")
    harvest_projects()
    with psycopg.connect(primetric_db) as conn:
        (projects,) = conn.execute(
            "SELECT projects FROM harvest_sync.harvest_projects WHERE account_id = %s", (ACCOUNT_ID,)
        ).fetchone()
    assert [HarvestProject(**p).label for p in projects] == ["Acme — Apollo web (P1001)"]


def test_harvest_down_gives_the_last_list_and_says_so(primetric_db, harvest):
    harvest.state.add_project(id=1001, name="Apollo web", client_id=11, client_name="Acme")
    harvest_projects()
    harvest.faults.add("status", path="/v2/projects", status=500, times=None)
    listed = harvest_projects(refresh=True)
    assert listed.ids() == {1001} and listed.fetched_at is not None
    assert listed.error and "/v2/projects" in listed.error and "kept failing" in listed.error


def test_never_fetched_and_harvest_down_gives_no_list_and_the_reason(primetric_db, harvest):
    harvest.faults.add("unauthorized", path="/v2/projects", times=None)
    listed = harvest_projects()
    assert listed.projects == () and listed.fetched_at is None and "HTTP 401" in listed.error


def test_the_page_s_requests_share_the_account_s_rate_limit(primetric_db, harvest):
    harvest.state.add_project(id=1001, name="Apollo web", client_id=11, client_name="Acme")
    harvest_projects()
    with psycopg.connect(primetric_db) as conn:
        bucket = conn.execute(
            "SELECT tokens FROM harvest_sync.rate_limit WHERE account_id = %s", (ACCOUNT_ID,)
        ).fetchall()
    assert len(bucket) == 1  # the same token bucket the sync's extract uses for this account

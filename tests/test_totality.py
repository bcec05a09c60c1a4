"""No record blocks a project's sync or costs a work log (issue 10), one rule at a time, through the real pipeline
(simulator over HTTP, PostgreSQL): a record we cannot use is kept aside with a documented reason while every other
one lands; text PostgreSQL cannot store is stored without those characters, and noted; an unreadable version of an
entry never deletes or changes the work log of its last readable version; a record that names no entry stops the
run from deleting anything it cannot tell apart from it. tests/test_fuzz_records.py generates the records."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

import pytest

from primetric_harvest.skip_reasons import SkipReason

pytestmark = pytest.mark.db

ENTRIES = "/v2/time_entries"
D = dt.date


def day(offset: int) -> str:
    """A spent_date inside the daily run's reconcile window (today + offset days)."""
    return (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=offset)).isoformat()


@pytest.fixture
def team(world):
    """Project 1 ← Harvest 101; Bobby (employee) and Nina (not in Primetric) log time in Harvest."""
    world.employee(1, "bobby@acme.test", "Bobby")
    world.harvest_user("bobby", "bobby@acme.test")
    world.harvest_user("nina", "nina@acme.test")
    since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=30)
    world.project(1, [101], start=since, sync_since=since)
    world.assign(1, 1, since)
    return world


def serve(world, records: list, replace: bool = False) -> None:
    """Harvest's listings of project 101 also carry ``records``, exactly as given."""
    world.sim.faults.add(
        "raw_records", path=ENTRIES, params={"project_id": "101"}, records=records, replace=replace, times=None
    )


def entry(entry_id, user_id, spent_date: str, hours=1.5, notes="work", project_id=101, **more) -> dict:
    return {"id": entry_id, "spent_date": spent_date, "hours": hours, "notes": notes,
            "user": {"id": user_id, "name": "Someone"}, "project": {"id": project_id, "name": "Harvest 101"},
            "updated_at": "2026-02-03T10:00:00Z", **more}  # fmt: skip


def logs(world) -> dict[int, tuple]:
    return {r[0]: (r[2], r[3], r[4]) for r in world.worklogs(1)}


def aside(world) -> dict:
    return {r[0]: (r[1], r[2]) for r in world.sql("SELECT harvest_time_entry_id, reason, detail FROM "
                                                  "harvest_sync.skipped_entries ORDER BY 1")}  # fmt: skip


# -- a single bad record never stops the run -------------------------------------------------------------------
def test_a_record_without_an_integer_id_is_kept_aside_and_the_rest_lands(team):
    """Before issue 10 a time entry without an integer id failed the whole run, every day."""
    good = team.entry("bobby", 101, day(-2), 2)
    bobby = team.users["bobby"]
    serve(team, [entry(None, bobby, day(-1)), entry({"n": 1}, bobby, day(-1)), "not an entry", [7]])
    result = team.sync(1)
    assert set(logs(team)) == {good}
    kept = team.sql("SELECT harvest_time_entry_id, reason, detail FROM harvest_sync.skipped_entries ORDER BY detail")
    assert [(k[0], k[1]) for k in kept] == [(None, "unreadable_entry")] * 4
    assert [k[2] for k in kept] == [
        'id is an object ({"n": 1}), not an integer',
        "id is null",
        "the record is a list ([7]), not a time entry object",
        'the record is text ("not an entry"), not a time entry object',
    ]
    assert result.summary.skipped_by_reason == {"unreadable_entry": 4}
    assert result.summary.unidentified_records == 4


def test_an_id_as_text_still_names_its_entry_but_the_record_is_kept_aside(team):
    bobby = team.users["bobby"]
    serve(team, [entry("123", bobby, day(-1)), entry(2.0**60, bobby, day(-1)), entry(2**64, bobby, day(-1))])
    result = team.sync(1)
    assert logs(team) == {}
    assert {k: v[0] for k, v in aside(team).items() if k is not None} == {
        123: "unreadable_entry",
        2**60: "unreadable_entry",
    }
    assert aside(team)[123][1] == 'id is text ("123"), not an integer'
    assert result.summary.unidentified_records == 1  # 2**64 names no entry a bigint can hold


@pytest.mark.parametrize(
    ("field", "value", "reason", "detail"),
    [
        ("hours", "2.5", "invalid_hours", 'hours "2.5" is not a number from 0 to 24'),
        ("hours", True, "invalid_hours", "hours true is not a number from 0 to 24"),
        ("hours", 1e308, "invalid_hours", "hours 1e+308 is not a number from 0 to 24"),
        ("hours", 24.000000000000004, "invalid_hours", "hours 24.000000000000004 is not"),
        ("spent_date", "2026-2-3", "invalid_spent_date", "spent_date 2026-2-3 is not a YYYY-MM-DD date"),
        ("spent_date", "20260203", "invalid_spent_date", "spent_date 20260203 is not"),
        ("spent_date", "2026-02-30", "invalid_spent_date", "spent_date 2026-02-30 is not"),
        ("spent_date", 20260203, "invalid_spent_date", "spent_date 20260203 is not"),
        ("spent_date", "2026-02-03\x00", "invalid_spent_date", 'spent_date "2026-02-03\\u0000" is not'),
        ("notes", {"text": "x"}, "unreadable_entry", 'notes is an object ({"text": "x"}), not text or null'),
        ("notes", 42, "unreadable_entry", "notes is a number (42), not text or null"),
        ("user", {"id": "7"}, "unreadable_entry", 'user.id is text ("7"), not an integer'),
        ("project", None, "unreadable_entry", "project is null"),
        ("project", {"id": 2**63}, "unreadable_entry", "project.id 9223372036854775808 is beyond a 64-bit integer"),
    ],
)
def test_a_value_we_cannot_use_keeps_the_entry_aside_with_what_was_sent(team, field, value, reason, detail):
    good = team.entry("bobby", 101, day(-2), 2)
    serve(team, [{**entry(900, team.users["bobby"], day(-1)), field: value}])
    team.sync(1)
    assert set(logs(team)) == {good}
    assert aside(team)[900][0] == reason
    assert detail in aside(team)[900][1]
    assert reason in {r.value for r in SkipReason}


def test_strange_but_valid_values_land_exactly_as_sent(team):
    bobby = team.users["bobby"]
    notes = "Zażółć \t tab, \r\n newline, \x01\x1f\x7f control, 😀, \u2028, \\ backslash, ' \" quotes, %s {}"
    serve(
        team,
        [
            entry(901, bobby, day(-1), hours=-0.0, notes=notes),
            entry(902, bobby, "1000-01-01", hours=24, notes="x" * 1_000_000),
            entry(903, bobby, day(-1), hours=5e-324, notes=None, extra_key={"a": [1, 2]}, user_assignment=None),
            entry(2**62, bobby, day(-1), hours=0.30000000000000004, notes=""),
        ],
    )
    team.sync(1)
    assert logs(team) == {
        901: (D.fromisoformat(day(-1)), Decimal("0"), notes),
        902: (D(1000, 1, 1), Decimal("24"), "x" * 1_000_000),
        903: (D.fromisoformat(day(-1)), Decimal("5E-324"), None),
        2**62: (D.fromisoformat(day(-1)), Decimal("0.30000000000000004"), ""),
    }


def test_text_postgresql_cannot_store_lands_without_those_characters_and_says_so(team, caplog):
    caplog.set_level(logging.WARNING)
    serve(team, [entry(904, team.users["bobby"], day(-1), notes="a\x00b\ud800c\udfffd")])
    result = team.sync(1)
    assert logs(team)[904][2] == "abcd"
    assert team.sql("SELECT detail FROM harvest_sync.entry_text_changes WHERE harvest_time_entry_id = 904") == [
        ("notes: 1 × U+0000, 1 × U+D800, 1 × U+DFFF removed (PostgreSQL cannot store them)",)
    ]
    assert result.summary.texts_altered == 1
    assert "1 entries' text stored without characters PostgreSQL cannot store" in result.summary.line
    team.sim.faults.clear()  # Harvest sends plain text again: the note goes
    serve(team, [entry(904, team.users["bobby"], day(-1), notes="ab")])
    team.sync(1)
    assert team.sql("SELECT count(*) FROM harvest_sync.entry_text_changes") == [(0,)]


@pytest.mark.parametrize(
    "body",
    [
        # valid JSON that msgspec refuses: a lone surrogate escape, a number beyond a double, a huge integer
        '"notes": "lone \\ud800 surrogate", "hours": 1',
        '"notes": "far", "hours": 1e400',
        '"notes": "long", "hours": ' + "9" * 5000,
    ],
)
def test_a_page_msgspec_cannot_decode_is_read_by_the_json_module(team, body):
    bobby = team.users["bobby"]
    record = f'{{"id": 905, "spent_date": "{day(-1)}", "user": {{"id": {bobby}}}, "project": {{"id": 101}}, {body}}}'
    page = (
        f'{{"time_entries": [{record}], "per_page": 2000, "total_pages": 1, "total_entries": 1, "page": 1, '
        '"links": {"next": null}}'
    )
    team.sim.faults.add("not_json", path=ENTRIES, body=page, content_type="application/json; charset=utf-8", times=None)
    team.sync(1)
    lone = "surrogate" in body
    assert (905 in logs(team)) is lone
    assert (aside(team).get(905, (None,))[0]) == (None if lone else "invalid_hours")
    if lone:
        assert logs(team)[905][2] == "lone  surrogate"


def test_ids_beyond_2_53_stay_exact_next_to_a_record_without_one(team):
    """pandas turns an integer column with a null into floats, which round ids above 2**53."""
    bobby = team.users["bobby"]
    serve(team, [entry(2**60 + 1, bobby, day(-1)), entry(None, bobby, day(-1)), entry(2**53 + 1, 1, day(-1))])
    team.sync(1)
    assert set(logs(team)) == {2**60 + 1}
    assert {k for k in aside(team) if k is not None} == {2**53 + 1}  # Ada: no Primetric employee


# -- an unreadable version never costs the work log ------------------------------------------------------------
def test_an_unreadable_version_keeps_the_work_log_until_a_readable_one_or_the_entry_goes(team, caplog):
    caplog.set_level(logging.INFO)
    kept = team.entry("bobby", 101, day(-3), 2, notes="first")
    gone = team.entry("bobby", 101, day(-4), 3, notes="second")
    team.sync(1)
    before = logs(team)
    assert set(before) == {kept, gone}
    damage = [{"id": kept, "set": {"hours": "2.5"}}, {"id": gone, "set": {"notes": {"rich": "text"}}}]
    team.sim.faults.add("bad_records", path=ENTRIES, times=None, records=damage)
    team.sim.state.update_entry(kept, notes="changed")  # a real change: the new version is still unreadable

    result = team.sync(1)
    assert logs(team) == before  # neither deleted nor changed
    assert {k: v[0] for k, v in aside(team).items()} == {kept: "invalid_hours", gone: "unreadable_entry"}
    assert result.loaded.previous_versions_kept == 2 and result.summary.worklogs_deleted == 0
    assert "2 work logs keep their last readable version" in result.summary.line
    assert any("2 work logs keep their last readable version" in r.getMessage() for r in caplog.records)

    team.sync(1)  # a run that re-reads them unchanged keeps them the same way (the kept-aside row stays as it was)
    assert logs(team) == before

    team.sim.state.delete_entry(gone)  # Harvest stops listing it: its work log goes with it (reconcile window)
    team.sim.faults.clear()  # and sends a readable version of the other: it updates the work log
    result = team.sync(1)
    assert logs(team) == {kept: (D.fromisoformat(day(-3)), Decimal("2"), "changed")}
    assert aside(team) == {}
    assert result.summary.previous_versions_kept == 0


def test_a_person_who_lost_their_match_still_loses_their_work_logs(team):
    """Missing-teammate reasons keep today's behaviour: the entry is fine, the person is not on the project."""
    logged = team.entry("bobby", 101, day(-3), 2)
    team.sync(1)
    team.sim.state.update_user(team.users["bobby"], email="robert@acme.test")
    result = team.sync(1)
    assert logs(team) == {}
    assert aside(team)[logged][0] == "no_matching_employee"
    assert result.summary.worklogs_deleted == 1 and result.summary.previous_versions_kept == 0


def test_a_record_that_names_no_entry_stops_the_run_from_deleting_what_it_could_be(team):
    kept = team.entry("bobby", 101, day(-3), 2)
    team.sync(1)
    team.sim.state.delete_entry(kept)  # gone from Harvest ... or is it the record without an id?
    serve(team, [entry(None, team.users["bobby"], day(-3), hours=2)])
    result = team.sync(1)
    assert set(logs(team)) == {kept}
    assert result.summary.unidentified_records == 1 and result.summary.worklogs_deleted == 0
    assert "1 records named no entry: no work log of a deleted entry was removed" in result.summary.line
    team.sim.faults.clear()  # the next clean run deletes it
    result = team.sync(1)
    assert logs(team) == {} and result.summary.worklogs_deleted == 1
    assert aside(team) == {}


def test_a_page_that_is_not_harvests_shape_still_fails_the_run_and_touches_nothing(team):
    team.entry("bobby", 101, day(-3), 2)
    team.sync(1)
    before = team.snapshot()
    team.sim.faults.add("shape", path=ENTRIES, body={"time_entries": "all of them"}, times=None)
    with pytest.raises(Exception, match="without a 'time_entries' list"):
        team.sync(1)
    assert team.snapshot() == before


def test_user_records_we_cannot_use_do_not_fail_the_run(team):
    team.sim.faults.add(
        "raw_records",
        path="/v2/users",
        key="users",
        records=[
            {"id": "abc", "email": "x@acme.test"},
            "not a user",
            {"id": team.users["nina"], "email": "nina@acme.test", "is_active": "yes", "first_name": {"a": 1}},
            {"id": 77, "email": "bob\x00by@acme.test", "first_name": "Zo\x00ë", "last_name": None},
            {"id": 78, "email": ["bobby@acme.test"]},
        ],
        times=None,
    )
    logged = team.entry("bobby", 101, day(-3), 2)
    team.sync(1)
    assert set(logs(team)) == {logged}
    users = {r[0]: r[1:] for r in team.sql("SELECT id, email, first_name, is_active FROM harvest_sync.harvest_users")}
    assert users[team.users["nina"]] == ("nina@acme.test", '{"a": 1}', None)  # a later record of a user wins
    assert users[77] == (None, "Zoë", None)  # an e-mail PostgreSQL cannot store as sent matches nobody
    assert users[78][0] is None
    assert len(users) == 5  # Ada, Bobby, Nina, 77, 78: the records without an integer id are not users

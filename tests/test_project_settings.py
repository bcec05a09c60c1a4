"""A project's integration settings as the Harvest sync page saves them (primetric_harvest.project_settings):
what each field accepts (the 422 names the field), one Primetric project per Harvest project, the history of
every change written in the same transaction (whoever makes it), two saves at once, and that unlinking keeps
the synced work logs until Clear data. Real PostgreSQL; the pipeline's own code for the sync runs."""

from __future__ import annotations

import datetime as dt
import threading

import psycopg
import pytest

from primetric_harvest import project_settings as ps
from primetric_harvest.project_settings import IntegrationSettings, SettingsError, check_links, read_form

D = dt.date
TODAY = D(2026, 11, 30)
FORM = {"enabled": True, "harvest_project_ids": [701], "sync_since": "2026-09-01", "version": "v"}


def _refused(form: dict, field: str, *words: str) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        read_form(form, today=TODAY, project_name="Apollo")
    assert caught.value.field == field, caught.value.message
    assert caught.value.status == 422
    for word in words:
        assert word in caught.value.message, caught.value.message
    return caught.value


# -- what each field accepts (pure) -------------------------------------------------------------------------
@pytest.mark.unit
def test_a_valid_form_becomes_settings_and_the_version_it_started_from():
    settings, version = read_form(
        {**FORM, "harvest_project_ids": [702, 701, 702], "daily_schedule": False}, today=TODAY, project_name="Apollo"
    )
    assert version == "v"
    assert settings == IntegrationSettings(
        enabled=True, harvest_project_ids=(701, 702), sync_since=D(2026, 9, 1), daily_schedule=False
    )
    # Empty date: the project's start date.
    assert read_form({**FORM, "sync_since": ""}, today=TODAY, project_name="Apollo")[0].sync_since is None


@pytest.mark.unit
@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"sync_since": "yesterday"}, "sync_since", ("Sync work logs from", "'yesterday'", "YYYY-MM-DD")),
        ({"sync_since": "2026-02-30"}, "sync_since", ("YYYY-MM-DD",)),
        ({"sync_since": "2026-12-01"}, "sync_since", ("after today (2026-11-30)",)),
        ({"enabled": "yes"}, "enabled", ("true or false", "'yes'")),
        ({"daily_schedule": 1}, "daily_schedule", ("true or false",)),
        ({"harvest_project_ids": "701"}, "harvest_project_ids", ("list of Harvest project ids",)),
        ({"harvest_project_ids": [0]}, "harvest_project_ids", ("not a Harvest project id",)),
        ({"harvest_project_ids": [2**63]}, "harvest_project_ids", ("not a Harvest project id",)),
        ({"harvest_project_ids": []}, "harvest_project_ids", ("at least one Harvest project",)),
        ({"clear_data": True}, "clear_data", ("unknown field 'clear_data'",)),
        ({"version": None}, "version", ("reload the page",)),
    ],
)
def test_each_field_is_checked_and_named(change, field, words):
    _refused({**FORM, **change}, field, *words)


@pytest.mark.unit
def test_an_error_repeats_at_most_a_few_characters_of_what_was_sent():
    huge = "9" * 2_000_000
    error = _refused({**FORM, "sync_since": huge}, "sync_since")
    assert len(error.message) < 300 and error.message.count("9999") < 20


@pytest.mark.unit
def test_a_harvest_project_linked_elsewhere_cannot_be_picked_and_says_where():
    wanted = IntegrationSettings(enabled=True, harvest_project_ids=(1001,))
    with pytest.raises(SettingsError, match=r"Harvest project 1001 feeds Primetric project 'Apollo' \(#1\)") as caught:
        check_links(wanted, IntegrationSettings(), [ps.LinkElsewhere(1001, 1, "Apollo")], lambda new: {1001})
    assert caught.value.field == "harvest_project_ids"


@pytest.mark.unit
def test_only_projects_harvest_lists_and_a_kept_link_needs_no_harvest():
    current = IntegrationSettings(enabled=True, harvest_project_ids=(701,))
    asked = []

    def harvest_lists(new):
        asked.append(new)
        return {701, 702}

    check_links(current, current, [], harvest_lists)
    assert asked == []  # nothing new: Harvest is not asked (it may be down; the links stay editable)
    with pytest.raises(SettingsError, match=r"Harvest does not list project id.s. 999") as caught:
        check_links(IntegrationSettings(enabled=True, harvest_project_ids=(701, 999)), current, [], harvest_lists)
    assert caught.value.status == 422
    with pytest.raises(SettingsError, match="Harvest could not be reached") as caught:
        check_links(IntegrationSettings(enabled=True, harvest_project_ids=(702,)), current, [], lambda new: None)
    assert caught.value.status == 503 and caught.value.field == "harvest_project_ids"


# -- saving: history, concurrency -------------------------------------------------------------------------------
def _save(dsn: str, project_id: int, form: dict, actor: str = "manager") -> ps.Saved:
    with psycopg.connect(dsn) as conn:
        return ps.save(conn, project_id, form, actor=actor, today=TODAY, harvest_lists=lambda new: {701, 702, 703})


def _load(dsn: str, project_id: int) -> ps.ProjectSetup:
    with psycopg.connect(dsn) as conn:
        return ps.load(conn, project_id)


def _history(dsn: str, project_id: int) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT changed_by, item, old, new FROM harvest_sync.settings_history WHERE project_id = %s ORDER BY id",
            (project_id,),
        ).fetchall()


@pytest.fixture
def apollo(world):
    """An unlinked Primetric project (no harvest_settings row), and Harvest project 701 linked to another one."""
    world.sql("INSERT INTO primetric.projects (id, name, start_date) VALUES (7, 'Apollo', '2026-01-01')")
    world.project(8, [703], name="Zephyr")
    return world


@pytest.mark.db
def test_setting_up_a_project_writes_settings_links_and_history_in_one_go(apollo):
    setup = _load(apollo.dsn, 7)
    assert not setup.linked and setup.version == "not-set-up"
    saved = _save(apollo.dsn, 7, {**FORM, "harvest_project_ids": [701, 702], "version": setup.version})
    assert saved.changed and saved.newly_enabled and saved.rearmed
    after = _load(apollo.dsn, 7)
    assert after.linked and after.settings.harvest_project_ids == (701, 702)
    assert after.daily_schedule_since is not None  # the daily schedule starts now: no missed daily run
    rows = _history(apollo.dsn, 7)
    assert [(who, item) for who, item, _, _ in rows] == [
        ("manager", "settings"),
        ("manager", "link"),
        ("manager", "link"),
    ]
    assert rows[0][2] is None and rows[0][3]["enabled"] is True and rows[0][3]["sync_since"] == "2026-09-01"
    assert [r[3]["harvest_project_id"] for r in rows[1:]] == [701, 702]
    # The history the page shows: who, when, old → new.
    with psycopg.connect(apollo.dsn) as conn:
        (entry,) = ps.history(conn, 7)
    assert entry.changed_by == "manager"
    assert ("Sync work logs from", "—", "2026-09-01") in entry.changes
    assert ("Harvest project 702", "not linked", "linked") in entry.changes


@pytest.mark.db
def test_a_change_is_recorded_old_to_new_and_a_save_without_change_records_nothing(apollo):
    _save(apollo.dsn, 7, {**FORM, "version": "not-set-up"})
    version = _load(apollo.dsn, 7).version
    _save(
        apollo.dsn, 7, {**FORM, "version": version, "harvest_project_ids": [702], "trim_assignments_to_worklogs": True}
    )
    rows = _history(apollo.dsn, 7)[2:]
    assert [(r[1], r[2], r[3]) for r in rows] == [
        (
            "settings",
            {"project_id": 7, "trim_assignments_to_worklogs": False},
            {"project_id": 7, "trim_assignments_to_worklogs": True},
        ),
        ("link", {"project_id": 7, "harvest_project_id": 701}, None),
        ("link", None, {"project_id": 7, "harvest_project_id": 702}),
    ]
    version = _load(apollo.dsn, 7).version
    before = len(_history(apollo.dsn, 7))
    saved = _save(
        apollo.dsn, 7, {**FORM, "version": version, "harvest_project_ids": [702], "trim_assignments_to_worklogs": True}
    )
    assert not saved.changed and len(_history(apollo.dsn, 7)) == before


@pytest.mark.db
def test_a_refused_save_leaves_neither_settings_nor_history(apollo):
    _save(apollo.dsn, 7, {**FORM, "version": "not-set-up"})
    before = (_load(apollo.dsn, 7), _history(apollo.dsn, 7))
    with pytest.raises(SettingsError, match="feeds Primetric project 'Zephyr'"):
        _save(apollo.dsn, 7, {**FORM, "version": before[0].version, "harvest_project_ids": [701, 703]})
    assert (_load(apollo.dsn, 7), _history(apollo.dsn, 7)) == before


@pytest.mark.db
def test_changes_made_by_sql_are_in_the_history_too(apollo):
    apollo.sql("UPDATE primetric.harvest_settings SET prevent_new_assignment_creation = true WHERE project_id = 8")
    (row,) = [r for r in _history(apollo.dsn, 8) if r[2] is not None]
    assert row[0].startswith("postgres (") and row[3] == {"project_id": 8, "prevent_new_assignment_creation": True}


@pytest.mark.db
def test_two_saves_started_from_the_same_version_the_second_is_refused(apollo):
    _save(apollo.dsn, 7, {**FORM, "version": "not-set-up"})
    version = _load(apollo.dsn, 7).version
    _save(apollo.dsn, 7, {**FORM, "version": version, "prevent_new_assignment_creation": True}, actor="ann")
    with pytest.raises(SettingsError, match=r"changed meanwhile by ann at .*reload the page") as caught:
        _save(apollo.dsn, 7, {**FORM, "version": version, "trim_assignments_to_worklogs": True}, actor="bob")
    assert caught.value.status == 409
    assert _load(apollo.dsn, 7).settings.trim_assignments_to_worklogs is False  # bob's change did not land


@pytest.mark.db
def test_two_saves_at_the_same_moment_one_lands_the_other_is_refused(apollo):
    _save(apollo.dsn, 7, {**FORM, "version": "not-set-up"})
    version = _load(apollo.dsn, 7).version
    start = threading.Barrier(2)
    results: dict[str, object] = {}

    def save(actor: str, change: dict) -> None:
        start.wait()
        try:
            results[actor] = _save(apollo.dsn, 7, {**FORM, "version": version, **change}, actor=actor)
        except SettingsError as exc:
            results[actor] = exc

    threads = [
        threading.Thread(target=save, args=("ann", {"prevent_new_assignment_creation": True})),
        threading.Thread(target=save, args=("bob", {"trim_assignments_to_worklogs": True})),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    refused = [a for a, r in results.items() if isinstance(r, SettingsError)]
    assert len(refused) == 1 and results[refused[0]].status == 409, results
    (landed,) = set(results) - set(refused)
    assert [r[0] for r in _history(apollo.dsn, 7)[2:]] == [landed]


@pytest.mark.db
def test_two_projects_cannot_take_the_same_harvest_project_at_once(apollo):
    apollo.sql("INSERT INTO primetric.projects (id, name) VALUES (9, 'Ceres')")
    start = threading.Barrier(2)
    results = {}

    def save(project_id: int) -> None:
        start.wait()
        try:
            results[project_id] = _save(apollo.dsn, project_id, {**FORM, "version": "not-set-up"})
        except SettingsError as exc:
            results[project_id] = exc

    threads = [threading.Thread(target=save, args=(p,)) for p in (7, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(type(r).__name__ for r in results.values()) == ["Saved", "SettingsError"], results
    assert apollo.sql("SELECT count(*) FROM primetric.harvest_project_links WHERE harvest_project_id = 701") == [(1,)]


@pytest.mark.db
def test_switching_the_daily_schedule_on_arms_it_from_now(apollo):
    _save(apollo.dsn, 7, {**FORM, "version": "not-set-up", "daily_schedule": False})
    setup = _load(apollo.dsn, 7)
    assert setup.daily_schedule_since is None  # no daily schedule: nothing to arm
    _save(apollo.dsn, 7, {**FORM, "version": setup.version, "daily_schedule": True})
    armed = _load(apollo.dsn, 7).daily_schedule_since
    assert armed is not None
    with psycopg.connect(apollo.dsn) as conn:
        rearmed = ps.rearm_daily_schedule(conn, 7, actor="manager")
    assert rearmed == _load(apollo.dsn, 7).daily_schedule_since and rearmed > armed
    assert _history(apollo.dsn, 7)[-1][0] == "manager"


@pytest.mark.db
def test_unknown_project_is_not_found(apollo):
    with pytest.raises(SettingsError) as caught:
        _save(apollo.dsn, 404, {**FORM, "version": "not-set-up"})
    assert caught.value.status == 404
    assert _load(apollo.dsn, 2**63) is None  # out of bigint range: not found, never a database error
    assert [ps.valid_id(i) for i in (0, -1, 1, 2**63 - 1, 2**63)] == [False, False, True, True, False]


# -- unlinking keeps the synced work logs until Clear data -----------------------------------------------------
@pytest.mark.db
def test_unlinking_a_harvest_project_keeps_its_work_logs_until_clear_data(world):
    world.employee(1, "bobby@acme.test", "Bobby")
    world.harvest_user("bobby", "bobby@acme.test")
    world.project(7, [701, 702], name="Apollo", start=D(2026, 1, 1), sync_since=D(2026, 9, 1))
    kept = world.entry("bobby", 701, "2026-11-20", 2.0, "web")
    other = world.entry("bobby", 702, "2026-11-21", 3.0, "mobile")
    world.sync(7)
    assert [w[0] for w in world.worklogs(7)] == [kept, other]
    version = _load(world.dsn, 7).version
    with psycopg.connect(world.dsn) as conn:
        ps.save(
            conn,
            7,
            {**FORM, "version": version, "harvest_project_ids": [702]},
            actor="m",
            today=TODAY,
            harvest_lists=lambda new: {701, 702},
        )
    world.sync(7)  # a daily run: 701's entry is in the reconcile window but no longer listed
    world.sync(7, since="2026-09-01")  # a reset: everything from since is replaced
    assert [w[0] for w in world.worklogs(7)] == [kept, other]
    world.sim.state.delete_entry(other)  # a linked project's deleted entry still goes
    world.sync(7)
    assert [w[0] for w in world.worklogs(7)] == [kept]
    world.sync(7, clear_data=True, confirm_project_name="Apollo")
    assert world.worklogs(7) == []

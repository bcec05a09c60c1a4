"""One list of skip reasons: the enum, the database's CHECK constraints, the pages and the report agree."""

from __future__ import annotations

import re

import psycopg
import pytest

from primetric_harvest.skip_reasons import MISSING_TEAMMATE_REASONS, SkipReason


def _allowed(dsn: str, table: str) -> set[str]:
    """The codes a CHECK constraint of ``table`` allows for its ``reason`` column."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'",
            (table,),
        ).fetchall()
    (definition,) = [r[0] for r in rows if "reason" in r[0]]
    return set(re.findall(r"'(\w+)'::text", definition))


@pytest.mark.db
def test_the_migrations_allow_exactly_the_documented_reasons(primetric_db):
    assert _allowed(primetric_db, "harvest_sync.skipped_entries") == {r.value for r in SkipReason}
    assert _allowed(primetric_db, "primetric.missing_teammates") == {r.value for r in MISSING_TEAMMATE_REASONS}


@pytest.mark.db
def test_an_undocumented_reason_cannot_be_stored(primetric_db):
    with psycopg.connect(primetric_db) as conn:
        conn.execute("INSERT INTO primetric.projects (id, name) VALUES (1, 'P')")
        try:
            conn.execute(
                "INSERT INTO harvest_sync.skipped_entries (harvest_time_entry_id, project_id, reason) "
                "VALUES (1, 1, 'because')"
            )
        except psycopg.errors.CheckViolation:
            return
    raise AssertionError("an unknown reason code was stored")


@pytest.mark.unit
def test_every_reason_says_what_it_means_and_what_to_do():
    for reason in SkipReason:
        assert reason.text and reason.action, reason
        assert SkipReason.describe(reason.value) == reason.text
    assert SkipReason.describe("gone") == "gone"
    assert [r for r in SkipReason if r.is_missing_teammate] == list(MISSING_TEAMMATE_REASONS)

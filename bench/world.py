"""Fresh Primetric databases for the benchmark: created, migrated, seeded, and always dropped."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from contextlib import contextmanager

import psycopg

PG = os.environ.get("PRIMETRIC_DSN", "postgresql://postgres@127.0.0.1:5432")
PROJECT_ID = 1
CREATED: list[str] = []  # every database this process created (each is dropped again)


def _admin(statement: str) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(statement)


@contextmanager
def fresh_database(label: str):
    """A new, migrated database; yields its DSN; dropped afterwards whatever happened."""
    from primetric_harvest.migrate import migrate

    name = f"bench_{label.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    dsn = f"{PG}/{name}"
    _admin(f"CREATE DATABASE {name}")
    CREATED.append(name)
    old = os.environ.get("AIRFLOW_CONN_PRIMETRIC_DB")
    try:
        os.environ["AIRFLOW_CONN_PRIMETRIC_DB"] = dsn
        migrate()
        yield dsn
    finally:
        if old is None:
            os.environ.pop("AIRFLOW_CONN_PRIMETRIC_DB", None)
        else:
            os.environ["AIRFLOW_CONN_PRIMETRIC_DB"] = old
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def seed_people(dsn: str, users: list[tuple], *, matched_share: float = 0.97, assigned_share: float = 0.5) -> dict:
    """Primetric employees for most Harvest users (the rest are missing teammates).

    ``users``: (harvest id, e-mail, access roles, active). Every 1/(1-matched_share)-th user has no
    Primetric employee; hand-made assignments are added later per project for ``assigned_share``.
    """
    step = round(1 / (1 - matched_share)) if matched_share < 1 else 0
    rows = []
    for k, (uid, email, roles, _active) in enumerate(users):
        if step and k % step == step - 1:
            continue  # a missing teammate
        role = "manager" if "manager" in roles else "administrator" if "administrator" in roles else "employee"
        rows.append((uid, email, email.split("@")[0], role))
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur, cur.copy("COPY primetric.employees (id, email, name, role) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return {"employees": len(rows), "assigned_share": assigned_share}


def seed_project(
    dsn: str,
    project_id: int,
    harvest_project_ids: list[int],
    *,
    start: dt.date,
    name: str | None = None,
    assigned_share: float = 0.5,
) -> None:
    """A linked Primetric project; hand-made assignments for a share of the employees (the rest get one
    created by the sync)."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO primetric.projects (id, name, start_date) VALUES (%s, %s, %s)",
            (project_id, name or f"Bench project {project_id}", start),
        )
        conn.execute(
            "INSERT INTO primetric.harvest_settings (project_id, enabled, sync_since) VALUES (%s, true, %s)",
            (project_id, start),
        )
        conn.execute(
            "INSERT INTO primetric.harvest_project_links (harvest_project_id, project_id) "
            "SELECT unnest(%s::bigint[]), %s",
            (harvest_project_ids, project_id),
        )
        if assigned_share > 0:
            every = max(1, round(1 / assigned_share))
            conn.execute(
                "INSERT INTO primetric.assignments (project_id, employee_id, start_date) "
                "SELECT %s, id, %s FROM primetric.employees WHERE role <> 'administrator' AND id %% %s = 0",
                (project_id, start, every),
            )


def seed_many_projects(dsn: str, count: int) -> None:
    """``count`` linked projects (one Harvest project each), for the parse benchmark."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO primetric.projects (id, name, start_date) "
            "SELECT g, 'Project ' || g, DATE '2026-01-01' FROM generate_series(1, %s) g",
            (count,),
        )
        conn.execute(
            "INSERT INTO primetric.harvest_settings (project_id, sync_since) "
            "SELECT g, DATE '2026-01-01' FROM generate_series(1, %s) g",
            (count,),
        )
        conn.execute(
            "INSERT INTO primetric.harvest_project_links (harvest_project_id, project_id) "
            "SELECT 100000 + g, g FROM generate_series(1, %s) g",
            (count,),
        )


def scalar(dsn: str, statement: str, params=None):
    with psycopg.connect(dsn) as conn:
        return conn.execute(statement, params).fetchone()[0]


def execute(dsn: str, statement: str, params=None) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement, params)


# Row versions: a row that was rewritten (even with equal values) has a new xmin.
_WATCHED = {
    "worklogs": "primetric.worklogs",
    "assignments": "primetric.assignments",
    "skipped_entries": "harvest_sync.skipped_entries",
    "harvest_users": "harvest_sync.harvest_users",
}
_KEYS = {"skipped_entries": "harvest_time_entry_id", "harvest_users": "id"}


def remember_row_versions(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for short, table in _WATCHED.items():
            key = _KEYS.get(short, "id")
            conn.execute(f"DROP TABLE IF EXISTS bench_rows_{short}")
            conn.execute(f"CREATE UNLOGGED TABLE bench_rows_{short} AS SELECT {key} AS k, xmin::text AS x FROM {table}")


def rows_written_since(dsn: str) -> dict[str, int]:
    """Rows inserted, rewritten or deleted per table since remember_row_versions."""
    out = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for short, table in _WATCHED.items():
            key = _KEYS.get(short, "id")
            out[short] = conn.execute(
                f"SELECT count(*) FROM (SELECT {key} AS k, xmin::text AS x FROM {table}) now "
                f"FULL JOIN bench_rows_{short} b USING (k) WHERE now.x IS DISTINCT FROM b.x"
            ).fetchone()[0]
            conn.execute(f"DROP TABLE bench_rows_{short}")
    return out

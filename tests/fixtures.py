"""Fixtures: a fresh PostgreSQL database per test (from a migrated template), the Harvest simulator
on a real port, and helpers that run a project's sync through the real pipeline code."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from harvest_simulator import HarvestSimulator, SimulatorState
from primetric_harvest.names import dag_id
from primetric_harvest.tasks import RunOutcome, SyncRun, run_steps

if TYPE_CHECKING:
    from airflow.dag_processing.dagbag import DagBag

ROOT = Path(__file__).resolve().parents[1]

PG = os.environ.get("PRIMETRIC_DSN", "postgresql://postgres@127.0.0.1:5432")
ACCOUNT_ID = "123456"
TOKEN = "test-token"
_counter = itertools.count()


def airflow_cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """The venv's `airflow` command (with the venv on PATH, as Airflow's subprocesses need)."""
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", **(env or {})}
    return subprocess.run([os.path.join(bin_dir, "airflow"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


@contextlib.contextmanager
def fails_at_once(cause: type[BaseException], match: str):
    """The step fails for good (AirflowFailException: Airflow does not retry it), because of ``cause``."""
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=match) as caught:
        yield caught
    assert isinstance(caught.value, cause) or isinstance(caught.value.__cause__, cause), repr(caught.value.__cause__)


def _admin(sql: str) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture(scope="session")
def template_db():
    """One migrated database; each test copies it (CREATE DATABASE … TEMPLATE is fast)."""
    from primetric_harvest.migrate import migrate

    name = f"primetric_tmpl_{os.getpid()}"
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    _admin(f"CREATE DATABASE {name}")
    old = os.environ.get("AIRFLOW_CONN_PRIMETRIC_DB")
    os.environ["AIRFLOW_CONN_PRIMETRIC_DB"] = f"{PG}/{name}"
    try:
        migrate()
    finally:
        if old is None:
            os.environ.pop("AIRFLOW_CONN_PRIMETRIC_DB")
        else:
            os.environ["AIRFLOW_CONN_PRIMETRIC_DB"] = old
    yield name
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def primetric_db(template_db, monkeypatch):
    """A fresh, migrated Primetric database; connection ``primetric_db`` points at it."""
    name = f"primetric_t_{os.getpid()}_{next(_counter)}"
    _admin(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    dsn = f"{PG}/{name}"
    monkeypatch.setenv("AIRFLOW_CONN_PRIMETRIC_DB", dsn)
    yield dsn
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def harvest(monkeypatch):
    """A running Harvest simulator with an empty account; connection ``harvest_default`` points at it."""
    state = SimulatorState()
    admin = state.add_user("Ada", "Admin", "ada@acme.test", id=1, access_roles=["administrator"])["id"]
    sim = HarvestSimulator(
        state, tokens={TOKEN: {"account_id": ACCOUNT_ID, "role": "administrator", "user_id": admin}}
    ).start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_HARVEST_DEFAULT",
        json.dumps(
            {
                "conn_type": "http",
                "host": sim.url,
                "password": TOKEN,
                "extra": {"account_id": ACCOUNT_ID, "timeout": 5},
            }
        ),
    )
    yield sim
    sim.stop()


@dataclass
class World:
    """Both sides of a test: the Primetric database and the Harvest simulator."""

    dsn: str
    sim: HarvestSimulator
    users: dict[str, int] = field(default_factory=dict)

    def sql(self, statement: str, params: dict | tuple | None = None) -> list[tuple]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    # -- Primetric side
    def employee(self, id: int, email: str, name: str | None = None, role: str = "employee") -> int:
        self.sql(
            "INSERT INTO primetric.employees (id, email, name, role) VALUES (%s, %s, %s, %s)",
            (id, email, name or email.split("@")[0].title(), role),
        )
        return id

    def project(
        self,
        id: int,
        harvest_project_ids=(),
        *,
        name: str | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
        sync_since: dt.date | None = None,
        prevent: bool = False,
        trim: bool = False,
        enabled: bool = True,
    ) -> int:
        self.sql(
            "INSERT INTO primetric.projects (id, name, start_date, end_date) VALUES (%s, %s, %s, %s)",
            (id, name or f"Project {id}", start, end),
        )
        self.sql(
            "INSERT INTO primetric.harvest_settings (project_id, enabled, sync_since, "
            "prevent_new_assignment_creation, trim_assignments_to_worklogs) VALUES (%s, %s, %s, %s, %s)",
            (id, enabled, sync_since, prevent, trim),
        )
        for hp in harvest_project_ids:
            self.link(hp, id)
        return id

    def link(self, harvest_project_id: int, project_id: int) -> None:
        self.sql(
            "INSERT INTO primetric.harvest_project_links (harvest_project_id, project_id) VALUES (%s, %s)",
            (harvest_project_id, project_id),
        )
        if not (self.sim.state.projects_df()["id"] == harvest_project_id).any():
            self.sim.state.add_project(id=harvest_project_id, name=f"Harvest {harvest_project_id}")

    def assign(
        self, project_id: int, employee_id: int, start: dt.date, end: dt.date | None = None, by_sync: bool = False
    ) -> int:
        return self.sql(
            "INSERT INTO primetric.assignments (project_id, employee_id, start_date, end_date, "
            "created_by_sync) VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (project_id, employee_id, start, end, by_sync),
        )[0][0]

    def linked_project(
        self, id: int, harvest_project_ids=(), *, since: dt.date, assigned: tuple[int, ...] = (), **settings
    ) -> int:
        """Project ``id`` fed by ``harvest_project_ids``, started and synced from ``since``, with an assignment
        from ``since`` for each employee in ``assigned``; ``settings``: as :meth:`project`."""
        self.project(id, harvest_project_ids, start=since, sync_since=since, **settings)
        for employee_id in assigned:
            self.assign(id, employee_id, since)
        return id

    # -- both sides
    def teammate(self, key: str, employee_id: int, email: str, *, harvest_email: str | None = None) -> int:
        """Someone in both tools: Primetric employee ``employee_id`` and Harvest user ``key``, the same person by
        e-mail (``harvest_email``: as Harvest spells it, if not exactly as Primetric does)."""
        self.employee(employee_id, email, key.title())
        self.harvest_user(key, harvest_email or email)
        return employee_id

    # -- Harvest side
    def harvest_user(self, key: str, email: str, first: str | None = None, last: str = "Doe", **kw) -> int:
        uid = self.sim.state.add_user(first or key.title(), last, email, **kw)["id"]
        self.users[key] = uid
        return uid

    def entry(self, user: str, harvest_project_id: int, day: str, hours: float, notes: str | None = None, **kw) -> int:
        return self.sim.state.add_entry(
            self.users[user], harvest_project_id, dt.date.fromisoformat(day), hours, notes=notes, **kw
        )

    # -- results
    def worklogs(self, project_id: int | None = None) -> list[tuple]:
        """(harvest_time_entry_id, employee_id, work_date, hours, description, assignment_id) of synced logs."""
        where = "" if project_id is None else "AND project_id = %(p)s"
        return self.sql(
            f"SELECT harvest_time_entry_id, employee_id, work_date, hours, description, assignment_id "
            f"FROM primetric.worklogs WHERE harvest_time_entry_id IS NOT NULL {where} "
            f"ORDER BY harvest_time_entry_id",
            {"p": project_id},
        )

    def assignments(self, project_id: int) -> list[tuple]:
        """(employee_id, start_date, end_date, created_by_sync) of the project."""
        return self.sql(
            "SELECT employee_id, start_date, end_date, created_by_sync FROM primetric.assignments "
            "WHERE project_id = %s ORDER BY employee_id, start_date",
            (project_id,),
        )

    def missing(self, project_id: int) -> list[tuple]:
        return self.sql(
            "SELECT harvest_user_id, email, reason, entries, hours, first_work_date, last_work_date "
            "FROM primetric.missing_teammates WHERE project_id = %s ORDER BY harvest_user_id",
            (project_id,),
        )

    def snapshot(self) -> dict[str, list[tuple]]:
        """Every Primetric and sync-state table, for "nothing changed" assertions."""
        tables = [
            "primetric.employees",
            "primetric.projects",
            "primetric.assignments",
            "primetric.worklogs",
            "primetric.harvest_settings",
            "primetric.harvest_project_links",
            "primetric.missing_teammates",
            "harvest_sync.sync_state",
            "harvest_sync.skipped_entries",
            "harvest_sync.harvest_users",
        ]
        return {t: self.sql(f"SELECT * FROM {t} ORDER BY 1, 2") for t in tables}

    def sync(self, project_id: int, *, backfill: tuple[dt.date, dt.date] | None = None, **params) -> RunOutcome:
        """One run of the project's sync through the DAG's own task code (primetric_harvest.tasks), in this
        process: extract, transform, load and report, their results handed on as XCom."""
        (name,) = self.sql("SELECT name FROM primetric.projects WHERE id = %s", (project_id,))[0]
        run = SyncRun(
            project_id,
            name,
            f"test__{uuid.uuid4().hex}",
            {"since": None, "clear_data": False, **params},
            backfill,
        )
        return run_steps(run)


@pytest.fixture
def world(primetric_db, harvest) -> World:
    return World(primetric_db, harvest)


APOLLO = 7  # the Primetric project of the `apollo` fixture, fed by Harvest project 701
APOLLO_SINCE = dt.date(2026, 1, 1)


@pytest.fixture
def apollo(world) -> World:
    """Project 7 "Apollo" ← Harvest project 701, synced from 2026-01-01. Bobby (employee 1) is assigned; Nina
    logs time in Harvest but is not in Primetric (a missing teammate, once she has entries)."""
    world.teammate("bobby", 1, "bobby@acme.test")
    world.harvest_user("nina", "nina@acme.test", "Nina", "Novak")
    world.linked_project(APOLLO, [701], name="Apollo", since=APOLLO_SINCE, assigned=(1,))
    return world


# -- Airflow ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Airflow's metadata database (SQLite in the session's AIRFLOW_HOME, see conftest.py), made once per
    session with the Harvest pool: what dag.test(), `airflow dags test` and Airflow's app need."""
    from airflow.models.pool import Pool
    from airflow.utils import db

    from primetric_harvest.names import HARVEST_POOL, HARVEST_POOL_DESCRIPTION, HARVEST_POOL_SLOTS

    db.resetdb()
    Pool.create_or_update_pool(
        HARVEST_POOL, slots=HARVEST_POOL_SLOTS, description=HARVEST_POOL_DESCRIPTION, include_deferred=False
    )


class DagParser:
    """dags/ parsed afresh at each call, as Airflow's dag-processor does (the DAG file reads the linked projects
    from connection ``primetric_db``, so a parse sees the projects linked so far)."""

    def __call__(self) -> DagBag:
        from airflow.dag_processing.dagbag import DagBag

        return DagBag(dag_folder=str(ROOT / "dags"))

    def dag(self, project_id: int = APOLLO, *, retries: int | None = None):
        """The sync DAG of ``project_id``, from a fresh parse; ``retries``: every task's, when the retry policy
        is not under test (its delays are minutes long)."""
        bag = self()
        assert bag.import_errors == {}, bag.import_errors
        dag = bag.dags[dag_id(project_id)]
        if retries is not None:
            for task in dag.tasks:
                task.retries = retries
        return dag


@pytest.fixture
def dagbag() -> DagParser:
    """``dagbag()``: a fresh DagBag of dags/; ``dagbag.dag(7)``: project 7's sync DAG from a fresh parse."""
    return DagParser()

"""The load task's process is killed (SIGKILL, as the OOM killer or a lost worker would) in the middle of
its transaction: PostgreSQL rolls it back, every table is exactly as before, and the next try succeeds.

The load runs in a child process. The test holds a SHARE lock on harvest_sync.sync_state, so the load
blocks on its last write (the sync state) with everything else of its transaction done, and is killed
there. No test-only code path exists in the pipeline.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from primetric_harvest.names import ConnectionUse, connection_name
from primetric_harvest.results import to_xcom
from tests.fixtures import ACCOUNT_ID

pytestmark = pytest.mark.db

ROOT = Path(__file__).resolve().parents[1]
SINCE = dt.date(2026, 1, 1)
CHILD = """
import json, sys
from primetric_harvest import tasks
from primetric_harvest.results import Extracted, from_xcom
tasks.load(tasks.SyncRun(1, "Project 1", sys.argv[2]), from_xcom(Extracted, json.loads(sys.argv[3])))
print("the load committed", flush=True)
"""


def _truth(world) -> dict[int, tuple]:
    """Harvest id -> (employee, date, hours) computed from the simulator's state."""
    people = {world.users["bobby"]: 1, world.users["sam"]: 2}
    df = world.sim.state.entries_df()
    df = df[(df["project_id"] == 101) & (df["spent_date"] >= pd.Timestamp(SINCE)) & df["user_id"].isin(people)]
    return {
        int(r.id): (people[int(r.user_id)], r.spent_date.date(), Decimal(repr(float(r.hours)))) for r in df.itertuples()
    }


def _synced(world) -> dict[int, tuple]:
    rows = world.worklogs(1)
    assert len(rows) == len({r[0] for r in rows})
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _poll(check, what: str, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def test_sigkill_in_the_middle_of_the_load_transaction_changes_nothing(world):
    from primetric_harvest import pipeline

    world.employee(1, "bobby@acme.test", "Bobby")
    world.employee(2, "sam@acme.test", "Sam")
    world.harvest_user("bobby", "bobby@acme.test")
    world.harvest_user("sam", "sam@acme.test")
    world.project(1, [101], start=SINCE, sync_since=SINCE, trim=True)
    world.assign(1, 1, SINCE)
    rng = random.Random(5)
    ids = [
        world.entry("bobby", 101, (SINCE + dt.timedelta(days=rng.randrange(150))).isoformat(), rng.randint(1, 16) / 4)
        for _ in range(30)
    ]
    world.sync(1)
    assert _synced(world) == _truth(world)

    # Harvest changes; a reset run will delete every synced work log and write them again, in one transaction.
    world.sim.state.update_entry(ids[0], hours=6.5)
    world.sim.state.delete_entry(ids[1])
    world.entry("sam", 101, "2026-04-01", 3)  # Sam gets a sync-created assignment
    before = world.snapshot()
    run_id = f"test__{uuid.uuid4().hex}"
    extracted = pipeline.extract(1, run_id, {"since": SINCE.isoformat(), "clear_data": False})
    pipeline.transform(1, run_id, extracted)

    blocker = psycopg.connect(world.dsn)
    blocker.execute("LOCK TABLE harvest_sync.sync_state IN SHARE MODE")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ROOT), run_id, json.dumps(to_xcom(extracted))],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with psycopg.connect(world.dsn, autocommit=True) as watch:

            def load_waiting():
                assert child.poll() is None, child.communicate()
                row = watch.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = %s AND wait_event_type = 'Lock'",
                    (connection_name(ConnectionUse.LOAD, 1),),
                ).fetchone()
                return row and row[0]

            pid = _poll(load_waiting, "the load to block inside its transaction")
            # It has written: it holds the work logs' write lock, and it waits on the sync state.
            held = watch.execute(
                "SELECT relation::regclass::text, mode, granted FROM pg_locks WHERE pid = %s AND relation IS NOT NULL",
                (pid,),
            ).fetchall()
            assert ("primetric.worklogs", "RowExclusiveLock", True) in held
            assert ("harvest_sync.sync_state", "RowExclusiveLock", False) in held

            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=10) == -signal.SIGKILL
            blocker.rollback()  # the server-side transaction may run on until it finds its client gone
            _poll(
                lambda: not watch.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone(),
                "the killed load's backend to end",
            )
    finally:
        blocker.close()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "the load committed" not in (child.stdout.read() or "")
    assert world.snapshot() == before

    # Airflow's retry of the task: the same run's staging is intact, and its load now commits.
    pipeline.load(1, run_id, extracted, account_id=ACCOUNT_ID)
    pipeline.report(1, account_id=ACCOUNT_ID)
    assert _synced(world) == _truth(world)
    assert ids[1] not in _synced(world) and _synced(world)[ids[0]][2] == Decimal("6.5")
    # And the next daily run has nothing left to fix.
    result = world.sync(1)
    assert result.loaded.inserted == result.loaded.updated == result.loaded.deleted == 0
    assert _synced(world) == _truth(world)

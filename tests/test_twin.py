"""The twin test: after a seeded random sequence of Harvest changes interleaved with daily runs, a backfill
and a reset, Primetric's synced work logs equal what Harvest holds, computed here from the simulator's state."""

import datetime as dt
import random
from decimal import Decimal

import pandas as pd
import pytest

from tests.test_exactness import backfill

pytestmark = pytest.mark.db

TODAY = dt.datetime.now(dt.UTC).date()
SYNC_SINCE = TODAY - dt.timedelta(days=90)
# Harvest cannot tell a daily run about deletes: it sees them only inside the 60-day window it re-lists
# (older ones wait for the weekly full reconcile), so deletes and moves away here hit the window.
WINDOW_FROM = TODAY - dt.timedelta(days=59)
EMPLOYEES = {1: "ann@acme.test", 2: "ben@acme.test", 3: "cat@acme.test", 4: "dan@acme.test"}
LINKS = {101: 1, 102: 1, 201: 2}  # Harvest project → Primetric project; 999 is linked nowhere


def expected(world, project_id: int, window: tuple[dt.date, dt.date] | None = None) -> list[tuple]:
    """What Primetric must hold, from Harvest's state alone: (entry id, employee, date, hours, notes)."""
    by_email = {email: emp for emp, email in EMPLOYEES.items()}
    users = {int(u.id): str(u.email).strip().lower() for u in world.sim.state.users_df().itertuples()}
    rows = []
    for e in world.sim.state.entries_df().itertuples():
        spent = pd.Timestamp(e.spent_date).date()
        if LINKS.get(int(e.project_id)) != project_id or spent < SYNC_SINCE:
            continue
        if window and not window[0] <= spent <= window[1]:
            continue
        employee = by_email.get(users.get(int(e.user_id)))
        if employee is not None:
            rows.append((int(e.id), employee, spent, Decimal(str(round(float(e.hours), 2))), e.notes))
    return sorted(rows)


def actual(world, project_id: int, window: tuple[dt.date, dt.date] | None = None) -> list[tuple]:
    rows = [
        (r[0], r[1], r[2], r[3].normalize() if r[3] == r[3].to_integral() else r[3], r[4])
        for r in world.worklogs(project_id)
    ]
    if window:
        rows = [r for r in rows if window[0] <= r[2] <= window[1]]
    return sorted(rows)


def norm(rows):
    return [(i, emp, d, Decimal(h).normalize(), n) for i, emp, d, h, n in rows]


def test_primetric_equals_harvest_after_random_changes(world):
    rng = random.Random(20261125)
    for emp, email in EMPLOYEES.items():
        world.employee(emp, email)
    world.project(1, [101, 102], sync_since=SYNC_SINCE)
    world.project(2, [201], sync_since=SYNC_SINCE)
    for key in ("ann", "ben", "cat", "dan", "eve"):  # eve has no Primetric account
        world.harvest_user(key, f"{key}@acme.test")
    world.sim.state.add_project(id=999, name="Elsewhere")
    harvest_projects = [101, 102, 201, 999]

    def random_day() -> dt.date:
        return TODAY - dt.timedelta(days=rng.randint(0, 95))  # some fall before sync_since

    def in_window() -> list[int]:
        return [i for i in entries if pd.Timestamp(world.sim.state.get_entry(i)["spent_date"]).date() >= WINDOW_FROM]

    entries: list[int] = []
    for _ in range(40):
        entries.append(
            world.entry(
                rng.choice(list(world.users)),
                rng.choice(harvest_projects),
                random_day().isoformat(),
                rng.choice([0.25, 1, 1.5, 2, 7.75]),
                "seed",
            )
        )

    def check(label: str, window=None) -> None:
        for project_id in (1, 2):
            assert norm(actual(world, project_id, window)) == norm(expected(world, project_id, window)), (
                f"{label}: project {project_id}"
            )

    world.sync(1)
    world.sync(2)
    check("first runs")
    steps = 0
    for step in range(1, 241):
        world.sim.state.advance(30)
        action = rng.random()
        steps += 1
        if action < 0.25:
            entries.append(
                world.entry(
                    rng.choice(list(world.users)),
                    rng.choice(harvest_projects),
                    random_day().isoformat(),
                    rng.choice([0.5, 1, 3, 4.25]),
                    f"new {step}",
                )
            )
        elif action < 0.45 and entries:
            world.sim.state.update_entry(rng.choice(entries), hours=rng.choice([0.75, 2, 5.5]), notes=f"edit {step}")
        elif action < 0.55 and entries:
            world.sim.state.update_entry(rng.choice(entries), spent_date=random_day())
        elif action < 0.65 and in_window():
            world.sim.state.update_entry(rng.choice(in_window()), project_id=rng.choice(harvest_projects))
        elif action < 0.75 and entries:
            world.sim.state.update_entry(rng.choice(entries), user_id=world.users[rng.choice(list(world.users))])
        elif action < 0.88 and in_window():
            gone = rng.choice(in_window())
            entries.remove(gone)
            world.sim.state.delete_entry(gone)
        else:
            who = rng.choice(["ann", "ben", "cat", "dan", "eve"])
            email = rng.choice([f"{who}@acme.test", "ghost@acme.test", rng.choice(list(EMPLOYEES.values())).upper()])
            world.sim.state.update_user(world.users[who], email=email)
        if step % 20 == 0:
            world.sim.state.advance(3600)
            world.sync(1)
            world.sync(2)
            check(f"daily run after step {step}")
        if step == 130:
            window = (TODAY - dt.timedelta(days=30), TODAY - dt.timedelta(days=20))
            backfill(world, window[0].isoformat(), window[1].isoformat(), project_id=1)
            check(f"backfill after step {step}", window)
        if step == 190:
            world.sync(1, since=SYNC_SINCE.isoformat())
            world.sync(2, since=SYNC_SINCE.isoformat())
            check(f"reset after step {step}")
    assert steps >= 200
    assert len(world.worklogs()) > 10  # the comparison compared something

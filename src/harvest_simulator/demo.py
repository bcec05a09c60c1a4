"""The "demo" scenario: the Harvest side of `make demo` (its Primetric side: include/sql/demo_seed.sql).

Harvest projects 1001 and 1002 feed Primetric project 1 (Apollo), 2001 feeds project 2 (Zephyr),
3001 is not linked. Nina logs time but is not in Primetric; Sam is not assigned to Zephyr.
"""

from __future__ import annotations

import json
import sys
from datetime import date, timedelta

from .state import SimulatorState

DEMO_TOKEN = "demo-token"
DEMO_ACCOUNT_ID = "123456"


def demo() -> SimulatorState:
    state = SimulatorState()
    ada = state.add_user("Ada", "Admin", "ada@acme.test", id=501, access_roles=["administrator"])["id"]
    bobby = state.add_user("Bobby", "Tables", "bobby@acme.test", id=502)["id"]
    sam = state.add_user("Sam", "Shaw", "sam@acme.test", id=503)["id"]
    maria = state.add_user("Maria", "Lopez", "maria.lopez@acme.test", id=504, access_roles=["manager"])["id"]
    nina = state.add_user("Nina", "Novak", "nina@acme.test", id=505)["id"]
    for pid, name in ((1001, "Apollo web"), (1002, "Apollo mobile"), (2001, "Zephyr"), (3001, "Internal")):
        state.add_project(id=pid, name=name, code=f"P{pid}", starts_on=date(2026, 1, 1))

    def log(user: int, project: int, first: date, days: int, every: int, hours: float, note: str) -> None:
        for i in range(0, days, every):
            day = first + timedelta(days=i)
            if day.weekday() < 5:
                state.add_entry(user, project, day, hours, notes=f"{note} ({day:%b %d})")

    log(bobby, 1001, date(2026, 8, 24), 90, 3, 4.0, "API work")  # starts before sync_since: Aug ignored
    log(bobby, 2001, date(2026, 9, 7), 30, 7, 2.5, "Zephyr review")
    log(sam, 1002, date(2026, 9, 14), 45, 4, 6.0, "Mobile release")
    log(sam, 2001, date(2026, 10, 5), 20, 5, 3.0, "Zephyr spike")
    log(maria, 1001, date(2026, 9, 1), 75, 10, 1.5, "Planning")
    log(nina, 1001, date(2026, 10, 12), 21, 2, 7.25, "Onboarding")
    log(ada, 3001, date(2026, 9, 1), 30, 6, 1.0, "Admin")
    return state


DEMO_TOKENS = {DEMO_TOKEN: {"account_id": DEMO_ACCOUNT_ID, "role": "administrator", "user_id": 501}}


def demo_command(port: int, python: str = sys.executable) -> list[str]:
    """The command line that serves the demo account on ``port`` (used by `make demo` and `make airflow`)."""
    return [python, "-m", "harvest_simulator", "--scenario", "demo", "--port", str(port),
            "--token", DEMO_TOKEN, "--account-id", DEMO_ACCOUNT_ID]  # fmt: skip


def demo_connection(url: str) -> str:
    """The `harvest_default` connection (AIRFLOW_CONN_HARVEST_DEFAULT) for the demo account at ``url``."""
    return json.dumps({"conn_type": "harvest", "host": url, "password": DEMO_TOKEN,
                       "extra": {"account_id": DEMO_ACCOUNT_ID}})  # fmt: skip

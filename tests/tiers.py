"""The test tiers, enforced (a pytest plugin, loaded by conftest.py; README "Tests").

A test's tier is its one marker of ``TIERS``, the heaviest thing it needs. Collection fails for a test with no
tier, with two, or lighter than a fixture it uses (``FIXTURE_TIERS``); a ``unit`` test that connects anywhere
or starts a process fails at that moment, naming itself and what it tried.
"""

from __future__ import annotations

import socket
import subprocess

import pytest

TIERS = ("unit", "db", "airflow", "browser")  # lightest first
# The shared fixtures that need more than Python, and the tier they need. A test that uses one, directly or
# through another fixture (``world`` uses ``primetric_db`` and ``harvest``), is at least in that tier.
FIXTURE_TIERS = {
    "template_db": "db",
    "primetric_db": "db",
    "harvest": "db",
    "dagbag": "db",  # the DAG file reads the linked projects from the Primetric database
    "airflow_db": "airflow",
    "airflow_server": "airflow",
    "airflow_fab_server": "airflow",
    "airflow_celery_server": "airflow",
}


def tier_problems(item: pytest.Item) -> list[str]:
    """What is wrong with ``item``'s tier: none, several, or lighter than a fixture it uses."""
    marked = sorted({m.name for m in item.iter_markers() if m.name in TIERS}, key=TIERS.index)
    if len(marked) != 1:
        found = f"marks {', '.join(marked)}" if marked else "no tier mark"
        return [f"{item.nodeid}: {found}; give it exactly one of {', '.join(TIERS)} (module `pytestmark` or per test)"]
    needs = {f: FIXTURE_TIERS[f] for f in item.fixturenames if f in FIXTURE_TIERS}
    heavier = {f: t for f, t in needs.items() if TIERS.index(t) > TIERS.index(marked[0])}
    return [
        f"{item.nodeid}: marked {marked[0]} but uses fixture {f!r}, which needs tier {t}: mark the test {t}"
        for f, t in sorted(heavier.items())
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems = [p for item in items for p in tier_problems(item)]
    if problems:
        raise pytest.UsageError("tests in the wrong tier:\n  " + "\n  ".join(problems))


class NotAUnitTest(AssertionError):
    """A ``unit`` test reached for a database, the network or a process."""


@pytest.fixture(autouse=True)
def _unit_tests_stay_pure(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """In a ``unit`` test, connecting anywhere (PostgreSQL, the simulator, Airflow's metadata database) or
    starting a process fails at once, naming the test and what it tried."""
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    import psycopg
    import psycopg2
    import sqlalchemy.event
    import sqlalchemy.pool

    def refuse(what: str):
        def refused(*args, **kwargs):
            raise NotAUnitTest(f"{request.node.nodeid} is marked unit but {what}: mark it db or airflow")

        return refused

    monkeypatch.setattr(socket.socket, "connect", refuse("opened a network connection"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("opened a network connection"))
    to_postgresql = refuse("connected to PostgreSQL")
    monkeypatch.setattr(psycopg, "connect", to_postgresql)
    monkeypatch.setattr(psycopg.Connection, "connect", classmethod(to_postgresql))
    monkeypatch.setattr(psycopg2, "connect", to_postgresql)  # the postgres provider's hook
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("started a process"))
    on_checkout = refuse("used a SQLAlchemy database (Airflow's metadata database)")
    sqlalchemy.event.listen(sqlalchemy.pool.Pool, "checkout", on_checkout)
    try:
        yield
    finally:
        sqlalchemy.event.remove(sqlalchemy.pool.Pool, "checkout", on_checkout)

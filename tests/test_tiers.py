"""The tiers hold: a test with no tier, two tiers, or a fixture of a heavier tier stops the collection, and a
unit test that reaches for the network or a database fails (a small pytest session of its own, in-process)."""

from __future__ import annotations

import pytest

INNER_CONFIG = """
[pytest]
addopts = --strict-markers -p no:cacheprovider
markers =
    unit: pure
    db: PostgreSQL or the simulator
    airflow: real Airflow
    browser: Chromium
"""
INNER_CONFTEST = """
import pytest

pytest_plugins = ["tests.tiers"]


@pytest.fixture
def primetric_db():
    return "postgresql://nowhere"


@pytest.fixture
def world(primetric_db):  # heavier through the fixture it uses
    return primetric_db
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INNER_CONFIG)
    pytester.makeconftest(INNER_CONFTEST)
    return pytester


@pytest.mark.unit
def test_well_marked_tests_run(inner):
    inner.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.db

        def test_a(world):
            assert world

        @pytest.mark.parametrize("x", [1, 2])
        def test_b(x):
            assert x
        """
    )
    inner.runpytest_inprocess().assert_outcomes(passed=3)
    inner.runpytest_inprocess("-m", "unit").assert_outcomes(deselected=3)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("source", "complaint"),
    [
        ("def test_a():\n    pass\n", "test_a: no tier mark; give it exactly one of unit, db, airflow, browser"),
        (
            "import pytest\npytestmark = pytest.mark.db\n@pytest.mark.unit\ndef test_a():\n    pass\n",
            "test_a: marks unit, db",
        ),
        (
            "import pytest\n@pytest.mark.unit\ndef test_a(world):\n    pass\n",
            "test_a: marked unit but uses fixture 'primetric_db', which needs tier db: mark the test db",
        ),
        (
            "import pytest\n@pytest.mark.db\ndef test_a():\n    pass\n@pytest.mark.slow\ndef test_b():\n    pass\n",
            "'slow' not found in `markers` configuration option",
        ),
    ],
    ids=["no-tier", "two-tiers", "fixture-of-a-heavier-tier", "unknown-marker"],
)
def test_a_test_in_no_or_the_wrong_tier_stops_the_collection(inner, source, complaint):
    inner.makepyfile(test_inner=source)
    result = inner.runpytest_inprocess()
    assert result.ret in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERRUPTED)  # before any test ran
    assert complaint in result.stdout.str() + result.stderr.str()


@pytest.mark.db  # not unit: its inner db test starts a process, which this test's own unit guard would refuse
@pytest.mark.parametrize(
    ("body", "what"),
    [
        ("socket.create_connection(('127.0.0.1', 5432), timeout=1)", "opened a network connection"),
        ("psycopg.connect('postgresql://postgres@127.0.0.1:5432/postgres')", "connected to PostgreSQL"),
        ("psycopg.Connection.connect('postgresql://postgres@127.0.0.1:5432/postgres')", "connected to PostgreSQL"),
        ("psycopg2.connect('postgresql://postgres@127.0.0.1:5432/postgres')", "connected to PostgreSQL"),
        ("subprocess.run(['true'])", "started a process"),
        (
            "sqlalchemy.create_engine('sqlite://').connect()",
            "used a SQLAlchemy database (Airflow's metadata database)",
        ),
    ],
    ids=["socket", "psycopg", "psycopg-class", "psycopg2", "process", "sqlalchemy"],
)
def test_a_unit_test_that_reaches_out_fails_saying_what_it_did(inner, body, what):
    inner.makepyfile(
        test_inner=f"""
        import socket, subprocess
        import psycopg, psycopg2, pytest, sqlalchemy

        @pytest.mark.unit
        def test_reaching_out():
            {body}

        @pytest.mark.db
        def test_allowed_in_db():
            subprocess.run(['true'], check=True)
        """
    )
    result = inner.runpytest_inprocess()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([f"*NotAUnitTest: test_inner.py::test_reaching_out is marked unit but {what}*"])

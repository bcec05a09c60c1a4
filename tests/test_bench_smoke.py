"""`make bench-smoke` through the same code as `make bench` (20k entries), so the benchmark cannot rot.

Asserts what the benchmark measured is right (rows, requests, JSON written), never how fast it was.
"""

import json

import psycopg
import pytest

from bench import world
from bench.runner import run
from tests.fixtures import PG

pytestmark = pytest.mark.db


def test_bench_smoke_measures_real_runs_and_writes_json(tmp_path):
    lines: list[str] = []
    report, path = run(["--smoke", "--out", str(tmp_path)], say=lines.append)

    # The JSON holds what was printed; the table names every target with its figure.
    assert json.loads(path.read_text())["scenarios"] == json.loads(json.dumps(report["scenarios"], default=str))
    assert (tmp_path / "latest-smoke.json").exists()
    scenarios = report["scenarios"]
    assert set(scenarios) == {
        "reset-5k",
        "reset-20k",
        "rss-5k-vs-20k",
        "load-vs-copy",
        "daily-no-change",
        "daily-1pct-change",
        "reset-20k-ratelimited",
        "parse-100",
        "shared-account",
    }
    table = "\n".join(lines)
    for name, scenario in scenarios.items():
        assert scenario["targets"] or name in {"daily-1pct-change"}, name
        for target in scenario["targets"]:
            assert isinstance(target["met"], bool)
            assert f"{target['what']}: {target['figure']}" in table
        # Correctness of what was measured: every entry fetched once and landed or kept aside, the
        # simulator and our hook counting the same requests, and so on (see each scenario's checks).
        assert scenario["checks"] and all(scenario["checks"].values()), (name, scenario["checks"])

    reset = scenarios["reset-20k"]["figures"]
    assert reset["entries"] > 19_000 and reset["entries_fetched"] == reset["entries"]
    assert reset["landed"]["worklogs"] + reset["landed"]["skipped"] == reset["entries"]
    assert reset["landed"]["skipped"] > 0  # the missing teammates are kept aside, not lost
    assert reset["requests"] == reset["requests_counted_by_hook"] >= reset["entries"] / 2000
    assert set(reset["phases"]) == {"extract", "transform", "load", "report"}
    assert all(p["peak_rss_mb"] > 0 for p in reset["phases"].values())

    no_change = scenarios["daily-no-change"]["figures"]
    assert no_change["mode"] == "incremental"
    assert no_change["rows_written"]["worklogs"] == no_change["rows_written"]["assignments"] == 0
    assert no_change["requests"] <= no_change["request_budget"]

    changed = scenarios["daily-1pct-change"]["figures"]
    assert changed["changed_in_harvest"] == 200
    assert 0 < changed["rows_written"]["worklogs"] == changed["load"]["updated"] <= 200

    limited = scenarios["reset-20k-ratelimited"]["figures"]
    assert limited["status_429"] == 0 and limited["entries_fetched"] >= limited["entries"]

    copy = scenarios["load-vs-copy"]["figures"]
    assert copy["rows"] == reset["landed"]["worklogs"]

    parse = scenarios["parse-100"]["figures"]
    assert parse["dags"] == 100

    shared = scenarios["shared-account"]["figures"]
    assert shared["projects"] == 8 and shared["requests"] >= 8 * 3

    # Nothing left behind: every database the benchmark created is gone.
    assert world.CREATED
    with psycopg.connect(f"{PG}/postgres") as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (world.CREATED,)).fetchall()
    assert left == []

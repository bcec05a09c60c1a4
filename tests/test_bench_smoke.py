"""`make bench-smoke` through the same code as `make bench` (20k entries), so the benchmark cannot rot.

Asserts what the benchmark measured is right (rows, requests, JSON written), never how fast it was.
"""

import json

import psycopg
import pytest

from bench import world
from bench.runner import run
from tests.fixtures import PG

DAILY = "daily-3-projects"  # the smoke size of daily-200-projects: starts a real Airflow (its own test, below)


@pytest.mark.db
def test_bench_smoke_measures_real_runs_and_writes_json(tmp_path):
    lines: list[str] = []
    # Not the daily scenarios: they start an Airflow (the test below; on Celery, tests/test_celery_e2e.py).
    report, path = run(
        ["--smoke", "--out", str(tmp_path), "--skip", DAILY, "--skip", f"{DAILY}-celery"], say=lines.append
    )

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
    assert parse["parse_cpu_seconds"] > 0 and parse["dag_processor_cpu_share"] > 0
    assert len(parse["serialize_seconds"]) == len(parse["dagbag_seconds"]) == 3

    shared = scenarios["shared-account"]["figures"]
    assert shared["projects"] == 8 and shared["requests"] >= 8 * 3

    # Nothing left behind: every database the benchmark created is gone.
    assert world.CREATED
    with psycopg.connect(f"{PG}/postgres") as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (world.CREATED,)).fetchall()
    assert left == []


@pytest.mark.airflow
def test_bench_smoke_daily_runs_go_through_the_real_scheduler(tmp_path):
    """daily-N-projects at its smoke size: the launcher's stack, the scheduler creates each project's daily run
    when its DAG is unpaused; what was measured is right (every run scheduled and done, every entry landed, the
    simulator's requests counted, worker RSS sampled), never how fast."""
    lines: list[str] = []
    report, _ = run(["--smoke", "--out", str(tmp_path), "--only", DAILY], say=lines.append)
    scenario = report["scenarios"][DAILY]
    assert scenario["checks"] and all(scenario["checks"].values()), scenario["checks"]
    fig = scenario["figures"]
    assert fig["projects"] == fig["runs"] == 3 and fig["run_types"] == ["scheduled"]
    assert fig["task_instances"] == 12 and fig["ti_per_minute"] > 0
    assert fig["harvest_requests"] >= 3 * 3 and fig["status_429"] == 0
    assert fig["peak_rss_mb_per_worker"] and all(v > 0 for v in fig["peak_rss_mb_per_worker"].values())
    assert fig["task_seconds_sum"] > 0 and fig["cpu_seconds"]["scheduler"] > 0
    table = "\n".join(lines)
    assert "task instances/min" in table and "requests/project" in table
    for target in scenario["targets"]:
        assert f"{target['what']}: {target['figure']}" in table
    with psycopg.connect(f"{PG}/postgres") as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (world.CREATED,)).fetchall()
    assert left == []

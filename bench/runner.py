"""Run the scenarios, print the table (each target next to its figure), write the JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

from bench import machine
from bench.scenarios import FULL, SMOKE, Bench
from bench.steps import shutdown

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--smoke", action="store_true", help="20k entries: the same code paths, in about a minute")
    p.add_argument("--only", action="append", help="run only these scenarios (repeatable)")
    p.add_argument("--skip", action="append", default=[], help="leave these scenarios out (repeatable)")
    p.add_argument(
        "--daily-budget", type=float, help="daily-N-projects: seconds to wait for the runs (then measure what is done)"
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the JSON goes (default bench/results/)")
    return p


def run(argv: list[str] | None = None, say=print) -> tuple[dict, Path]:
    args = build_parser().parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    header = machine.describe()
    say(
        f"Benchmark ({'smoke' if args.smoke else 'full'}): {header['cores']} cores, {header['memory_gb']} GB, "
        f"{header['cpu_model']}, PostgreSQL {header['postgresql']}, Python {header['python']}"
    )
    log_path = tempfile.NamedTemporaryFile(prefix="bench-steps-", suffix=".log", delete=False).name
    say(f"  task logs: {log_path}")
    started = time.perf_counter()
    bench = Bench(sizes, log_path, say=say, daily_budget=args.daily_budget)
    try:
        results = bench.run_all(set(args.only) if args.only else None, skip=set(args.skip))
    finally:
        shutdown()
    report = {
        "mode": "smoke" if args.smoke else "full",
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "total_seconds": round(time.perf_counter() - started, 1),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "machine": header,
        "sizes": {k: v for k, v in vars(sizes).items()},
        "scenarios": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"{report['mode']}-{stamp}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    (args.out / f"latest-{report['mode']}.json").write_text(json.dumps(report, indent=2, default=str))
    say(format_table(report))
    say(f"JSON: {path}")
    return report, path


def format_table(report: dict) -> str:
    lines = ["", f"{'scenario':<26} {'figure':<44} {'target':<12} {'result':<10}", "-" * 96]
    for name, scenario in report["scenarios"].items():
        fig = scenario["figures"]
        summary = _summary(name, fig)
        lines.append(f"{name:<26} {summary}")
        for t in scenario["targets"]:
            mark = "met" if t["met"] else "NOT MET"
            lines.append(f"{'':<26} {t['what'] + ': ' + t['figure']:<44} {t['target']:<12} {mark}")
        bad = [k for k, ok in scenario["checks"].items() if not ok]
        if bad:
            lines.append(f"{'':<26} CORRECTNESS CHECK FAILED: {', '.join(bad)}")
    met = sum(t["met"] for s in report["scenarios"].values() for t in s["targets"])
    total = sum(len(s["targets"]) for s in report["scenarios"].values())
    lines.append("-" * 96)
    lines.append(f"targets met: {met} of {total}; total bench time {report['total_seconds']} s")
    return "\n".join(lines)


def _summary(name: str, fig: dict) -> str:
    pad = " " * 26
    if "ti_per_minute" in fig:  # daily-N-projects: the real scheduler
        rss = ", ".join(f"{v}" for v in fig["peak_rss_mb_per_worker"].values())
        lines = [
            ("" if fig["complete"] else f"OUT OF TIME: {fig['runs_done']} of {fig['projects']} runs done; ")
            + f"{fig['projects']} projects, {fig['executor']} executor × {fig['workers']} (parallelism "
            f"{fig['parallelism']}): {fig['wall_seconds']:.0f} s first queued → last done, {fig['ti_per_minute']} "
            f"task instances/min, {fig['projects_per_hour']} projects/h",
            f"task seconds {fig['task_seconds_sum']:.0f} = {fig['task_seconds_per_wall_second']} per wall second; "
            f"mean per task {fig['task_seconds_mean']}",
            f"overhead per task: queued→running {fig['queued_to_running_seconds_mean']} s, upstream done→queued "
            f"{fig['upstream_done_to_queued_seconds_mean']} s, idle slot {fig['slot_idle_seconds_per_task']} s, "
            f"scheduler CPU {fig['scheduler_cpu_seconds_per_task']} s, api-server CPU "
            f"{fig['api_server_cpu_seconds_per_task']} s",
            f"Harvest: {fig['harvest_requests_per_project']} requests/project, {fig['status_429']} × 429; peak RSS per "
            f"worker (MB, with its task processes): {rss}; largest task process {fig['peak_rss_mb_task_process']} MB",
            f"peak PostgreSQL connections: {fig.get('peak_postgres_connections')}",
        ]
        return f"\n{pad}".join(lines)
    if "dag_processor_cpu_share" in fig:  # parse-N
        failed = f"\n{pad}IMPORT FAILED: {fig['import_error']}" if fig.get("import_error") else ""
        return (
            f"{fig['linked_projects']} projects in {fig['shards']} DAG file(s), {fig['dags']} DAGs parsed: "
            f"module {fig['module_seconds_median']} s, DagBag {fig['dagbag_seconds_median']} s, "
            f"serialize {fig['serialize_seconds_median']} s; parse CPU {fig['parse_cpu_seconds']} s\n{pad}"
            f"dag-processor CPU share {fig['dag_processor_cpu_share']:.1%} at min_file_process_interval "
            f"{fig['min_file_process_interval']} s ({fig['dag_processor_cpu_share_at_30s_default']:.1%} at 30 s); "
            f"a task process's parse (its DAG only): {fig['task_parse_seconds_median']} s{failed}"
        )
    if "phases" in fig:
        phases = " ".join(f"{k} {v['seconds']:.1f}s/{v['peak_rss_mb']:.0f}MB" for k, v in fig["phases"].items())
        head = f"{fig['wall_seconds']:.1f} s"
        if "entries_per_second" in fig:
            head += f", {fig['entries_per_second']:,} entries/s"
        if "requests" in fig:
            head += f", {fig['requests']} requests, {fig.get('status_429', 0)} × 429"
        if "rows_written" in fig:
            head += f", rows written {fig['rows_written']}"
        return f"{head}\n{'':<26} phases (time/peak RSS): {phases}"
    if "peak_rss_mb" in fig and isinstance(fig["peak_rss_mb"], dict):
        return "peak RSS MB: " + ", ".join(
            f"{step} " + " → ".join(f"{v:.0f}" for v in sizes.values()) for step, sizes in fig["peak_rss_mb"].items()
        )
    return ", ".join(f"{k} {v}" for k, v in fig.items() if not isinstance(v, (dict, list)))


def main(argv: list[str] | None = None) -> int:
    report, _ = run(argv)
    checks_ok = all(all(s["checks"].values()) for s in report["scenarios"].values())
    return 0 if checks_ok else 1

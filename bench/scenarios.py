"""The scenarios of `make bench`: each a whole run (simulator → extract → transform → load → report)."""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench import world
from bench.simproc import SimProcess, SimSpec
from bench.steps import RunResult, parse_dag_file, run_dag
from primetric_harvest.names import DAG_SHARDS_ENV, dag_file, dag_id

ROOT = Path(__file__).resolve().parents[1]
HARVEST_LIMIT = (100, 15.0)  # Harvest: 100 requests per 15 s per account
PER_PAGE = 2000
SINCE = dt.date(2019, 1, 1)
POOL_SLOTS = 4  # `airflow pools set harvest_api 4`: extracts that may run at once
DAGBAG_IMPORT_TIMEOUT = 30  # Airflow's [core] dagbag_import_timeout default: a slower parse is an import error
# [dag_processor] dag_file_processor_timeout default: the parse process (import + serialization) is killed after it.
DAG_FILE_PROCESSOR_TIMEOUT = 50
MIN_FILE_PROCESS_INTERVAL = 600  # the README's recommended [dag_processor] min_file_process_interval


@dataclass(frozen=True)
class Sizes:
    big: int
    small: int
    users: int
    harvest_projects: tuple[int, ...]
    shared_projects: int
    shared_entries: int
    parse_sizes: tuple[tuple[int, int], ...]  # (linked projects, DAG files)
    daily_projects: int
    daily_entries_per_project: int
    daily_users: int
    change_fraction: float = 0.01
    # Edits are made during the day, not in the seconds before a run: the extract re-reads a listing by
    # date when anything changed within 30 s of its first page (harvest_hook). The smoke skips the wait.
    change_settle_seconds: float = 31.0

    @property
    def big_label(self) -> str:
        return _label(self.big)

    @property
    def small_label(self) -> str:
        return _label(self.small)


def _label(n: int) -> str:
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k"


FULL = Sizes(
    big=1_000_000,
    small=100_000,
    users=3000,
    harvest_projects=(1001, 1002, 1003, 1004, 1005),
    shared_projects=8,
    shared_entries=400_000,
    parse_sizes=((1000, 1), (5000, 1), (5000, 5)),
    daily_projects=200,
    daily_entries_per_project=300,
    daily_users=300,
)
SMOKE = Sizes(
    big=20_000,
    small=5_000,
    users=300,
    harvest_projects=(1001, 1002, 1003, 1004, 1005),
    shared_projects=8,
    shared_entries=16_000,
    parse_sizes=((100, 1),),
    daily_projects=3,
    daily_entries_per_project=40,
    daily_users=30,
    change_settle_seconds=0.0,
)


class Bench:
    """Runs scenarios and collects their figures, targets and correctness checks."""

    def __init__(self, sizes: Sizes, log_path: str, say=print, daily_budget: float | None = None):
        self.sizes = sizes
        self.daily_budget = daily_budget
        self.log_path = log_path
        self.say = say
        self.results: dict[str, dict] = {}
        self.today = dt.date.today()

    # -- helpers -------------------------------------------------------------------------------
    def _env(self, dsn: str, sim: SimProcess) -> dict:
        return {"AIRFLOW_CONN_PRIMETRIC_DB": dsn, "AIRFLOW_CONN_HARVEST_DEFAULT": json.dumps(sim.connection())}

    def _spec(self, n: int, projects: tuple[int, ...], rate_limit=None) -> SimSpec:
        return SimSpec(
            n_entries=n,
            n_users=self.sizes.users,
            project_ids=projects,
            start=SINCE,
            end=self.today - dt.timedelta(days=1),
            rate_limit=rate_limit,
        )

    def _run(self, dsn: str, sim: SimProcess, project_id: int, params: dict, label: str) -> RunResult:
        run_id = f"bench__{label}__{uuid.uuid4().hex[:8]}"
        return run_dag(project_id, run_id, params, env=self._env(dsn, sim), log_path=self.log_path)

    def _prepare(self, dsn: str, sim: SimProcess, projects: dict[int, list[int]]) -> None:
        world.seed_people(dsn, sim.call("users"))
        for project_id, harvest_ids in projects.items():
            world.seed_project(dsn, project_id, harvest_ids, start=SINCE)

    @staticmethod
    def _phases(run: RunResult) -> dict:
        return {
            name: {
                "seconds": round(s["seconds"], 3),
                "process_seconds": round(s["wall_seconds"], 3),
                "peak_rss_mb": round(s["peak_rss_mb"], 1),
                "start_rss_mb": round(s["start_rss_mb"], 1),
                "cpu_seconds": round(s["cpu_seconds"], 2),
            }
            for name, s in run.steps.items()
        }

    def _landed(self, dsn: str, project_id: int) -> dict:
        return {
            "worklogs": world.scalar(
                dsn,
                "SELECT count(*) FROM primetric.worklogs WHERE project_id = %s AND harvest_time_entry_id IS NOT NULL",
                (project_id,),
            ),
            "skipped": world.scalar(
                dsn, "SELECT count(*) FROM harvest_sync.skipped_entries WHERE project_id = %s", (project_id,)
            ),
        }

    # -- scenarios -------------------------------------------------------------------------------
    def reset_scenario(self, sim: SimProcess, dsn: str, name: str, *, rate_limited: bool) -> RunResult:
        harvest_ids = list(self.sizes.harvest_projects)
        self._prepare(dsn, sim, {world.PROJECT_ID: harvest_ids})
        expected = sum(sim.call("count", SINCE).values())
        sim.call("reset")
        self.say(f"  {name}: {expected:,} entries in Harvest; running the DAG (reset from {SINCE}) …")
        run = self._run(dsn, sim, world.PROJECT_ID, {"since": SINCE.isoformat(), "clear_data": False}, name)
        stats = sim.call("stats")
        landed = self._landed(dsn, world.PROJECT_ID)
        extract = run.result("extract")
        figures = {
            "entries": expected,
            "wall_seconds": round(run.wall_seconds, 2),
            "entries_per_second": round(expected / run.wall_seconds),
            "phases": self._phases(run),
            "peak_rss_mb": round(run.peak_rss_mb(), 1),
            "requests": stats["requests"],
            "requests_counted_by_hook": extract["harvest"]["requests"],
            "status_429": stats["status_429"],
            "landed": landed,
            "entries_fetched": extract["entries_fetched"],
            "entries_fetched_again": extract["entries_fetched"] - expected,
            "load": {k: v for k, v in run.result("load").items() if k != "seconds"},
        }
        checks = {
            # More only when the hook re-read a listing that changed while it was paged (duplicates are
            # harmless: staging keeps one row per entry).
            "every entry fetched": extract["entries_fetched"] >= expected,
            "every entry landed or kept aside": landed["worklogs"] + landed["skipped"] == expected,
            "simulator and hook count the same requests": stats["requests"] == extract["harvest"]["requests"],
        }
        targets = []
        if rate_limited:
            floor = stats["requests"] / HARVEST_LIMIT[0] * HARVEST_LIMIT[1]
            figures["floor_seconds"] = round(floor, 2)
            figures["vs_floor"] = round(run.wall_seconds / floor, 3)
            figures["budget_used"] = round(floor / run.wall_seconds, 3)
            targets += [
                _target(
                    "total time vs Harvest floor",
                    "≤ 1.10×",
                    f"{run.wall_seconds / floor:.2f}×",
                    run.wall_seconds <= 1.1 * floor,
                ),
                _target("429 answers (our own single run)", "0", str(stats["status_429"]), stats["status_429"] == 0),
            ]
        else:
            targets += [
                _target("end to end (no rate limit)", "< 60 s", f"{run.wall_seconds:.1f} s", run.wall_seconds < 60),
                _target("peak RSS of any task", "< 600 MB", f"{run.peak_rss_mb():.0f} MB", run.peak_rss_mb() < 600),
            ]
        self.results[name] = {"figures": figures, "targets": targets, "checks": checks}
        return run

    def rss_growth(self, small: RunResult, big: RunResult) -> None:
        """Peak RSS per task at both sizes: the transform's chunk is the same size at both."""
        s, b = self.sizes.small_label, self.sizes.big_label
        rows = {
            step: {s: round(small.steps[step]["peak_rss_mb"], 1), b: round(big.steps[step]["peak_rss_mb"], 1)}
            for step in big.steps
        }
        growth = max(big.steps[k]["peak_rss_mb"] - small.steps[k]["peak_rss_mb"] for k in big.steps)
        self.results[f"rss-{s}-vs-{b}"] = {
            "figures": {"peak_rss_mb": rows, "max_growth_mb": round(growth, 1)},
            "targets": [
                _target(f"peak RSS growth per task, {s} → {b} entries", "≤ 64 MB", f"{growth:+.0f} MB", growth <= 64)
            ],
            "checks": {"every task measured at both sizes": set(small.steps) == set(big.steps) == set(rows)},
        }

    def daily(self, sim: SimProcess, dsn: str, name: str, change: float) -> None:
        changed = sim.call("change", (change, 11)) if change else 0
        if changed:
            time.sleep(self.sizes.change_settle_seconds)
        sim.call("reset")
        world.remember_row_versions(dsn)
        run = self._run(dsn, sim, world.PROJECT_ID, {"since": None, "clear_data": False}, name)
        written = world.rows_written_since(dsn)
        stats = sim.call("stats")
        extract = run.result("extract")
        load = run.result("load")
        plan = extract["plan"]
        window_from = plan["prune_from"]
        linked = len(self.sizes.harvest_projects)
        users_pages = math.ceil(self.sizes.users / PER_PAGE)
        window_pages = (
            sum(max(1, math.ceil(c / PER_PAGE)) for c in sim.call("count", dt.date.fromisoformat(window_from)).values())
            if window_from
            else 0
        )
        budget = 3 * linked + users_pages + window_pages
        figures = {
            "mode": plan["mode"],
            "changed_in_harvest": changed,
            "requests": stats["requests"],
            "request_budget": budget,
            "budget_parts": {"per_project": 3 * linked, "users_pages": users_pages, "window_pages": window_pages},
            "reconcile_window_from": window_from,
            "entries_fetched": extract["entries_fetched"],
            "rows_written": written,
            "load": {k: v for k, v in load.items() if k != "seconds"},
            "wall_seconds": round(run.wall_seconds, 2),
            "phases": self._phases(run),
        }
        checks = {
            "incremental plan": plan["mode"] == "incremental",
            "work logs written = load's count": written["worklogs"]
            == load["inserted"] + load["updated"] + load["deleted"],
        }
        targets = []
        if not change:
            targets.append(_target("requests", f"≤ {budget}", str(stats["requests"]), stats["requests"] <= budget))
            data_rows = written["worklogs"] + written["assignments"]
            targets.append(_target("work logs + assignments rewritten", "0", str(data_rows), data_rows == 0))
            state_rows = written["skipped_entries"] + written["harvest_users"]
            targets.append(_target("sync-state rows rewritten", "0", str(state_rows), state_rows == 0))
        else:
            checks["changed work logs were written"] = written["worklogs"] > 0
        self.results[name] = {"figures": figures, "targets": targets, "checks": checks}

    def load_vs_copy(self, dsn: str, reset: RunResult) -> None:
        """Our load of the reset's rows (the transform's staging write + the load task) against a plain COPY
        of the same rows into an empty table of work logs' shape (same columns and indexes)."""
        cols = (
            "project_id, employee_id, assignment_id, work_date, hours, description, harvest_time_entry_id, "
            "harvest_project_id, harvest_user_id, synced_at"
        )
        with psycopg.connect(dsn) as conn:
            data = bytearray()
            with conn.cursor().copy(f"COPY (SELECT {cols} FROM primetric.worklogs) TO STDOUT") as copy:
                for block in copy:
                    data += block
            rows = world.scalar(dsn, "SELECT count(*) FROM primetric.worklogs")
            conn.execute("DROP TABLE IF EXISTS public.bench_copy_target")
            conn.execute("CREATE TABLE public.bench_copy_target (LIKE primetric.worklogs INCLUDING ALL)")
            conn.commit()

            def timed_copy() -> float:
                started = time.perf_counter()
                with conn.cursor().copy(f"COPY public.bench_copy_target ({cols}) FROM STDIN") as copy:
                    view = memoryview(data)
                    for k in range(0, len(view), 1 << 20):
                        copy.write(view[k : k + (1 << 20)])
                conn.commit()
                return time.perf_counter() - started

            copy_seconds = timed_copy()
            conn.execute("TRUNCATE public.bench_copy_target")
            # The same COPY with work logs' foreign keys too: what the per-row FK checks cost by themselves.
            for column, parent in (
                ("project_id", "projects"),
                ("employee_id", "employees"),
                ("assignment_id", "assignments"),
            ):
                conn.execute(
                    f"ALTER TABLE public.bench_copy_target ADD FOREIGN KEY ({column}) "
                    f"REFERENCES primetric.{parent} (id)"
                )
            conn.commit()
            copy_fk_seconds = timed_copy()
            conn.execute("DROP TABLE public.bench_copy_target")
            conn.commit()
        transform = reset.result("transform")
        staging_write = float(transform.get("write_seconds", 0.0))
        ours = staging_write + reset.steps["load"]["seconds"]
        ratio = ours / copy_seconds
        self.results["load-vs-copy"] = {
            "figures": {
                "rows": rows,
                "copy_seconds": round(copy_seconds, 2),
                "copy_with_foreign_keys_seconds": round(copy_fk_seconds, 2),
                "ratio_vs_copy_with_foreign_keys": round(ours / copy_fk_seconds, 2),
                "ours_seconds": round(ours, 2),
                "staging_write_seconds": round(staging_write, 2),
                "load_task_seconds": round(reset.steps["load"]["seconds"], 2),
                "ratio": round(ratio, 2),
            },
            # The target compares like with like: a COPY into a table of work logs' full shape, foreign keys
            # included (they are part of the Primetric contract and cost the load ~3x a bare COPY by themselves).
            # The ratio to a bare indexed table stays in the figures.
            "targets": [
                _target(
                    "our load / COPY into the same shape (indexes + foreign keys)",
                    "≤ 2.5",
                    f"{ours / copy_fk_seconds:.2f}",
                    ours / copy_fk_seconds <= 2.5,
                ),
            ],
            "checks": {"staging write time reported by transform": "write_seconds" in transform},
        }

    def parse(self, n: int, shards: int = 1) -> None:
        """The DAG file parsed against a Primetric database of ``n`` linked projects, as the dag-processor does it
        (module, DagBag, serialization), and its CPU share at the recommended min_file_process_interval. With
        ``shards``, the projects are split over that many DAG files (PRIMETRIC_DAG_SHARDS): shard 0's is parsed."""
        name = f"parse-{n}" if shards == 1 else f"parse-{n}-{shards}-shards"
        with world.fresh_database(f"parse_{n}") as dsn:
            world.seed_many_projects(dsn, n)
            with tempfile.TemporaryDirectory(prefix="bench-dag-cache-") as tmp:
                env = {
                    "AIRFLOW_CONN_PRIMETRIC_DB": dsn,
                    "PRIMETRIC_DAG_CACHE": f"{tmp}/cache.json",
                    DAG_SHARDS_ENV: str(shards),
                }
                out = parse_dag_file(
                    env, str(ROOT / "dags" / dag_file(0)), dag_id(shards), repeat=3 if n <= 1000 else 2
                )
        med = {k: _median(v) for k, v in out.items() if isinstance(v, list)}
        parse_wall = med["dagbag_seconds"] + med["serialize_seconds"]
        parse_cpu = med["dagbag_cpu_seconds"] + med["serialize_cpu_seconds"]
        # Every shard file (~n/shards projects each) is parsed each interval: the dag-processor's share of a core.
        share = parse_cpu * shards / MIN_FILE_PROCESS_INTERVAL
        timed_out = out["import_error"] is not None
        self.results[name] = {
            "figures": {
                "linked_projects": n,
                "shards": shards,
                "projects_in_file": n // shards,
                "import_error": out["import_error"],
                "dags": out["dags"],
                "module_seconds_median": round(med["module_seconds"], 3),
                "dagbag_seconds_median": round(med["dagbag_seconds"], 3),
                "serialize_seconds_median": round(med["serialize_seconds"], 3),
                "parse_wall_seconds": round(parse_wall, 3),
                "parse_cpu_seconds": round(parse_cpu, 3),
                "import_timeout_seconds": DAGBAG_IMPORT_TIMEOUT,
                "processor_timeout_seconds": DAG_FILE_PROCESSOR_TIMEOUT,
                "share_of_import_timeout": round(med["dagbag_seconds"] / DAGBAG_IMPORT_TIMEOUT, 3),
                "min_file_process_interval": MIN_FILE_PROCESS_INTERVAL,
                "dag_processor_cpu_share": round(share, 4),
                "dag_processor_cpu_share_at_30s_default": round(parse_cpu * shards / 30, 4),
                # Each task process parses the same file again before its task runs (Airflow's task runner), with
                # the parsing context naming its DAG: the DAG file then builds that one DAG only.
                "task_parse_seconds_median": round(med["task_parse_seconds"], 3),
                **{k: [round(x, 3) for x in v] for k, v in out.items() if isinstance(v, list)},
            },
            "targets": [
                _target(
                    f"DagBag parse vs import timeout {DAGBAG_IMPORT_TIMEOUT} s",
                    "≤ 33%",
                    f"{med['dagbag_seconds']:.1f} s ({med['dagbag_seconds'] / DAGBAG_IMPORT_TIMEOUT:.0%})",
                    med["dagbag_seconds"] <= DAGBAG_IMPORT_TIMEOUT / 3,
                ),
                _target(
                    f"parse + serialize CPU vs processor timeout {DAG_FILE_PROCESSOR_TIMEOUT} s",
                    "≤ 50%",
                    "timed out" if timed_out else f"{parse_cpu:.1f} s ({parse_cpu / DAG_FILE_PROCESSOR_TIMEOUT:.0%})",
                    not timed_out and parse_cpu <= DAG_FILE_PROCESSOR_TIMEOUT / 2,
                ),
                _target(
                    f"dag-processor CPU share, interval {MIN_FILE_PROCESS_INTERVAL} s",
                    "≤ 5% core",
                    f"{share:.1%}",
                    not timed_out and share <= 0.05,
                ),
            ],
            "checks": {
                "one DAG per project of the file, or the import error recorded": timed_out
                or out["dags"] == n // shards,
                "a task's parse builds one DAG": out["task_dags"] == 1,
            },
        }

    def shared_account(self) -> None:
        n_projects, n = self.sizes.shared_projects, self.sizes.shared_entries
        harvest_ids = tuple(3001 + k for k in range(n_projects))
        spec = self._spec(n, harvest_ids, rate_limit=HARVEST_LIMIT)
        with SimProcess(spec) as sim, world.fresh_database("shared") as dsn:
            projects = {101 + k: [h] for k, h in enumerate(harvest_ids)}
            self._prepare(dsn, sim, projects)
            expected = sim.call("count", SINCE)
            sim.call("reset")
            self.say(f"  shared-account: {n_projects} projects, {n:,} entries, one rate-limited account …")
            pool = threading.BoundedSemaphore(POOL_SLOTS)
            runs: dict[int, RunResult] = {}

            def one(project_id: int) -> RunResult:
                run_id = f"bench__shared__{project_id}__{uuid.uuid4().hex[:8]}"
                return run_dag(
                    project_id,
                    run_id,
                    {"since": SINCE.isoformat()},
                    env=self._env(dsn, sim),
                    log_path=self.log_path,
                    harvest_pool=pool,
                )

            started = time.perf_counter()
            with ThreadPoolExecutor(n_projects) as executor:
                for project_id, run in zip(projects, executor.map(one, projects), strict=True):
                    runs[project_id] = run
            wall = time.perf_counter() - started
            stats = sim.call("stats")
            landed = {p: self._landed(dsn, p) for p in projects}
        floor = stats["requests"] / HARVEST_LIMIT[0] * HARVEST_LIMIT[1]
        share = stats["status_429"] / max(1, stats["requests"])
        ok_counts = all(landed[p]["worklogs"] + landed[p]["skipped"] == expected[h[0]] for p, h in projects.items())
        self.results["shared-account"] = {
            "figures": {
                "projects": n_projects,
                "entries": n,
                "pool_slots": POOL_SLOTS,
                "wall_seconds": round(wall, 2),
                "requests": stats["requests"],
                "status_429": stats["status_429"],
                "share_429": round(share, 4),
                "floor_seconds": round(floor, 2),
                "vs_floor": round(wall / floor, 3),
                "peak_rss_mb": round(max(r.peak_rss_mb() for r in runs.values()), 1),
            },
            "targets": [
                _target("requests answered 429", "≤ 2%", f"{share:.1%}", share <= 0.02),
                _target("total time vs floor of all pages", "≤ 1.20×", f"{wall / floor:.2f}×", wall <= 1.2 * floor),
            ],
            "checks": {
                "every project's entries landed or kept aside": ok_counts,
                "hooks and simulator count the same requests": stats["requests"]
                == sum(r.result("extract")["harvest"]["requests"] for r in runs.values()),
            },
        }

    def daily_projects(self, want) -> None:
        """`daily-N-projects` on LocalExecutor and `daily-N-projects-celery` (2 Celery workers): N projects' daily
        runs through the real scheduler (bench/airflow_daily.py)."""
        from bench.airflow_daily import DailySpec, run_daily

        n = self.sizes.daily_projects
        for suffix, executor in (("", "local"), ("-celery", "celery")):
            name = f"daily-{n}-projects{suffix}"
            if not want(name):
                continue
            self.say(f"  {name}: {n} projects' daily runs through the real scheduler ({executor}) …")
            spec = DailySpec(
                projects=n,
                entries_per_project=self.sizes.daily_entries_per_project,
                users=self.sizes.daily_users,
                rate_limit=HARVEST_LIMIT,
                executor=executor,
                workers=2,
                timeout_seconds=self.daily_budget or (3600 if n > 20 else 600),
            )
            self.results[name] = run_daily(spec, say=self.say)

    # -- the whole benchmark ---------------------------------------------------------------------
    def run_all(self, only: set[str] | None = None, skip: set[str] = frozenset()) -> dict[str, dict]:
        from bench.steps import warm_up

        self.say(f"  fork server ready in {warm_up():.1f} s (task processes fork from it)")
        sizes = self.sizes
        small_label, big_label = sizes.small_label, sizes.big_label
        want = lambda name: (only is None or name in only) and name not in skip  # noqa: E731
        harvest = sizes.harvest_projects
        small_run = None
        if want(f"reset-{small_label}") or want(f"reset-{big_label}"):
            with SimProcess(self._spec(sizes.small, harvest)) as sim, world.fresh_database("small") as dsn:
                small_run = self.reset_scenario(sim, dsn, f"reset-{small_label}", rate_limited=False)
        if any(
            want(x)
            for x in (
                f"reset-{big_label}",
                "daily-no-change",
                "daily-1pct-change",
                "load-vs-copy",
                f"reset-{big_label}-ratelimited",
            )
        ):
            with SimProcess(self._spec(sizes.big, harvest)) as sim:
                with world.fresh_database("big") as dsn:
                    big_run = self.reset_scenario(sim, dsn, f"reset-{big_label}", rate_limited=False)
                    if small_run is not None:
                        self.rss_growth(small_run, big_run)
                    if want("load-vs-copy"):
                        self.say("  load-vs-copy …")
                        self.load_vs_copy(dsn, big_run)
                    if want("daily-no-change"):
                        self.say("  daily-no-change …")
                        self.daily(sim, dsn, "daily-no-change", 0.0)
                    if want("daily-1pct-change"):
                        self.say("  daily-1pct-change …")
                        self.daily(sim, dsn, "daily-1pct-change", sizes.change_fraction)
                if want(f"reset-{big_label}-ratelimited"):
                    sim.call("rate_limit", HARVEST_LIMIT)
                    with world.fresh_database("ratelimited") as dsn:
                        self.reset_scenario(sim, dsn, f"reset-{big_label}-ratelimited", rate_limited=True)
        for n, shards in sizes.parse_sizes:
            name = f"parse-{n}" if shards == 1 else f"parse-{n}-{shards}-shards"
            if want(name):
                self.say(f"  {name} …")
                self.parse(n, shards)
        if want("shared-account"):
            self.shared_account()
        self.daily_projects(want)
        return self.results


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _target(what: str, target: str, figure: str, met: bool) -> dict:
    return {"what": what, "target": target, "figure": figure, "met": bool(met)}

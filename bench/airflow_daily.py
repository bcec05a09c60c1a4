"""`daily-N-projects`: N linked projects' daily runs through the real scheduler (scripts/airflow_local.py's stack).

The stack of `make airflow` (api-server, scheduler, dag-processor, triggerer; LocalExecutor, or Celery when the
launcher offers it) on free ports, its own metadata and Primetric databases (dropped afterwards), and the bench's
Harvest simulator (own process, Harvest's rate limit) instead of the demo one. N projects are seeded with their
daily schedule armed two days ago, so unpausing their DAGs makes the scheduler create each one's due daily run at
once: nothing is triggered by hand. Figures come from the metadata database (dag_run, task_instance), the
simulator's request log and /proc (psutil) of the stack's processes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

from bench import world
from bench.scenarios import _target
from bench.simproc import SimProcess, SimSpec
from primetric_harvest.names import dag_id
from scripts.airflow_local import AirflowLocal

FIRST_PROJECT = 10_001  # Primetric ids of the bench's projects (the demo seed's are 1, 2, …)
FIRST_HARVEST_PROJECT = 50_001
WINDOW_DAYS = 60  # the default reconcile window: the simulator's entries span it, as a daily run reads it
TASKS = ("extract", "transform", "load", "report")
UPSTREAM = {"transform": "extract", "load": "transform", "report": "load"}
BENCH_BROKER_DB = 6  # make airflow uses 5, the tests 11


@dataclass(frozen=True)
class DailySpec:
    projects: int
    entries_per_project: int
    users: int
    rate_limit: tuple[int, float] | None
    executor: str = "local"
    workers: int = 2
    timeout_seconds: float = 3600.0


class _BenchAirflow(AirflowLocal):
    """The launcher's stack with the bench's simulator (already running) as Harvest."""

    sim: SimProcess | None = None

    def _start_simulator(self) -> None:  # the bench's simulator runs in its own process already
        assert self.sim is not None
        self.harvest_url = self.sim.url

    def env(self) -> dict[str, str]:
        env = super().env()
        if self.sim is not None:
            env["AIRFLOW_CONN_HARVEST_DEFAULT"] = json.dumps(self.sim.connection())
        return env


@dataclass
class _Sampler:
    """Peak RSS of each worker (its whole process tree: the worker and the task processes it runs), sampled."""

    server: AirflowLocal
    executor: str
    interval: float = 0.5
    peaks: dict[str, float] = field(default_factory=dict)
    task_peak_mb: float = 0.0
    samples: int = 0
    peak_connections: dict[str, int] = field(default_factory=dict)  # "metadata" / "primetric" → peak
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _pg: psycopg.Connection | None = None

    def _roots(self) -> dict[str, psutil.Process]:
        if self.executor == "local":  # LocalExecutor: the scheduler's worker processes
            scheduler = self.server.procs.get("scheduler")
            if scheduler is None:
                return {}
            roots = {}
            try:
                for child in psutil.Process(scheduler.pid).children():
                    title = " ".join(child.cmdline())
                    if "serve" not in title:  # the scheduler's log server is no worker
                        roots[f"local-worker-{child.pid}"] = child
            except psutil.NoSuchProcess:
                pass
            return roots
        roots = {}
        for name, proc in self.server.procs.items():
            if name in self.server.worker_names:  # not their log servers (worker-N-logs)
                try:
                    roots[name] = psutil.Process(proc.pid)
                except psutil.NoSuchProcess:
                    pass
        return roots

    def _sample(self) -> None:
        for name, root in self._roots().items():
            total = 0.0
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for proc in tree:
                try:
                    rss = proc.memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
                total += rss
                if proc is not root:
                    self.task_peak_mb = max(self.task_peak_mb, rss)
            self.peaks[name] = max(self.peaks.get(name, 0.0), total)
        self.samples += 1
        if self._pg is not None:
            rows = self._pg.execute(
                "SELECT datname, count(*) FROM pg_stat_activity WHERE datname = ANY(%s) GROUP BY datname",
                ([self.server.meta_db, self.server.primetric_db],),
            ).fetchall()
            for datname, count in rows:
                key = "metadata" if datname == self.server.meta_db else "primetric"
                self.peak_connections[key] = max(self.peak_connections.get(key, 0), count)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> _Sampler:
        # PostgreSQL connections of the stack and its tasks, per database (ours is to "postgres", not counted).
        self._pg = psycopg.connect(f"{self.server.server}/postgres", autocommit=True)
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._pg is not None:
            self._pg.close()


def _cpu(proc: psutil.Process, children: bool) -> float:
    t = proc.cpu_times()
    return t.user + t.system + ((t.children_user + t.children_system) if children else 0.0)


def _cpu_of(server: AirflowLocal) -> dict[str, float]:
    out = {}
    for name, children in (("scheduler", False), ("dag-processor", True), ("api-server", True), ("triggerer", False)):
        proc = server.procs.get(name)
        if proc is None:
            continue
        try:
            out[name] = _cpu(psutil.Process(proc.pid), children)
        except psutil.NoSuchProcess:
            pass
    return out


def _seed(dsn: str, sim: SimProcess, spec: DailySpec, since: dt.date) -> dict[int, int]:
    """N linked projects, one Harvest project each, daily schedule armed two days ago. {project: harvest project}."""
    world.seed_people(dsn, sim.call("users"))
    projects = {FIRST_PROJECT + k: FIRST_HARVEST_PROJECT + k for k in range(spec.projects)}
    for project_id, harvest_id in projects.items():
        world.seed_project(dsn, project_id, [harvest_id], start=since)
    world.execute(
        dsn,
        "UPDATE primetric.harvest_settings SET daily_schedule = true, "
        "daily_schedule_since = date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '2 days' "
        "WHERE project_id = ANY(%s)",
        (list(projects),),
    )
    return projects


def _wait_for_dags(server: AirflowLocal, dag_ids: list[str], timeout: float) -> None:
    """Until the dag-processor has written every DAG (read from the metadata database: the REST API's DAG list
    stops at [api] maximum_page_limit, 100 by default)."""
    deadline = time.monotonic() + timeout
    found = 0
    while time.monotonic() < deadline:
        server._check_services()
        with psycopg.connect(server.meta_dsn) as conn:
            found = conn.execute(
                "SELECT count(*) FROM dag WHERE dag_id = ANY(%s) AND NOT is_stale", (dag_ids,)
            ).fetchone()[0]
        if found == len(dag_ids):
            return
        time.sleep(2)
    raise TimeoutError(f"{found} of {len(dag_ids)} DAGs parsed after {timeout:.0f} s")


def _wait_for_runs(server: AirflowLocal, dag_ids: list[str], spec: DailySpec, say) -> dict[str, int]:
    deadline = time.monotonic() + spec.timeout_seconds
    last_said = 0.0
    states: dict[str, int] = {}
    while time.monotonic() < deadline:
        server._check_services()
        with psycopg.connect(server.meta_dsn) as conn:
            states = dict(
                conn.execute(
                    "SELECT state, count(*) FROM dag_run WHERE dag_id = ANY(%s) GROUP BY state", (dag_ids,)
                ).fetchall()
            )
        done = states.get("success", 0) + states.get("failed", 0)
        if done >= len(dag_ids):
            return states
        if time.monotonic() - last_said > 60:
            say(f"    {done} of {len(dag_ids)} runs done ({states})")
            last_said = time.monotonic()
        time.sleep(2)
    # Out of time: the figures describe what finished (the throughput of a steady state), and say so.
    say(f"    time budget of {spec.timeout_seconds:.0f} s spent: measuring the runs done so far ({states})")
    return states


def _timings(meta_dsn: str, dag_ids: list[str]) -> dict:
    with psycopg.connect(meta_dsn) as conn:
        runs = conn.execute(
            "SELECT dag_id, run_type, state, queued_at, start_date, end_date FROM dag_run WHERE dag_id = ANY(%s)",
            (dag_ids,),
        ).fetchall()
        tis = conn.execute(
            "SELECT dag_id, task_id, state, queued_dttm, start_date, end_date, duration, try_number, hostname "
            "FROM task_instance WHERE dag_id = ANY(%s)",
            (dag_ids,),
        ).fetchall()
    return {"runs": runs, "tis": tis}


def run_daily(spec: DailySpec, say=print) -> dict:
    """One measurement: returns the scenario's figures, targets and checks (the runner prints them)."""
    today = dt.datetime.now(dt.UTC).date()
    since = today - dt.timedelta(days=WINDOW_DAYS - 1)
    harvest_ids = tuple(FIRST_HARVEST_PROJECT + k for k in range(spec.projects))
    sim_spec = SimSpec(
        n_entries=spec.projects * spec.entries_per_project,
        n_users=spec.users,
        project_ids=harvest_ids,
        start=since,
        end=today - dt.timedelta(days=1),
        rate_limit=spec.rate_limit,
    )
    tag = uuid.uuid4().hex[:8]
    kwargs: dict = {}
    if spec.executor != "local":
        # A Redis database of its own: the launcher's default one is `make airflow EXECUTOR=celery`'s queue, and
        # each stack flushes its broker database at start.
        kwargs = {"executor": spec.executor, "workers": spec.workers, "broker_db": BENCH_BROKER_DB}
    with SimProcess(sim_spec) as sim, tempfile.TemporaryDirectory(prefix="bench-airflow-") as home:
        server = _BenchAirflow(
            home=Path(home),
            port=0,
            meta_db=f"bench_af_meta_{tag}",
            primetric_db=f"bench_af_primetric_{tag}",
            fresh=True,
            drop_databases=True,
            quiet=True,
            **kwargs,
        )
        server.sim = sim
        world.CREATED.extend([server.meta_db, server.primetric_db])
        try:
            started = time.perf_counter()
            server.start()
            projects = _seed(server.primetric_dsn, sim, spec, since)
            dag_ids = [dag_id(p) for p in projects]
            server.wait_healthy()
            _wait_for_dags(server, dag_ids, timeout=600)
            say(f"    stack ready, {len(dag_ids)} DAGs parsed in {time.perf_counter() - started:.0f} s; unpausing")
            expected = sim.call("count", since)
            sim.call("reset")
            api = server.session()
            cpu_before = _cpu_of(server)
            with _Sampler(server, spec.executor) as sampler:
                for d in dag_ids:  # the scheduler then creates each DAG's due daily run
                    answer = api.patch(f"{server.url}/api/v2/dags/{d}", json={"is_paused": False}, timeout=30)
                    answer.raise_for_status()
                states = _wait_for_runs(server, dag_ids, spec, say)
            cpu_after = _cpu_of(server)
            stats = sim.call("stats")
            timings = _timings(server.meta_dsn, dag_ids)
            with psycopg.connect(server.primetric_dsn) as conn:
                landed = dict(
                    conn.execute(
                        "SELECT p, sum(n)::bigint FROM ("
                        " SELECT project_id AS p, count(*) AS n FROM primetric.worklogs"
                        "  WHERE harvest_time_entry_id IS NOT NULL AND project_id = ANY(%s) GROUP BY 1"
                        " UNION ALL SELECT project_id, count(*) FROM harvest_sync.skipped_entries"
                        "  WHERE project_id = ANY(%s) GROUP BY 1) x GROUP BY p",
                        (list(projects), list(projects)),
                    ).fetchall()
                )
            parallelism = server.parallelism
        finally:
            server.stop()
    observed = _Observed(
        projects, expected, landed, states, stats, timings, sampler, cpu_before, cpu_after, parallelism
    )
    return _figures(spec, observed)


@dataclass(frozen=True)
class _Observed:
    """What one measurement collected, before it becomes figures."""

    projects: dict[int, int]  # Primetric project → its Harvest project
    expected: dict[int, int]  # Harvest project → entries the simulator holds
    landed: dict[int, int]  # Primetric project → work logs + entries kept aside
    states: dict[str, int]  # dag_run state → runs
    stats: dict  # the simulator's request counts
    timings: dict  # dag_run and task_instance rows
    sampler: _Sampler
    cpu_before: dict[str, float]
    cpu_after: dict[str, float]
    parallelism: int


def _figures(spec: DailySpec, o: _Observed) -> dict:
    projects, expected, landed, states, stats, sampler = o.projects, o.expected, o.landed, o.states, o.stats, o.sampler
    cpu_before, cpu_after, parallelism = o.cpu_before, o.cpu_after, o.parallelism
    all_runs, all_tis = o.timings["runs"], o.timings["tis"]
    first_queued = min(r[3] for r in all_runs if r[3] is not None)
    runs = [r for r in all_runs if str(r[2]) in ("success", "failed")]  # finished runs
    tis = [t for t in all_tis if t[5] is not None and str(t[2]) in ("success", "failed")]  # finished tasks
    complete = len(runs) == len(o.projects)
    # All done: first run queued → last run done. Out of time: → the last task that finished.
    last_done = max(r[5] for r in runs if r[5] is not None) if complete else max(t[5] for t in tis)
    wall = (last_done - first_queued).total_seconds()
    n_ti = len(tis)
    durations = [t[6] or 0.0 for t in tis]
    end_of = {(t[0], t[1]): t[5] for t in tis}
    run_start = {r[0]: r[4] for r in runs}
    # Executor + worker: queued → running (the worker picked it up and its task process started).
    start_latency = [(t[4] - t[3]).total_seconds() for t in tis if t[3] and t[4]]
    # Scheduler: upstream done → this task queued (extract: its run started → queued, which includes waiting for
    # a harvest_api pool slot).
    sched_gap = [
        (t[3] - end_of[(t[0], UPSTREAM[t[1]])]).total_seconds()
        for t in tis
        if t[1] in UPSTREAM and t[3] and end_of.get((t[0], UPSTREAM[t[1]]))
    ]
    extract_wait = [
        (t[3] - run_start[t[0]]).total_seconds()
        for t in tis
        if t[1] == "extract" and t[3] and run_start.get(t[0])  # out of time: tasks of runs not done have no run row
    ]
    per_task = {
        task: round(sum(t[6] or 0.0 for t in tis if t[1] == task) / max(1, sum(1 for t in tis if t[1] == task)), 2)
        for task in TASKS
    }
    cpu = {k: round(cpu_after.get(k, 0.0) - cpu_before.get(k, 0.0), 1) for k in cpu_after}
    n_projects = len(projects)
    users_pages = math.ceil(spec.users / 2000)
    window_pages = max(1, math.ceil(spec.entries_per_project / 2000))
    budget = 3 + users_pages + window_pages  # users/me, users pages, the window's pages (+ the older-changes query)
    extracts_done = max(1, sum(1 for t in tis if t[1] == "extract"))
    per_project = stats["requests"] / extracts_done  # each finished extract is one project's requests
    floor = stats["requests"] / spec.rate_limit[0] * spec.rate_limit[1] if spec.rate_limit else 0.0
    projects_per_hour = n_ti / len(TASKS) / wall * 3600  # project runs' worth of finished tasks per hour
    figures = {
        "executor": spec.executor,
        "workers": spec.workers if spec.executor != "local" else 1,
        "parallelism": parallelism,
        "projects": n_projects,
        "entries_per_project": spec.entries_per_project,
        "complete": complete,
        "runs": len(all_runs),
        "runs_done": len(runs),
        "run_types": sorted({str(r[1]) for r in runs}),
        "run_states": {str(k): v for k, v in states.items()},
        "wall_seconds": round(wall, 1),
        "task_instances": n_ti,
        "ti_per_minute": round(n_ti / wall * 60, 1),
        "projects_per_hour": round(projects_per_hour),
        "task_seconds_sum": round(sum(durations), 1),
        "task_seconds_per_wall_second": round(sum(durations) / wall, 2),
        "task_seconds_mean": per_task,
        "slot_idle_seconds_per_task": round((wall * parallelism - sum(durations)) / n_ti, 2),
        "queued_to_running_seconds_mean": round(sum(start_latency) / max(1, len(start_latency)), 2),
        "upstream_done_to_queued_seconds_mean": round(sum(sched_gap) / max(1, len(sched_gap)), 2),
        "run_start_to_extract_queued_seconds_mean": round(sum(extract_wait) / max(1, len(extract_wait)), 2),
        "cpu_seconds": cpu,
        "scheduler_cpu_seconds_per_task": round(cpu.get("scheduler", 0.0) / n_ti, 3),
        "api_server_cpu_seconds_per_task": round(cpu.get("api-server", 0.0) / n_ti, 3),
        "harvest_requests": stats["requests"],
        "harvest_requests_per_project": round(per_project, 2),
        "status_429": stats["status_429"],
        "harvest_floor_seconds": round(floor, 1),
        "peak_rss_mb_per_worker": {k: round(v) for k, v in sorted(sampler.peaks.items())},
        "peak_rss_mb_task_process": round(sampler.task_peak_mb),
        "peak_postgres_connections": dict(sampler.peak_connections),
        "rss_samples": sampler.samples,
        "retries": sum(1 for t in tis if (t[7] or 1) > 1),
        "hostnames": sorted({t[8] for t in tis if t[8]}),
    }
    done = {int(str(r[0]).removeprefix("harvest_sync_")) for r in runs}
    want = {p: expected[h] for p, h in projects.items() if p in done}
    checks = {
        "every finished run succeeded": all(str(r[2]) == "success" for r in runs) and bool(runs),
        "runs created by the scheduler": {str(r[1]) for r in all_runs} == {"scheduled"},
        "every finished project's entries landed or kept aside": all(landed.get(p, 0) == n for p, n in want.items()),
        "four task instances per finished run": all(sum(1 for t in tis if t[0] == r[0]) == len(TASKS) for r in runs),
        "worker RSS sampled": bool(sampler.peaks),
        "PostgreSQL connections sampled": bool(sampler.peak_connections),
    }
    targets = [
        _target(
            "runs done within the time budget",
            f"{n_projects}",
            f"{len(runs)} in {spec.timeout_seconds:.0f} s",
            complete,
        ),
        _target("429 answers", "0", str(stats["status_429"]), stats["status_429"] == 0),
        _target("Harvest requests per project", f"≤ {budget}", f"{per_project:.1f}", per_project <= budget),
    ]
    return {"figures": figures, "targets": targets, "checks": checks}

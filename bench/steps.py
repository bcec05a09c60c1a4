"""Each pipeline step in its own process, forked from a server that has the task's imports loaded."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import threading
import time
from dataclasses import dataclass, field

_lock = threading.Lock()
_ctx = None


def context():
    global _ctx
    with _lock:
        if _ctx is None:
            _ctx = mp.get_context("forkserver")
            _ctx.set_forkserver_preload(["bench.child"])
        return _ctx


def shutdown() -> None:
    """Stop the fork server (it would otherwise live as long as this process)."""
    global _ctx
    with _lock:
        if _ctx is not None:
            from multiprocessing import forkserver

            forkserver._forkserver._stop()
            _ctx = None


class StepFailed(RuntimeError):
    pass


def _call(target, args: tuple, what: str, timeout: float) -> dict:
    ctx = context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(child, *args), name=what)
    started = time.perf_counter()
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise StepFailed(f"{what} did not finish within {timeout:.0f} s")
        answer = parent.recv()
    except EOFError:
        answer = {"ok": False, "error": f"{what} died (exit code {proc.exitcode})", "traceback": ""}
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        parent.close()
    answer["wall_seconds"] = time.perf_counter() - started
    if not answer.get("ok"):
        raise StepFailed(f"{what} failed: {answer.get('error')}\n{answer.get('traceback', '')}")
    return answer


def run_step(step: str, env: dict, log_path: str, timeout: float = 900, **kwargs) -> dict:
    from bench.child import run_step as target

    return _call(target, (env, log_path, step, kwargs), f"step {step} of project {kwargs.get('project_id')}", timeout)


def warm_up() -> float:
    """Start the fork server (it imports what a task process has) before anything is timed."""
    from bench.child import noop

    return _call(noop, (), "warm-up", 300)["wall_seconds"]


def parse_dag_file(env: dict, dag_file: str, task_dag_id: str, repeat: int = 3) -> dict:
    from bench.child import parse_dag_file as target

    return _call(target, (env, dag_file, repeat, task_dag_id), "DAG file parse", 900)


@dataclass
class RunResult:
    """One DAG run: extract → transform → load → report, each step in its own process."""

    steps: dict[str, dict] = field(default_factory=dict)
    wall_seconds: float = 0.0

    def result(self, step: str) -> dict:
        return self.steps[step]["result"]

    def peak_rss_mb(self) -> float:
        return max(s["peak_rss_mb"] for s in self.steps.values())


def run_dag(
    project_id: int,
    run_id: str,
    params: dict,
    *,
    env: dict,
    log_path: str,
    harvest_pool: contextlib.AbstractContextManager | None = None,
) -> RunResult:
    """One DAG run, each task in its own process; ``harvest_pool`` stands for the `harvest_api` pool slot."""
    run = RunResult()
    started = time.perf_counter()
    common = {"env": env, "log_path": log_path, "project_id": project_id, "run_id": run_id, "params": params}
    with harvest_pool or contextlib.nullcontext():
        run.steps["extract"] = run_step("extract", **common)
    extracted = run.steps["extract"]["result"]
    run.steps["transform"] = run_step("transform", extracted=extracted, **common)
    run.steps["load"] = run_step("load", extracted=extracted, **common)
    transformed, loaded = run.steps["transform"]["result"], run.steps["load"]["result"]
    run.steps["report"] = run_step("report", extracted=extracted, transformed=transformed, loaded=loaded, **common)
    run.wall_seconds = time.perf_counter() - started
    return run

"""What a task process has imported before its task runs: preloaded once by the fork server, so each
step process starts like an executor's forked task process (Airflow, pandas and the sync imported)."""

from __future__ import annotations

import json
import logging
import os
import resource
import time
import traceback

import airflow.sdk  # noqa: F401 - the task process has Airflow imported
import pandas  # noqa: F401
import psutil
import psycopg  # noqa: F401

from primetric_harvest import pipeline


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _xcom(value):
    """What an XCom round trip leaves of a task's return value (JSON)."""
    return json.loads(json.dumps(value, default=str))


def run_step(conn, env: dict, log_path: str, step: str, kwargs: dict) -> None:
    """One pipeline step, called the way the DAG's task calls it; sends back its result and resources."""
    os.environ.update(env)
    logging.basicConfig(
        filename=log_path,
        level=logging.INFO,
        format=f"%(asctime)s {step} %(levelname)s %(name)s: %(message)s",
        force=True,  # the task's log goes to the file, not to the benchmark's table
    )
    start_rss = _rss_mb()
    started = time.perf_counter()
    try:
        project_id, run_id = kwargs["project_id"], kwargs["run_id"]
        if step == "extract":
            result = pipeline.extract(project_id, run_id, kwargs["params"], harvest_conn_id="harvest_default")
        elif step == "transform":
            result = pipeline.transform(project_id, run_id, kwargs["extracted"])
        elif step == "load":
            result = pipeline.load(project_id, run_id, kwargs["extracted"], account_id=kwargs["account_id"])
        elif step == "report":
            result = pipeline.report(project_id, account_id=kwargs["account_id"])
        else:
            raise ValueError(f"unknown step {step!r}")
        seconds = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_SELF)
        conn.send(
            {
                "ok": True,
                "result": _xcom(result),
                "seconds": seconds,
                "peak_rss_mb": usage.ru_maxrss / 1024,
                "start_rss_mb": start_rss,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
            }
        )
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})


def noop(conn) -> None:
    conn.send({"ok": True})


def parse_dag_file(conn, env: dict, dag_file: str, repeat: int) -> None:
    """Parse time of the DAG file in a process that has already imported Airflow (the dag-processor's view)."""
    os.environ.update(env)
    try:
        import importlib.util

        from airflow.dag_processing.dagbag import DagBag

        module_seconds, dagbag_seconds, dags = [], [], 0
        for k in range(repeat):
            spec = importlib.util.spec_from_file_location(f"bench_dag_parse_{k}", dag_file)
            module = importlib.util.module_from_spec(spec)
            started = time.perf_counter()
            spec.loader.exec_module(module)
            module_seconds.append(time.perf_counter() - started)
            started = time.perf_counter()
            bag = DagBag(dag_folder=dag_file)
            dagbag_seconds.append(time.perf_counter() - started)
            dags = len(bag.dags)
            if bag.import_errors:
                raise RuntimeError(f"the DAG file did not parse: {bag.import_errors}")
        conn.send({"ok": True, "module_seconds": module_seconds, "dagbag_seconds": dagbag_seconds, "dags": dags})
    except BaseException as exc:  # noqa: BLE001
        conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})

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

from primetric_harvest import tasks
from primetric_harvest.results import Extracted, Loaded, Transformed, from_xcom, to_xcom


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _xcom(value):
    """What an XCom round trip leaves of a task's return value (JSON)."""
    return json.loads(json.dumps(to_xcom(value)))


def run_step(conn, env: dict, log_path: str, step: str, kwargs: dict) -> None:
    """One step, called the way the DAG's task calls it (primetric_harvest.tasks); sends back its result (as
    XCom) and the resources it used."""
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
        run = tasks.SyncRun(kwargs["project_id"], f"Project {kwargs['project_id']}", kwargs["run_id"], kwargs["params"])
        extracted = from_xcom(Extracted, kwargs["extracted"]) if step != "extract" else None
        if step == "extract":
            result = tasks.extract(run)
        elif step == "transform":
            result = tasks.transform(run, extracted)
        elif step == "load":
            result = tasks.load(run, extracted)
        elif step == "report":
            transformed, loaded = from_xcom(Transformed, kwargs["transformed"]), from_xcom(Loaded, kwargs["loaded"])
            result = tasks.report(run, extracted, transformed, loaded)[0]
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


def parse_dag_file(conn, env: dict, dag_file: str, repeat: int, task_dag_id: str) -> None:
    """Parse time of the DAG file in a process that has already imported Airflow (the dag-processor's view):
    executing the module, Airflow's DagBag of it, and the serialization the dag-processor's parse process does
    before it hands the DAGs over (``_serialize_dags``); wall and CPU seconds of each."""
    os.environ.update(env)
    try:
        import importlib.util

        from airflow.dag_processing.dagbag import DagBag
        from airflow.dag_processing.processor import _serialize_dags

        out: dict[str, list[float]] = {
            k: []
            for k in (
                "module_seconds",
                "dagbag_seconds",
                "dagbag_cpu_seconds",
                "serialize_seconds",
                "serialize_cpu_seconds",
            )
        }
        dags, import_error = 0, None
        for k in range(repeat):
            spec = importlib.util.spec_from_file_location(f"bench_dag_parse_{k}", dag_file)
            module = importlib.util.module_from_spec(spec)
            started = time.perf_counter()
            spec.loader.exec_module(module)
            out["module_seconds"].append(time.perf_counter() - started)
            started, cpu = time.perf_counter(), time.process_time()
            bag = DagBag(dag_folder=dag_file)
            out["dagbag_seconds"].append(time.perf_counter() - started)
            out["dagbag_cpu_seconds"].append(time.process_time() - cpu)
            dags = len(bag.dags)
            if bag.import_errors:  # e.g. Airflow's dagbag_import_timeout: a figure of its own, not a crash
                error = next(iter(bag.import_errors.values())).strip().splitlines()
                import_error = next((line for line in error if "import timeout" in line.lower()), error[-1])
                break
            started, cpu = time.perf_counter(), time.process_time()
            _serialize_dags(bag, logging.getLogger("bench.parse"))  # type: ignore[arg-type]
            out["serialize_seconds"].append(time.perf_counter() - started)
            out["serialize_cpu_seconds"].append(time.process_time() - cpu)
        # What a task process pays: the same file parsed for one DAG (Airflow's parsing context names it).
        from airflow.sdk.definitions.context import _AIRFLOW_PARSING_CONTEXT_DAG_ID

        out["task_parse_seconds"] = []
        os.environ[_AIRFLOW_PARSING_CONTEXT_DAG_ID] = task_dag_id
        try:
            for _ in range(repeat):
                started = time.perf_counter()
                task_bag = DagBag(dag_folder=dag_file)
                out["task_parse_seconds"].append(time.perf_counter() - started)
        finally:
            os.environ.pop(_AIRFLOW_PARSING_CONTEXT_DAG_ID, None)
        task_dags = len(task_bag.dags)
        conn.send({"ok": True, "dags": dags, "task_dags": task_dags, "import_error": import_error, **out})
    except BaseException as exc:  # noqa: BLE001
        conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})

"""A real Airflow 3 for tests: ``make airflow``'s launcher (scripts/airflow_local.py) on free ports.

Fixture ``airflow_server`` (session-scoped: started once, ~40-60 s, shared by every test that asks for it):
api-server, scheduler, dag-processor, triggerer (LocalExecutor), its own metadata database, the Harvest
simulator (demo scenario) and a fresh demo Primetric database, all in a temp AIRFLOW_HOME. Teardown stops
every process (also when a test failed, on SIGTERM, or at interpreter exit) and drops both databases.

    def test_x(airflow_server):
        api = airflow_server.session()            # requests.Session with admin's Bearer token
        api.get(f"{airflow_server.url}/api/v2/dags")
        run_id = trigger(airflow_server, "harvest_sync_1", {"since": "2026-09-01"})
        assert wait_for_run(airflow_server, "harvest_sync_1", run_id)["state"] == "success"

``airflow_server.passwords`` holds the logins (users ``admin`` and ``viewer``), ``.primetric_dsn`` the demo
Primetric database, ``.harvest_url`` the simulator, ``.log_dir`` every process's log.

Fixture ``airflow_fab_server`` (module-scoped: started once for the module that asks for it, stopped after it,
so two stacks do not run side by side for the rest of the session): the same with the FAB auth manager,
``make airflow AUTH=fab``'s launcher; users ``admin`` (FAB role Admin) and ``viewer`` (Viewer) created through
FAB.

Fixture ``airflow_celery_server`` (module-scoped, like the FAB one): ``make airflow EXECUTOR=celery WORKERS=2``'s
launcher: CeleryExecutor, Redis database :data:`TEST_BROKER_DB` as broker, two Celery workers (``worker-1`` at
127.0.0.2, ``worker-2`` at 127.0.0.3, each with its own home), a short task heartbeat timeout and retry delay
(:data:`CELERY_TEST_ENV`) so that a killed worker's task is retried within the test. ``kill_worker(name)``,
``start_worker(name, overrides)`` and ``wait_workers([name])`` stop and restart one worker.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
import time
import urllib.parse

import pytest

from scripts.airflow_local import AirflowLocal, _ours

DEMO_DAGS = ("harvest_sync_1", "harvest_sync_2")  # the enabled projects of include/sql/demo_seed.sql
HARVEST_RATE_LIMIT = (10, 5.0)  # the Celery test stack's Harvest account: 10 requests per 5 s, enforced
TEST_BROKER_DB = 11  # the tests' Redis database (make airflow's is 5)
HEARTBEAT_TIMEOUT_S = 20  # [scheduler] task_instance_heartbeat_timeout of the Celery test stack (default 300)
RETRY_DELAY_S = 6  # every task's retry delay on the Celery test stack (the DAGs' own: minutes)
CELERY_TEST_ENV = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    "AIRFLOW_LOCAL_RETRY_DELAY": str(RETRY_DELAY_S),  # scripts/local_settings/airflow_local_settings.py
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",  # projects linked by a test show up sooner
}
TERMINAL = {"success", "failed"}


@pytest.fixture(scope="session")
def airflow_server(tmp_path_factory) -> AirflowLocal:
    with _running(tmp_path_factory, auth="simple", suffix="") as server:
        yield server


@pytest.fixture(scope="module")
def airflow_fab_server(tmp_path_factory) -> AirflowLocal:
    with _running(tmp_path_factory, auth="fab", suffix="fab_") as server:
        yield server


@pytest.fixture(scope="module")
def airflow_celery_server(tmp_path_factory) -> AirflowLocal:
    with _running(
        tmp_path_factory,
        auth="simple",
        suffix="celery_",
        executor="celery",
        workers=2,
        broker_db=TEST_BROKER_DB,
        extra_env=CELERY_TEST_ENV,
        harvest_rate_limit=HARVEST_RATE_LIMIT,
    ) as server:
        yield server


@contextlib.contextmanager
def _running(tmp_path_factory, auth: str, suffix: str, **options):
    """A started, healthy AirflowLocal with the demo DAGs parsed; stopped (databases dropped) afterwards.
    ``options``: more AirflowLocal fields (executor, workers, ...)."""
    server = AirflowLocal(
        home=tmp_path_factory.mktemp(f"airflow-local-{suffix or auth}"),
        port=0,
        meta_db=f"airflow_meta_{suffix}t_{os.getpid()}",
        primetric_db=f"primetric_af_{suffix}t_{os.getpid()}",
        fresh=True,
        drop_databases=True,
        quiet=True,
        auth=auth,
        **options,
    )
    atexit.register(server.stop)  # even if the session dies before the teardown below
    previous = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a CI timeout) would skip teardown: turn it into an exception that runs it.
        def _terminate(signum, frame):
            raise SystemExit(f"terminated by signal {signum}")

        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        server.start()
        server.wait_healthy()
        server.wait_for_dags(DEMO_DAGS)
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        left = _ours(server.marker, server._groups())
        assert not left, f"processes left behind by the Airflow under test: {left}"


def run_path(dag_id: str, run_id: str) -> str:
    """The REST path of one DAG run: run ids hold ':' and '+', so they are URL-encoded."""
    return f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"


def trigger(server: AirflowLocal, dag_id: str, conf: dict | None = None, user: str = "admin") -> str:
    """Trigger ``dag_id`` through the REST API (it must be unpaused to run); returns the run id."""
    answer = server.session(user).post(
        f"{server.url}/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["dag_run_id"]


def task_log(server: AirflowLocal, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
    """A task's log read through the REST API, as text (one line per structured log event)."""
    answer = server.session().get(
        f"{server.url}{run_path(dag_id, run_id)}/taskInstances/{task_id}/logs/{try_number}",
        params={"full_content": "true"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    content = answer.json()["content"]
    return "\n".join(e.get("event", "") if isinstance(e, dict) else str(e) for e in content)


def wait_for_run(server: AirflowLocal, dag_id: str, run_id: str, timeout: float = 150.0) -> dict:
    """Poll the run until it succeeds or fails; returns the run.

    Fails the test on timeout, and at once when a task fails or waits for a retry (the DAG retries after
    minutes): the message holds that task's log, read through the API.
    """
    api = server.session()
    deadline = time.monotonic() + timeout
    run: dict = {}
    while time.monotonic() < deadline:
        # A long read timeout: the API server's first task start after it started blocks it for seconds.
        answer = api.get(server.url + run_path(dag_id, run_id), timeout=60)
        assert answer.status_code == 200, answer.text
        run = answer.json()
        if run["state"] in TERMINAL:
            return run
        tasks = api.get(f"{server.url}{run_path(dag_id, run_id)}/taskInstances", timeout=60).json()
        for ti in tasks.get("task_instances", []):
            if ti["state"] in ("up_for_retry", "failed"):
                log = task_log(server, dag_id, run_id, ti["task_id"], ti["try_number"] or 1)
                pytest.fail(f"task {ti['task_id']} of {dag_id} run {run_id} is {ti['state']}:\n{log[-3000:]}")
        time.sleep(1)
    pytest.fail(f"run {run_id} of {dag_id} still {run.get('state')!r} after {timeout:.0f} s; logs in {server.log_dir}")


def set_paused(server: AirflowLocal, dag_id: str, paused: bool) -> dict:
    answer = server.session().patch(f"{server.url}/api/v2/dags/{dag_id}", json={"is_paused": paused}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()

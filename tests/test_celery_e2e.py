"""The sync scaled out on Celery, end to end: ``make airflow EXECUTOR=celery WORKERS=2``'s stack (fixture
``airflow_celery_server``: CeleryExecutor, the local Redis as broker, two workers with homes and addresses of
their own), six linked projects on one rate-limited Harvest account (the simulator, 10 requests per 5 s).

1. The six projects triggered together: tasks of one run execute on both workers (task instances' hostnames,
   REST API), every run succeeds, Harvest never answers 429, the tables equal the simulator's data, and each
   worker's task logs are read through the API from that worker's own log server.
2. A worker SIGKILLed in the middle of an extract (the simulator holds that extract's time-entry listing):
   the scheduler notices the missing heartbeats, the task runs again on the other worker, the run ends exact.
3. A worker whose ``primetric_db`` points at a closed PostgreSQL port: its try fails with a message that says
   so, the retry on the other worker succeeds. Deterministic by stopping, not by luck: while the first try is
   due only the broken worker runs; once that try has failed, the broken worker is stopped and the healthy one
   started, so the retry (due :data:`RETRY_DELAY_S` later) can only land there.

What the tables must hold is what the test put into the simulator, not typed in twice. Timings (how long the
scheduler took to notice the killed worker) are printed, never asserted.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time

import psycopg
import pytest
import requests

from primetric_harvest.names import dag_id
from scripts.airflow_local import AirflowLocal, free_port, parse_args
from scripts.local_settings.airflow_local_settings import WORKER_ADDRESS
from tests.airflow_server import HEARTBEAT_TIMEOUT_S, RETRY_DELAY_S, run_path, set_paused, task_log, trigger

pytestmark = pytest.mark.airflow

PROJECTS = {101 + i: 4001 + i for i in range(6)}  # Primetric project -> its linked Harvest project
SINCE = dt.date(2026, 9, 1)
PEOPLE = {502: 1, 503: 2}  # demo Harvest users Bobby and Sam -> their Primetric employee ids (demo seed)
TERMINAL = {"success", "failed"}


def sql(dsn: str, statement: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def sim(server: AirflowLocal, method: str, path: str, body: dict | None = None) -> dict:
    answer = requests.request(method, f"{server.harvest_url}/_sim/{path}", json=body, timeout=10)
    assert answer.ok, answer.text
    return answer.json()


def add_entry(server: AirflowLocal, expected: dict, project_id: int, user: int, day: str, hours: float) -> int:
    """One Harvest time entry of ``user`` on ``project_id``'s linked Harvest project; noted in ``expected``."""
    body = {"user_id": user, "project_id": PROJECTS[project_id], "spent_date": day, "hours": hours}
    entry_id = sim(server, "POST", "entries", {**body, "notes": f"work {day}"})["id"]
    expected[project_id][entry_id] = (PEOPLE[user], dt.date.fromisoformat(day), hours)
    return entry_id


def worklogs(server: AirflowLocal, project_id: int) -> dict[int, tuple]:
    rows = sql(
        server.primetric_dsn,
        "SELECT harvest_time_entry_id, employee_id, work_date, hours FROM primetric.worklogs "
        "WHERE project_id = %s AND harvest_time_entry_id IS NOT NULL",
        (project_id,),
    )
    synced = {r[0]: (r[1], r[2], float(r[3])) for r in rows}
    assert len(synced) == len(rows), f"project {project_id}: a Harvest entry landed twice"
    return synced


def ti_url(server: AirflowLocal, dag: str, run_id: str, task: str = "") -> str:
    return f"{server.url}{run_path(dag, run_id)}/taskInstances" + (f"/{task}" if task else "")


def tries(server: AirflowLocal, api: requests.Session, dag: str, run_id: str, task: str) -> list[dict]:
    answer = api.get(f"{ti_url(server, dag, run_id, task)}/tries", timeout=30)
    assert answer.status_code == 200, answer.text
    return sorted(answer.json()["task_instances"], key=lambda t: t["try_number"])


def error_events(server: AirflowLocal, api: requests.Session, dag: str, run_id: str, task: str, try_number: int):
    """The error-level events of one try's log (read through the API), each as its JSON text."""
    answer = api.get(
        f"{ti_url(server, dag, run_id, task)}/logs/{try_number}", params={"full_content": "true"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    events = [e for e in answer.json()["content"] if isinstance(e, dict)]
    return [json.dumps(e) for e in events if e.get("level") in ("error", "critical")]


def wait_until(what: str, check, timeout: float, server: AirflowLocal):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server._check_services()
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"not within {timeout:.0f} s: {what}; logs in {server.log_dir}")


def wait_for_runs(server: AirflowLocal, api: requests.Session, runs: dict[str, list[str]], timeout: float) -> None:
    """Until every run (DAG id -> run ids) ends; fails at once if a task fails or waits for a retry."""
    pending = {(dag, run_id) for dag, ids in runs.items() for run_id in ids}

    def done() -> bool:
        for dag, run_id in sorted(pending):
            state = api.get(server.url + run_path(dag, run_id), timeout=60).json()["state"]
            if state in TERMINAL:
                assert state == "success", f"{dag} {run_id}: {state}"
                pending.discard((dag, run_id))
                continue
            for ti in api.get(ti_url(server, dag, run_id), timeout=60).json()["task_instances"]:
                if ti["state"] in ("up_for_retry", "failed"):
                    log = task_log(server, dag, run_id, ti["task_id"], ti["try_number"] or 1)
                    pytest.fail(f"{dag} {run_id} task {ti['task_id']} is {ti['state']}:\n{log[-3000:]}")
        return not pending

    wait_until(f"runs {sorted(pending)} to end", done, timeout, server)


@pytest.fixture(scope="module")
def expected() -> dict[int, dict[int, tuple]]:
    """Project -> {Harvest entry id: (employee id, day, hours)}: what the tests put into the simulator."""
    return {p: {} for p in PROJECTS}


@pytest.fixture(scope="module")
def stack(airflow_celery_server, expected) -> AirflowLocal:
    """The Celery stack with six linked projects (Primetric and the simulator), their DAGs parsed and unpaused."""
    server = airflow_celery_server
    dsn = server.primetric_dsn
    for project_id, harvest_project in PROJECTS.items():
        sim(server, "POST", "projects", {"id": harvest_project, "name": f"Harvest {harvest_project}"})
        sql(dsn, "INSERT INTO primetric.projects (id, name, start_date) VALUES (%s, %s, %s)",
            (project_id, f"Scale-out {project_id}", SINCE))  # fmt: skip
        sql(dsn, "INSERT INTO primetric.harvest_settings (project_id, enabled, sync_since, "
            "prevent_new_assignment_creation, trim_assignments_to_worklogs, daily_schedule) "
            "VALUES (%s, true, %s, false, false, false)",  # runs only when triggered: no daily run on unpause
            (project_id, SINCE))  # fmt: skip
        sql(dsn, "INSERT INTO primetric.harvest_project_links (harvest_project_id, project_id) VALUES (%s, %s)",
            (harvest_project, project_id))  # fmt: skip
        for employee in PEOPLE.values():
            sql(dsn, "INSERT INTO primetric.assignments (project_id, employee_id, start_date, created_by_sync) "
                "VALUES (%s, %s, %s, false)", (project_id, employee, SINCE))  # fmt: skip
        for i in range(12):
            user = list(PEOPLE)[i % 2]
            day = SINCE + dt.timedelta(days=3 * i + project_id - 100)
            add_entry(server, expected, project_id, user, day.isoformat(), 1.5)
    linked_at = time.monotonic()
    server.wait_for_dags([dag_id(p) for p in PROJECTS], timeout=120)
    print(f"\nthe six DAGs were listed {time.monotonic() - linked_at:.0f} s after the projects were linked")
    for project_id in PROJECTS:
        set_paused(server, dag_id(project_id), False)
    return server


@pytest.fixture(scope="module")
def api(stack) -> requests.Session:
    return stack.session()


def test_six_projects_on_one_rate_limited_account_spread_over_two_workers(stack, api, expected):
    sim(stack, "POST", "reset_stats")
    started = time.monotonic()
    runs = {dag_id(p): [trigger(stack, dag_id(p))] for p in PROJECTS}
    wait_for_runs(stack, api, runs, timeout=300)
    print(f"\nsix runs on two workers: {time.monotonic() - started:.0f} s from trigger to the last run done")
    for dag in runs:  # and no other run (the projects' daily schedule is off)
        listed = api.get(f"{stack.url}/api/v2/dags/{dag}/dagRuns", timeout=30).json()["dag_runs"]
        assert [r["dag_run_id"] for r in listed] == runs[dag], listed

    addresses = {stack.worker_address(n): n for n in stack.worker_names}
    hosts_per_run = {}
    for dag, ids in runs.items():
        for run_id in ids:
            tis = api.get(ti_url(stack, dag, run_id), timeout=30).json()["task_instances"]
            assert {t["state"] for t in tis} == {"success"}, tis
            hosts_per_run[(dag, run_id)] = {t["hostname"] for t in tis}
    every_host = set().union(*hosts_per_run.values())
    assert every_host == set(addresses), hosts_per_run  # both workers worked, nobody else did
    split = [key for key, hosts in hosts_per_run.items() if len(hosts) > 1]
    assert split, f"no run had tasks on both workers: {hosts_per_run}"
    print(f"\nruns with tasks on both workers: {len(split)} of {len(hosts_per_run)}")

    stats = sim(stack, "GET", "stats")
    assert stats["status_429"] == 0, stats
    assert stats["requests"] > 10, stats  # more than the account's 10 per 5 s: the shared bucket paced them
    print(f"Harvest requests: {stats['requests']}, 429 answers: {stats['status_429']}")
    for project_id in PROJECTS:
        assert worklogs(stack, project_id) == expected[project_id], project_id

    # Each worker's task log, read through the API, comes from that worker's own log server.
    seen = set()
    for (dag, run_id), _hosts in hosts_per_run.items():
        for ti in api.get(ti_url(stack, dag, run_id), timeout=30).json()["task_instances"]:
            if ti["hostname"] in seen:
                continue
            log = task_log(stack, dag, run_id, ti["task_id"], ti["try_number"])
            assert f"http://{ti['hostname']}:" in log, log[:1000]  # the source: that worker's log server
            seen.add(ti["hostname"])
    assert seen == set(addresses)


def _extract_running_on(api, stack, dag, run_id, fault_id):
    """The address of the worker running the run's extract, once the simulator holds its listing; else None."""
    ti = api.get(ti_url(stack, dag, run_id, "extract"), timeout=30).json()
    faults = {f["id"]: f for f in sim(stack, "GET", "faults")["faults"]}
    if ti["state"] == "running" and ti["hostname"] and faults[fault_id]["fired"] == 1:
        return ti["hostname"]
    return None


def test_a_worker_killed_mid_extract_the_task_runs_again_on_the_other_and_the_run_ends_exact(stack, api, expected):
    project_id = 106
    dag = dag_id(project_id)
    add_entry(stack, expected, project_id, 503, "2026-11-02", 3.25)  # something new for this run
    (fault,) = sim(stack, "POST", "faults", {
        "mode": "slow", "delay": 15, "path": "/v2/time_entries",
        "params": {"project_id": str(PROJECTS[project_id])}, "times": 1,
    })["faults"]  # fmt: skip
    run_id = trigger(stack, dag)
    victim_address = wait_until(
        "the extract to be inside its time-entry listing",
        lambda: _extract_running_on(api, stack, dag, run_id, fault["id"]),
        120,
        stack,
    )
    victim = {stack.worker_address(n): n for n in stack.worker_names}[victim_address]
    survivor_address = next(a for a in map(stack.worker_address, stack.worker_names) if a != victim_address)
    killed = stack.kill_worker(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    assert killed

    def noticed():
        state = api.get(ti_url(stack, dag, run_id, "extract"), timeout=30).json()["state"]
        return state if state != "running" else None

    state = wait_until("the scheduler to notice the dead worker", noticed, HEARTBEAT_TIMEOUT_S * 6, stack)
    print(f"\nthe scheduler noticed the killed worker after {time.monotonic() - killed_at:.1f} s (-> {state})")
    wait_for_runs_allowing_retries(stack, api, dag, run_id, timeout=240)

    attempts = tries(stack, api, dag, run_id, "extract")
    assert [(t["try_number"], t["hostname"], t["state"]) for t in attempts] == [
        (1, victim_address, "failed"),
        (2, survivor_address, "success"),
    ], attempts
    assert worklogs(stack, project_id) == expected[project_id]  # the new entry once, nothing twice

    stack.start_worker(victim)  # back to two workers for what follows
    stack.wait_workers([victim])


def wait_for_runs_allowing_retries(stack, api, dag, run_id, timeout: float) -> dict:
    def ended():
        run = api.get(stack.url + run_path(dag, run_id), timeout=60).json()
        return run if run["state"] in TERMINAL else None

    run = wait_until(f"{dag} {run_id} to end", ended, timeout, stack)
    assert run["state"] == "success", run
    return run


def test_a_worker_pointed_at_a_closed_postgres_port_fails_clearly_and_the_retry_elsewhere_succeeds(
    stack, api, expected
):
    project_id = 105
    dag = dag_id(project_id)
    add_entry(stack, expected, project_id, 502, "2026-11-03", 2.0)
    broken, healthy = stack.worker_names
    others = {p: worklogs(stack, p) for p in PROJECTS if p != project_id}
    closed = free_port()  # bound and released: nothing listens there
    bad_dsn = f"postgresql://postgres@127.0.0.1:{closed}/{stack.primetric_db}"
    # A worker that has run tasks has parsed the DAG file and kept the linked projects in its own cache, the
    # parse's fallback when the database is unreachable: the broken worker's own parse, before it breaks.
    # (Without that cache it cannot see the DAG at all: the task is rescheduled, no try used, until a worker
    # that can parse it takes it: README, Scaling out on Celery.)
    prime = "from primetric_harvest.registry import linked_projects; linked_projects()"
    subprocess.run([sys.executable, "-c", prime], env=stack.worker_env(broken), check=True, timeout=120)
    assert (stack.worker_home(broken) / "cache" / "harvest_linked_projects.json").is_file()
    stack.kill_worker(broken, signal.SIGTERM)
    stack.start_worker(broken, {"AIRFLOW_CONN_PRIMETRIC_DB": bad_dsn})
    stack.kill_worker(healthy, signal.SIGTERM)  # the first try can only go to the broken worker
    stack.wait_workers([broken])

    run_id = trigger(stack, dag)

    def first_try_failed():
        ti = api.get(ti_url(stack, dag, run_id, "extract"), timeout=30).json()
        return ti if ti["state"] in ("up_for_retry", "failed") else None

    ti = wait_until("the broken worker's try to fail", first_try_failed, 180, stack)
    assert ti["state"] == "up_for_retry" and ti["hostname"] == stack.worker_address(broken), ti
    errors = error_events(stack, api, dag, run_id, "extract", 1)
    stack.kill_worker(broken, signal.SIGKILL)  # before the retry is due (RETRY_DELAY_S)
    stack.start_worker(healthy)
    # The task's own error (not only the DAG parse's warning) names the database it could not reach, and why.
    said = [e for e in errors if f"port {closed} failed" in e and "Connection refused" in e and "primetric_db" in e]
    assert said, errors
    print(f"\nthe broken worker's try failed with: {said[-1][:600]}")

    wait_for_runs_allowing_retries(stack, api, dag, run_id, timeout=120 + RETRY_DELAY_S)
    attempts = tries(stack, api, dag, run_id, "extract")
    assert [(t["hostname"], t["state"]) for t in attempts] == [
        (stack.worker_address(broken), "failed"),
        (stack.worker_address(healthy), "success"),
    ], attempts
    assert worklogs(stack, project_id) == expected[project_id]
    assert {p: worklogs(stack, p) for p in others} == others  # and nothing else moved


def test_the_celery_launcher_options_and_what_each_worker_keeps_to_itself(tmp_path):
    """No stack: `--executor celery --workers N`, and the environments the launcher gives its processes."""
    args = parse_args(["run", "--executor", "celery", "--workers", "3", "--auth", "fab"])
    assert (args.executor, args.workers, args.auth) == ("celery", 3, "fab")
    assert parse_args(["run"]).executor == "local"
    with pytest.raises(SystemExit):
        parse_args(["run", "--executor", "kubernetes"])
    with pytest.raises(ValueError, match="workers"):
        AirflowLocal(home=tmp_path, executor="celery", workers=0)

    server = AirflowLocal(home=tmp_path, executor="celery", workers=3, broker_db=9, quiet=True)
    server._prepare_secrets()
    env = server.env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].endswith(":6379/9")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == f"db+{server.meta_dsn}"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    workers = [server.worker_env(name) for name in server.worker_names]
    own = ("AIRFLOW_HOME", "TMPDIR", "AIRFLOW__LOGGING__BASE_LOG_FOLDER", "PRIMETRIC_DAG_CACHE", WORKER_ADDRESS)
    for key in own:  # each worker its own, none the scheduler's
        values = [w[key] for w in workers]
        assert len(set(values)) == len(workers) and env.get(key) not in values, key
    # What every process must share: the keys that encrypt connections and OAuth tokens and sign task tokens.
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        assert {w[key] for w in workers} == {env[key]}, key
    local = AirflowLocal(home=tmp_path, quiet=True)
    local._prepare_secrets()
    assert local.env()["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor" and not local.worker_names

"""`make airflow`: a full Airflow 3 on this machine, from the venv, with the demo behind it.

api-server, scheduler, dag-processor and triggerer (LocalExecutor, parallelism 4), the metadata database
in its own database on the local PostgreSQL, the Harvest simulator (demo scenario) and the demo Primetric
database. Ctrl-C, SIGTERM or `make airflow-stop` stops everything: every process we start runs in its own
process group and carries a marker in its environment; stopping signals the groups, then sweeps /proc for
anything that still carries the marker (a task process that left its group), so nothing is left behind.

    python scripts/airflow_local.py run     # start, print the address and login, run until Ctrl-C
    python scripts/airflow_local.py run --auth fab   # the same with the FAB auth manager (make airflow AUTH=fab)
    python scripts/airflow_local.py run --executor celery --workers 2   # make airflow EXECUTOR=celery WORKERS=2
    python scripts/airflow_local.py stop    # stop the one started from this AIRFLOW_HOME (pid file)
    python scripts/airflow_local.py exec airflow users list   # a command with its environment (home, DB)

Auth manager: Airflow's simple auth manager by default (users admin and viewer, passwords in a file); with
``--auth fab`` the FAB auth manager of production, its users created through FAB (``airflow users create``)
with the same generated passwords, so roles and per-DAG permissions (scripts/grant_project_manager.py) work.

Environment (all optional): PRIMETRIC_DSN (server, default postgresql://postgres@127.0.0.1:5432),
AIRFLOW_LOCAL_HOME (default $AIRFLOW_HOME/local, else .airflow/local), AIRFLOW_PORT (default 8080),
AIRFLOW_META_DB (default airflow_meta), PRIMETRIC_LOCAL_DB (default primetric_airflow).

CeleryExecutor (``--executor celery``): the local Redis (AIRFLOW_LOCAL_REDIS, default redis://127.0.0.1:6379)
as broker on database 5, Celery's results in the metadata database, N ``airflow celery worker`` processes, each
with its own home (``workers/worker-N``: AIRFLOW_HOME, cwd, TMPDIR, task logs, DAG-parse cache), its own
loopback address (its task instances' hostname) and its own log server there (README, Scaling out on Celery).

Tests reuse :class:`AirflowLocal` (tests/airflow_server.py): free ports, a temp home, their own databases.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis
import requests
from cryptography.fernet import Fernet
from psycopg import sql as pgsql

from harvest_simulator.demo import demo_command, demo_connection
from primetric_harvest.db import query
from primetric_harvest.fab_roles import FAB_AUTH_MANAGER
from primetric_harvest.names import HARVEST_POOL, HARVEST_POOL_DESCRIPTION, HARVEST_POOL_SLOTS

ROOT = Path(__file__).resolve().parents[1]  # the checkout: dags/ and plugins/ (the package is installed)
BIN = Path(sys.executable).parent

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"
MARKER = "AIRFLOW_LOCAL_ID"  # set in the environment of every process we start (and their children)
PID_FILE = "airflow-local.pid"
POOL = (HARVEST_POOL, str(HARVEST_POOL_SLOTS), HARVEST_POOL_DESCRIPTION)
SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
REDIS_URL = os.environ.get("AIRFLOW_LOCAL_REDIS", "redis://127.0.0.1:6379")
BROKER_DB = 5  # make airflow's Redis database number (tests pass their own)
LOCAL_SETTINGS = ROOT / "scripts" / "local_settings"  # airflow_local_settings.py: hostname callable, retry delay
WORKER = "AIRFLOW_LOCAL_WORKER"  # in a Celery worker's environment (and its task processes'): its name
# Simple auth manager users (user:role). "viewer" may read but not trigger: the UI page's permission check;
# "manager" (role user) may trigger and edit DAGs but is no administrator: the Harvest sync page's story.
USERS = {"admin": "admin", "viewer": "viewer", "manager": "user"}
# The same users under the FAB auth manager (user: FAB role), created with `airflow users create`.
FAB_USERS = {"admin": "Admin", "viewer": "Viewer", "manager": "User"}
AUTH_MANAGERS = {
    "simple": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
    "fab": FAB_AUTH_MANAGER,
}
# FAB's Viewer and User cannot list plugins, so Airflow's UI would hide the Harvest sync page from them (as the
# production compose file's airflow-init, they are allowed to).
FAB_ROLES_SEE_PLUGINS = ("roles", "add-perms", "Viewer", "User", "--resource", "Plugins", "--action", "can_read")


def _fab_profile(user: str) -> list[str]:
    """The name and e-mail `airflow users create` requires, for a local user."""
    return ["--firstname", user, "--lastname", "local", "--email", f"{user}@example.invalid"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks) of a live process, else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2]), int(fields[19])


def start_time(pid: int) -> int | None:
    info = _stat(pid)
    return None if info is None else info[2]


def _ours(marker_value: str, groups: dict[int, int | None]) -> list[int]:
    """Live processes that are ours: members of our process groups, or carrying our marker.

    Group membership is the reliable test (a process that renames itself with setproctitle overwrites its
    environment); the marker catches descendants that left the group (setsid).
    """
    needle = f"{MARKER}={marker_value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        info = _stat(int(entry.name))
        if info is None or info[0] == "Z":
            continue
        if info[1] in groups:
            found.append(int(entry.name))
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def _valid_groups(groups: dict[int, int | None]) -> dict[int, int | None]:
    """Drop a group whose leader's pid now belongs to another process (pid reuse: start time differs)."""
    out = {}
    for pgid, started in groups.items():
        now = start_time(pgid)
        if now is None or started is None or now == started:
            out[pgid] = started
    return out


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    info = _stat(pid)
    return info is not None and info[0] != "Z"  # a zombie is dead for our purposes


def kill_ours(marker_value: str, groups: dict[int, int | None], timeout: float = 20.0) -> list[int]:
    """SIGTERM our process groups and marked processes; SIGKILL what is left after ``timeout``.

    ``groups``: process group id (= the pid we spawned) → its start time. Returns the pids that needed
    SIGKILL (normally none).
    """
    groups = _valid_groups(groups)
    for pgid in groups:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = _ours(marker_value, groups)
        if not left:
            return []
        for pid in left:  # e.g. a task process in a session of its own
            if _stat(pid) and _stat(pid)[1] not in groups:
                _signal_pid(pid, signal.SIGTERM)
        time.sleep(0.2)
    killed = []
    for pgid in groups:
        _signal_group(pgid, signal.SIGKILL)
    for _ in range(50):
        left = _ours(marker_value, groups)
        if not left:
            break
        for pid in left:
            _signal_pid(pid, signal.SIGKILL)
            killed.append(pid)
        time.sleep(0.1)
    return sorted(set(killed))


@dataclass
class AirflowLocal:
    """One local Airflow + Harvest simulator + demo Primetric database.

    ``port=0`` picks free ports. ``fresh`` drops and recreates both databases first; ``drop_databases``
    drops them again at :meth:`stop` (tests). ``auth``: "simple" (Airflow's simple auth manager) or "fab"
    (the FAB auth manager; users created through FAB). Every process's output goes to ``home/logs/local/*.log``.
    """

    home: Path
    port: int = 8080
    server: str = field(default_factory=lambda: os.environ.get("PRIMETRIC_DSN", DEFAULT_SERVER))
    meta_db: str = "airflow_meta"
    primetric_db: str = "primetric_airflow"
    fresh: bool = False
    drop_databases: bool = False
    parallelism: int = 4
    quiet: bool = False
    auth: str = "simple"
    executor: str = "local"  # "local" (LocalExecutor) or "celery" (CeleryExecutor, ``workers`` Celery workers)
    workers: int = 2
    worker_concurrency: int = 2  # task slots per Celery worker
    broker_db: int = BROKER_DB  # the Redis database number of the Celery broker (flushed at start)
    extra_env: dict[str, str] = field(default_factory=dict)  # every process (tests: short timeouts)
    # (requests, seconds): the simulator enforces this rate limit and harvest_default paces to it (default:
    # no limit in the simulator, Harvest's 100 per 15 s in the sync).
    harvest_rate_limit: tuple[int, float] | None = None
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict, init=False)
    harvest_url: str | None = field(default=None, init=False)
    passwords: dict[str, str] = field(default_factory=dict, init=False)
    _started: dict[int, int | None] = field(default_factory=dict, init=False)  # pid → start time
    _stopped: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _ready_from: dict[str, int] = field(default_factory=dict, init=False, repr=False)  # worker log offsets

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()
        if self.auth not in AUTH_MANAGERS:
            raise ValueError(f"auth must be one of {sorted(AUTH_MANAGERS)}, not {self.auth!r}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {sorted(EXECUTORS)}, not {self.executor!r}")
        if self.executor == "celery" and not 1 <= self.workers <= 250:
            raise ValueError(f"workers must be between 1 and 250, not {self.workers}")
        if self.port == 0:
            self.port = free_port()

    # -- addresses ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def meta_dsn(self) -> str:
        return f"{self.server}/{self.meta_db}"

    @property
    def primetric_dsn(self) -> str:
        return f"{self.server}/{self.primetric_db}"

    @property
    def meta_sqlalchemy_url(self) -> str:
        """The metadata database for Airflow: psycopg2, the driver Airflow supports (psycopg 3 breaks its
        dependency views: ``operator does not exist: jsonb #> character varying``)."""
        return self.meta_dsn.replace("postgresql://", "postgresql+psycopg2://", 1)

    @property
    def broker_url(self) -> str:
        return f"{REDIS_URL}/{self.broker_db}"

    @property
    def worker_names(self) -> list[str]:
        return [f"worker-{i}" for i in range(1, self.workers + 1)] if self.executor == "celery" else []

    def worker_address(self, name: str) -> str:
        """The loopback address of a Celery worker: its task instances' hostname and its log server's host."""
        return f"127.0.0.{1 + self.worker_names.index(name) + 1}"

    def worker_home(self, name: str) -> Path:
        """A worker's own folder (AIRFLOW_HOME, cwd, TMPDIR, task logs, DAG-parse cache): nothing shared."""
        return self.home / "workers" / name

    @property
    def users(self) -> dict[str, str]:
        """The local users and their roles (simple auth manager role, or FAB role)."""
        return FAB_USERS if self.auth == "fab" else USERS

    @property
    def log_dir(self) -> Path:
        return self.home / "logs" / "local"

    @property
    def pid_file(self) -> Path:
        return self.home / PID_FILE

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> AirflowLocal:
        """Prepare the databases and start every process (returns before Airflow answers: wait_healthy)."""
        running = read_pid_file(self.pid_file)
        if running and _ours(running["marker"], _valid_groups(_groups_of(running))):
            raise RuntimeError(
                f"an Airflow started from {self.home} is already running at {running.get('url')} "
                f"(launcher pid {running.get('launcher')}): stop it first (make airflow-stop)"
            )
        if not _port_free(self.port):
            raise RuntimeError(f"port {self.port} on 127.0.0.1 is in use: choose another (AIRFLOW_PORT=...)")
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._write_pid_file()
        self._prepare_secrets()
        self._step(f"databases {self.meta_db} (Airflow metadata) and {self.primetric_db} (demo Primetric)")
        self._create_databases()

        if self.executor == "celery":
            self._step(f"Celery broker {self.broker_url} (flushed: the queue is this stack's alone)")
            redis.Redis.from_url(self.broker_url).flushdb()
        self._step("Harvest simulator (demo scenario), airflow db migrate, Primetric migrations")
        self._start_simulator()
        env = self.env()
        migrations = {
            "db-migrate": self._spawn("db-migrate", [str(BIN / "airflow"), "db", "migrate"], env),
            "primetric-migrate": self._spawn(
                "primetric-migrate", [sys.executable, "-m", "primetric_harvest.migrate"], env
            ),
        }
        self._wait_all(migrations, timeout=300)
        with psycopg.connect(self.primetric_dsn, autocommit=True) as conn:
            conn.execute(query("demo_seed", "seed"))
        if self.auth == "fab":
            self._step("FAB users " + ", ".join(f"{u} ({r})" for u, r in self.users.items()))
            self._create_fab_users(env)
        self._step(f"pool {POOL[0]} ({POOL[1]} slots) and the Airflow services")
        self._spawn("pools-set", [str(BIN / "airflow"), "pools", "set", *POOL], env)  # waited for in wait_healthy
        for name in SERVICES:
            args = [str(BIN / "airflow"), name]
            if name == "api-server":
                args += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
            self._spawn(name, args, env)
        for name in self.worker_names:
            self.start_worker(name)
        return self

    # -- Celery workers ------------------------------------------------------------------------------
    def worker_env(self, name: str, overrides: dict[str, str] | None = None) -> dict[str, str]:
        """A Celery worker's environment: the stack's, with its own home, temp and log folders and address."""
        home = self.worker_home(name)
        return {
            **self.env(),
            WORKER: name,
            "AIRFLOW_HOME": str(home),
            "TMPDIR": str(home / "tmp"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airflow_local_settings.worker_hostname",
            "AIRFLOW_LOCAL_WORKER_ADDRESS": self.worker_address(name),
            "PRIMETRIC_DAG_CACHE": str(home / "cache" / "harvest_linked_projects.json"),
            **(overrides or {}),
        }

    def start_worker(self, name: str, overrides: dict[str, str] | None = None) -> None:
        """Start (or restart) Celery worker ``name`` and its log server; ``overrides``: its environment only
        (e.g. AIRFLOW_CONN_PRIMETRIC_DB pointing elsewhere). Returns at once: wait_workers."""
        home = self.worker_home(name)
        for folder in (home, home / "tmp", home / "logs", home / "cache"):
            folder.mkdir(parents=True, exist_ok=True)
        env = self.worker_env(name, overrides)
        self._ready_from[name] = (
            (self.log_dir / f"{name}.log").stat().st_size if (self.log_dir / f"{name}.log").exists() else 0
        )
        # Airflow's own log server (started by `celery worker` unless --skip-serve-logs) binds every address at
        # one port: two workers on one machine would collide. Each serves its own folder at its own address.
        self._spawn(
            f"{name}-logs",
            [
                str(BIN / "python"),
                "-m",
                "uvicorn",
                "airflow.utils.serve_logs.log_server:get_app",
                "--factory",
                "--host",
                self.worker_address(name),
                "--port",
                env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"],
                "--no-access-log",
            ],
            env,
            cwd=home,
        )
        self._spawn(
            name,
            [
                str(BIN / "airflow"),
                "celery",
                "worker",
                "--celery-hostname",
                f"{name}@%h",
                "--concurrency",
                str(self.worker_concurrency),
                "--skip-serve-logs",
            ],
            env,
            cwd=home,
        )

    def wait_workers(self, names: Iterable[str] | None = None, timeout: float = 120.0) -> None:
        """Until each Celery worker (default: all running) has logged that it is ready to take tasks."""
        pending = set(names if names is not None else [n for n in self.worker_names if n in self.procs])
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            self._check_services()
            for name in sorted(pending):
                log = self.log_dir / f"{name}.log"
                with contextlib.suppress(OSError), open(log, "rb") as f:
                    f.seek(self._ready_from.get(name, 0))
                    if b" ready." in f.read():
                        pending.discard(name)
            time.sleep(0.5)
        if pending:
            raise TimeoutError(
                f"Celery worker(s) {sorted(pending)} not ready after {timeout:.0f} s; logs in {self.log_dir}"
            )

    def kill_worker(self, name: str, sig: int = signal.SIGKILL) -> list[int]:
        """Signal everything of Celery worker ``name`` at once (as a machine dying with ``sig`` = SIGKILL): the
        worker, its pool and task processes (also one that left the group) and its log server. Returns the pids."""
        groups = {p.pid: self._started.get(p.pid) for n, p in self.procs.items() if n in (name, f"{name}-logs")}
        needle = f"{WORKER}={name}".encode()
        groups = _valid_groups(groups)
        pids = set()
        for pid in _ours(self.marker, groups):  # the stack's processes: keep the worker's own only
            info = _stat(pid)
            with contextlib.suppress(OSError):
                if (info and info[1] in groups) or needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    pids.add(pid)
        for pgid in groups:
            _signal_group(pgid, sig)
        for pid in pids:
            _signal_pid(pid, sig)
        for n in (name, f"{name}-logs"):
            proc = self.procs.pop(n, None)
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=20)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.1)
        self._write_pid_file()
        return sorted(pids)

    def wait_healthy(self, timeout: float = 180.0) -> None:
        """Until /api/v2/monitor/health reports every component healthy (and every Celery worker is ready);
        raises if a service dies."""
        deadline = time.monotonic() + timeout
        if "pools-set" in self.procs:
            self._wait_all({"pools-set": self.procs["pools-set"]}, timeout=timeout)
        last = "no answer"
        while time.monotonic() < deadline:
            self._check_services()
            try:
                health = requests.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
                bad = {k: v.get("status") for k, v in health.items() if isinstance(v, dict) and v.get("status")}
                last = json.dumps(bad)
                if bad and all(status == "healthy" for status in bad.values()):
                    if {"metadatabase", "scheduler", "triggerer", "dag_processor"} <= set(bad):
                        self.wait_workers(timeout=max(1.0, deadline - time.monotonic()))
                        return
            except (requests.RequestException, ValueError) as exc:
                last = type(exc).__name__
            time.sleep(1)
        raise TimeoutError(
            f"Airflow at {self.url} not healthy after {timeout:.0f} s (last: {last}); logs in {self.log_dir}"
        )

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 180.0) -> None:
        """Until the DAG processor has parsed (and the API lists) every one of ``dag_ids``."""
        wanted = set(dag_ids)
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {self.token()}"}
        seen: set[str] = set()
        while time.monotonic() < deadline:
            self._check_services()
            seen = self._listed_dags(headers)
            if wanted <= seen:
                return
            time.sleep(1)
        raise TimeoutError(
            f"DAGs {sorted(wanted - seen)} not listed by {self.url} after {timeout:.0f} s; "
            f"dag-processor log:\n{_tail(self.log_dir / 'dag-processor.log')}"
        )

    def _listed_dags(self, headers: dict[str, str]) -> set[str]:
        """Every DAG id the REST API lists, page by page: a page holds at most `[api] maximum_page_limit`
        (100), whatever ``limit`` asks."""
        seen: set[str] = set()
        while True:
            answer = requests.get(
                f"{self.url}/api/v2/dags", params={"limit": 100, "offset": len(seen)}, headers=headers, timeout=30
            )
            if not answer.ok:
                return seen
            page = {d["dag_id"] for d in answer.json()["dags"]}
            if not page - seen:
                return seen
            seen |= page

    def stop(self, timeout: float = 20.0) -> None:
        """Stop every process we started (groups, then anything marked), drop test databases. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if self.procs:
            self._step("stopping " + ", ".join(self.procs))
        killed = kill_ours(self.marker, self._groups(), timeout=timeout)
        if killed:
            self._step(f"had to SIGKILL {len(killed)} process(es): {killed}")
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.pid_file.unlink()
        if self.drop_databases:
            self._drop_databases()

    # -- what clients need ---------------------------------------------------------------------------
    def token(self, username: str = "admin") -> str:
        answer = requests.post(
            f"{self.url}/auth/token",
            json={"username": username, "password": self.passwords[username]},
            timeout=10,
        )
        answer.raise_for_status()
        return answer.json()["access_token"]

    def session(self, username: str = "admin") -> requests.Session:
        """A requests session that sends ``username``'s token to every /api/v2 call."""
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {self.token(username)}"
        return s

    def env(self) -> dict[str, str]:
        """The environment of every Airflow process: nothing inherited from AIRFLOW_* of the caller."""
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", MARKER)) and k != "AIRFLOW_HOME"
        }
        ports = self._side_ports()
        return {
            **base,
            MARKER: self.marker,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": EXECUTORS[self.executor],
            "AIRFLOW__CORE__PARALLELISM": str(self._parallelism()),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",  # the connection form's Test button (Harvest's answers)
            **self._auth_env(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.meta_sqlalchemy_url,
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secrets["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": self._secrets["secret_key"],
            "AIRFLOW__CORE__FERNET_KEY": self._secrets["fernet_key"],
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(ports["worker_log"]),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(ports["trigger_log"]),
            # New linked projects appear within a minute rather than five.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "60",
            "AIRFLOW_CONN_PRIMETRIC_DB": self.primetric_dsn,
            "AIRFLOW_CONN_HARVEST_DEFAULT": self._harvest_connection(),
            "PRIMETRIC_DAG_CACHE": str(self.home / "cache" / "harvest_linked_projects.json"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(LOCAL_SETTINGS), os.environ.get("PYTHONPATH")])),
            **self._celery_env(),
            **self.extra_env,
        }

    def _parallelism(self) -> int:
        return self.workers * self.worker_concurrency if self.executor == "celery" else self.parallelism

    def _celery_env(self) -> dict[str, str]:
        if self.executor != "celery":
            return {}
        return {
            "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
            # Task states in the metadata database (Celery's own tables), as docker-compose.yaml does.
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.meta_dsn,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
        }

    def _harvest_connection(self) -> str:
        conn = json.loads(demo_connection(self.harvest_url or "http://127.0.0.1:1"))
        if self.harvest_rate_limit:
            requests_, seconds = self.harvest_rate_limit
            conn["extra"] = {**conn["extra"], "rate_limit_requests": requests_, "rate_limit_seconds": seconds}
        return json.dumps(conn)

    # -- internals -------------------------------------------------------------------------------------
    def _auth_env(self) -> dict[str, str]:
        env = {"AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGERS[self.auth]}
        if self.auth == "simple":
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = ",".join(f"{u}:{r}" for u, r in USERS.items())
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(self.home / "passwords.json")
        return env

    def _create_fab_users(self, env: dict[str, str]) -> None:
        """Every local user through FAB (`airflow users create`), with its password from passwords.json.

        Passwords go to the commands' stdin (FAB asks for them twice), never on a command line other users of
        the machine can read. A user already in the metadata database (kept from an earlier start) gets its
        password reset to the file's, so the printed login always works.
        """
        airflow = str(BIN / "airflow")
        twice = {u: f"{self.passwords[u]}\n{self.passwords[u]}\n" for u in self.users}
        create = {
            f"users-create-{user}": (
                [airflow, "users", "create", "--username", user, "--role", role, *_fab_profile(user)],
                twice[user],
            )
            for user, role in self.users.items()
        }
        # The first FAB command of a new metadata database creates FAB's permissions; two doing so at once
        # collide (UniqueViolation on ab_permission_view_role), so one goes first, the rest side by side.
        first = next(iter(create))
        outputs = self._run_all({first: create.pop(first)}, env)
        outputs |= self._run_all(create, env)
        self._run_all({"roles-see-plugins": ([airflow, *FAB_ROLES_SEE_PLUGINS], None)}, env)
        reset = {
            f"users-reset-{user}": ([airflow, "users", "reset-password", "--username", user], twice[user])
            for user in self.users
            if "already exists" in outputs[f"users-create-{user}"]
        }
        self._run_all(reset, env)

    def _run_all(self, commands: dict[str, tuple[list[str], str | None]], env: dict[str, str]) -> dict[str, str]:
        """Run short commands side by side (each in its own process group, as _spawn); their output by name."""
        procs = {
            name: self._spawn(name, args, env, stdin_text=text, log_mode="wb")  # this run's output only
            for name, (args, text) in commands.items()
        }
        outputs = {}
        for name, proc in procs.items():
            self._wait_all({name: proc}, timeout=300)
            outputs[name] = (self.log_dir / f"{name}.log").read_text(errors="replace")
        return outputs

    def _step(self, text: str) -> None:
        if not self.quiet:
            print(f"==> {text}", flush=True)

    def _side_ports(self) -> dict[str, int]:
        if not hasattr(self, "_ports"):
            self._ports = {"worker_log": free_port(), "trigger_log": free_port()}
        return self._ports

    def _prepare_secrets(self) -> None:
        """Login passwords (a file the simple auth manager reads) and the secrets every process shares."""
        path = self.home / "passwords.json"
        try:
            self.passwords = json.loads(path.read_text())
        except (OSError, ValueError):
            self.passwords = {}
        for user in self.users:
            self.passwords.setdefault(user, secrets.token_urlsafe(12))
        path.write_text(json.dumps(self.passwords))
        path.chmod(0o600)
        secret_path = self.home / "local-secrets.json"
        try:
            self._secrets = json.loads(secret_path.read_text())
        except (OSError, ValueError):
            self._secrets = {"jwt_secret": secrets.token_urlsafe(32), "secret_key": secrets.token_urlsafe(32)}
        if "fernet_key" not in self._secrets:
            # Connections and the OAuth token table are encrypted with it: every process needs the same key, not
            # each its own generated airflow.cfg's (Celery workers have homes of their own). A home from before
            # keeps the key its airflow.cfg generated, so what it encrypted stays readable.
            self._secrets["fernet_key"] = _configured_fernet_key(self.home / "airflow.cfg") or (
                Fernet.generate_key().decode()
            )
            secret_path.write_text(json.dumps(self._secrets))
            secret_path.chmod(0o600)

    def _admin(self, statement: pgsql.Composable) -> None:
        with psycopg.connect(f"{self.server}/postgres", autocommit=True) as conn:
            conn.execute(statement)

    def _create_databases(self) -> None:
        for name in (self.meta_db, self.primetric_db):
            if self.fresh:
                self._admin(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))
            with psycopg.connect(f"{self.server}/postgres", autocommit=True) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
                if not exists:
                    conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))

    def _drop_databases(self) -> None:
        for name in (self.meta_db, self.primetric_db):
            try:
                self._admin(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))
            except psycopg.Error as exc:
                print(f"could not drop database {name}: {exc}", file=sys.stderr)

    def _spawn(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        stdin_text: str | None = None,
        log_mode: str = "ab",
        cwd: Path = ROOT,
    ) -> subprocess.Popen:
        if self._stopped:
            raise RuntimeError("stopped while starting")
        log = open(self.log_dir / f"{name}.log", log_mode)  # the child keeps its own copy; ours is closed below
        try:
            proc = subprocess.Popen(
                args,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL if stdin_text is None else subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: Ctrl-C reaches us, and we stop it as a group
            )
        finally:
            log.close()
        if stdin_text is not None:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(stdin_text.encode())
            proc.stdin.close()
        self.procs[name] = proc
        self._started[proc.pid] = start_time(proc.pid)
        self._write_pid_file()
        return proc

    def _start_simulator(self) -> None:
        port = free_port()
        args = demo_command(port)
        if self.harvest_rate_limit:
            args += ["--rate-limit", "{}/{}".format(*self.harvest_rate_limit)]
        proc = self._spawn("harvest-simulator", args, {**self.env(), MARKER: self.marker})
        deadline = time.monotonic() + 60
        url = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the Harvest simulator exited ({proc.returncode}):\n"
                    f"{_tail(self.log_dir / 'harvest-simulator.log')}"
                )
            with contextlib.suppress(requests.RequestException):
                requests.get(f"{url}/v2/users/me", timeout=2)
                self.harvest_url = url
                return
            time.sleep(0.2)
        raise TimeoutError(f"the Harvest simulator did not answer on {url}")

    def _wait_all(self, procs: dict[str, subprocess.Popen], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for name, proc in procs.items():
            try:
                code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"{name} did not finish in {timeout:.0f} s; see {self.log_dir / name}.log") from None
            if code != 0:
                raise RuntimeError(f"{name} failed (exit {code}):\n{_tail(self.log_dir / f'{name}.log')}")
            self.procs.pop(name, None)
        self._write_pid_file()

    def _check_services(self) -> None:
        for name in (*SERVICES, "harvest-simulator", *self.worker_names, *(f"{n}-logs" for n in self.worker_names)):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited ({proc.returncode}); last lines of {self.log_dir / name}.log:\n"
                    f"{_tail(self.log_dir / f'{name}.log')}"
                )

    def _groups(self) -> dict[int, int | None]:
        """Every process group we started (also the finished ones: a child of theirs may live on)."""
        return dict(self._started)

    def _write_pid_file(self) -> None:
        data = {
            "launcher": os.getpid(),
            "marker": self.marker,
            "url": self.url,
            "auth": self.auth,
            "executor": self.executor,
            "processes": {name: p.pid for name, p in self.procs.items()},
            "groups": {str(pgid): started for pgid, started in self._groups().items()},
        }
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.pid_file)


def _configured_fernet_key(cfg: Path) -> str | None:
    """The ``[core] fernet_key`` of an airflow.cfg Airflow generated earlier, if any."""
    try:
        text = cfg.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "fernet_key" and value.strip():
            return value.strip()
    return None


def read_pid_file(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def stop_from_pid_file(home: Path, timeout: float = 30.0) -> bool:
    """`make airflow-stop`: ask the launcher to stop; if it is gone, stop what it left. False: nothing ran."""
    path = Path(home) / PID_FILE
    data = read_pid_file(path)
    if not data:
        return False
    launcher = int(data.get("launcher", 0))
    marker = data["marker"]
    launcher_ours = launcher and _alive(launcher) and "airflow_local" in _cmdline(launcher)
    if launcher_ours:
        _signal_pid(launcher, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(launcher):
            time.sleep(0.2)
    # Whatever is still marked (the launcher was killed, or did not finish in time) goes now.
    kill_ours(marker, _groups_of(data), timeout=10)
    with contextlib.suppress(OSError):
        path.unlink()
    return True


def _groups_of(data: dict) -> dict[int, int | None]:
    return {int(pgid): started for pgid, started in (data.get("groups") or {}).items()}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def default_home() -> Path:
    if os.environ.get("AIRFLOW_LOCAL_HOME"):
        return Path(os.environ["AIRFLOW_LOCAL_HOME"])
    return Path(os.environ.get("AIRFLOW_HOME", ROOT / ".airflow")) / "local"


def exec_command(args: argparse.Namespace) -> int:
    """`exec COMMAND...`: COMMAND with the environment of the local Airflow of ``args.home`` (its configuration,
    metadata database and auth manager), e.g. `airflow users create ...` or `scripts/grant_project_manager.py`."""
    if not args.rest:
        print("airflow_local exec: name the command to run, e.g. exec airflow users list", file=sys.stderr)
        return 2
    if not (args.home / "local-secrets.json").exists():
        print(f"airflow_local exec: no local Airflow in {args.home}: start it first (make airflow)", file=sys.stderr)
        return 1
    running = read_pid_file(args.home / PID_FILE) or {}
    server = AirflowLocal(
        home=args.home,
        port=args.port,
        meta_db=args.meta_db,
        primetric_db=args.primetric_db,
        auth=running.get("auth", args.auth),  # the running one's, else --auth
        executor=running.get("executor", args.executor),
        quiet=True,
    )
    server._prepare_secrets()
    return subprocess.call(args.rest, env=server.env(), cwd=ROOT)


def run(args: argparse.Namespace) -> int:
    server = AirflowLocal(
        home=args.home,
        port=args.port,
        meta_db=args.meta_db,
        primetric_db=args.primetric_db,
        fresh=args.fresh,
        auth=args.auth,
        executor=args.executor,
        workers=args.workers,
    )
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop_requested.set()
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    started = time.monotonic()
    try:
        server.start()
        server.wait_healthy()
        fab_note = (
            "  a project's manager (README, Users and roles): scripts/airflow_local.py exec airflow users create "
            "--role Public ...; then exec python scripts/grant_project_manager.py USER PROJECT_ID\n"
            if server.auth == "fab"
            else ""
        )
        celery_note = (
            f"  CeleryExecutor: broker {server.broker_url}, workers "
            + ", ".join(f"{n} ({server.worker_address(n)}, {server.worker_home(n)})" for n in server.worker_names)
            + "\n"
            if server.executor == "celery"
            else ""
        )
        print(
            f"\nAirflow {server.url}  (ready in {time.monotonic() - started:.0f} s, {server.auth} auth manager)\n"
            f"  login:        admin / {server.passwords['admin']}"
            f"   (read-only: viewer / {server.passwords['viewer']};"
            f" trigger and set up, not admin: manager / {server.passwords['manager']})\n"
            f"{fab_note}"
            f"  Harvest sync: {server.url}/plugin/harvest-sync\n"
            f"  REST API:     {server.url}/api/v2  (token: POST {server.url}/auth/token)\n"
            f"  Harvest simulator (demo account): {server.harvest_url}\n"
            f"  Primetric database: {server.primetric_dsn}   metadata: {server.meta_dsn}\n"
            f"{celery_note}"
            f"  logs: {server.log_dir}   DAGs start paused: unpause harvest_sync_<id> in the UI.\n"
            f"Stop with Ctrl-C or `make airflow-stop`.",
            flush=True,
        )
        while not stop_requested.is_set():
            time.sleep(1)
            server._check_services()
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError, psycopg.Error) as exc:
        print(f"make airflow: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
        server.stop()
        print("Airflow stopped; no process left behind.", flush=True)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """`run|stop [options]`, or `[options] exec COMMAND...` (what follows exec is the command, options included)."""
    parser = argparse.ArgumentParser(prog="airflow_local", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["run", "stop", "exec"], help="exec COMMAND...: see exec_command")
    parser.add_argument("--home", type=Path, default=default_home())
    parser.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_PORT", "8080")))
    parser.add_argument("--meta-db", default=os.environ.get("AIRFLOW_META_DB", "airflow_meta"))
    parser.add_argument("--primetric-db", default=os.environ.get("PRIMETRIC_LOCAL_DB", "primetric_airflow"))
    parser.add_argument("--fresh", action="store_true", help="drop and recreate both databases first")
    parser.add_argument(
        "--auth",
        choices=sorted(AUTH_MANAGERS),
        default=os.environ.get("AIRFLOW_LOCAL_AUTH", "simple"),
        help="auth manager: simple (default) or fab (users, roles and per-DAG permissions, as in production)",
    )
    parser.add_argument(
        "--executor",
        choices=sorted(EXECUTORS),
        default=os.environ.get("AIRFLOW_LOCAL_EXECUTOR", "local"),
        help="local (LocalExecutor, default) or celery (CeleryExecutor on the local Redis, --workers workers)",
    )
    parser.add_argument("--workers", type=int, default=2, help="Celery workers (with --executor celery)")
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "exec" in argv:
        at = argv.index("exec")
        argv, rest = argv[: at + 1], argv[at + 1 :]
    args = parser.parse_args(argv)
    args.rest = rest
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "exec":
        return exec_command(args)
    if args.command == "stop":
        if stop_from_pid_file(args.home):
            print(f"stopped the Airflow started from {args.home}")
        else:
            print(f"no Airflow running from {args.home}")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

"""`make demo`: seed a demo Primetric database, start the Harvest simulator, run the real DAG of
linked project 1 with `airflow dags test`, and print what landed.

Environment (all optional): PRIMETRIC_DSN (server, default postgresql://postgres@127.0.0.1:5432),
DEMO_DB (database name, default primetric_demo; dropped and recreated), DEMO_PROJECT (default 1).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql as pgsql

from harvest_simulator.demo import demo_command, demo_connection
from primetric_harvest.db import query
from primetric_harvest.names import HARVEST_POOL, HARVEST_POOL_DESCRIPTION, HARVEST_POOL_SLOTS, dag_id

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def table(conn: psycopg.Connection, name: str, project_id: int) -> str:
    cur = conn.execute(query("demo_report", name), {"project_id": project_id})
    header = [c.name for c in cur.description]
    rows = [["" if v is None else str(v) for v in row] for row in cur.fetchall()]
    if not rows:
        return "  (none)"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def main() -> int:
    server = os.environ.get("PRIMETRIC_DSN", "postgresql://postgres@127.0.0.1:5432")
    db = os.environ.get("DEMO_DB", "primetric_demo")
    project_id = int(os.environ.get("DEMO_PROJECT", "1"))
    dsn = f"{server}/{db}"
    airflow_home = Path(os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow")))
    airflow_home.mkdir(parents=True, exist_ok=True)

    step(f"demo Primetric database {db} (fresh)")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(db)))
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(db)))
    env = {
        **os.environ,
        "AIRFLOW_CONN_PRIMETRIC_DB": dsn,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "PRIMETRIC_DAG_CACHE": str(airflow_home / "cache" / "demo_linked_projects.json"),
    }
    os.environ.update(env)
    from primetric_harvest.migrate import migrate

    migrate()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(query("demo_seed", "seed"))

    port = free_port()
    step(f"Harvest simulator (demo scenario) on http://127.0.0.1:{port}")
    sim = subprocess.Popen(
        demo_command(port),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready = sim.stdout.readline()
        if "Harvest simulator on" not in ready:
            print(ready + sim.stdout.read(), file=sys.stderr)
            return 1
        env["AIRFLOW_CONN_HARVEST_DEFAULT"] = demo_connection(f"http://127.0.0.1:{port}")

        step(f"Airflow metadata database (SQLite in .airflow/) and pool {HARVEST_POOL}")
        pool = ["pools", "set", HARVEST_POOL, str(HARVEST_POOL_SLOTS), HARVEST_POOL_DESCRIPTION]
        for cmd in (["db", "migrate"], pool):
            subprocess.run([str(BIN / "airflow"), *cmd], env=env, check=True, capture_output=True, text=True)

        log_path = airflow_home / "demo-run.log"
        step(f"airflow dags test {dag_id(project_id)}   (full log: {log_path.relative_to(ROOT)})")
        started = time.monotonic()
        with open(log_path, "w") as log:
            run = subprocess.run(
                [
                    str(BIN / "airflow"),
                    "dags",
                    "test",
                    dag_id(project_id),
                    "--conf",
                    json.dumps({"since": "2026-09-01"}),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        text = log_path.read_text()
        # What our tasks said (the full Airflow log is in the file).
        for message in re.findall(r"\[(?:info|warning|error)\s*\] (.*?)\s+\[primetric_harvest\.", text):
            print("    " + message)
        if run.returncode != 0:
            print("\n".join(text.splitlines()[-40:]), file=sys.stderr)
            print(f"The DAG run failed (exit {run.returncode}); see {log_path}", file=sys.stderr)
            return 1
        print(f"    run finished in {time.monotonic() - started:.1f} s")
    finally:
        sim.terminate()
        sim.wait(timeout=10)

    with psycopg.connect(dsn) as conn:
        print("\nWork logs per person (synced from Harvest)\n" + table(conn, "worklogs_per_person", project_id))
        print("\nAssignments\n" + table(conn, "assignments", project_id))
        print(
            "\nMissing teammates (add them to Primetric, or assign them)\n"
            + table(conn, "missing_teammates", project_id)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

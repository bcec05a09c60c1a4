"""Which Primetric projects have the Harvest sync switched on: read at DAG parse time.

One cheap query with a short timeout. Its answer is cached on disk so that a database that is
down, or slow, never makes the DAGs vanish or the parse hang: the last good answer stays.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from primetric_harvest.db import connect, query
from primetric_harvest.names import DAG_SHARDS_ENV, MAX_DAG_SHARDS, PRIMETRIC_CONN_ID, ConnectionUse, connection_name

log = logging.getLogger(__name__)
PARSE_TIMEOUT_SECONDS = 3
DEFAULT_FRESHNESS_DEADLINE_HOURS = 6.0  # the column's default (migration 0009)


@dataclass(frozen=True)
class LinkedProject:
    project_id: int
    name: str
    harvest_project_ids: tuple[int, ...]
    daily_schedule: bool = True  # the project's setting: a daily run, or runs only when triggered
    daily_schedule_since: dt.datetime | None = None  # no daily run is due before it (the DAG's start_date)
    # A scheduled run whose work logs are not loaded this long after its scheduled time is reported late.
    freshness_deadline_hours: float = DEFAULT_FRESHNESS_DEADLINE_HOURS


def cache_path() -> Path:
    default = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "cache" / "harvest_linked_projects.json"
    return Path(os.environ.get("PRIMETRIC_DAG_CACHE", default))


def _read_cache(path: Path) -> list[LinkedProject] | None:
    try:
        data = json.loads(path.read_text())
        return [
            LinkedProject(
                p["project_id"],
                p["name"],
                tuple(p["harvest_project_ids"]),
                bool(p.get("daily_schedule", True)),
                dt.datetime.fromisoformat(p["daily_schedule_since"]) if p.get("daily_schedule_since") else None,
                float(p.get("freshness_deadline_hours", DEFAULT_FRESHNESS_DEADLINE_HOURS)),
            )
            for p in data
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(path: Path, projects: list[LinkedProject]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
            json.dump([asdict(p) for p in projects], tmp, default=dt.datetime.isoformat)
        os.replace(tmp.name, path)  # atomic: a parallel parse never reads half a file
    except OSError as exc:
        log.warning("could not write the linked-project cache %s: %s", path, exc)


def linked_projects(conn_id: str = PRIMETRIC_CONN_ID, timeout: int = PARSE_TIMEOUT_SECONDS) -> list[LinkedProject]:
    path = cache_path()
    try:
        with connect(
            conn_id,
            application_name=connection_name(ConnectionUse.DAG_PARSE),
            statement_timeout_ms=timeout * 1000,
            connect_timeout=timeout,
        ) as conn:
            rows = conn.execute(query("project", "linked_projects")).fetchall()
        projects = [
            LinkedProject(int(r[0]), r[1], tuple(int(h) for h in r[2]), bool(r[3]), r[4], float(r[5])) for r in rows
        ]
    except Exception as exc:  # noqa: BLE001 - any failure here must fall back, never break the parse
        cached = _read_cache(path)
        log.warning(
            "Primetric database unreachable at DAG parse (%s: %s); using %s",
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
            f"{len(cached)} cached project(s) from {path}" if cached is not None else "no cache: no DAGs",
        )
        return cached or []
    if projects != _read_cache(path):
        _write_cache(path, projects)
    return projects


def dag_shards() -> int:
    """How many DAG files the projects are split over (PRIMETRIC_DAG_SHARDS, 1 to MAX_DAG_SHARDS; default 1).

    The same value must be set on every Airflow process (dag-processor, workers, API server): a task process
    parses its DAG's file with it, and the Harvest sync page asks for a parse of the file of the project's shard.
    """
    raw = os.environ.get(DAG_SHARDS_ENV, "").strip()
    if not raw:
        return 1
    try:
        shards = int(raw)
    except ValueError:
        raise ValueError(f"{DAG_SHARDS_ENV}={raw!r}: give a whole number from 1 to {MAX_DAG_SHARDS}") from None
    if not 1 <= shards <= MAX_DAG_SHARDS:
        raise ValueError(f"{DAG_SHARDS_ENV}={raw!r}: give a whole number from 1 to {MAX_DAG_SHARDS}")
    return shards

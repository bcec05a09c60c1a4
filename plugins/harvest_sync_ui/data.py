"""What the Harvest sync page shows, read from the Primetric database (SQL: include/sql/ui.sql, settings.sql).

Plain values only (str, int, float, bool, lists, dicts): the page renders them and the JSON API returns them.
Nothing here can carry a secret: the queries read Primetric data and the sync's own state, never connections.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from psycopg.rows import dict_row

from primetric_harvest import progress, project_settings
from primetric_harvest.db import connect, query
from primetric_harvest.harvest_projects import HarvestProjectList, harvest_projects
from primetric_harvest.names import PRIMETRIC_CONN_ID, dag_id
from primetric_harvest.project_settings import HELP, LABELS, ProjectSetup
from primetric_harvest.skip_reasons import SkipReason

LIST_LIMIT = 200


def age_text(age: dt.timedelta | None) -> str | None:
    """'just now', '5 min ago', '3 h 10 min ago', '2 d 4 h ago'."""
    if age is None:
        return None
    seconds = max(0, int(age.total_seconds()))
    if seconds < 60:
        return "just now"
    minutes, hours, days = seconds // 60 % 60, seconds // 3600 % 24, seconds // 86400
    if days:
        return f"{days} d {hours} h ago" if hours else f"{days} d ago"
    if hours:
        return f"{hours} h {minutes} min ago" if minutes else f"{hours} h ago"
    return f"{minutes} min ago"


def plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _labels(ids: list[int], known: HarvestProjectList) -> list[dict]:
    by_id = known.by_id()
    out = []
    for i in ids:
        found = by_id.get(i)
        label = found.label if found else f"Harvest project {i}"
        out.append({"id": i, "label": label, "is_active": found.is_active if found else None})
    return out


def _project(row: dict, known: HarvestProjectList) -> dict:
    out = {k: plain(v) for k, v in row.items() if k not in ("last_success_age", "full_count")}
    out["last_success_age"] = age_text(row["last_success_age"])
    out["hours"] = round(float(row["hours"]), 2)
    out["dag_id"] = dag_id(row["project_id"])
    out["harvest_projects"] = _labels(out["harvest_project_ids"], known)
    return out


def _like(q: str | None) -> str | None:
    q = (q or "").strip()[:100]
    return q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") if q else None


def projects(q: str | None = None, conn_id: str = PRIMETRIC_CONN_ID, limit: int = LIST_LIMIT) -> tuple[list[dict], int]:
    """Primetric projects (set-up ones first) matching ``q``, and how many match in all."""
    known = harvest_projects(fetch=False)  # labels from the cache, whatever its age
    if known.fetched_at is None:
        known = harvest_projects()  # never fetched: once, so that the list shows names rather than ids
    with connect(conn_id) as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query("ui", "projects"), {"project_id": None, "q": _like(q), "limit": limit}).fetchall()
    return [_project(r, known) for r in rows], (rows[0]["full_count"] if rows else 0)


def _reason(row: dict) -> dict:
    reason = SkipReason.from_code(row["reason"])
    row["why"] = reason.text if reason else row["reason"]
    row["reason_text"] = row["why"][:1].upper() + row["why"][1:]
    row["action"] = reason.action if reason else ""
    row["action_text"] = row["action"][:1].upper() + row["action"][1:]
    return row


def missing_teammates(conn, project_id: int) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query("ui", "missing_teammates"), {"project_id": project_id}).fetchall()
    return [_reason({k: plain(v) for k, v in r.items()}) for r in rows]


def project_detail(project_id: int, conn_id: str = PRIMETRIC_CONN_ID) -> dict | None:
    """Everything the project page shows from the database; None if Primetric has no such project."""
    if not project_settings.valid_id(project_id):
        return None
    known = harvest_projects(fetch=False)
    p = {"project_id": project_id, "q": None, "limit": 1}
    with connect(conn_id) as conn:
        setup = project_settings.load(conn, project_id)
        if setup is None:
            return None
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(query("ui", "projects"), p).fetchone()
            kept_aside = cur.execute(query("ui", "skipped_by_reason"), p).fetchall()
            skipped = [_reason({k: plain(v) for k, v in r.items()}) for r in kept_aside]
            people = [{k: plain(v) for k, v in r.items()} for r in cur.execute(query("ui", "hours_by_person"), p)]
        missing = missing_teammates(conn, project_id)
        by_id = known.by_id()
        history = project_settings.history(
            conn, project_id, harvest_label=lambda i: by_id[i].label + f" [{i}]" if i in by_id else str(i)
        )
        synced = project_settings.synced_worklogs(conn, project_id)
    return {
        **_project(row, known),
        **setup_view(setup),
        "missing": missing,
        "skipped_by_reason": skipped,
        "hours_by_person": people,
        "history": [
            {"changed_at": plain(h.changed_at), "changed_by": h.changed_by, "changes": [list(c) for c in h.changes]}
            for h in history
        ],
        "synced": {"worklogs": synced[0], "first_work_date": plain(synced[1]), "last_work_date": plain(synced[2])},
    }


def setup_view(setup: ProjectSetup) -> dict:
    s = setup.settings
    return {
        "linked": setup.linked,
        "version": setup.version,
        "settings": {
            "enabled": s.enabled,
            "harvest_project_ids": list(s.harvest_project_ids),
            "prevent_new_assignment_creation": s.prevent_new_assignment_creation,
            "trim_assignments_to_worklogs": s.trim_assignments_to_worklogs,
            "sync_since": plain(s.sync_since),
            "daily_schedule": s.daily_schedule,
        },
        "daily_schedule_since": plain(setup.daily_schedule_since),
        "labels": LABELS,
        "help": HELP,
    }


def extract_progress(project_id: int, run_id: str, conn_id: str = PRIMETRIC_CONN_ID) -> dict | None:
    with connect(conn_id) as conn:
        found = progress.read(conn, project_id, run_id)
    return {"pages": found.pages, "entries": found.entries} if found else None

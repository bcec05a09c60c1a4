"""What the Harvest sync page shows, read from the Primetric database (SQL: include/sql/ui.sql).

Plain values only (str, int, float, bool, lists, dicts): the page renders them and the JSON API returns them.
Nothing here can carry a secret: the queries read Primetric data and the sync's own state, never connections.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from psycopg.rows import dict_row

from primetric_harvest.db import connect, query
from primetric_harvest.names import PRIMETRIC_CONN_ID, dag_id
from primetric_harvest.skip_reasons import SkipReason


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


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _project(row: dict) -> dict:
    out = {k: _plain(v) for k, v in row.items() if k != "last_success_age"}
    out["last_success_age"] = age_text(row["last_success_age"])
    out["hours"] = round(float(row["hours"]), 2)
    out["dag_id"] = dag_id(row["project_id"])
    return out


def projects(conn_id: str = PRIMETRIC_CONN_ID) -> list[dict]:
    """One dict per linked Primetric project, ordered by id."""
    with connect(conn_id) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query("ui", "projects"), {"project_id": None})
        return [_project(r) for r in cur.fetchall()]


def project_detail(project_id: int, conn_id: str = PRIMETRIC_CONN_ID) -> dict | None:
    """The project's row, its missing teammates and its skipped entries by reason; None if not linked."""
    p = {"project_id": project_id}
    with connect(conn_id) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query("ui", "projects"), p)
        row = cur.fetchone()
        if row is None:
            return None
        cur.execute(query("ui", "missing_teammates"), p)
        missing = [{k: _plain(v) for k, v in r.items()} for r in cur.fetchall()]
        cur.execute(query("ui", "skipped_by_reason"), p)
        skipped = [{k: _plain(v) for k, v in r.items()} for r in cur.fetchall()]
    for row_ in (*missing, *skipped):
        reason = SkipReason.from_code(row_["reason"])
        row_["reason_text"] = (
            f"{reason.text[:1].upper()}{reason.text[1:]}: {reason.action}" if reason else row_["reason"]
        )
    return {**_project(row), "missing": missing, "skipped_by_reason": skipped}

"""How far a run's extract has got, for the Harvest sync page: pages and entries fetched so far.

One row per run in ``harvest_sync.run_progress``, written in autocommit after each page (the extract's own
transaction stays open until its last page, so the page could not see rows written inside it). Writing
progress is never worth failing a sync over: an error is logged once and progress stops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

from primetric_harvest.db import query

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractProgress:
    pages: int
    entries: int


class RunProgress:
    def __init__(self, conn: psycopg.Connection, project_id: int, run_id: str):
        self.conn = conn  # autocommit
        self.params = {"project_id": project_id, "run_id": run_id}
        self._broken = False

    def _write(self, name: str, **params: object) -> None:
        if self._broken:
            return
        try:
            self.conn.execute(query("progress", name), {**self.params, **params})
        except psycopg.Error as exc:
            self._broken = True
            log.warning("could not record the extract's progress (the sync goes on): %s", str(exc).strip())

    def start(self) -> None:
        self._write("start")

    def page(self, entries: int) -> None:
        self._write("page", entries=entries)


def read(conn: psycopg.Connection, project_id: int, run_id: str) -> ExtractProgress | None:
    row = conn.execute(query("progress", "read"), {"project_id": project_id, "run_id": run_id}).fetchone()
    return ExtractProgress(int(row[0]), int(row[1])) if row else None

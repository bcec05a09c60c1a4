"""Harvest's projects (active and archived) for the Harvest sync page's "Select projects" field.

Read with ``GET /v2/projects`` through the sync's own Harvest connection, rate limiter (the account's shared
token bucket in PostgreSQL) and token handling (personal token or OAuth2), and cached per Harvest account
in ``harvest_sync.harvest_projects`` for a few minutes: every API server worker shares the cache, and the
page's refresh control fetches again. When Harvest cannot be reached the last list is returned with the
error, so the form still shows the current links.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass

import psycopg
from psycopg.rows import dict_row

from primetric_harvest.db import connect, one_row, query
from primetric_harvest.names import HARVEST_CONN_ID, PRIMETRIC_CONN_ID

log = logging.getLogger(__name__)
CACHE_SECONDS = 300
PAGE_CONTEXT = "the Harvest sync page"


@dataclass(frozen=True)
class HarvestProject:
    id: int
    name: str
    code: str | None = None
    client: str | None = None
    is_active: bool = True

    @property
    def label(self) -> str:
        """As the page shows it: "Client — Project (code)"."""
        text = f"{self.client} — {self.name}" if self.client else self.name
        return f"{text} ({self.code})" if self.code else text

    @classmethod
    def from_api(cls, record: dict) -> HarvestProject | None:
        """One project of Harvest's answer; None for a record without an integer id (not pickable)."""
        pid = record.get("id") if isinstance(record, dict) else None
        if not isinstance(pid, int) or isinstance(pid, bool):
            return None
        client = given if isinstance(given := record.get("client"), dict) else {}
        return cls(
            id=pid,
            name=str(record.get("name") or f"Project {pid}"),
            code=str(record["code"]) if record.get("code") else None,
            client=str(client["name"]) if client.get("name") else None,
            is_active=record.get("is_active") is not False,
        )


@dataclass(frozen=True)
class HarvestProjectList:
    projects: tuple[HarvestProject, ...]
    fetched_at: dt.datetime | None  # None: never fetched
    error: str | None = None  # Harvest could not be reached (the list is the last one fetched, if any)

    def ids(self) -> set[int]:
        return {p.id for p in self.projects}

    def by_id(self) -> dict[int, HarvestProject]:
        return {p.id: p for p in self.projects}


def harvest_hook(limiter_conn: psycopg.Connection, harvest_conn_id: str = HARVEST_CONN_ID):
    """A Harvest hook for the page: the account's shared rate limiter, few retries (someone is waiting)."""
    from primetric_harvest.harvest_hook import HarvestHook
    from primetric_harvest.rate_limit import PostgresRateLimiter

    class PageHarvestHook(HarvestHook):
        max_throttle_waits = 3

    settings = dataclasses.replace(HarvestHook.settings_for(harvest_conn_id), max_attempts=2)
    limiter = PostgresRateLimiter(limiter_conn, settings.account_id, *settings.rate_limit)
    return PageHarvestHook(harvest_conn_id, context=PAGE_CONTEXT, settings=settings, rate_limiter=limiter)


def _fetch(limiter_conn: psycopg.Connection, harvest_conn_id: str) -> tuple[str, list[HarvestProject]]:
    hook = harvest_hook(limiter_conn, harvest_conn_id)
    projects = [p for page in hook.projects() for p in map(HarvestProject.from_api, page) if p is not None]
    return hook.account_id, sorted(projects, key=lambda p: (not p.is_active, p.label.lower(), p.id))


def _account_id(harvest_conn_id: str) -> str:
    from airflow.sdk import BaseHook

    from primetric_harvest.harvest_api import harvest_account_id

    return harvest_account_id(BaseHook.get_connection(harvest_conn_id), harvest_conn_id)


def harvest_projects(
    *,
    refresh: bool = False,
    fetch: bool = True,
    max_age_seconds: float = CACHE_SECONDS,
    harvest_conn_id: str = HARVEST_CONN_ID,
    primetric_conn_id: str = PRIMETRIC_CONN_ID,
) -> HarvestProjectList:
    """Harvest's projects, from the cache when younger than ``max_age_seconds`` (unless ``refresh``).

    ``fetch=False``: the cache whatever its age (labels for a page that must not wait for Harvest).
    """
    with connect(primetric_conn_id, autocommit=True) as conn:
        cached: dict | None = None
        account_id: str | None = None
        try:
            account_id = _account_id(harvest_conn_id)
            with conn.cursor(row_factory=dict_row) as cur:
                cached = cur.execute(query("harvest_projects", "cached"), {"account_id": account_id}).fetchone()
        except Exception as exc:  # noqa: BLE001 - no Harvest connection, or no account id in it
            return HarvestProjectList((), None, error=_first_line(exc))
        if not fetch or (cached and not refresh and cached["age_seconds"] < max_age_seconds):
            return _from_cache(cached) if cached else HarvestProjectList((), None)
        try:
            account_id, projects = _fetch(conn, harvest_conn_id)
        except Exception as exc:  # noqa: BLE001 - whatever stops the fetch, the page still shows the links
            log.warning("Harvest sync page: GET /v2/projects failed: %s", _first_line(exc))
            stale = _from_cache(cached) if cached else HarvestProjectList((), None)
            return HarvestProjectList(stale.projects, stale.fetched_at, error=_first_line(exc))
        (fetched_at,) = one_row(
            conn.execute(
                query("harvest_projects", "store"),
                {"account_id": account_id, "projects": json.dumps([asdict(p) for p in projects])},
            )
        )
        return HarvestProjectList(tuple(projects), fetched_at)


def _from_cache(row: dict) -> HarvestProjectList:
    projects = tuple(HarvestProject(**p) for p in row["projects"])
    return HarvestProjectList(projects, row["fetched_at"])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:299] + "…"

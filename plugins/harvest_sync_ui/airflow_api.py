"""Airflow's own REST API, called with the signed-in user's token: the page can do exactly what the user may.

The token is the caller's (``Authorization: Bearer`` header, else the UI's ``_token`` cookie); it is passed on
to /api/v2 and never stored, logged or shown.

Two things the REST API cannot do for every user are done here through Airflow's models, as the API server
itself, after the page's own permission check (primetric_harvest.web_auth): knowing whether a project's DAG
exists (a user who may not read it gets 403 from the API, not "no such DAG"), and asking for the DAG file to
be parsed again when no DAG of the file exists yet (the very first project: ``PUT /parseDagFile`` needs a DAG
of the file to authorize against) or when the user may edit their own project's DAG but not all the DAGs
the file holds.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import Request

from primetric_harvest.names import DAG_ID_PREFIX, dag_file

log = logging.getLogger(__name__)
COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
MAX_DETAIL_CHARS = 300  # what an error message repeats of Airflow's answer
TASKS = ("extract", "transform", "load", "report")  # the steps of a run, in order (dag_factory.py)


class AirflowApiError(Exception):
    """An /api/v2 call answered with an error: its status and Airflow's own message (first line, capped)."""

    def __init__(self, status: int, detail: str):
        detail = (detail.strip().splitlines() or [""])[0]
        detail = detail if len(detail) <= MAX_DETAIL_CHARS else detail[: MAX_DETAIL_CHARS - 1] + "…"
        super().__init__(detail)
        self.status = status
        self.detail = detail


def caller_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return credentials.strip()
    return request.cookies.get(COOKIE)


def api_base(request: Request) -> str:
    """Where /api/v2 answers: HARVEST_UI_AIRFLOW_API_URL, else [api] base_url, else the request's host."""
    explicit = os.environ.get("HARVEST_UI_AIRFLOW_API_URL")
    if explicit:
        return explicit.rstrip("/")
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="") or ""
    if base.startswith(("http://", "https://")):
        return base.rstrip("/")
    return f"{request.url.scheme}://{request.url.netloc}{base.rstrip('/')}"


def ui_root() -> str:
    """Path of the Airflow UI's root ('/' or '/airflow/'), for links from the page to DAGs and runs."""
    from airflow.configuration import conf

    path = urllib.parse.urlsplit(conf.get("api", "base_url", fallback="") or "").path
    return path.rstrip("/") + "/"


def dag_url(dag_id: str) -> str:
    return f"{ui_root()}dags/{dag_id}"


def run_url(dag_id: str, run_id: str) -> str:
    return f"{ui_root()}dags/{dag_id}/runs/{urllib.parse.quote(run_id, safe='')}"


def task_log_url(dag_id: str, run_id: str, task_id: str, try_number: int | None) -> str:
    """The task's log in Airflow's UI, as the task SDK builds it (``ti.log_url``)."""
    tries = f"?try_number={try_number}" if try_number else ""
    return f"{run_url(dag_id, run_id)}/tasks/{task_id}{tries}"


def _detail(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:MAX_DETAIL_CHARS] or answer.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI validation errors
        return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return str(detail)


def _time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class DagState:
    """What the page needs to know about a project's DAG in Airflow."""

    dag_id: str
    is_paused: bool
    daily: bool  # has a schedule (the project's Daily sync setting, once parsed)
    start_date: dt.datetime | None
    next_run_after: dt.datetime | None  # when the scheduler creates its next scheduled run (None: never)
    file_token: str | None = None

    @classmethod
    def of(cls, body: dict) -> DagState:
        return cls(
            dag_id=body["dag_id"],
            is_paused=bool(body.get("is_paused")),
            daily=bool(body.get("timetable_summary")),
            start_date=_time(body.get("start_date")),
            next_run_after=_time(body.get("next_dagrun_run_after")),
            file_token=body.get("file_token"),
        )

    def run_due(self, now: dt.datetime, margin: dt.timedelta = dt.timedelta(minutes=1)) -> bool:
        """Whether unpausing now would make the scheduler start a scheduled run as well (a missed daily run)."""
        return self.next_run_after is not None and self.next_run_after <= now + margin


@dataclass
class AirflowApi:
    base: str
    token: str

    @classmethod
    def for_request(cls, request: Request) -> AirflowApi:
        token = caller_token(request)
        if not token:
            raise AirflowApiError(401, "not signed in to Airflow")
        return cls(api_base(request), token)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        with httpx.Client(base_url=self.base, timeout=TIMEOUT) as client:
            answer = client.request(method, path, headers={"Authorization": f"Bearer {self.token}"}, **kwargs)
        if answer.status_code >= 400:
            raise AirflowApiError(answer.status_code, _detail(answer))
        return answer.json() if answer.content else None

    def dags(self, pattern: str = DAG_ID_PREFIX, **filters: Any) -> dict[str, DagState]:
        """Every sync DAG the user may read (all pages), by id."""
        out: dict[str, DagState] = {}
        offset = 0
        while True:
            body = self._call(
                "GET", "/api/v2/dags", params={"dag_id_pattern": pattern, "limit": 1000, "offset": offset, **filters}
            )
            out.update({d["dag_id"]: DagState.of(d) for d in body["dags"]})
            offset += len(body["dags"])
            if not body["dags"] or offset >= body.get("total_entries", 0):
                return out

    def dag(self, dag_id: str) -> DagState:
        return DagState.of(self._call("GET", f"/api/v2/dags/{dag_id}/details"))

    def set_paused(self, dag_id: str, paused: bool) -> DagState:
        return DagState.of(self._call("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused}))

    def trigger(self, dag_id: str, conf: dict) -> dict:
        # logical_date must be present (null: "now"), else 422.
        return self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})

    def runs(self, dag_id: str, limit: int = 5) -> list[dict]:
        body = self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": limit})
        return body["dag_runs"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances"
        return self._call("GET", path)["task_instances"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> list:
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}"
            f"/logs/{try_number}"
        )
        return self._call("GET", path, params={"full_content": "true"}).get("content") or []

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}"
            f"/xcomEntries/{key}"
        )
        return self._call("GET", path).get("value")

    def dags_with_last_run(self, state: str) -> set[str]:
        """The sync DAGs whose latest run is in ``state`` (queued, running, success, failed)."""
        return set(self.dags(last_dag_run_state=state))

    def reparse(self, file_token: str) -> None:
        self._call("PUT", f"/api/v2/parseDagFile/{file_token}")


def first_error_line(log_content: list) -> str | None:
    """The first line of the error a failed task's log ends with (the real cause, not Airflow's wrapper)."""
    for event in log_content:
        if not isinstance(event, dict) or not event.get("error_detail"):
            continue
        chain = [e for e in event["error_detail"] if isinstance(e, dict)]
        cause = next((e for e in chain if e.get("exc_type") != "AirflowFailException"), chain[0] if chain else None)
        if cause is None:
            continue
        text = (str(cause.get("exc_value") or "").strip().splitlines() or [""])[0]
        line = f"{cause.get('exc_type', 'Error')}: {text}" if text else str(cause.get("exc_type", "Error"))
        return line if len(line) <= MAX_DETAIL_CHARS else line[: MAX_DETAIL_CHARS - 1] + "…"
    return None


# -- through Airflow's models, as the API server (after the page's own permission check) -------------------
def dag_exists(dag_id: str) -> bool:
    """Whether Airflow has the DAG (parsed and not stale), whoever asks."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        found = session.scalar(select(DagModel.dag_id).where(DagModel.dag_id == dag_id, DagModel.is_stale.is_(False)))
    return found is not None


def _dag_file_location(shard: int = 0) -> tuple[str, str] | None:
    """(bundle name, path in the bundle) of the sync's DAG file of ``shard``: from any DAG it ever held, else
    found on disk."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(DagModel.bundle_name, DagModel.relative_fileloc)
            .where(
                DagModel.dag_id.like(f"{DAG_ID_PREFIX}%"),
                DagModel.relative_fileloc.is_not(None),
                DagModel.relative_fileloc.like(f"%{dag_file(shard)}"),
            )
            .limit(1)
        ).first()
    if row:
        return row[0], row[1]
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    for bundle in DagBundlesManager().get_all_dag_bundles():
        try:
            path = bundle.path
        except Exception:  # noqa: BLE001 - a bundle that is not local has no path to search
            continue
        found = next(iter(sorted(path.rglob(dag_file(shard)))), None) if path.is_dir() else None
        if found is not None:
            return bundle.name, str(found.relative_to(path))
    return None


def request_parse_as_server(shard: int = 0) -> bool:
    """Ask the DAG processor to parse the sync's DAG file (of ``shard``) at once (what ``PUT /parseDagFile`` does)."""
    from airflow.models.dagbag import DagPriorityParsingRequest
    from airflow.utils.session import create_session
    from sqlalchemy import select

    location = _dag_file_location(shard)
    if location is None:
        log.warning("Harvest sync page: the DAG file %s was found in no DAG bundle", dag_file(shard))
        return False
    bundle_name, relative_fileloc = location
    with create_session() as session:
        pending = session.scalar(
            select(DagPriorityParsingRequest.id).where(
                DagPriorityParsingRequest.bundle_name == bundle_name,
                DagPriorityParsingRequest.relative_fileloc == relative_fileloc,
            )
        )
        if pending is None:
            session.add(DagPriorityParsingRequest(bundle_name=bundle_name, relative_fileloc=relative_fileloc))
    return True


def unpause_for_run(api: AirflowApi, dag_id: str, who: str) -> bool:
    """Unpause a DAG for a run the user may trigger: with their token, else (they may trigger but not edit the
    DAG, e.g. a FAB role per project) as the API server. The caller has made sure no other run starts."""
    try:
        api.set_paused(dag_id, False)
        return True
    except AirflowApiError as exc:
        if exc.status != 403:
            raise
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == dag_id).values(is_paused=False))
    log.info("Harvest sync page: unpaused %s for a run of %s (who may trigger it but not edit it)", dag_id, who)
    return True

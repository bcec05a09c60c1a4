"""The "Harvest sync" page: a FastAPI app the Airflow API server mounts at /harvest (see harvest_sync_ui_plugin.py).

Pages (HTML, shown in the UI's navigation through an external view) and a small JSON API the pages' buttons
call. Every route requires a signed-in Airflow user (primetric_harvest.web_auth.require_user): a plugin's app
is NOT behind Airflow's authentication by itself. What the user may do with each project is asked of Airflow's
auth manager about that project's DAG (web_auth.may / require): the pages list only the projects the user may
VIEW and show "Sync now" / "Reset from date…" only where they may OPERATE; every project route checks the
same before it reads or does anything, and refuses with a 403 that names the missing permission. The trigger
itself goes through Airflow's REST API with the user's own token, so Airflow checks it once more.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import psycopg
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from harvest_sync_ui import data
from harvest_sync_ui.airflow_api import AirflowApi, AirflowApiError, ui_root
from primetric_harvest.names import dag_id
from primetric_harvest.web_auth import OPERATE, VIEW, login_redirect, may, require, require_user, user_name

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
URL_PREFIX = "/harvest"
templates = Jinja2Templates(directory=HERE / "templates")
_bearer = HTTPBearer(auto_error=False)

app = FastAPI(title="Harvest sync", docs_url=None, redoc_url=None, openapi_url=None)


class LoginRequired(Exception):
    """A page (not the JSON API) was asked for without a valid Airflow session: send the browser to log in."""


@app.exception_handler(LoginRequired)
async def _to_login(request: Request, exc: LoginRequired):
    return login_redirect(request)


@app.exception_handler(AirflowApiError)
async def _airflow_refused(request: Request, exc: AirflowApiError):
    message = exc.detail.splitlines()[0] if exc.detail else "error"
    if "param since" in exc.detail:
        message += " — expected a date as YYYY-MM-DD"
    return JSONResponse(
        status_code=exc.status, content={"detail": f"Airflow refused ({exc.status}): {message}", "airflow": exc.detail}
    )


@app.exception_handler(httpx.HTTPError)
async def _airflow_unreachable(request: Request, exc: httpx.HTTPError):
    log.error("Harvest sync page: Airflow's REST API did not answer: %s", exc)
    return JSONResponse(
        status_code=502, content={"detail": f"Airflow's REST API did not answer ({type(exc).__name__})"}
    )


@app.exception_handler(psycopg.Error)
async def _database_down(request: Request, exc: psycopg.Error):
    # The exception text may name hosts and users: log it, show only what a user can act on.
    log.error("Harvest sync page: Primetric database error: %s", exc)
    return JSONResponse(
        status_code=503,
        content={"detail": f"The Primetric database (connection primetric_db) is not available: {type(exc).__name__}"},
    )


async def page_user(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Any:  # noqa: B008
    try:
        return await require_user(request, bearer)
    except HTTPException as exc:
        if exc.status_code in (401, 403):
            raise LoginRequired from None
        raise


def _links(project_id: int) -> dict[str, str]:
    root = ui_root()
    dag = dag_id(project_id)
    return {"dag": f"{root}dags/{dag}", "runs": f"{root}dags/{dag}/runs"}


def _run_view(run: dict) -> dict:
    root = ui_root()
    return {
        "dag_run_id": run["dag_run_id"],
        "run_type": run.get("run_type"),
        "state": run.get("state"),
        "conf": run.get("conf") or {},
        "start_date": run.get("start_date"),
        "end_date": run.get("end_date"),
        "triggering_user_name": run.get("triggering_user_name"),
        "url": f"{root}dags/{run['dag_id']}/runs/{run['dag_run_id']}",
    }


def _dag_states(request: Request) -> dict[str, dict]:
    """is_paused / existence of every harvest_sync_* DAG the user may see; {} when Airflow refuses."""
    try:
        return AirflowApi.for_request(request).dags()
    except (AirflowApiError, httpx.HTTPError) as exc:
        log.warning("Harvest sync page: could not list DAGs: %s", exc)
        return {}


def _projects_view(request: Request, user: Any) -> list[dict]:
    """The linked projects ``user`` may view, each with whether they may operate it."""
    visible = [p for p in data.projects() if may(user, VIEW, p["dag_id"])]
    dags = _dag_states(request) if visible else {}
    out = []
    for project in visible:
        dag = dags.get(project["dag_id"])
        out.append(
            {
                **project,
                "links": _links(project["project_id"]),
                "dag_exists": dag is not None,
                "is_paused": None if dag is None else dag.get("is_paused"),
                "may_operate": may(user, OPERATE, project["dag_id"]),
            }
        )
    return out


def _detail_view(request: Request, project_id: int, user: Any) -> dict:
    require(user, VIEW, dag_id(project_id))
    project = data.project_detail(project_id)
    if project is None:
        raise HTTPException(404, f"Primetric project {project_id} is not linked to Harvest (no harvest_settings row)")
    api = AirflowApi.for_request(request)
    runs: list[dict] = []
    runs_error = None
    dag = None
    try:
        dag = api.dag(project["dag_id"])
        runs = [_run_view(r) for r in api.runs(project["dag_id"])]
    except AirflowApiError as exc:
        runs_error = exc.detail if exc.status != 404 else f"Airflow has no DAG {project['dag_id']} (sync switched off?)"
    return {
        **project,
        "links": _links(project_id),
        "dag_exists": dag is not None,
        "is_paused": None if dag is None else dag.get("is_paused"),
        "runs": runs,
        "runs_error": runs_error,
        "may_operate": may(user, OPERATE, project["dag_id"]),
    }


# -- pages ------------------------------------------------------------------------------------------
@app.get("/")
def index(request: Request, user: Any = Depends(page_user)):  # noqa: B008
    if not request.url.path.endswith("/"):  # "/harvest": the page's relative links need the trailing slash
        return RedirectResponse(request.url.replace(path=request.url.path + "/"), status_code=307)
    return templates.TemplateResponse(
        request,
        "index.html",
        {"projects": _projects_view(request, user), "user": user_name(user), "base": "./"},
    )


@app.get("/projects/{project_id}")
def project_page(project_id: int, request: Request, user: Any = Depends(page_user)):  # noqa: B008
    try:
        p = _detail_view(request, project_id, user)
    except HTTPException as exc:  # a page, not JSON: say it in the page (inside Airflow's UI)
        if exc.status_code not in (403, 404):
            raise
        context = {"message": exc.detail, "user": user_name(user), "base": "../"}
        return templates.TemplateResponse(request, "refused.html", context, status_code=exc.status_code)
    return templates.TemplateResponse(request, "project.html", {"p": p, "user": user_name(user), "base": "../"})


# -- JSON API (what the pages' buttons call) ---------------------------------------------------------
class SyncRequest(BaseModel):
    since: str | None = None  # "YYYY-MM-DD": reset and sync from that date; validated by the DAG's params
    unpause: bool = True  # a paused DAG's run would wait in "queued": unpause it first (as Airflow's UI offers)


@app.get("/api/projects")
def api_projects(request: Request, user: Any = Depends(require_user)):  # noqa: B008
    return {"projects": _projects_view(request, user)}


@app.get("/api/projects/{project_id}")
def api_project(project_id: int, request: Request, user: Any = Depends(require_user)):  # noqa: B008
    return _detail_view(request, project_id, user)


@app.post("/api/projects/{project_id}/runs")
def api_sync(project_id: int, body: SyncRequest, request: Request, user: Any = Depends(require_user)):  # noqa: B008
    # Before anything else: may this user trigger this project's DAG? (403 naming what is missing.)
    require(user, OPERATE, dag_id(project_id))
    # JSON only: a cross-site form cannot send it without a CORS preflight, which this app never allows.
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise HTTPException(415, "send application/json")
    project = data.project_detail(project_id)
    if project is None:
        raise HTTPException(404, f"Primetric project {project_id} is not linked to Harvest")
    if not project["enabled"]:
        raise HTTPException(409, f"the Harvest sync of project {project_id} is switched off (harvest_settings.enabled)")
    api = AirflowApi.for_request(request)
    sync_dag = project["dag_id"]
    dag = api.dag(sync_dag)
    unpaused = False
    if dag.get("is_paused") and body.unpause:
        api.set_paused(sync_dag, False)
        unpaused = True
    since = (body.since or "").strip() or None
    run = api.trigger(sync_dag, {"since": since} if since else {})
    log.info(
        "Harvest sync page: %s triggered %s (%s)", user_name(user), sync_dag, "since " + since if since else "sync"
    )
    return {
        **_run_view(run),
        "dag_id": sync_dag,
        "unpaused": unpaused,
        "paused": bool(dag.get("is_paused")) and not unpaused,
    }


@app.get("/api/projects/{project_id}/runs/{run_id:path}")
def api_run(project_id: int, run_id: str, request: Request, user: Any = Depends(require_user)):  # noqa: B008
    require(user, VIEW, dag_id(project_id))
    return _run_view(AirflowApi.for_request(request).run(dag_id(project_id), run_id))

"""The "Harvest sync" page: a FastAPI app the Airflow API server mounts at /harvest (see harvest_sync_ui_plugin.py).

Pages (HTML, shown in the UI's navigation through an external view) and the JSON API the pages' buttons call.
A plugin's app is NOT behind Airflow's authentication: every route requires a signed-in Airflow user, and
Airflow's auth manager decides what they may do (primetric_harvest.web_auth ``may``/``require``): reading a
project needs read access to its DAG; changing its settings and links, and running it, the right to trigger
its DAG; setting up a project that has no DAG yet, the right to edit DAGs. Runs are triggered through
Airflow's REST API with the user's own token, so Airflow checks again.

Every answer carries ``frame-ancestors 'self'`` (only Airflow's UI may frame the pages); every write takes
JSON from a page of this origin only.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import httpx
import psycopg
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from harvest_sync_ui import airflow_api, data
from harvest_sync_ui.airflow_api import TASKS, AirflowApi, AirflowApiError, DagState
from primetric_harvest import project_settings, web_look
from primetric_harvest.db import connect
from primetric_harvest.harvest_projects import harvest_projects
from primetric_harvest.names import dag_id, dag_shard, project_id_of
from primetric_harvest.plan import CLEAR_DATA, CONFIRM_PROJECT_NAME, SINCE, InvalidSyncRequest, parse_sync_request
from primetric_harvest.project_settings import SettingsError
from primetric_harvest.registry import dag_shards
from primetric_harvest.results import RunSummary, from_xcom
from primetric_harvest.web_auth import (
    OPERATE,
    SET_UP,
    VIEW,
    login_redirect,
    may,
    protect_pages,
    require,
    require_same_origin,
    require_user,
    user_name,
)

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
URL_PREFIX = "/harvest"
NAV_LABEL = "Harvest"  # the page's entry in Airflow's navigation (and its iframe's title)
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["airflow_look"] = web_look.HEAD
_bearer = HTTPBearer(auto_error=False)
MAX_FAILED_DETAILS = 20  # failed projects whose failure the list explains (each costs a few API calls)

app = FastAPI(title="Harvest sync", docs_url=None, redoc_url=None, openapi_url=None)
protect_pages(app)


class LoginRequired(Exception):
    """A page (not the JSON API) was asked for without a valid Airflow session: send the browser to log in."""


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith(f"{request.scope.get('root_path', '')}/api/")


def _field(name: str | None) -> str | None:
    """A field name as an answer repeats it: a name sent by the caller may be anything, of any length."""
    return None if name is None else name if len(name) <= 60 else name[:59] + "…"


def _error(request: Request, status: int, detail: str, **extra: Any):
    if _wants_html(request) and request.method == "GET":
        return templates.TemplateResponse(
            request, "error.html", {"status": status, "detail": detail, "base": _base(request)}, status_code=status
        )
    return JSONResponse(status_code=status, content={"detail": detail, **extra})


def _base(request: Request) -> str:
    """Relative path from the request's page to the app root (the page may live under a sub-path)."""
    inner = request.url.path[len(request.scope.get("root_path", "")) :]
    return "../" * max(0, inner.count("/") - 1) or "./"


@app.exception_handler(LoginRequired)
async def _to_login(request: Request, exc: LoginRequired):
    return login_redirect(request)


@app.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException):
    return _error(request, exc.status_code, str(exc.detail))


@app.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError):
    # FastAPI's own answer repeats every input in full (a 2 MB field three times): name the field only.
    first = exc.errors()[0] if exc.errors() else {}
    field = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    field = _field(field)
    return _error(request, 422, f"{field or 'request'}: {first.get('msg', 'invalid')}", field=field)


@app.exception_handler(SettingsError)
async def _settings_refused(request: Request, exc: SettingsError):
    return _error(request, exc.status, exc.message, field=_field(exc.field))


@app.exception_handler(InvalidSyncRequest)
async def _run_refused(request: Request, exc: InvalidSyncRequest):
    return _error(request, 422, str(exc), field=_field(exc.field))


@app.exception_handler(AirflowApiError)
async def _airflow_refused(request: Request, exc: AirflowApiError):
    status = 502 if exc.status >= 500 else exc.status
    message = exc.detail + (" (expected a date as YYYY-MM-DD)" if "param since" in exc.detail else "")
    return _error(request, status, f"Airflow refused ({exc.status}): {message}")


@app.exception_handler(httpx.HTTPError)
async def _airflow_unreachable(request: Request, exc: httpx.HTTPError):
    log.error("Harvest sync page: Airflow's REST API did not answer: %s", exc)
    return _error(request, 502, f"Airflow's REST API did not answer ({type(exc).__name__}); try again")


@app.exception_handler(psycopg.Error)
async def _database_down(request: Request, exc: psycopg.Error):
    # The exception text may name hosts and users: log it, show only what a user can act on.
    log.error("Harvest sync page: Primetric database error: %s", exc)
    return _error(
        request, 503, f"The Primetric database (connection primetric_db) is not available: {type(exc).__name__}"
    )


async def page_user(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Any:  # noqa: B008
    try:
        return await require_user(request, bearer)
    except HTTPException as exc:
        if exc.status_code in (401, 403):
            raise LoginRequired from None
        raise


def _project_id(value: str) -> int:
    """A project id from the URL: anything that cannot be one (not a number, out of bigint range) is not found."""
    try:
        project_id = int(value) if value.isdigit() and len(value) < 20 else 0
    except ValueError:
        project_id = 0
    if not project_settings.valid_id(project_id):
        raise HTTPException(404, f"Primetric has no project {value[:20]!r}")
    return project_id


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _json_body(request: Request) -> dict:
    """A write's body: JSON only (a cross-site form cannot send it), from a page of this origin only."""
    require_same_origin(request)
    if not request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        raise HTTPException(415, "Send the request as application/json (the page does).")
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "The request body is not JSON.") from None
    if not isinstance(body, dict):
        raise HTTPException(422, "Expected a JSON object.")
    return body


def _edit_action(project_id: int) -> str:
    """Changing a project whose DAG exists needs the right to trigger it; one with no DAG yet, to edit DAGs."""
    return OPERATE if airflow_api.dag_exists(dag_id(project_id)) else SET_UP


def _permissions(user: Any, project_id: int, dag_exists: bool, set_up: bool | None = None) -> dict[str, bool]:
    dag = dag_id(project_id)
    operate = may(user, OPERATE, dag)
    edit = operate if dag_exists else (may(user, SET_UP) if set_up is None else set_up)
    return {"view": may(user, VIEW, dag), "operate": operate and dag_exists, "edit": edit}


# -- views ----------------------------------------------------------------------------------------------------
def _run_view(api: AirflowApi, project_id: int, run: dict, *, details: bool = True) -> dict:
    """A run with its steps, what the extract fetched so far, and its end: the result or the failure."""
    dag = run["dag_id"]
    run_id = run["dag_run_id"]
    view: dict[str, Any] = {
        "dag_run_id": run_id,
        "run_type": run.get("run_type"),
        "state": run.get("state"),
        "conf": run.get("conf") or {},
        "queued_at": run.get("queued_at"),
        "start_date": run.get("start_date"),
        "end_date": run.get("end_date"),
        "triggering_user_name": run.get("triggering_user_name"),
        "url": airflow_api.run_url(dag, run_id),
        "steps": [],
        "extract": None,
        "result": None,
        "failure": None,
    }
    if not details:
        return view
    tis = {ti["task_id"]: ti for ti in api.task_instances(dag, run_id)}
    for task in TASKS:
        ti = tis.get(task, {})
        view["steps"].append(
            {
                "task_id": task,
                "state": ti.get("state"),
                "try_number": ti.get("try_number"),
                "start_date": ti.get("start_date"),
                "end_date": ti.get("end_date"),
                "log_url": airflow_api.task_log_url(dag, run_id, task, ti.get("try_number") or None),
            }
        )
    view["extract"] = data.extract_progress(project_id, run_id)
    if run.get("state") == "success":
        try:
            summary = from_xcom(RunSummary, api.xcom(dag, run_id, "report", "summary"))
            view["result"] = {
                "mode": summary.mode,
                "fetched": summary.entries_fetched,
                "inserted": summary.worklogs_inserted,
                "updated": summary.worklogs_updated,
                "deleted": summary.worklogs_deleted,
                "missing_teammates": summary.missing_teammates,
            }
        except (AirflowApiError, ValueError) as exc:
            log.warning("Harvest sync page: no summary for run %s: %s", run_id, exc)
    elif run.get("state") == "failed":
        failed = next((tis[t] for t in TASKS if tis.get(t, {}).get("state") == "failed"), None)
        if failed is None:  # failed from outside (marked failed, timed out): name the step that did not finish
            failed = next((tis[t] for t in TASKS if tis.get(t, {}).get("state") not in ("success", None)), None)
        if failed is not None:
            try_number = failed.get("try_number") or 1
            error = None
            try:
                error = airflow_api.first_error_line(api.task_log(dag, run_id, failed["task_id"], try_number))
            except AirflowApiError as exc:
                error = f"(its log could not be read: {exc.detail})"
            view["failure"] = {
                "task_id": failed["task_id"],
                "state": failed.get("state"),
                "error": error or "no error in its log (marked failed from outside, or timed out?)",
                "log_url": airflow_api.task_log_url(dag, run_id, failed["task_id"], try_number),
            }
    return view


def _dag_view(project_id: int, state: DagState | None) -> dict | None:
    if state is None:
        return None
    return {
        "dag_id": state.dag_id,
        "url": airflow_api.dag_url(state.dag_id),
        "is_paused": state.is_paused,
        "daily": state.daily,
        "next_run_after": data.plain(state.next_run_after),
        "run_due": state.run_due(_now()),
    }


def _projects_view(request: Request, user: Any, q: str | None) -> tuple[list[dict], int]:
    rows, total = data.projects(q)
    try:
        api = AirflowApi.for_request(request)
        dags = api.dags()
        last = {s: api.dags_with_last_run(s) for s in ("failed", "running", "queued")}
    except (AirflowApiError, httpx.HTTPError) as exc:
        log.warning("Harvest sync page: could not list DAGs: %s", exc)
        api, dags, last = None, {}, {}
    out = []
    failed_explained = 0
    set_up = may(user, SET_UP)  # not per DAG: asked once
    for row in rows:
        dag = row["dag_id"]
        if not may(user, VIEW, dag):
            continue
        state = dags.get(dag)
        row["dag"] = _dag_view(row["project_id"], state)
        row["may"] = _permissions(user, row["project_id"], state is not None, set_up)
        # Not failed, running or queued: the last run succeeded if one ever loaded (sync_state.last_run_id).
        ran = "success" if state and row["last_run_id"] else None
        row["last_run_state"] = next((s for s, ids in last.items() if dag in ids), ran)
        row["last_run"] = None
        if row["last_run_state"] == "failed" and api is not None and failed_explained < MAX_FAILED_DETAILS:
            failed_explained += 1
            try:
                latest = api.runs(dag, limit=1)
                row["last_run"] = _run_view(api, row["project_id"], latest[0]) if latest else None
            except AirflowApiError as exc:
                log.warning("Harvest sync page: last run of %s: %s", dag, exc)
        out.append(row)
    return out, total


def _detail_view(request: Request, user: Any, project_id: int, run_id: str | None = None) -> dict:
    project = data.project_detail(project_id)
    if project is None:
        raise HTTPException(404, f"Primetric has no project {project_id}")
    dag = project["dag_id"]
    require(user, VIEW, dag)
    exists = airflow_api.dag_exists(dag)
    project["may"] = _permissions(user, project_id, exists)
    project["dag"] = None
    project["runs"] = []
    project["run"] = None
    project["runs_error"] = None
    api = AirflowApi.for_request(request)
    if exists:
        try:
            state = api.dag(dag)
            project["dag"] = _dag_view(project_id, state)
            runs = api.runs(dag)
            project["runs"] = [_run_view(api, project_id, r, details=False) for r in runs]
            shown = api.run(dag, run_id) if run_id else (runs[0] if runs else None)
            project["run"] = _run_view(api, project_id, shown) if shown else None
            if project["run"] and project["run"]["state"] in ("success", "failed"):
                project["run"]["missing"] = project["missing"]
        except AirflowApiError as exc:
            project["runs_error"] = f"Airflow refused ({exc.status}): {exc.detail}"
    s = project["settings"]
    project["reset_from"] = s["sync_since"] or project["start_date"]
    return project


# -- pages ----------------------------------------------------------------------------------------------------
@app.get("/")
def index(request: Request, q: str | None = None, user: Any = Depends(page_user)):  # noqa: B008
    if not request.url.path.endswith("/"):  # "/harvest": the page's relative links need the trailing slash
        return RedirectResponse(request.url.replace(path=request.url.path + "/"), status_code=307)
    projects, total = _projects_view(request, user, q)
    return templates.TemplateResponse(
        request,
        "index.html",
        {"projects": projects, "total": total, "q": q or "", "user": user_name(user), "base": "./"},
    )


@app.get("/projects/{project_id}")
def project_page(project_id: str, request: Request, run: str | None = None, user: Any = Depends(page_user)):  # noqa: B008
    p = _detail_view(request, user, _project_id(project_id), run)
    return templates.TemplateResponse(request, "project.html", {"p": p, "user": user_name(user), "base": "../"})


def _run_to_its_end(request: Request, project_id: int, run_id: str) -> dict:
    """A run's view (see :func:`_run_view`); once it has ended, with the missing teammates it left."""
    api = AirflowApi.for_request(request)
    view = _run_view(api, project_id, api.run(dag_id(project_id), run_id))
    if view["state"] in ("success", "failed"):
        with connect() as conn:
            view["missing"] = data.missing_teammates(conn, project_id)
    return view


@app.get("/projects/{project_id}/run-panel")
def run_panel(project_id: str, request: Request, run: str, user: Any = Depends(page_user)):  # noqa: B008
    """The run panel alone: the project page fetches it every few seconds while the run goes."""
    pid = _project_id(project_id)
    dag = dag_id(pid)
    require(user, VIEW, dag)
    return templates.TemplateResponse(request, "_run.html", {"r": _run_to_its_end(request, pid, run)})


# -- JSON API (what the pages' buttons call) -----------------------------------------------------------------------
@app.get("/api/projects")
def api_projects(request: Request, q: str | None = None, user: Any = Depends(require_user)):  # noqa: B008
    projects, total = _projects_view(request, user, q)
    return {"projects": projects, "total": total}


@app.get("/api/projects/{project_id}")
def api_project(project_id: str, request: Request, run: str | None = None, user: Any = Depends(require_user)):  # noqa: B008
    return _detail_view(request, user, _project_id(project_id), run)


@app.get("/api/projects/{project_id}/harvest-projects")
def api_harvest_projects(project_id: str, refresh: bool = False, user: Any = Depends(require_user)):  # noqa: B008
    """Harvest's projects for "Select projects", each with the Primetric project it feeds (if any)."""
    pid = _project_id(project_id)
    require(user, VIEW, dag_id(pid))
    if refresh:  # costs Harvest requests from the account's budget: for those who may edit
        require(user, _edit_action(pid), dag_id(pid))
    listed = harvest_projects(refresh=refresh)
    with connect() as conn:
        links = project_settings.all_links(conn)
    return {
        "fetched_at": data.plain(listed.fetched_at),
        "error": listed.error,
        "projects": [
            {
                "id": p.id,
                "label": p.label,
                "is_active": p.is_active,
                "linked_to": (
                    {"project_id": links[p.id].project_id, "name": links[p.id].project_name} if p.id in links else None
                ),
            }
            for p in listed.projects
        ],
    }


@app.put("/api/projects/{project_id}/settings")
async def api_save_settings(project_id: str, request: Request, user: Any = Depends(require_user)):  # noqa: B008
    form = await _json_body(request)
    return await run_in_threadpool(_save_settings, project_id, form, user)


def _save_settings(project_id: str, form: dict, user: Any) -> dict:
    pid = _project_id(project_id)
    require(user, _edit_action(pid), dag_id(pid))

    def harvest_lists(new_ids: list[int]) -> set[int] | None:
        listed = harvest_projects()
        if set(new_ids) <= listed.ids():
            return listed.ids()
        listed = harvest_projects(refresh=True)  # not in the list as last fetched: maybe Harvest has it by now
        return None if listed.error else listed.ids()

    with connect() as conn:
        saved = project_settings.save(
            conn, pid, form, actor=user_name(user), today=_today(), harvest_lists=harvest_lists
        )
    log.info("Harvest sync page: %s saved project %s's settings (changed: %s)", user_name(user), pid, saved.changed)
    return {
        "changed": saved.changed,
        "newly_enabled": saved.newly_enabled,
        "enabled": saved.setup.settings.enabled,
        "version": saved.setup.version,
        "settings": data.setup_view(saved.setup)["settings"],
    }


@app.get("/api/projects/{project_id}/dag")
def api_dag(project_id: str, request: Request, user: Any = Depends(require_user)):  # noqa: B008
    """Whether the project's DAG in Airflow is what its settings say (exists, schedule): the page waits for it."""
    pid = _project_id(project_id)
    dag = dag_id(pid)
    require(user, VIEW, dag)
    with connect() as conn:
        setup = project_settings.load(conn, pid)
    if setup is None:
        raise HTTPException(404, f"Primetric has no project {pid}")
    wanted = setup.linked and setup.settings.enabled
    state = AirflowApi.for_request(request).dag(dag) if airflow_api.dag_exists(dag) else None
    ready = state is None if not wanted else state is not None  # the DAG is there when (and only when) wanted
    if ready and state is not None:
        ready = state.daily == setup.settings.daily_schedule
        since = setup.daily_schedule_since
        if ready and setup.settings.daily_schedule and since is not None:
            ready = state.start_date is not None and abs((state.start_date - since).total_seconds()) < 1
    return {"wanted": wanted, "exists": state is not None, "ready": ready, "dag": _dag_view(pid, state)}


def _request_parse(request: Request, pid: int) -> str:
    """Ask Airflow to parse the DAG file of project ``pid`` now (its shard's file, README "Sizing"): its REST API
    with the user's token, else as the API server."""
    api = AirflowApi.for_request(request)
    shards = dag_shards()
    try:
        token = next(
            (
                s.file_token
                for s in api.dags().values()
                if s.file_token and dag_shard(project_id_of(s.dag_id) or 0, shards) == dag_shard(pid, shards)
            ),
            None,
        )
        if token:
            api.reparse(token)
            return "rest"
    except AirflowApiError as exc:  # 403: may not edit every DAG of the file; 404: no DAG of it exists yet
        log.info("Harvest sync page: parseDagFile answered %s (%s); asking as the API server", exc.status, exc.detail)
    airflow_api.request_parse_as_server(dag_shard(pid, shards))
    return "server"


@app.post("/api/projects/{project_id}/dag/parse")
async def api_parse(project_id: str, request: Request, user: Any = Depends(require_user)):  # noqa: B008
    await _json_body(request)
    return await run_in_threadpool(_parse, project_id, request, user)


def _parse(project_id: str, request: Request, user: Any) -> dict:
    pid = _project_id(project_id)
    require(user, _edit_action(pid), dag_id(pid))
    return {"requested": True, "how": _request_parse(request, pid)}


@app.post("/api/projects/{project_id}/schedule/rearm")
async def api_rearm(project_id: str, request: Request, user: Any = Depends(require_user)):  # noqa: B008
    """Start the daily schedule from now, so that unpausing the DAG for a run starts no missed daily run."""
    await _json_body(request)
    return await run_in_threadpool(_rearm, project_id, request, user)


def _rearm(project_id: str, request: Request, user: Any) -> dict:
    pid = _project_id(project_id)
    require(user, OPERATE, dag_id(pid))
    with connect() as conn:
        since = project_settings.rearm_daily_schedule(conn, pid, actor=user_name(user))
    if since is None:
        raise HTTPException(409, f"Project {pid} is not set up for the Harvest sync.")
    return {"daily_schedule_since": data.plain(since), "parse": _request_parse(request, pid)}


@app.post("/api/projects/{project_id}/runs")
async def api_run_now(project_id: str, request: Request, user: Any = Depends(require_user)):  # noqa: B008
    """Sync now ({}), reset and sync ({"since"}) or clear ({"clear_data", "confirm_project_name"}): one run.

    A paused DAG is unpaused for the run only when that starts no other run: if a daily run is due (it would
    start as well), the answer is 409 ``run_due`` and the page re-arms the schedule first.
    """
    body = await _json_body(request)
    return await run_in_threadpool(_run_now, project_id, body, request, user)


def _run_now(project_id: str, body: dict, request: Request, user: Any) -> Any:
    pid = _project_id(project_id)
    dag = dag_id(pid)
    with connect() as conn:
        setup = project_settings.load(conn, pid)
    if setup is None:
        raise HTTPException(404, f"Primetric has no project {pid}")
    require(user, OPERATE, dag)
    if not (setup.linked and setup.settings.enabled):
        raise HTTPException(
            409, f"The Harvest sync of {setup.name!r} is switched off: switch it on in its Integration settings first."
        )
    checked = parse_sync_request(body, today=_today(), project_name=setup.name)
    conf: dict[str, Any] = {}
    if checked.since:
        conf[SINCE] = checked.since.isoformat()
    if checked.clear_data:
        conf[CLEAR_DATA] = True
        conf[CONFIRM_PROJECT_NAME] = body[CONFIRM_PROJECT_NAME]
    if not airflow_api.dag_exists(dag):
        return JSONResponse(
            status_code=409,
            content={"code": "no_dag", "detail": f"Airflow has no DAG {dag} yet: it appears when the file is parsed."},
        )
    api = AirflowApi.for_request(request)
    state = api.dag(dag)
    if state.is_paused and state.run_due(_now()):
        return JSONResponse(
            status_code=409,
            content={
                "code": "run_due",
                "detail": f"{dag} is paused in Airflow and its daily run of "
                f"{state.next_run_after:%Y-%m-%d %H:%M} UTC is due: unpausing it now would start that run too. "
                "Re-arm the daily schedule from now first.",
            },
        )
    run = api.trigger(dag, conf)
    unpaused = False
    if state.is_paused:  # after the trigger: a refused trigger changes nothing
        unpaused = airflow_api.unpause_for_run(api, dag, user_name(user))
    log.info("Harvest sync page: %s triggered %s %s (unpaused: %s)", user_name(user), dag, conf, unpaused)
    return {**_run_view(api, pid, run, details=False), "dag_id": dag, "unpaused": unpaused, "daily": state.daily}


@app.get("/api/projects/{project_id}/runs/{run_id:path}")
def api_run(project_id: str, run_id: str, request: Request, user: Any = Depends(require_user)):  # noqa: B008
    pid = _project_id(project_id)
    dag = dag_id(pid)
    require(user, VIEW, dag)
    return _run_to_its_end(request, pid, run_id)

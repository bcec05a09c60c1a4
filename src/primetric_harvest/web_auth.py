"""Airflow identity for the FastAPI apps our plugins mount on the API server.

A FastAPI app given to Airflow through ``AirflowPlugin.fastapi_apps`` is mounted beside ``/api/v2`` but is
NOT behind Airflow's authentication: it answers anonymous requests unless it checks the caller itself.
These dependencies do that check the way ``/api/v2`` does (``airflow.api_fastapi.core_api.security.get_user``):
the ``Authorization: Bearer <jwt>`` header wins, else the UI's ``_token`` cookie, validated (signature,
expiry, revocation) by the configured auth manager.

Usage in a plugin app::

    from primetric_harvest.web_auth import OPERATE, require, require_admin, require_user

    @app.get("/status")
    def status(user=Depends(require_user)): ...

    @app.post("/projects/{project_id}/runs")
    def trigger(project_id: int, user=Depends(require_user)):
        require(user, OPERATE, dag_id(project_id))  # 403 naming the missing permission
        ...

    @app.post("/install")
    def install(user=Depends(require_admin)): ...

``require_user``: any signed-in Airflow user, else 401 (no or expired token) / 403 (invalid token).

``may(user, action, dag_id)`` / ``require(user, action, dag_id)``: what a user may do with one project's
sync (VIEW, OPERATE, SET_UP), asked of the auth manager about that project's DAG, so FAB's per-DAG
permissions (a project manager's role, ``scripts/grant_project_manager.py``) apply to our pages exactly as
to Airflow's own UI and REST API.

``require_admin``: an administrator, else 403. "Administrator" means the auth manager's own administrator:
with the simple auth manager, the ``admin`` role; with the FAB auth manager, a user who may edit roles
(FAB's ``Admin`` role: whoever may edit roles can grant themselves anything) and create and edit
connections. ``op`` / FAB's ``Op`` may edit connections but are not administrators. With any other auth
manager (Keycloak, ...), a user allowed to create and edit connections, because what our admin pages do is
write the Harvest connection.

Every refusal says what the user lacks, in the auth manager's own terms (a simple-auth-manager role, FAB
permission names), so an administrator knows what to grant. HTML pages can turn the 401 into a redirect to
the login page with :func:`login_redirect`.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from primetric_harvest.names import HARVEST_CONN_ID

_bearer = HTTPBearer(auto_error=False)
log = logging.getLogger(__name__)


async def require_user(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Any:
    """The caller's Airflow user (a ``BaseUser``); 401/403 when there is none or the token is bad."""
    from airflow.api_fastapi.core_api.security import get_user

    # get_user resolves Bearer first, then the user the JWT refresh middleware validated, then the cookie.
    return await get_user(request, None, bearer)


# -- which auth manager answers ---------------------------------------------------------------------------
def _auth_manager() -> Any:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def _is_simple(manager: Any) -> bool:
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    return isinstance(manager, SimpleAuthManager)


def _is_fab(manager: Any) -> bool:
    try:
        from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager
    except ImportError:  # the FAB provider is not installed: it cannot be the auth manager either
        return False
    return isinstance(manager, FabAuthManager)


def _simple_role(user: Any) -> str:
    return str(getattr(user, "role", "") or "").lower()


# FAB's resource names (airflow.providers.fab.www.security.permissions) and its method → action map.
FAB_DAGS = "DAGs"
FAB_DAG_PREFIX = "DAG:"
FAB_DAG_RUNS = "DAG Runs"
FAB_ROLES = "Roles"
FAB_CONNECTIONS = "Connections"
_FAB_ACTION = {"GET": "can_read", "PUT": "can_edit", "POST": "can_create"}


def _fab_lacks(manager: Any, user: Any, needed: list[tuple[str, str, str | None]]) -> list[str]:
    """Which of ``needed`` (method, resource, or this global resource instead) ``user`` lacks, FAB-worded.

    Only to explain a refusal: whether the user may act is always the auth manager's own answer.
    """

    def has(method: str, resource: str | None) -> bool:
        return resource is not None and manager.is_authorized_custom_view(
            method=method, resource_name=resource, user=user
        )

    return [
        f"{_FAB_ACTION[method]} on {resource}" + (f" (or on {either})" if either else "")
        for method, resource, either in needed
        if not (has(method, resource) or has(method, either))
    ]


# -- administrators --------------------------------------------------------------------------------------
def is_admin(user: Any) -> bool:
    """Whether ``user`` is an Airflow administrator (see the module docstring for what that means)."""
    return not _admin_lacks(user)


def _admin_lacks(user: Any) -> str:
    """What ``user`` lacks to be an administrator, in words; "" when they are one."""
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails

    manager = _auth_manager()
    if _is_simple(manager):
        role = _simple_role(user)
        return "" if role == "admin" else f"the Airflow role admin (it has {role or 'no role'})"
    if _is_fab(manager):
        lacks = _fab_lacks(
            manager, user, [("PUT", FAB_ROLES, None), ("POST", FAB_CONNECTIONS, None), ("PUT", FAB_CONNECTIONS, None)]
        )
        return f"FAB's Admin role (it lacks {', '.join(lacks)})" if lacks else ""
    details = ConnectionDetails(conn_id=HARVEST_CONN_ID)
    allowed = all(
        manager.is_authorized_connection(method=method, details=details, user=user) for method in ("POST", "PUT")
    )
    return "" if allowed else "permission to create and edit connections"


async def require_admin(user: Annotated[Any, Depends(require_user)]) -> Any:
    """The caller's Airflow user if an administrator, else 403 naming what they lack."""
    lacks = _admin_lacks(user)
    if lacks:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"Airflow user {user_name(user)!r} is not an administrator: it needs {lacks}. "
            "Ask an Airflow administrator.",
        )
    return user


# -- what a user may do with a project's sync: Airflow's auth manager decides, per DAG -------------------
# So FAB's (or any auth manager's) per-DAG permissions apply to our pages exactly as to Airflow's own UI.
VIEW = "view"  # see the project's sync, its settings and runs (read access to the DAG)
OPERATE = "operate"  # change its settings and links, trigger it, clear its data (trigger the DAG = create a run)
SET_UP = "set up"  # link a project that has no DAG yet (edit rights on the DAG it will get, or on every DAG)
ACTIONS = (VIEW, OPERATE, SET_UP)


def may(user: Any, action: str, dag_id: str | None = None) -> bool:
    """Whether ``user`` may ``action`` (VIEW, OPERATE, SET_UP) the sync DAG ``dag_id``.

    VIEW: read the DAG (what ``GET /api/v2/dags/{dag_id}`` asks). OPERATE: trigger it (what
    ``POST /api/v2/dags/{dag_id}/dagRuns`` asks; under FAB that is "create DAG runs" *and* "edit that DAG",
    so it also covers pausing and unpausing it) and read it. Both need the DAG id: a permission on some
    other DAG says nothing about this project. SET_UP: edit the DAG ``dag_id`` will be (under FAB
    ``can_edit`` on ``DAG:<dag_id>``, which can be granted before the DAG exists, or on every DAG); without
    ``dag_id``, edit every DAG.
    """
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected {VIEW!r}, {OPERATE!r} or {SET_UP!r}")
    if action in (VIEW, OPERATE) and not dag_id:
        raise ValueError(f"may(user, {action!r}, dag_id): the project's DAG id is required")
    manager = _auth_manager()
    details = DagDetails(id=dag_id) if dag_id else None
    if action == VIEW:
        return manager.is_authorized_dag(method="GET", details=details, user=user)
    if action == OPERATE:
        return manager.is_authorized_dag(
            method="POST", access_entity=DagAccessEntity.RUN, details=details, user=user
        ) and manager.is_authorized_dag(method="GET", details=details, user=user)
    return manager.is_authorized_dag(method="PUT", details=details, user=user)


def _lacks(user: Any, action: str, dag_id: str | None) -> str:
    """What ``user`` lacks to ``action`` the DAG ``dag_id``, in the auth manager's own terms."""
    manager = _auth_manager()
    if _is_simple(manager):
        role = "viewer" if action == VIEW else "user"
        return f"the Airflow role {role} or higher (it has {_simple_role(user) or 'no role'})"
    if _is_fab(manager):
        dag = f"{FAB_DAG_PREFIX}{dag_id}" if dag_id else FAB_DAGS
        either = FAB_DAGS if dag_id else None
        needed: list[tuple[str, str, str | None]] = {
            VIEW: [("GET", dag, either)],
            OPERATE: [("GET", dag, either), ("PUT", dag, either), ("POST", FAB_DAG_RUNS, None)],
            SET_UP: [("PUT", dag, either)],
        }[action]
        return "the FAB permission(s) " + "; ".join(_fab_lacks(manager, user, needed))
    return {
        VIEW: f"read access to DAG {dag_id}",
        OPERATE: f"permission to trigger DAG {dag_id} (create DAG runs)",
        SET_UP: f"permission to edit DAG {dag_id}" if dag_id else "permission to edit DAGs",
    }[action]


def require(user: Any, action: str, dag_id: str | None = None) -> None:
    """403 naming what is missing unless ``user`` may ``action`` the DAG ``dag_id`` (see :func:`may`)."""
    if not may(user, action, dag_id):
        what = f"the Harvest sync {dag_id}" if dag_id else "Harvest syncs"
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"Airflow user {user_name(user)!r} may not {action} {what}: it needs "
            f"{_lacks(user, action, dag_id)}. Ask an Airflow administrator.",
        )


def user_name(user: Any) -> str:
    try:
        return str(user.get_name())
    except Exception:  # noqa: BLE001 - any user object: fall back to its repr-free id
        return str(getattr(user, "username", "unknown"))


def login_redirect(request: Request) -> RedirectResponse:
    """A redirect to the auth manager's login page that comes back to this request's URL."""
    return RedirectResponse(_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)


# -- pages that only Airflow's UI may frame, writes that only our own pages may send ------------------------
FRAME_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'self'",
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def protect_pages(app: FastAPI) -> None:
    """Send :data:`FRAME_HEADERS` with every answer of ``app``, errors included."""

    @app.middleware("http")
    async def _frame_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(FRAME_HEADERS)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # Starlette answers an unhandled error outside the middleware above: set the headers here too.
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse(
            status_code=500,
            content={"detail": f"Unexpected error ({type(exc).__name__}); the API server's log has the details."},
            headers=FRAME_HEADERS,
        )


def own_origins(request: Request) -> set[str]:
    """The origins our pages are served from: the request's, and [api] base_url's behind a proxy."""
    from airflow.configuration import conf

    origins = {f"{request.url.scheme}://{request.url.netloc}"}
    base = (conf.get("api", "base_url", fallback="") or "").strip()
    if "://" in base:
        scheme, rest = base.split("://", 1)
        origins.add(f"{scheme}://{rest.split('/', 1)[0]}")
    return origins


def require_same_origin(request: Request) -> None:
    """403 for a write sent from a page of another origin (a browser names it in Origin / Sec-Fetch-Site)."""
    origin = (request.headers.get("origin") or "").rstrip("/")
    fetched_from = request.headers.get("sec-fetch-site", "")
    if (origin and origin not in own_origins(request)) or fetched_from in ("cross-site", "same-site"):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"Refused: a request from another site ({origin or fetched_from}) may not change anything here.",
        )

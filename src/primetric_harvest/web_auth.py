"""Airflow identity for the FastAPI apps our plugins mount on the API server.

A FastAPI app given to Airflow through ``AirflowPlugin.fastapi_apps`` is mounted beside ``/api/v2`` but is
NOT behind Airflow's authentication: it answers anonymous requests unless it checks the caller itself.
These dependencies do that check the way ``/api/v2`` does (``airflow.api_fastapi.core_api.security.get_user``):
the ``Authorization: Bearer <jwt>`` header wins, else the UI's ``_token`` cookie, validated (signature,
expiry, revocation) by the configured auth manager.

Usage in a plugin app::

    from primetric_harvest.web_auth import require_admin, require_user

    @app.get("/status")
    def status(user=Depends(require_user)): ...

    @app.post("/install")
    def install(user=Depends(require_admin)): ...

``require_user``: any signed-in Airflow user, else 401 (no or expired token) / 403 (invalid token).
``require_admin``: an administrator, else 403. "Administrator" means: with the simple auth manager, the
``admin`` role (``op`` may edit connections but is not an administrator); with any other auth manager
(FAB, Keycloak, ...), a user allowed to create and edit connections, because what our admin pages do is
write the Harvest connection.

HTML pages can turn the 401 into a redirect to the login page with :func:`login_redirect`.

Both apps also protect their pages from other origins: :func:`protect_pages` sends
``Content-Security-Policy: frame-ancestors 'self'`` and ``X-Frame-Options: SAMEORIGIN`` on every answer (only
Airflow's own UI may frame them: no clickjacking of a "Sync now"), and :func:`require_same_origin` refuses a
write that a page of another origin sent (a cross-site form or script carries its Origin).
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


def is_admin(user: Any) -> bool:
    """Whether ``user`` is an Airflow administrator (see the module docstring for what that means)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails

    manager = get_auth_manager()
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    if isinstance(manager, SimpleAuthManager):
        return str(getattr(user, "role", "") or "").lower() == "admin"
    details = ConnectionDetails(conn_id=HARVEST_CONN_ID)
    return all(
        manager.is_authorized_connection(method=method, details=details, user=user) for method in ("POST", "PUT")
    )


# -- what a user may do with a project's sync: Airflow's auth manager decides, per DAG -------------------
# So FAB's (or any auth manager's) per-DAG permissions apply to our pages exactly as to Airflow's own UI.
VIEW = "view"  # see the project's sync, its settings and runs (read access to the DAG)
OPERATE = "operate"  # change its settings and links, trigger it, clear its data (trigger the DAG = create a run)
SET_UP = "set up"  # link a project that has no DAG yet (edit DAGs in general: there is no DAG to ask about)

_PERMISSION_WORDING = {
    VIEW: "read access to DAG {dag}",
    OPERATE: "permission to trigger DAG {dag} (create DAG runs)",
    SET_UP: "permission to edit DAGs",
}


def may(user: Any, action: str, dag_id: str | None = None) -> bool:
    """Whether ``user`` may ``action`` (VIEW, OPERATE, SET_UP) the sync DAG ``dag_id``."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    manager = get_auth_manager()
    details = DagDetails(id=dag_id) if dag_id else None
    if action == VIEW:
        return manager.is_authorized_dag(method="GET", details=details, user=user)
    if action == OPERATE:
        return manager.is_authorized_dag(
            method="POST", access_entity=DagAccessEntity.RUN, details=details, user=user
        ) and manager.is_authorized_dag(method="GET", details=details, user=user)
    if action == SET_UP:
        return manager.is_authorized_dag(method="PUT", user=user)
    raise ValueError(f"unknown action {action!r}; expected {VIEW!r}, {OPERATE!r} or {SET_UP!r}")


def require(user: Any, action: str, dag_id: str | None = None) -> None:
    """403 naming the missing permission unless ``user`` may ``action`` the DAG ``dag_id``."""
    if not may(user, action, dag_id):
        needed = _PERMISSION_WORDING[action].format(dag=dag_id or "")
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"Airflow user {user_name(user)!r} may not {action} this project's Harvest sync: "
            f"it needs {needed}. Ask an Airflow administrator.",
        )


async def require_admin(user: Annotated[Any, Depends(require_user)]) -> Any:
    """The caller's Airflow user if an administrator, else 403."""
    if not is_admin(user):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"Airflow user {user_name(user)!r} is not an administrator; ask an Airflow administrator.",
        )
    return user


def user_name(user: Any) -> str:
    try:
        return str(user.get_name())
    except Exception:  # noqa: BLE001 - any user object: fall back to its repr-free id
        return str(getattr(user, "username", "unknown"))


def login_redirect(request: Request) -> RedirectResponse:
    """A redirect to the auth manager's login page that comes back to this request's URL."""
    from airflow.api_fastapi.app import get_auth_manager

    return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)


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

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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from primetric_harvest.names import HARVEST_CONN_ID

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import ResourceMethod

_bearer = HTTPBearer(auto_error=False)


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
    writes: tuple[ResourceMethod, ...] = ("POST", "PUT")
    return all(manager.is_authorized_connection(method=method, details=details, user=user) for method in writes)


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

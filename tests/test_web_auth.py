"""Who may do what with a project's sync (primetric_harvest.web_auth), asked of Airflow's real auth managers.

The simple auth manager with its own users (roles viewer, user, op, admin), and the FAB auth manager with
FAB's own built-in roles (Viewer, User, Op, Admin as the FAB provider defines them) and the role of a
project's manager (primetric_harvest.fab_roles), as FAB model objects: the answers and the refusal messages
are the auth managers' own, nothing is stubbed. The same rules on a running Airflow with FAB users in the
database: tests/test_project_roles_fab.py.
"""

from __future__ import annotations

import asyncio

import pytest
from fastapi import HTTPException

from primetric_harvest import web_auth
from primetric_harvest.fab_roles import project_manager_permissions
from primetric_harvest.names import dag_id
from primetric_harvest.web_auth import OPERATE, SET_UP, VIEW, is_admin, may, require

pytestmark = pytest.mark.airflow

APOLLO, ZEPHYR = dag_id(1), dag_id(2)


def use_auth_manager(monkeypatch, manager) -> None:
    """Make ``manager`` the API server's auth manager (Airflow's own singleton, as init_auth_manager does)."""
    from airflow.api_fastapi import app

    monkeypatch.setattr(app._AuthManagerState, "instance", manager)


def refusal(user, action: str, dag: str | None) -> str:
    with pytest.raises(HTTPException) as info:
        require(user, action, dag)
    assert info.value.status_code == 403
    return info.value.detail


# -- the simple auth manager ----------------------------------------------------------------------------
@pytest.fixture
def simple(monkeypatch):
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    use_auth_manager(monkeypatch, SimpleAuthManager())
    return {
        role: SimpleAuthManagerUser(username=f"{role}-user", role=role) for role in ("viewer", "user", "op", "admin")
    }


@pytest.mark.parametrize(
    ("role", "view", "operate", "set_up", "admin"),
    [
        ("viewer", True, False, False, False),
        ("user", True, True, True, False),
        ("op", True, True, True, False),  # may edit connections, but is not an administrator
        ("admin", True, True, True, True),
    ],
)
def test_simple_auth_manager_roles(simple, role, view, operate, set_up, admin):
    user = simple[role]
    for dag in (APOLLO, ZEPHYR):  # the simple auth manager has no per-DAG permissions
        assert may(user, VIEW, dag) is view
        assert may(user, OPERATE, dag) is operate
        assert may(user, SET_UP, dag) is set_up
    assert may(user, SET_UP) is set_up
    assert is_admin(user) is admin


def test_simple_auth_manager_refusals_name_the_role_needed(simple):
    detail = refusal(simple["viewer"], OPERATE, APOLLO)
    assert "'viewer-user' may not operate the Harvest sync harvest_sync_1" in detail
    assert "the Airflow role user or higher (it has viewer)" in detail
    nobody = type(simple["viewer"])(username="nobody", role=None)
    assert "the Airflow role viewer or higher (it has no role)" in refusal(nobody, VIEW, APOLLO)


def test_simple_auth_manager_admin_page_refusal_names_the_admin_role(simple):
    with pytest.raises(HTTPException) as info:
        asyncio.run(web_auth.require_admin(simple["op"]))
    assert info.value.status_code == 403
    assert "'op-user' is not an administrator: it needs the Airflow role admin (it has op)" in info.value.detail
    assert asyncio.run(web_auth.require_admin(simple["admin"])) is simple["admin"]


def test_view_and_operate_need_the_dag_id_and_actions_are_checked(simple):
    for action in (VIEW, OPERATE):
        with pytest.raises(ValueError, match="DAG id"):
            may(simple["admin"], action, None)
    with pytest.raises(ValueError, match="unknown action"):
        may(simple["admin"], "delete", APOLLO)


# -- the FAB auth manager -----------------------------------------------------------------------------------
@pytest.fixture
def fab(monkeypatch):
    """FAB users with FAB's own built-in roles, a manager of Apollo only, and a user with no role."""
    from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager
    from airflow.providers.fab.auth_manager.models import Action, Permission, Resource, Role, User
    from airflow.providers.fab.auth_manager.security_manager.override import (
        FabAirflowSecurityManagerOverride as Fab,
    )

    use_auth_manager(monkeypatch, FabAuthManager())

    def role(name: str, perms) -> Role:
        r = Role()
        r.name = name
        r.permissions = [Permission(action=Action(name=a), resource=Resource(name=res)) for a, res in perms]
        return r

    def user(name: str, *roles: Role) -> User:
        u = User()
        u.username = name
        u.roles = list(roles)
        return u

    built_in = {config["role"]: role(config["role"], config["perms"]) for config in Fab.ROLE_CONFIGS}
    # FAB gives its Admin role every permission there is (update_admin_permission): here, FAB's Admin list.
    return {
        "viewer": user("viewer", built_in["Viewer"]),
        "user": user("user", built_in["User"]),
        "op": user("op", built_in["Op"]),
        "admin": user("admin", built_in["Admin"]),
        "apollo": user("apollo", built_in["Public"], role("harvest_sync_1 manager", project_manager_permissions(1))),
        "nobody": user("nobody", built_in["Public"]),
    }


@pytest.mark.parametrize(
    ("name", "apollo", "zephyr", "set_up_any", "admin"),
    [
        #          (view, operate, set up) of Apollo and of Zephyr; set up with no DAG id; administrator
        ("viewer", (True, False, False), (True, False, False), False, False),
        ("user", (True, True, True), (True, True, True), True, False),
        ("op", (True, True, True), (True, True, True), True, False),
        ("admin", (True, True, True), (True, True, True), True, True),
        ("apollo", (True, True, True), (False, False, False), False, False),
        ("nobody", (False, False, False), (False, False, False), False, False),
    ],
)
def test_fab_roles_and_a_project_managers_role(fab, name, apollo, zephyr, set_up_any, admin):
    user = fab[name]
    for dag, expected in ((APOLLO, apollo), (ZEPHYR, zephyr)):
        assert (may(user, VIEW, dag), may(user, OPERATE, dag), may(user, SET_UP, dag)) == expected, dag
    assert may(user, SET_UP) is set_up_any  # no DAG yet and no grant for it: edit rights on every DAG
    assert is_admin(user) is admin


def test_fab_refusals_name_the_missing_permissions(fab):
    detail = refusal(fab["apollo"], OPERATE, ZEPHYR)
    assert "'apollo' may not operate the Harvest sync harvest_sync_2" in detail
    assert "can_read on DAG:harvest_sync_2 (or on DAGs)" in detail
    assert "can_edit on DAG:harvest_sync_2 (or on DAGs)" in detail
    assert "DAG Runs" not in detail  # the manager's role has that one

    detail = refusal(fab["viewer"], OPERATE, APOLLO)
    assert "can_edit on DAG:harvest_sync_1 (or on DAGs)" in detail and "can_create on DAG Runs" in detail
    assert "can_read" not in detail  # a viewer may read every DAG

    assert "can_read on DAG:harvest_sync_2 (or on DAGs)" in refusal(fab["apollo"], VIEW, ZEPHYR)
    assert "can_edit on DAGs" in refusal(fab["apollo"], SET_UP, None)


def test_fab_admin_is_the_admin_role_not_op(fab):
    with pytest.raises(HTTPException) as info:
        asyncio.run(web_auth.require_admin(fab["op"]))
    assert info.value.status_code == 403
    assert "'op' is not an administrator: it needs FAB's Admin role (it lacks can_edit on Roles)" in info.value.detail
    with pytest.raises(HTTPException) as info:
        asyncio.run(web_auth.require_admin(fab["apollo"]))
    assert "can_edit on Roles, can_create on Connections, can_edit on Connections" in info.value.detail
    assert asyncio.run(web_auth.require_admin(fab["admin"])) is fab["admin"]


def test_a_project_managers_role_reaches_no_other_dag_and_no_global_resource():
    perms = project_manager_permissions(7)
    dag_resources = {r for _, r in perms if r.startswith("DAG:")}
    assert dag_resources == {"DAG:harvest_sync_7"}
    assert ("can_edit", "DAG:harvest_sync_7") in perms and ("can_read", "DAG:harvest_sync_7") in perms
    assert ("can_create", "DAG Runs") in perms
    reaching = [(a, r) for a, r in perms if r in ("DAGs", "Connections", "Variables", "Pools", "Roles", "Users")]
    assert reaching == [("menu_access", "DAGs")]  # the DAGs menu entry only, not access to any DAG
    assert len(perms) == len(set(perms))

"""The grant of a project's manager role (primetric_harvest.fab_roles, scripts/grant_project_manager.py) with
FAB's own security manager on the test session's metadata database (FAB's tables, users and built-in roles).
On a running Airflow, used by its users: tests/test_project_roles_fab.py."""

from __future__ import annotations

import pytest

from primetric_harvest import fab_roles
from primetric_harvest.fab_roles import FAB_AUTH_MANAGER, GrantError, grant_project_manager, project_manager_permissions
from primetric_harvest.names import project_manager_role

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def security_manager():
    """FAB's security manager (as `airflow users` gets it) on a migrated metadata database."""
    from airflow.utils import db

    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW__CORE__AUTH_MANAGER", FAB_AUTH_MANAGER)
    db.initdb()  # creates or upgrades (FAB's tables too); never wipes what other modules set up
    with fab_roles._security_manager() as sm:
        yield sm
    mp.undo()


def user(sm, name: str, role: str):
    """A FAB user with one built-in role (created once)."""
    return sm.find_user(username=name) or sm.add_user(
        name, name, "Test", f"{name}@example.invalid", sm.find_role(role), f"{name}-password-1"
    )


def permissions_of(sm, role_name: str) -> set[tuple[str, str]]:
    return {(p.action.name, p.resource.name) for p in sm.find_role(role_name).permissions}


def test_a_grant_makes_the_role_gives_it_and_is_idempotent(security_manager):
    sm = security_manager
    user(sm, "mira", "Public")
    grant = grant_project_manager("mira", 5, sm)
    role = project_manager_role(5)
    assert (grant.role, grant.role_added_to_user, grant.broader_roles) == (role, True, [])
    assert set(grant.permissions_added) == set(project_manager_permissions(5)) == permissions_of(sm, role)
    assert sorted(r.name for r in sm.find_user(username="mira").roles) == ["Public", role]
    assert "mira: role 'harvest_sync_5 manager' added; may read and trigger harvest_sync_5" in fab_roles.describe(grant)

    again = grant_project_manager("mira", 5, sm)
    assert (again.permissions_added, again.role_added_to_user) == ([], False)
    assert "already held" in fab_roles.describe(again)
    # A second project: a second role; the first stays.
    grant_project_manager("mira", 6, sm)
    assert sorted(r.name for r in sm.find_user(username="mira").roles) == ["Public", role, project_manager_role(6)]


def test_a_role_that_reaches_every_dag_is_named(security_manager):
    sm = security_manager
    user(sm, "vera", "Viewer")
    grant = grant_project_manager("vera", 5, sm)
    assert grant.broader_roles == ["Viewer"]
    text = fab_roles.describe(grant)
    assert "warning: vera also has role(s) Viewer, which reach every DAG" in text
    assert "airflow users remove-role --username vera --role ROLE" in text


def test_an_unknown_user_is_refused_with_what_to_do(security_manager):
    with pytest.raises(GrantError, match=r"no Airflow user 'ghost': create it first.*airflow users create"):
        grant_project_manager("ghost", 5, security_manager)
    assert security_manager.find_user(username="ghost") is None


def test_the_command_refuses_without_the_fab_auth_manager(capsys, monkeypatch):
    simple = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", simple)  # as `make airflow` by default
    assert fab_roles.main(["someone", "1"]) == 2
    assert "per-project roles need the FAB auth manager" in capsys.readouterr().err

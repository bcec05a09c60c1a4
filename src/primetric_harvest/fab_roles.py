"""A project's manager under the FAB auth manager: read and trigger that project's sync, nothing else.

FAB's per-DAG permissions (``DAG:<dag_id>``) are what Airflow asks about for one DAG; permissions on a DAG's
parts (DAG runs, task instances, logs, ...) are global in FAB but only ever checked together with the DAG's
own permission, so they reach no other DAG. One role per project, named by
:func:`primetric_harvest.names.project_manager_role` (``harvest_sync_<id> manager``), holds:

- ``can_read`` and ``can_edit`` on ``DAG:harvest_sync_<id>``: see it, trigger it, pause and unpause it
  (FAB asks for "edit the DAG" to trigger it; our Harvest sync page asks the same, see ``web_auth.may``);
- ``can_read`` / ``can_create`` on ``DAG Runs``, ``can_read`` on ``Task Instances``, ``Task Logs``,
  ``DAG Code``, ``DAG Versions``, ``DAG Warnings``, ``XComs``: that DAG's runs, tasks and logs in Airflow's UI;
- ``can_read`` on ``Website`` and ``Plugins`` (the UI lists plugins to show **Harvest sync** in its
  navigation), ``menu_access`` to DAGs, Browse, DAG Runs and Task Instances, and the user's own profile and
  password.

No global ``DAGs`` permission: a user who also has a role with one (FAB's Viewer, User, Op, Admin) sees or
operates every project; :func:`grant_project_manager` says so. The role is kept (and completed) when it
exists: granting is idempotent. The user must exist (``airflow users create``).

    python -m primetric_harvest.fab_roles USER PROJECT_ID [PROJECT_ID ...]     # or scripts/grant_project_manager.py

Needs the Airflow configuration of the deployment (the metadata database); FAB caches a signed-in user's
permissions for ``[fab] cache_ttl`` seconds (30), after which a new grant applies without signing in again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from primetric_harvest.names import dag_id, project_manager_role

# (action, resource) on the parts of DAGs: always checked together with the DAG's own permission.
_DAG_PARTS = (
    ("can_read", "DAG Runs"),
    ("can_create", "DAG Runs"),
    ("can_read", "Task Instances"),
    ("can_read", "Task Logs"),
    ("can_read", "DAG Code"),
    ("can_read", "DAG Versions"),
    ("can_read", "DAG Warnings"),
    ("can_read", "XComs"),
)
# Airflow's UI itself and the Harvest sync entry of its navigation.
_UI = (
    ("can_read", "Website"),
    ("can_read", "Plugins"),
    ("menu_access", "DAGs"),
    ("menu_access", "Browse"),
    ("menu_access", "DAG Runs"),
    ("menu_access", "Task Instances"),
    ("can_read", "My Profile"),
    ("can_edit", "My Profile"),
    ("can_read", "My Password"),
    ("can_edit", "My Password"),
)
_GLOBAL_DAGS = "DAGs"  # these actions on this resource reach every DAG (menu_access is only the menu entry)
_DAG_ACCESS = ("can_read", "can_edit", "can_delete")
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


class GrantError(Exception):
    """The grant cannot be made (no such user, ...): the message says what to do."""


def project_manager_permissions(project_id: int) -> list[tuple[str, str]]:
    """The (action, resource) pairs of the role of project ``project_id``'s manager."""
    dag = f"DAG:{dag_id(project_id)}"
    return [("can_read", dag), ("can_edit", dag), *_DAG_PARTS, *_UI]


@dataclass(frozen=True)
class Grant:
    """What :func:`grant_project_manager` did."""

    username: str
    project_id: int
    role: str
    permissions_added: list[tuple[str, str]] = field(default_factory=list)
    role_added_to_user: bool = False
    # The user's other roles that reach every DAG (global "DAGs" permissions): they see every project.
    broader_roles: list[str] = field(default_factory=list)


@contextmanager
def _security_manager() -> Iterator[Any]:
    """FAB's security manager, the way FAB's own ``airflow users`` / ``airflow roles`` commands get it."""
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    with get_application_builder() as appbuilder:
        yield appbuilder.sm


def grant_project_manager(username: str, project_id: int, sm: Any = None) -> Grant:
    """Give FAB user ``username`` the role of project ``project_id``'s manager (created if missing)."""
    if sm is None:
        with _security_manager() as sm_:
            return grant_project_manager(username, project_id, sm_)
    user = sm.find_user(username=username)
    if user is None:
        raise GrantError(
            f"there is no Airflow user {username!r}: create it first, with no role that reaches every DAG, e.g. "
            f"`airflow users create --username {username} --role Public --firstname ... --lastname ... "
            "--email ... --password ...`"
        )
    name = project_manager_role(project_id)
    role = sm.find_role(name) or sm.add_role(name)
    have = {(p.action.name, p.resource.name) for p in role.permissions}
    added = []
    for action, resource in project_manager_permissions(project_id):
        if (action, resource) in have:
            continue
        permission = sm.create_permission(action, resource)
        if permission is None:
            raise GrantError(f"FAB could not create the permission {action} on {resource!r}: see the log above")
        sm.add_permission_to_role(role, permission)
        added.append((action, resource))
    role_added = False
    if all(r.name != name for r in user.roles):
        user.roles.append(role)
        if not sm.update_user(user):
            raise GrantError(f"FAB could not add role {name!r} to user {username!r}: see the log above")
        role_added = True
    broader = sorted(
        r.name
        for r in user.roles
        if r.name != name
        and any(p.resource.name == _GLOBAL_DAGS and p.action.name in _DAG_ACCESS for p in r.permissions)
    )
    return Grant(username, int(project_id), name, added, role_added, broader)


def _configured_auth_manager() -> str:
    from airflow.configuration import conf

    return conf.get("core", "auth_manager")


def describe(grant: Grant) -> str:
    lines = [
        f"{grant.username}: role {grant.role!r} "
        + ("added" if grant.role_added_to_user else "already held")
        + f"; may read and trigger {dag_id(grant.project_id)}"
        + (f" ({len(grant.permissions_added)} permission(s) added to the role)" if grant.permissions_added else "")
    ]
    if grant.broader_roles:
        lines.append(
            f"warning: {grant.username} also has role(s) {', '.join(grant.broader_roles)}, which reach every DAG: "
            f"they see every project. For this project only: airflow users remove-role --username "
            f"{grant.username} --role ROLE"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="grant_project_manager",
        description="Let a FAB user read and trigger the Harvest sync of the given Primetric project(s) only.",
    )
    parser.add_argument("username", help="an existing Airflow (FAB) user")
    parser.add_argument("project_ids", nargs="+", type=int, metavar="PROJECT_ID", help="Primetric project id")
    args = parser.parse_args(argv)
    configured = _configured_auth_manager()
    if not configured.endswith(FAB_AUTH_MANAGER.rsplit(".", 1)[1]):
        print(
            f"grant_project_manager: Airflow's auth manager is {configured}; per-project roles need the FAB auth "
            f"manager: [core] auth_manager = {FAB_AUTH_MANAGER} (AIRFLOW__CORE__AUTH_MANAGER)",
            file=sys.stderr,
        )
        return 2
    try:
        with _security_manager() as sm:
            grants = [grant_project_manager(args.username, project_id, sm) for project_id in args.project_ids]
    except GrantError as exc:
        print(f"grant_project_manager: {exc}", file=sys.stderr)
        return 1
    for grant in grants:
        print(describe(grant))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Airflow-facing names of the sync, in one place: connection ids, the pool, DAG ids, the asset, roles.

Everything that must agree between the DAG file, the pages, the scripts and the tests is defined here and
imported; nothing here imports Airflow or pandas at module level (the UI and the DAG parse import it).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import Asset, AssetAlias

# Connections (any Airflow way: UI, environment variable, secrets backend).
HARVEST_CONN_ID = "harvest_default"  # the Harvest account: personal access token or OAuth2 client
PRIMETRIC_CONN_ID = "primetric_db"  # the Primetric PostgreSQL database (and the sync's own schemas)
ALERTS_SLACK_CONN_ID = "harvest_alerts_slack"  # failure alerts and notices, if it exists
ALERTS_SMTP_CONN_ID = "harvest_alerts_smtp"  # else these, if it exists

# Every PostgreSQL connection of the sync says what holds it (pg_stat_activity.application_name), e.g.
# "primetric-harvest extract project 7": one connection per running task, see connection_name(). The pages on
# the API server use APPLICATION_NAME alone.
APPLICATION_NAME = "primetric-harvest"


class ConnectionUse(StrEnum):
    """What a connection of the sync is for: the middle word of its application_name."""

    EXTRACT = "extract"  # staging COPY, the account's rate limiter and the run's progress: one connection
    TRANSFORM = "transform"
    LOAD = "load"
    REPORT = "report"
    NOTICE = "notice"  # the missing-teammate notice, after the report's own connection closed
    TOKEN_STORE = "oauth-token-store"  # OAuth2 access tokens: a moment per renewal
    DAG_PARSE = "dag-parse"


def connection_name(use: ConnectionUse, project_id: int | None = None) -> str:
    """The application_name of a connection of the sync (at most 63 characters, PostgreSQL's limit)."""
    return f"{APPLICATION_NAME} {use}" + ("" if project_id is None else f" project {int(project_id)}")


# The "Install Harvest" page (OAuth2), mounted by plugins/harvest_install_plugin.py on the API server.
INSTALL_PATH = "/harvest-install"
CALLBACK_PATH = f"{INSTALL_PATH}/callback"  # the Redirect URL of the Harvest OAuth2 application, after [api] base_url

# Every project's extract shares one Harvest account's rate limit: one pool bounds them together.
HARVEST_POOL = "harvest_api"
HARVEST_POOL_SLOTS = 4
HARVEST_POOL_DESCRIPTION = "Harvest API calls (one account)"

DAG_FILE = "harvest_sync.py"  # dags/harvest_sync.py: every project's DAG (with shards: shard 0's)
# Large deployments split the projects over several DAG files (README "Sizing"): PRIMETRIC_DAG_SHARDS=S on every
# Airflow process; project p's DAG is in shard p % S: dags/harvest_sync.py (0), dags/harvest_sync_shard_K.py (K).
DAG_SHARDS_ENV = "PRIMETRIC_DAG_SHARDS"
MAX_DAG_SHARDS = 8  # dags/ ships a file for each shard up to this
DAG_ID_PREFIX = "harvest_sync_"
DAG_TAGS = ("harvest", "primetric", "sync")
_DAG_ID = re.compile(rf"^{DAG_ID_PREFIX}(\d+)$")


def dag_id(project_id: int) -> str:
    """The DAG of one linked Primetric project: ``harvest_sync_<project id>``."""
    return f"{DAG_ID_PREFIX}{int(project_id)}"


def dag_shard(project_id: int, shards: int) -> int:
    """The shard (DAG file) that holds a project's DAG when the projects are split over ``shards`` files."""
    return int(project_id) % max(1, shards)


def dag_file(shard: int) -> str:
    """The name of shard ``shard``'s DAG file in dags/ (shard 0 is the one file of an unsharded deployment)."""
    return DAG_FILE if shard == 0 else f"harvest_sync_shard_{shard}.py"


def project_id_of(dag_id_: str) -> int | None:
    """The Primetric project id of a sync DAG id, None for any other DAG."""
    match = _DAG_ID.match(dag_id_)
    return int(match.group(1)) if match else None


def project_manager_role(project_id: int) -> str:
    """The FAB role that may read and trigger one project's sync only (``scripts/grant_project_manager.py``)."""
    return f"{dag_id(project_id)} manager"


def worklogs_asset_uri(project_id: int) -> str:
    return f"primetric://worklogs/project/{int(project_id)}"


def worklogs_asset_name(project_id: int) -> str:
    return f"primetric_worklogs_project_{int(project_id)}"


def worklogs_asset(project_id: int) -> Asset:
    """A project's work logs as an Airflow asset: downstream DAGs (reports, billing) schedule on it."""
    from airflow.sdk import Asset

    return Asset(uri=worklogs_asset_uri(project_id), name=worklogs_asset_name(project_id))


def worklogs_changed_alias(project_id: int) -> AssetAlias:
    """What the load task declares as its outlet: through this alias it emits an event of the project's
    :func:`worklogs_asset` only when a run changed work logs, so DAGs scheduled on the asset never run for nothing."""
    from airflow.sdk import AssetAlias

    return AssetAlias(name=f"{worklogs_asset_name(project_id)}_changed")

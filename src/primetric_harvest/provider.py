"""This package as an Airflow provider (entry point ``apache_airflow_provider`` in pyproject.toml).

It brings the "Harvest" connection type: Airflow's connection form shows labelled fields instead of raw JSON
extras, and its Test button calls :meth:`HarvestHook.test_connection
<primetric_harvest.harvest_hook.HarvestHook.test_connection>`. Airflow 3.2+ reads the form from here
(``conn-fields``, ``ui-field-behaviour``) without importing the hook; the hook methods
``get_connection_form_widgets``/``get_ui_field_behaviour`` are deprecated and need flask-appbuilder.
Each ``conn-fields`` entry is one key of the connection's extra, under the same name.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from primetric_harvest.harvest_api import DEFAULT_BASE_URL, DEFAULT_ID_URL, DEFAULT_USER_AGENT

CONNECTION_TYPE = "harvest"  # HarvestHook.conn_type (not imported: the UI reads this without loading the hook)
HOOK_CLASS = "primetric_harvest.harvest_hook.HarvestHook"


def _text(label: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": {"type": ["string", "null"], **schema}}


def _number(label: str, description: str, kind: str = "number") -> dict[str, Any]:
    return {"label": label, "description": description, "schema": {"type": [kind, "null"]}}


HARVEST_CONNECTION: dict[str, Any] = {
    "hook-class-name": HOOK_CLASS,
    "hook-name": "Harvest",
    "connection-type": CONNECTION_TYPE,
    "ui-field-behaviour": {
        "hidden-fields": ["schema", "port"],
        "relabeling": {
            "host": "API URL",
            "login": "OAuth2 client ID",
            "password": "Personal access token (or OAuth2 client secret)",
        },
        "placeholders": {
            "host": DEFAULT_BASE_URL,
            "login": "empty for a personal access token",
            "password": "from id.getharvest.com/developers",
        },
    },
    "conn-fields": {
        "account_id": _text(
            "Account ID",
            "The Harvest account to sync: the number id.getharvest.com/developers shows next to your token.",
        ),
        "refresh_token": _text(
            "OAuth2 refresh token",
            "Written by the Install Harvest page (OAuth2); leave empty with a personal access token.",
            format="password",
        ),
        "oauth_base_url": _text("Harvest ID URL (OAuth2)", f"Empty means {DEFAULT_ID_URL}."),
        "user_agent": _text("User-Agent", f"Names this application to Harvest. Empty means {DEFAULT_USER_AGENT!r}."),
        "timeout": _number("Timeout (seconds)", "Per request. Empty means 30."),
        "rate_limit_requests": _number(
            "Rate limit: requests", "Per window, shared by every task on this account. Empty means 100.", "integer"
        ),
        "rate_limit_seconds": _number("Rate limit: window (seconds)", "Empty means 15 (Harvest's limit).", "number"),
    },
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "primetric-harvest",
        "name": "Primetric Harvest sync",
        "description": "Harvest time entries become Primetric work logs: one daily Airflow DAG per linked project.",
        "versions": [version("primetric-harvest")],
        "integrations": [
            {"integration-name": "Harvest", "external-doc-url": "https://help.getharvest.com/api-v2/", "tags": []}
        ],
        "hooks": [{"integration-name": "Harvest", "python-modules": ["primetric_harvest.harvest_hook"]}],
        "connection-types": [HARVEST_CONNECTION],
    }

"""Airflow plugin: the "Harvest sync" page, served by the API server at /harvest and shown in the UI's navigation.

The FastAPI app (plugins/harvest_sync_ui/app.py) checks the caller's Airflow session itself; the external
view puts it in the navigation (Airflow renders it in a same-origin iframe at /plugin/harvest-sync).
"""

from __future__ import annotations

from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin
from harvest_sync_ui.app import NAV_LABEL, URL_PREFIX, app


class HarvestSyncUiPlugin(AirflowPlugin):
    name = "harvest_sync_ui"
    fastapi_apps: ClassVar[list] = [{"app": app, "url_prefix": URL_PREFIX, "name": "Harvest sync"}]
    external_views: ClassVar[list] = [
        {
            # The navigation shows about seven characters under the icon: "Harvest sync" was cut to "Harvest s…".
            "name": NAV_LABEL,
            # Relative (no leading slash): resolved against the UI's base URL, so a sub-path deployment works.
            "href": URL_PREFIX.lstrip("/") + "/",
            "destination": "nav",
            "url_route": "harvest-sync",
        }
    ]

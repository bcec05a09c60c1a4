"""Airflow plugin: the "Install Harvest" page (OAuth2 install of the Harvest integration), for administrators.

Served by the API server at ``/harvest-install/`` (see ``harvest_install/app.py``); listed in the UI's
navigation. The page checks the caller's Airflow identity itself: plugin apps get no authentication.
"""

from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin
from harvest_install.app import app

from primetric_harvest.names import INSTALL_PATH


class HarvestInstallPlugin(AirflowPlugin):
    name = "harvest_install"
    fastapi_apps: ClassVar[list] = [{"app": app, "url_prefix": INSTALL_PATH, "name": "Install Harvest"}]
    external_views: ClassVar[list] = [
        {"name": "Install Harvest", "href": f"{INSTALL_PATH}/", "destination": "nav", "category": "admin"}
    ]

"""The "Harvest sync" page of the Airflow UI: FastAPI app in app.py, registered by plugins/harvest_sync_ui_plugin.py."""

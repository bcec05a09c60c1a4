"""The "Install Harvest" page: a FastAPI app mounted on the Airflow API server by harvest_install_plugin."""

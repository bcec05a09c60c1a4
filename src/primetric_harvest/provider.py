"""This package as an Airflow provider (entry point ``apache_airflow_provider`` in pyproject.toml)."""

from __future__ import annotations

from importlib.metadata import version


def get_provider_info() -> dict:
    return {
        "package-name": "primetric-harvest",
        "name": "Primetric Harvest sync",
        "description": "Harvest time entries become Primetric work logs: one daily Airflow DAG per linked project.",
        "versions": [version("primetric-harvest")],
    }

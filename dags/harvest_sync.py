"""Airflow DAGs: one Harvest → Primetric sync DAG per linked project, `harvest_sync_<project_id>`.

Linking a project in primetric.harvest_settings makes its DAG appear at the next parse, no deploy.
The parse runs one cheap query with a short timeout and falls back to the last good answer.
"""

from primetric_harvest.dag_factory import build_linked_project_dags

globals().update(build_linked_project_dags())

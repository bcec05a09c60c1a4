"""Airflow DAGs of shard 2: the sync DAGs of the projects with id % PRIMETRIC_DAG_SHARDS == 2 (README "Sizing").

Empty (no query either) unless PRIMETRIC_DAG_SHARDS is more than 2; dags/harvest_sync.py holds shard 0.
"""

from primetric_harvest.dag_factory import build_linked_project_dags

globals().update(build_linked_project_dags(shard=2))

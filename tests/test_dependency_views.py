"""Airflow's dependency views answer on `make airflow`'s stack: the metadata database on psycopg2.

With a ``postgresql+psycopg://`` (psycopg 3) metadata URL the scheduling dependencies' query fails in
PostgreSQL (``operator does not exist: jsonb #> character varying``): /ui/dependencies answers 500 and an
asset's "Scheduling" graph stays blank. The stacks use ``postgresql+psycopg2://``, the driver Airflow supports.
"""

from __future__ import annotations

import pytest

from primetric_harvest.names import worklogs_asset_uri
from scripts.airflow_local import AirflowLocal
from tests.airflow_server import DEMO_DAGS

pytestmark = pytest.mark.airflow


def test_the_metadata_database_url_names_psycopg2(airflow_server: AirflowLocal):
    assert airflow_server.env()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")


def test_dependency_and_asset_graphs_answer(airflow_server: AirflowLocal):
    api = airflow_server.session()
    url = airflow_server.url
    assets = api.get(f"{url}/api/v2/assets", params={"limit": 100}, timeout=30)
    assert assets.status_code == 200, assets.text
    by_uri = {a["uri"]: a["id"] for a in assets.json()["assets"]}
    asset_id = by_uri[worklogs_asset_uri(1)]  # demo project 1's work logs (harvest_sync_1's outlet)

    # The DAG dependencies page, and the asset page's "Scheduling" and "Data" graphs.
    graph = api.get(f"{url}/ui/dependencies", timeout=30)
    assert graph.status_code == 200, graph.text
    edges = {(e["source_id"], e["target_id"]) for e in graph.json()["edges"]}
    assert ("dag:harvest_sync_1", f"asset:{asset_id}") in edges, edges
    for params in ({"node_id": f"asset:{asset_id}"}, {"node_id": f"asset:{asset_id}", "dependency_type": "data"}):
        answer = api.get(f"{url}/ui/dependencies", params=params, timeout=30)
        assert answer.status_code == 200, (params, answer.text)
        assert f"asset:{asset_id}" in {n["id"] for n in answer.json()["nodes"]}, (params, answer.text)
    # A DAG's graph with its external dependencies (the asset it updates), as the Graph view asks for it.
    for dag in DEMO_DAGS:
        structure = api.get(
            f"{url}/ui/structure/structure_data", params={"dag_id": dag, "external_dependencies": "true"}, timeout=30
        )
        assert structure.status_code == 200, structure.text
        assert any(n["id"].startswith("asset") or n.get("type") == "asset" for n in structure.json()["nodes"]), (
            structure.text
        )

"""Airflow's dependency views answer on `make airflow`'s stack: the metadata database on psycopg2.

With a ``postgresql+psycopg://`` (psycopg 3) metadata URL the scheduling dependencies' query fails in
PostgreSQL (``operator does not exist: jsonb #> character varying``): /ui/dependencies answers 500 and an
asset's "Scheduling" graph stays blank. The stacks use ``postgresql+psycopg2://``, the driver Airflow supports.
The load declares an asset alias (an event only when work logs changed), so Airflow knows the asset itself from
its first event on: the test makes one if no earlier test did.
"""

from __future__ import annotations

import pytest
import requests

from primetric_harvest.names import worklogs_asset_uri
from scripts.airflow_local import AirflowLocal
from tests.airflow_server import DEMO_DAGS, set_paused, wait_for_run
from tests.sync_page import wait_ready

pytestmark = pytest.mark.airflow


def test_the_metadata_database_url_names_psycopg2(airflow_server: AirflowLocal):
    assert airflow_server.env()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")


def _sync_demo_project(server: AirflowLocal) -> None:
    """A reset of demo project 1 through the Harvest sync page (as a manager would): it changes work logs, so
    its load emits the project's asset event, and Airflow registers the asset behind the load's alias."""
    headers = {"Authorization": f"Bearer {server.token()}"}
    base = f"{server.url}/harvest"
    started = requests.post(f"{base}/api/projects/1/runs", json={"since": "2026-09-01"}, headers=headers, timeout=60)
    if started.status_code == 409 and started.json().get("code") == "run_due":  # paused with a daily run due
        assert requests.post(f"{base}/api/projects/1/schedule/rearm", json={}, headers=headers, timeout=60).ok
        wait_ready(base, headers, 1)
        started = requests.post(f"{base}/api/projects/1/runs", json={"since": "2026-09-01"}, headers=headers)
    assert started.status_code == 200, started.text
    assert wait_for_run(server, "harvest_sync_1", started.json()["dag_run_id"], timeout=300)["state"] == "success"
    set_paused(server, "harvest_sync_1", True)  # as the stack starts (other tests on it expect the DAG paused)


def test_dependency_and_asset_graphs_answer(airflow_server: AirflowLocal):
    api = airflow_server.session()
    url = airflow_server.url
    # The DAG dependencies page: each project's DAG updates its work logs through the load's asset alias.
    graph = api.get(f"{url}/ui/dependencies", timeout=30)
    assert graph.status_code == 200, graph.text
    sources = {e["source_id"] for e in graph.json()["edges"]}
    assert "dag:harvest_sync_1" in sources, graph.text

    assets = api.get(
        f"{url}/api/v2/assets", params={"uri_pattern": worklogs_asset_uri(1), "only_active": "false"}, timeout=30
    )
    if not [a for a in assets.json()["assets"] if a["uri"] == worklogs_asset_uri(1)]:
        _sync_demo_project(airflow_server)  # the asset exists once a run has changed work logs
        assets = api.get(
            f"{url}/api/v2/assets", params={"uri_pattern": worklogs_asset_uri(1), "only_active": "false"}, timeout=30
        )
    assert assets.status_code == 200, assets.text
    (asset_id,) = [a["id"] for a in assets.json()["assets"] if a["uri"] == worklogs_asset_uri(1)]

    # The asset page's "Scheduling" graph (its "Data" graph answers 404 until a DAG schedules on the asset: Airflow
    # draws it for active assets only, and one known only from alias events is not active).
    for params in ({"node_id": f"asset:{asset_id}"},):
        answer = api.get(f"{url}/ui/dependencies", params=params, timeout=30)
        assert answer.status_code == 200, (params, answer.text)
        assert f"asset:{asset_id}" in {n["id"] for n in answer.json()["nodes"]}, (params, answer.text)
    # A DAG's graph with its external dependencies (the alias its load updates), as the Graph view asks for it.
    for dag in DEMO_DAGS:
        structure = api.get(
            f"{url}/ui/structure/structure_data", params={"dag_id": dag, "external_dependencies": "true"}, timeout=30
        )
        assert structure.status_code == 200, structure.text
        assert any("asset" in n["id"] or "asset" in str(n.get("type")) for n in structure.json()["nodes"]), (
            structure.text
        )

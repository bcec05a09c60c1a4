"""The DAG-file shard setting (README "Sizing"): its values, the rule, and a file in dags/ for every shard."""

from pathlib import Path

import pytest

from primetric_harvest.names import DAG_SHARDS_ENV, MAX_DAG_SHARDS, dag_file, dag_shard
from primetric_harvest.registry import dag_shards

pytestmark = pytest.mark.unit
DAGS = Path(__file__).resolve().parents[1] / "dags"


def test_one_dag_file_unless_the_setting_says_more(monkeypatch):
    monkeypatch.delenv(DAG_SHARDS_ENV, raising=False)
    assert dag_shards() == 1
    monkeypatch.setenv(DAG_SHARDS_ENV, " 5 ")
    assert dag_shards() == 5


@pytest.mark.parametrize("value", ["0", "9", "two", "-1", "1.5"])
def test_a_shard_count_out_of_range_is_refused_with_what_to_give(monkeypatch, value):
    monkeypatch.setenv(DAG_SHARDS_ENV, value)
    with pytest.raises(ValueError, match=f"{DAG_SHARDS_ENV}=.*whole number from 1 to {MAX_DAG_SHARDS}"):
        dag_shards()


def test_every_shard_has_its_file_and_a_project_has_one_stable_shard():
    assert [dag_file(k) for k in range(3)] == ["harvest_sync.py", "harvest_sync_shard_1.py", "harvest_sync_shard_2.py"]
    assert all((DAGS / dag_file(k)).is_file() for k in range(MAX_DAG_SHARDS))
    assert not (DAGS / dag_file(MAX_DAG_SHARDS)).exists()
    assert [dag_shard(p, 5) for p in (10, 11, 14, 15)] == [0, 1, 4, 0]
    assert {dag_shard(p, 1) for p in range(1, 50)} == {0}

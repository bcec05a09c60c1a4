"""PostgreSQL connections honour the Airflow connection's extras (sslmode, options, connect_timeout, ...), against
the local server, which has no SSL: ``sslmode=require`` is refused with a message naming the connection,
``sslmode=disable`` connects."""

from __future__ import annotations

import json
import logging

import psycopg
import pytest

from primetric_harvest.db import DatabaseConnectionError, connect, conninfo
from primetric_harvest.registry import linked_projects
from tests.fixtures import PG

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def server_without_ssl():
    with psycopg.connect(f"{PG}/postgres") as conn:
        if conn.execute("SHOW ssl").fetchone()[0] == "on":
            pytest.skip("the local PostgreSQL serves SSL: sslmode=require would connect")


def set_primetric(monkeypatch, dsn: str, **extra) -> None:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    conn = {
        "conn_type": "postgres",
        "host": info.get("host", "127.0.0.1"),
        "port": int(info.get("port", 5432)),
        "schema": info["dbname"],
        "login": info.get("user", "postgres"),
        "password": info.get("password"),
        "extra": extra,
    }
    monkeypatch.setenv("AIRFLOW_CONN_PRIMETRIC_DB", json.dumps(conn))


def test_sslmode_require_is_refused_by_a_server_without_ssl(server_without_ssl, primetric_db, monkeypatch):
    set_primetric(monkeypatch, primetric_db, sslmode="require")
    with pytest.raises(DatabaseConnectionError) as refused:
        connect()
    message = str(refused.value)
    assert message.startswith("Could not connect to PostgreSQL through Airflow connection 'primetric_db' (")
    assert "sslmode=require" in message and "server does not support SSL, but SSL was required" in message
    assert "Check the connection's host, port, database, login and password, and its extras" in message
    assert isinstance(refused.value, psycopg.OperationalError)  # callers that catch psycopg's error still do


def test_sslmode_disable_connects_without_ssl(primetric_db, monkeypatch):
    set_primetric(monkeypatch, primetric_db, sslmode="disable")
    with connect() as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (False,)
        assert conn.info.get_parameters()["sslmode"] == "disable"


def test_the_uri_form_carries_the_extras_too(server_without_ssl, primetric_db, monkeypatch):
    """AIRFLOW_CONN_PRIMETRIC_DB='postgresql://…?sslmode=require': the query string is the extra."""
    monkeypatch.setenv("AIRFLOW_CONN_PRIMETRIC_DB", f"{primetric_db}?sslmode=require&connect_timeout=4")
    assert (
        psycopg.conninfo.conninfo_to_dict(conninfo()).items() >= {"sslmode": "require", "connect_timeout": "4"}.items()
    )
    with pytest.raises(DatabaseConnectionError, match="sslmode=require"):
        connect()


def test_options_and_a_statement_timeout_go_together(primetric_db, monkeypatch):
    set_primetric(monkeypatch, primetric_db, options="-c search_path=harvest_sync", application_name="ops-check")
    with connect(statement_timeout_ms=4000) as conn:
        assert conn.execute("SHOW search_path").fetchone() == ("harvest_sync",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("4s",)
        assert conn.execute("SHOW application_name").fetchone() == ("ops-check",)  # the operator's name wins


def test_extras_that_are_not_libpq_parameters_are_left_out_with_a_warning(primetric_db, monkeypatch, caplog):
    """The postgres provider's own extras (``cursor``) must not reach libpq, which would refuse them."""
    set_primetric(monkeypatch, primetric_db, cursor="dictcursor", sslmode="disable")
    caplog.set_level(logging.WARNING, logger="primetric_harvest.db")
    with connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)  # tuples, as every step expects
    assert "extra 'cursor' is not a PostgreSQL (libpq) connection parameter; left out" in caplog.text
    assert "sslmode" not in caplog.text


def test_the_dag_parse_honours_the_extras(server_without_ssl, primetric_db, monkeypatch, tmp_path, caplog):
    """The parse's one query goes through the same connection: sslmode=require is refused there too (and the
    parse falls back to its cache, here none), sslmode=disable reads the linked projects."""
    monkeypatch.setenv("PRIMETRIC_DAG_CACHE", str(tmp_path / "cache.json"))
    with psycopg.connect(primetric_db, autocommit=True) as conn:
        conn.execute("INSERT INTO primetric.projects (id, name) VALUES (9, 'Ion')")
        conn.execute("INSERT INTO primetric.harvest_settings (project_id, enabled) VALUES (9, true)")
        conn.execute("INSERT INTO primetric.harvest_project_links (project_id, harvest_project_id) VALUES (9, 901)")
    set_primetric(monkeypatch, primetric_db, sslmode="require")
    assert linked_projects() == []
    assert "server does not support SSL" in caplog.text
    set_primetric(monkeypatch, primetric_db, sslmode="disable")
    assert [(p.project_id, p.harvest_project_ids) for p in linked_projects()] == [(9, (901,))]

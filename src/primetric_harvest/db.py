"""Connections to the Primetric database and the SQL files in include/sql/."""

from __future__ import annotations

import functools
import importlib.resources
import re
from importlib.resources.abc import Traversable

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import Row

from primetric_harvest.names import PRIMETRIC_CONN_ID

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def sql_dir() -> Traversable:
    """include/sql/: installed as the package ``primetric_harvest.sql`` (pyproject.toml maps the folder), so
    this is the checkout's folder under an editable install and the package's copy in a deployment."""
    return importlib.resources.files("primetric_harvest.sql")


@functools.cache
def _statements(file: str) -> dict[str, str]:
    text = (sql_dir() / f"{file}.sql").read_text()
    parts = _NAME.split(text)
    # parts: [preamble, name1, body1, name2, body2, ...]; comments above a name belong to it.
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def query(file: str, name: str, **identifiers: str) -> str | pgsql.Composed:
    """Statement ``name`` of include/sql/<file>.sql; ``{placeholders}`` become quoted identifiers."""
    try:
        text = _statements(file)[name]
    except KeyError:
        raise KeyError(f"no statement '-- name: {name}' in {sql_dir() / file}.sql") from None
    if not identifiers:
        return text
    return pgsql.SQL(text).format(**{k: pgsql.Identifier(*v.split(".")) for k, v in identifiers.items()})


def conninfo(conn_id: str = PRIMETRIC_CONN_ID) -> str:
    """libpq connection string of an Airflow postgres connection (env var, secrets backend or metadata DB)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    parts: dict[str, str | int | None] = {
        "host": conn.host or "127.0.0.1",
        "port": conn.port or 5432,
        "dbname": conn.schema or "postgres",
        "user": conn.login or "postgres",
        "password": conn.password,
    }
    return psycopg.conninfo.make_conninfo("", **{k: v for k, v in parts.items() if v not in (None, "")})


def connect(conn_id: str = PRIMETRIC_CONN_ID, **kwargs) -> psycopg.Connection:
    return psycopg.connect(conninfo(conn_id), application_name="primetric-harvest-sync", **kwargs)


def one_row(cursor: psycopg.Cursor[Row]) -> Row:
    """The row of a statement that always answers exactly one (an aggregate, ``now()``, an upsert's counts)."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("a statement that always answers one row answered none: is the database migrated?")
    return row

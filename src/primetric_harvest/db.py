"""Connections to the Primetric database and the SQL files in include/sql/."""

from __future__ import annotations

import functools
import importlib.resources
import logging
import re
from importlib.resources.abc import Traversable
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import Row

from primetric_harvest.names import APPLICATION_NAME, PRIMETRIC_CONN_ID

log = logging.getLogger(__name__)

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


class DatabaseConnectionError(psycopg.OperationalError):
    """PostgreSQL refused or could not be reached: the message names the connection and what to check."""


@functools.cache
def _libpq_keywords() -> frozenset[str]:
    """Every connection parameter this libpq knows (sslmode, sslrootcert, options, connect_timeout, ...)."""
    return frozenset(d.keyword.decode() for d in psycopg.pq.Conninfo.get_defaults())


@functools.cache
def _warn_left_out(conn_id: str, keys: tuple[str, ...]) -> None:
    log.warning(
        "Connection %r: extra %s %s not a PostgreSQL (libpq) connection parameter; left out",
        conn_id,
        ", ".join(map(repr, keys)),
        "is" if len(keys) == 1 else "are",
    )


def connection_params(conn_id: str = PRIMETRIC_CONN_ID) -> dict[str, str]:
    """libpq parameters of an Airflow postgres connection (env var, secrets backend or metadata DB).

    Host, port, database (``schema``), login and password, and every extra that is a libpq parameter, as the
    postgres provider's hook passes them on (its extras win, as there): ``sslmode``, ``sslrootcert``,
    ``sslcert``, ``sslkey``, ``options``, ``connect_timeout``, ``target_session_attrs``, ... Other extras (the
    provider's own ``cursor``, ``iam``, ...) are left out, with a warning. The provider's hook itself is not
    used: importing it costs ~0.4 s at every DAG parse, and our steps need psycopg 3 connections of their own.
    """
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    params: dict[str, object] = {
        "host": conn.host or "127.0.0.1",
        "port": conn.port or 5432,
        "dbname": conn.schema or "postgres",
        "user": conn.login or "postgres",
        "password": conn.password,
    }
    extra = conn.extra_dejson or {}
    params.update({k: v for k, v in extra.items() if k in _libpq_keywords()})
    left_out = tuple(sorted(k for k in extra if k not in _libpq_keywords()))
    if left_out:
        _warn_left_out(conn_id, left_out)
    return {k: str(v) for k, v in params.items() if v not in (None, "")}


def conninfo(conn_id: str = PRIMETRIC_CONN_ID) -> str:
    """libpq connection string of an Airflow postgres connection, its extras included."""
    return psycopg.conninfo.make_conninfo(**connection_params(conn_id))


def connect(
    conn_id: str = PRIMETRIC_CONN_ID,
    *,
    application_name: str = APPLICATION_NAME,
    statement_timeout_ms: int | None = None,
    **kwargs: Any,
) -> psycopg.Connection:
    """A psycopg connection through the Airflow connection ``conn_id`` (``kwargs``: psycopg's, e.g. autocommit).

    ``application_name`` says what holds the connection (``names.connection_name``: "primetric-harvest extract
    project 7"), so pg_stat_activity shows it. A ``statement_timeout_ms`` is added to the connection's own
    ``options``; an ``application_name`` extra wins over ours."""
    params = connection_params(conn_id)
    params.setdefault("application_name", application_name)
    if statement_timeout_ms is not None:
        params["options"] = f"{params.get('options', '')} -c statement_timeout={int(statement_timeout_ms)}".strip()
    try:
        return psycopg.connect(psycopg.conninfo.make_conninfo(**params), **kwargs)
    except psycopg.OperationalError as exc:
        where = f"{params['host']}:{params['port']}/{params['dbname']} as {params['user']}"
        if "sslmode" in params:
            where += f", sslmode={params['sslmode']}"
        reason = " ".join(str(exc).split())
        raise DatabaseConnectionError(
            f"Could not connect to PostgreSQL through Airflow connection {conn_id!r} ({where}): {reason}. Check "
            "the connection's host, port, database, login and password, and its extras (sslmode, sslrootcert, "
            "options, connect_timeout)."
        ) from exc


def one_row(cursor: psycopg.Cursor[Row]) -> Row:
    """The row of a statement that always answers exactly one (an aggregate, ``now()``, an upsert's counts)."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("a statement that always answers one row answered none: is the database migrated?")
    return row

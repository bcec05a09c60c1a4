"""Apply include/sql/migrations/*.sql in order, once each; safe to run any number of times.

Usage: python -m primetric_harvest.migrate   (database of Airflow connection ``primetric_db``)
"""

from __future__ import annotations

import hashlib
import logging

from primetric_harvest.db import connect, query, sql_dir
from primetric_harvest.names import PRIMETRIC_CONN_ID

log = logging.getLogger(__name__)


def migrations() -> list:
    """include/sql/migrations/*.sql in the order they apply."""
    return sorted((f for f in (sql_dir() / "migrations").iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)


def migrate(conn_id: str = PRIMETRIC_CONN_ID) -> list[str]:
    applied = []
    with connect(conn_id) as conn:
        conn.execute(query("schema_migrations", "lock"))
        conn.execute(query("schema_migrations", "bootstrap"))
        conn.commit()
        done: dict[str, str] = dict(conn.execute(query("schema_migrations", "applied")).fetchall())
        for path in migrations():
            text = path.read_text()
            version = path.name.removesuffix(".sql")
            checksum = hashlib.sha256(text.encode()).hexdigest()
            if version in done:
                if done[version] != checksum:
                    log.warning("migration %s changed since it was applied; not applied again", path.name)
                continue
            with conn.transaction():
                conn.execute(text)
                conn.execute(query("schema_migrations", "record"), {"version": version, "checksum": checksum})
            applied.append(version)
        conn.execute(query("schema_migrations", "unlock"))
    return applied


def create_database_if_missing(conn_id: str = PRIMETRIC_CONN_ID) -> None:
    """Create the connection's database when the server has none of that name (a fresh machine)."""
    import psycopg
    from psycopg import sql as pgsql

    from primetric_harvest.db import conninfo

    info = conninfo(conn_id)
    try:
        psycopg.connect(info, connect_timeout=5).close()
        return
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    dbname = str(psycopg.conninfo.conninfo_to_dict(info)["dbname"])
    with psycopg.connect(psycopg.conninfo.make_conninfo(info, dbname="postgres"), autocommit=True) as admin:
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(dbname)))
    print(f"created database {dbname}")


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if "--create-database" in sys.argv:
        create_database_if_missing()
    names = migrate()
    print(f"migrations applied: {', '.join(names) if names else 'none (up to date)'}")

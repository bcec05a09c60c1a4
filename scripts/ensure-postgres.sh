#!/usr/bin/env bash
# Makes sure the PostgreSQL server of PRIMETRIC_DSN answers; starts the local cluster if it can.
set -u
dsn=${1:-postgresql://postgres@127.0.0.1:5432}
py=${VENV_PYTHON:-.venv/bin/python}
answers() { "$py" -c "import psycopg, sys; psycopg.connect(sys.argv[1] + '/postgres', connect_timeout=3).close()" "$dsn" 2>/dev/null; }
answers && exit 0
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
  done
  for _ in $(seq 1 20); do answers && exit 0; sleep 0.5; done
fi
echo "PostgreSQL does not answer at $dsn: start it (or apt-get install postgresql), or set PRIMETRIC_DSN=postgresql://USER@HOST:PORT" >&2
exit 1

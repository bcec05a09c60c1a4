"""`python -m bench` (make bench) and `python -m bench --smoke` (make bench-smoke)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _environment() -> None:
    """Airflow reads its configuration at import: set it before anything imports airflow."""
    if str(ROOT) not in sys.path:  # bench/ itself; the package is installed (make venv)
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-home-"))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


if __name__ == "__main__":
    _environment()
    from bench.runner import main

    sys.exit(main(sys.argv[1:]))

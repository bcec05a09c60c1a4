"""Test setup. Airflow reads its configuration at import: set it before anything imports airflow.

Every test is in exactly one tier, the heaviest thing it needs (pytest markers, registered in pyproject.toml):
``unit`` (pure Python: no database, no Airflow metadata database, no network, no child process), ``db``
(PostgreSQL and/or the Harvest simulator), ``airflow`` (dag.test(), `airflow dags test`, a real Airflow) and
``browser`` (Chromium). ``make test-unit`` runs ``-m unit``; ``make test`` runs them all. A test cannot sit in
the wrong tier silently: collection fails for a test with no tier, two tiers, or a fixture of a heavier tier
(``FIXTURE_TIERS``), and a ``unit`` test that opens a connection or starts a process fails saying so: see
tests/tiers.py.
"""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix="airflow-test-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["PRIMETRIC_DAG_CACHE"] = str(_HOME / "cache" / "harvest_linked_projects.json")
if str(ROOT) not in sys.path:  # tests/, scripts/, bench/ (the package itself is installed: make venv)
    sys.path.insert(0, str(ROOT))

pytest_plugins = ["tests.tiers", "tests.fixtures", "tests.airflow_server", "pytester"]

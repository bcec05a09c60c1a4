"""The sync is one installed package: Airflow's plugin manager never imports it (or our UI apps) a second
time under another name, and its SQL is found from the package, in a checkout and in a built wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A fresh interpreter (nothing imported yet) loads Airflow's plugins the way the API server does, then
# lists every module that comes from this repository's code, with the name it was imported under.
_LOAD_PLUGINS = """
import json, sys
from airflow import plugins_manager
plugins_manager.ensure_plugins_loaded()
plugins, errors = plugins_manager._get_plugins()
roots = sys.argv[1:]
ours = {}
for name, module in list(sys.modules.items()):
    path = getattr(module, "__file__", None) or ""
    if any(path.startswith(r) for r in roots):
        ours.setdefault(path, []).append(name)
print(json.dumps({"plugins": sorted(p.name for p in plugins), "errors": errors, "modules": ours}))
"""


def _load_plugins() -> dict:
    env = {
        **os.environ,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
    }
    roots = [str(ROOT / "src"), str(ROOT / "plugins")]
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_PLUGINS, *roots], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.airflow
def test_airflow_loads_our_plugins_without_importing_any_module_twice():
    loaded = _load_plugins()
    assert loaded["errors"] == {}
    assert {"harvest_sync_ui", "harvest_install"} <= set(loaded["plugins"])
    twice = {path: names for path, names in loaded["modules"].items() if len(names) > 1}
    assert twice == {}, f"modules imported under two names: {twice}"
    names = {name for names in loaded["modules"].values() for name in names}
    # The library and the UI apps only under their package names, never as top-level `app`, `db`, ...
    assert "primetric_harvest.web_auth" in names and "harvest_sync_ui.app" in names
    bare = {n for n in names if "." not in n} - {
        "primetric_harvest",
        "harvest_sync_ui",
        "harvest_install",
        "harvest_sync_ui_plugin",
        "harvest_install_plugin",
    }
    assert bare == set(), f"library modules imported as top-level modules: {sorted(bare)}"
    # The plugin process needs neither pandas nor psycopg's pipeline code to mount the pages.
    assert not any(n.startswith("primetric_harvest.pipeline") for n in names)


@pytest.mark.airflow
def test_loading_the_plugins_logs_no_pathspec_deprecation():
    """Every task process loads the plugins, whose .airflowignore Airflow 3.3.2 reads with pathspec's
    GitWildMatchPattern: pathspec >= 1.0 logs a DeprecationWarning for it at the top of every task log.
    requirements.txt pins the 0.12 line, which Airflow's file discovery was written against."""
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins")}
    code = "from airflow import plugins_manager as m; m.ensure_plugins_loaded(); print(m._get_plugins()[0])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "harvest_install" in out.stdout  # the ignore file was read and the plugins loaded
    assert "GitWildMatchPattern" not in out.stdout + out.stderr


@pytest.mark.unit
def test_every_named_sql_statement_is_used():
    """A statement nothing runs is dead weight that still has to be kept right: each ``-- name:`` of
    include/sql/*.sql is named in the code (``query("file", "name")``, or its name passed on to ``query``)."""
    import re

    code = "\n".join(
        p.read_text() for d in ("src", "plugins", "dags", "scripts", "bench") for p in (ROOT / d).rglob("*.py")
    )
    unused = []
    for sql in sorted((ROOT / "include/sql").glob("*.sql")):
        assert f'"{sql.stem}"' in code, f"{sql.name}: no query({sql.stem!r}, ...) anywhere"
        for name in re.findall(r"^-- name: (\w+)\s*$", sql.read_text(), re.MULTILINE):
            if f'query("{sql.stem}", "{name}"' not in code and f'"{name}"' not in code:
                unused.append(f"{sql.name}: {name}")
    assert unused == []


@pytest.mark.unit
def test_the_sql_is_found_through_the_package_not_a_path_from_a_source_file():
    from primetric_harvest.db import query, sql_dir
    from primetric_harvest.migrate import migrations

    assert Path(str(sql_dir())).resolve() == ROOT / "include" / "sql"  # editable install: the checkout's folder
    assert [m.name for m in migrations()] == sorted(p.name for p in (ROOT / "include/sql/migrations").glob("*.sql"))
    assert (
        "primetric.worklogs"
        in query("load", "upsert_worklogs", entries="a", users="b", worklogs="c", skipped="d").as_string()
    )


@pytest.mark.airflow
@pytest.mark.timeout(300)
def test_a_built_wheel_carries_the_sql_and_registers_the_provider(tmp_path):
    uv = Path(sys.executable).parent / "uv"
    built = subprocess.run(
        [str(uv), "build", "--wheel", "--out-dir", str(tmp_path), str(ROOT)], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("primetric_harvest-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        files = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in files if n.endswith("entry_points.txt"))
    expected = {
        f"primetric_harvest/sql/{p.relative_to(ROOT / 'include/sql')}" for p in (ROOT / "include/sql").rglob("*.sql")
    }
    assert expected and expected <= files, sorted(expected - files)
    assert "primetric_harvest/pipeline.py" in files and "harvest_simulator/server.py" in files
    assert (
        "[apache_airflow_provider]" in entry_points and "primetric_harvest.provider:get_provider_info" in entry_points
    )

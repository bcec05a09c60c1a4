"""docker-compose.yaml, checked without a Docker engine: the file is loaded and resolved the way
`docker compose [-f …] [--profile …] config` resolves it (variable interpolation from .env, YAML
anchors and merge keys, override files merged service by service, services switched on by profile),
then the result is checked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yaml"
DEMO = ROOT / "docker" / "compose.demo.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
}
PRODUCTION = AIRFLOW_SERVICES | {"postgres", "redis"}
DEMO_ONLY = {"harvest-simulator", "primetric-db", "demo-seed"}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME; $$ is a literal $.
_VAR = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}|(?P<bare>[A-Za-z_]\w*))"
)


# -- a small model of compose's resolution -------------------------------------------------------
def pinned_airflow_version() -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.startswith("apache-airflow=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError("requirements.txt pins no apache-airflow==VERSION")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as compose reads .env: quotes stripped, '#' lines and blanks skipped."""
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {raw!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


class MissingVariable(Exception):
    pass


def interpolate(value, env: dict[str, str]):
    """Compose's interpolation of every string in a loaded file (keys are not interpolated)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        present = name in env
        empty = not env.get(name)
        if op in (":-", "-"):
            use_default = empty if op == ":-" else not present
            return arg if use_default else env[name]
        if op in (":?", "?"):
            if empty if op == ":?" else not present:
                raise MissingVariable(f"{name}: {arg}")
            return env[name]
        if not present:
            raise MissingVariable(f"{name} is not set and has no default")
        return env[name]

    return _VAR.sub(one, value)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())  # resolves anchors and `<<` merge keys, as compose does


def merge(base: dict, override: dict) -> dict:
    """Compose's merge of an override file for the keys our override uses (mappings, key by key)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve(files: list[Path], profiles: set[str], env: dict[str, str]) -> dict[str, dict]:
    """The active services of `docker compose -f … --profile …`, with .env ``env``."""
    model: dict = {}
    for path in files:
        model = merge(model, interpolate(load(path), env))
    return {
        name: svc
        for name, svc in model["services"].items()
        if not svc.get("profiles") or profiles & set(svc["profiles"])
    }


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def production(example_env):
    return resolve([COMPOSE], set(), example_env)


@pytest.fixture(scope="module")
def demo(example_env):
    return resolve([COMPOSE, DEMO], {"demo"}, example_env)


# -- the checks ---------------------------------------------------------------------------------------
def test_production_runs_the_official_airflow_3_services_and_nothing_of_the_demo(production):
    assert set(production) == PRODUCTION
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert production[name]["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}
    commands = {name: production[name].get("command") for name in AIRFLOW_SERVICES - {"airflow-init"}}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-worker": "celery worker",
        "airflow-triggerer": "triggerer",
    }
    for name in AIRFLOW_SERVICES:
        env = environment(production[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert (
            env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
            and "@redis:" in env["AIRFLOW__CELERY__BROKER_URL"]
        )
        assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        # psycopg2, the driver Airflow supports: on psycopg 3 its dependency views answer 500.
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://"), name
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://"), name


def test_init_migrates_airflow_and_our_schema(production):
    init = production["airflow-init"]
    script = "\n".join(init["command"]) if isinstance(init["command"], list) else init["command"]
    assert "airflow db migrate" in script
    assert "python -m primetric_harvest.migrate" in script
    assert "airflow pools set harvest_api" in script
    assert script.index("airflow db migrate") < script.index("primetric_harvest.migrate")


def test_workers_scale_out(production):
    worker = production["airflow-worker"]
    assert "container_name" not in worker, "a fixed container_name stops `--scale airflow-worker=N`"
    assert not worker.get("ports"), "a host port on the worker stops `--scale airflow-worker=N`"
    assert "hostname" not in worker


def test_image_tags_and_base_image_equal_the_pinned_airflow(production, example_env):
    version = pinned_airflow_version()
    for name in AIRFLOW_SERVICES:
        image = production[name]["image"]
        assert image.rsplit(":", 1)[1] == version, (name, image)
        assert production[name]["build"]["args"]["AIRFLOW_VERSION"] == version, name
        assert (ROOT / production[name]["build"]["context"] / production[name]["build"]["dockerfile"]) == DOCKERFILE
    # also with nothing set in .env (the defaults alone)
    bare = resolve([COMPOSE], set(), {k: v for k, v in example_env.items() if k != "AIRFLOW_IMAGE_NAME"})
    assert bare["airflow-scheduler"]["image"].endswith(f":{version}")

    dockerfile = DOCKERFILE.read_text()
    assert re.search(rf"^ARG AIRFLOW_VERSION={re.escape(version)}$", dockerfile, re.M), "Dockerfile's default ARG"
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python3\.11$", dockerfile, re.M)
    assert "-r /tmp/requirements/requirements.txt" in dockerfile
    # The sync is installed as a package (with include/sql/ inside it), its dependencies only from the pins.
    assert re.search(r"^RUN pip install --no-cache-dir --no-deps /tmp/primetric-harvest$", dockerfile, re.M)
    for path in ("pyproject.toml", "src/", "include/"):
        assert re.search(rf"^COPY .*\b{re.escape(path)} ", dockerfile, re.M), f"the image needs {path}"


def test_the_image_installs_the_one_list_of_pins_with_the_celery_packages():
    """requirements.txt is the only list: the venv (make venv) and the image install the same versions."""
    dockerfile = DOCKERFILE.read_text()
    assert re.findall(r"-r (\S+)", dockerfile) == ["/tmp/requirements/requirements.txt"]
    assert not list((ROOT / "docker").glob("requirements*.txt")), "a second list of pins"
    ignore = (ROOT / "docker" / "Dockerfile.dockerignore").read_text()
    assert "requirements-" not in ignore
    pins = dict(line.split("==", 1) for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line)
    for package in ("apache-airflow-providers-celery", "celery", "kombu", "redis"):
        assert package in pins, f"requirements.txt pins no {package}"


def test_every_mounted_host_path_exists_in_the_repository(production, demo):
    declared = set(load(COMPOSE).get("volumes") or {})
    checked = 0
    for services in (production, demo):
        for name, svc in services.items():
            for volume in svc.get("volumes") or []:
                source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
                if source.startswith((".", "/", "~")):
                    assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
                    assert (ROOT / source).resolve().is_relative_to(ROOT), f"{name} mounts {source} outside the repo"
                    checked += 1
                else:
                    assert source in declared, f"{name} uses volume {source!r}, not declared under volumes:"
            build = svc.get("build")
            if build:
                assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
    mounted = {
        v.split(":")[1] for v in production["airflow-scheduler"]["volumes"] if v.startswith(".")
    }  # as Airflow's compose file does; the package (src/, include/sql/) is installed in the image
    assert mounted == {"/opt/airflow/dags", "/opt/airflow/plugins"}
    assert checked > 0


def test_every_variable_has_a_default_or_is_in_env_example(example_env):
    missing = []
    for path in (COMPOSE, DEMO):
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        for m in _VAR.finditer(text):
            name = m.group("braced") or m.group("bare")
            if m.group(0) == "$$" or name is None:
                continue
            has_default = m.group("op") in (":-", "-")
            if not has_default and name not in example_env:
                missing.append(f"{path.name}: ${{{name}}}")
    assert missing == []
    # and resolution with an empty .env fails only on the secrets that .env.example says to set
    with pytest.raises(MissingVariable) as info:
        resolve([COMPOSE], set(), {})
    assert info.value.args[0].split(":")[0] in example_env


def test_env_example_holds_placeholders_not_secrets(example_env):
    for key in (
        "POSTGRES_PASSWORD",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW_ADMIN_PASSWORD",
    ):
        assert example_env[key] == "change-me", key
    harvest = json.loads(example_env["AIRFLOW_CONN_HARVEST_DEFAULT"])
    assert harvest["password"] == "change-me" and harvest["host"] == "https://api.harvestapp.com"
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def _simulator_address(demo: dict) -> tuple[str, int, str, str]:
    args = demo["harvest-simulator"]["command"]
    opt = dict(zip(args[::2], args[1::2], strict=True))
    return "harvest-simulator", int(opt["--port"]), opt["--token"], opt["--account-id"]


def test_harvest_points_at_the_simulator_only_in_the_demo(production, demo, example_env):
    host, port, token, account = _simulator_address(demo)
    assert "harvest-simulator" in demo and demo["harvest-simulator"]["profiles"] == ["demo"]

    # demo: every Airflow service talks to the simulator and the demo database
    demo_db = environment(demo["primetric-db"])
    for name in AIRFLOW_SERVICES | {"demo-seed"}:
        env = environment(demo[name])
        harvest = json.loads(env["AIRFLOW_CONN_HARVEST_DEFAULT"])
        assert (harvest["host"], harvest["password"], harvest["extra"]["account_id"]) == (
            f"http://{host}:{port}",
            token,
            account,
        ), name
        db = urlsplit(env["AIRFLOW_CONN_PRIMETRIC_DB"])
        assert (db.hostname, db.username, db.password, db.path.lstrip("/")) == (
            "primetric-db",
            demo_db["POSTGRES_USER"],
            demo_db["POSTGRES_PASSWORD"],
            demo_db["POSTGRES_DB"],
        ), name
    for name in ("airflow-scheduler", "airflow-worker", "airflow-init"):
        assert demo[name]["depends_on"]["harvest-simulator"]["condition"] == "service_healthy", name

    # production: nothing points at the simulator, whether .env sets the connections or leaves them out
    # (then the defaults apply); with .env's, the connections are .env's
    without_connections = {k: v for k, v in example_env.items() if not k.startswith("AIRFLOW_CONN_")}
    for services in (production, resolve([COMPOSE], set(), without_connections)):
        for name, svc in services.items():
            assert "harvest-simulator" not in json.dumps(svc), name
            assert "primetric-db:" not in json.dumps(svc), name
    for name in AIRFLOW_SERVICES:
        env = environment(production[name])
        assert env["AIRFLOW_CONN_HARVEST_DEFAULT"] == example_env["AIRFLOW_CONN_HARVEST_DEFAULT"], name
        assert env["AIRFLOW_CONN_PRIMETRIC_DB"] == example_env["AIRFLOW_CONN_PRIMETRIC_DB"], name

    # a profile alone switches services on but no environment: the Airflow services still use .env's
    # Harvest, and the demo's seeding refuses to run
    profile_only = resolve([COMPOSE], {"demo"}, example_env)
    assert DEMO_ONLY <= set(profile_only)
    for name in AIRFLOW_SERVICES:
        assert "harvest-simulator" not in environment(profile_only[name])["AIRFLOW_CONN_HARVEST_DEFAULT"]
    assert "*harvest-simulator*) ;;" in profile_only["demo-seed"]["command"][1]
    assert "exit 1" in profile_only["demo-seed"]["command"][1]


def test_the_demo_overlay_only_merges_environment_and_dependencies_into_existing_services():
    base, overlay = load(COMPOSE)["services"], load(DEMO)["services"]
    for name, svc in overlay.items():
        assert name in base, f"compose.demo.yaml defines a new service {name!r} instead of overriding one"
        assert set(svc) <= {"environment", "depends_on"}, (name, set(svc))
        assert isinstance(svc["environment"], dict), name  # mappings merge key by key; lists would not


def test_every_dependency_of_an_active_service_is_active(production, demo):
    for services in (production, demo):
        for name, svc in services.items():
            for dep in svc.get("depends_on") or {}:
                assert dep in services, f"{name} depends on {dep}, which is not running in this profile"


def test_the_dag_and_alert_connections_come_from_env(production, example_env):
    env = environment(production["airflow-worker"])
    for key in ("AIRFLOW_CONN_HARVEST_ALERTS_SLACK", "AIRFLOW_CONN_HARVEST_ALERTS_SMTP"):
        assert key in env and key in example_env
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == example_env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert env["AIRFLOW__API__BASE_URL"] == example_env["AIRFLOW__API__BASE_URL"]
    assert "PYTHONPATH" not in env  # the package is installed; Airflow puts plugins/ on sys.path itself


# -- authentication: the FAB auth manager, and no secret with a usable default -------------------------------
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
# Each must come from .env: unset or empty, `docker compose` refuses to start (a `${VAR:?message}`).
SECRETS = (
    "POSTGRES_PASSWORD",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW_ADMIN_USERNAME",
    "AIRFLOW_ADMIN_PASSWORD",
)
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$|ADMIN_USERNAME")


def test_production_selects_the_fab_auth_manager_and_creates_the_admin_through_fab(production, example_env):
    for name in AIRFLOW_SERVICES:
        env = environment(production[name])
        assert env["AIRFLOW__CORE__AUTH_MANAGER"] == FAB_AUTH_MANAGER, name
        assert not [k for k in env if k.startswith("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER")], name
    init = production["airflow-init"]
    script = init["command"][1]
    create = script[script.index("airflow users create") :].split("\n", 2)
    create = " ".join(create[:2])  # the command and its continuation line
    assert '--username "${AIRFLOW_ADMIN_USERNAME}"' in create and "--role Admin" in create
    assert "--password" not in script and "AIRFLOW_ADMIN_PASSWORD" in script  # on stdin, not on a command line
    assert script.index("airflow db migrate") < script.index("airflow users create")
    assert "roles add-perms Viewer User --resource Plugins --action can_read" in script
    env = environment(init)
    assert env["AIRFLOW_ADMIN_USERNAME"] == example_env["AIRFLOW_ADMIN_USERNAME"]
    assert env["AIRFLOW_ADMIN_PASSWORD"] == example_env["AIRFLOW_ADMIN_PASSWORD"]
    # the provider is pinned and the image keeps it
    assert re.search(r"^apache-airflow-providers-fab==\S+$", (ROOT / "requirements.txt").read_text(), re.M)
    assert "uninstall" not in DOCKERFILE.read_text()


@pytest.mark.parametrize("secret", SECRETS)
def test_no_secret_has_a_usable_default(example_env, secret):
    for env in ({k: v for k, v in example_env.items() if k != secret}, {**example_env, secret: ""}):
        with pytest.raises(MissingVariable) as info:
            resolve([COMPOSE], set(), env)
        assert info.value.args[0].startswith(f"{secret}: set {secret} in .env"), info.value.args[0]


def test_every_secret_like_variable_of_production_is_required_or_empty_by_default():
    """Any ${PASSWORD/SECRET/KEY/TOKEN...} a production service uses has no default but the empty string."""
    services = {
        name: svc for name, svc in load(COMPOSE)["services"].items() if not svc.get("profiles")
    }  # before interpolation: the raw ${...} forms
    found = set()
    for name, svc in services.items():
        for m in _VAR.finditer(json.dumps(svc)):
            var = m.group("braced")
            if not var or not _SECRET_NAME.search(var):
                continue
            found.add(var)
            op, default = m.group("op"), m.group("arg") or ""
            assert op in (":?", "?") or (op in (":-", "-") and default == ""), f"{name}: ${{{var}{op}{default}}}"
    assert set(SECRETS) <= found

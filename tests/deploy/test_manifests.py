"""Static checks of docker-compose.yml and deploy/k8s (no Docker engine or cluster here): they parse, reference
only what exists, and give every service of the platform its migration, api and worker, wired to the gateway."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from aftercare.dbroles import SERVICE_SCHEMAS, password_env
from aftercare.services import SERVICE_MODULES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
NGINX = ROOT / "deploy" / "gateway" / "nginx.conf"
# The service keys docker compose accepts that this file may use (compose-spec), to catch typos like "depend_on".
SERVICE_KEYS = {"image", "build", "restart", "volumes", "depends_on", "expose", "healthcheck", "stop_grace_period",
                "environment", "command", "hostname", "ports", "networks", "deploy", "user", "read_only", "tmpfs"}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(text: str, env: dict[str, str]) -> str:
    """docker compose's ${VAR}, ${VAR:-default}, ${VAR:?error}, $$, and defaults that hold variables themselves
    (``${A:-http://host:${B:-8000}}``): the subset this file uses."""
    value, end = _scan(text, 0, env, inside=False)
    assert end == len(text)
    return value


def _scan(text: str, i: int, env: dict[str, str], inside: bool) -> tuple[str, int]:
    """Interpolate from ``i`` to the end, or (``inside`` a ${...}) to its closing brace; returns the text and where
    it stopped (at that brace)."""
    out: list[str] = []
    while i < len(text):
        c = text[i]
        if inside and c == "}":
            return "".join(out), i
        if c != "$":
            out.append(c)
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            value, i = _braced(text, i + 2, env)
            out.append(value)
        elif NAME.match(text, i + 1):
            raise AssertionError(f"unbraced variable at {text[i:i + 20]!r}: write ${{...}} or $$")
        else:
            out.append(c)
            i += 1
    assert not inside, "unclosed ${"
    return "".join(out), i


def _braced(text: str, i: int, env: dict[str, str]) -> tuple[str, int]:
    m = NAME.match(text, i)
    assert m, f"bad variable at {text[i - 2:i + 20]!r}"
    name, i = m.group(0), m.end()
    op = next((o for o in (":-", ":?", "-", "?") if text.startswith(o, i)), "")
    arg, i = _scan(text, i + len(op), env, inside=True)
    value = env.get(name)
    missing = not value if op.startswith(":") else value is None  # ":" also takes an empty value as missing
    if op in (":-", "-"):
        return (arg if missing else value or ""), i + 1
    if op in (":?", "?"):
        if missing:
            raise KeyError(f"{name}: {arg}")
        return value or "", i + 1
    assert not arg, f"unsupported expression ${{{name}{arg}}}"
    return value or "", i + 1


ENV = {"POSTGRES_PASSWORD": "pg-secret", "CUSTOMER_SVC_DB_PASSWORD": "cust-secret", "FOLLOWUP_SVC_DB_PASSWORD": "fu-secret",
       "NOTIFY_SVC_DB_PASSWORD": "nt-secret", "NOTIFY_PII_HASH_KEY": "pii-secret",
       "SURVEY_SVC_DB_PASSWORD": "sv-secret", "SURVEY_TOKEN_KEY": "survey-token-secret",
       "RABBITMQ_PASSWORD": "mq-secret"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), ENV))


def test_required_secrets_are_demanded_not_defaulted() -> None:
    for name in ENV:
        with pytest.raises(KeyError, match=name):
            interpolate(COMPOSE.read_text(), {k: v for k, v in ENV.items() if k != name})
    assert "change-me" not in COMPOSE.read_text()


def test_compose_structure(compose: dict) -> None:
    services = compose["services"]
    assert set(compose) <= {"name", "services", "volumes", "networks"} | {k for k in compose if k.startswith("x-")}
    for name, svc in services.items():
        assert re.fullmatch(r"[a-zA-Z0-9._-]+", name)
        assert set(svc) <= SERVICE_KEYS, (name, set(svc) - SERVICE_KEYS)
        assert "image" in svc, name
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            assert cond["condition"] in ("service_started", "service_healthy", "service_completed_successfully")
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], dep
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), (name, source)
            else:
                assert source in compose["volumes"], (name, source)
        env = svc.get("environment") or {}
        assert all(v is None or isinstance(v, (str, int, bool)) for v in env.values()), name

    # no dependency cycles
    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, path
        for dep in services[name].get("depends_on") or {}:
            visit(dep, (*path, name))
    for name in services:
        visit(name, ())
    # exactly one builder of the shared image, every app container uses that image
    builders = [n for n, s in services.items() if "build" in s]
    assert builders == ["keygen"]
    assert (ROOT / services["keygen"]["build"]["context"] / services["keygen"]["build"]["dockerfile"]).exists()


@pytest.mark.parametrize("service", SERVICE_MODULES)
def test_every_service_has_migration_api_and_worker(compose: dict, service: str) -> None:
    services = compose["services"]
    prefix = service.removesuffix("_svc").upper() + "_"
    migrate, api, worker = services[f"migrate-{service}"], services[f"{service}-api"], services[f"{service}-worker"]
    image = services["keygen"]["image"]
    assert migrate["image"] == api["image"] == worker["image"] == image
    assert migrate["command"] == ["python", "-m", service, "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["db-roles"]["condition"] == "service_completed_successfully"
    assert api["command"][:5] == ["python", "-m", service, "api", "--host"] and "0.0.0.0" in api["command"]
    assert worker["command"] == ["python", "-m", service, "worker"]
    for proc in (api, worker):
        assert proc["depends_on"][f"migrate-{service}"]["condition"] == "service_completed_successfully"
        assert proc["environment"]["AFTERCARE_ENVIRONMENT"] == "prod"
        assert proc["environment"]["AFTERCARE_AMQP_URL"] == "amqp://aftercare:mq-secret@rabbitmq:5672/"
        assert proc["environment"]["AFTERCARE_JWT_PUBLIC_KEY"] == "/keys/public/jwt_public.pem"
    url = f"postgresql+asyncpg://{service}:cust-secret@postgres:5432/aftercare" if service == "customer_svc" else None
    for proc in (migrate, api, worker):
        assert proc["environment"][f"{prefix}DATABASE_URL"].startswith(f"postgresql+asyncpg://{service}:")
        if url:
            assert proc["environment"][f"{prefix}DATABASE_URL"] == url
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    # only the signing service sees the private key
    private = [n for n, s in services.items() if any("jwt-private" in v for v in s.get("volumes", []))]
    assert set(private) == {"keygen", "customer_svc-api", "customer_svc-worker"}


def test_gateway_reaches_every_upstream_by_a_compose_name(compose: dict) -> None:
    services = compose["services"]
    gateway = services["gateway"]
    assert gateway["image"].startswith("nginx:1.27")
    assert "./deploy/gateway/nginx.conf:/etc/nginx/nginx.conf:ro" in gateway["volumes"]
    assert gateway["ports"] == ["8000:8000"]
    hosts = re.findall(r"server ([\w.-]+):(\d+); # @upstream (\w+)", NGINX.read_text())
    assert {svc for _, _, svc in hosts} == set(SERVICE_MODULES)
    for host, port, svc in hosts:
        api = services[f"{svc}-api"]
        names = {f"{svc}-api", *api["networks"]["default"]["aliases"]}
        assert host in names and port == "8000", (host, names)
        assert gateway["depends_on"][f"{svc}-api"]["condition"] == "service_healthy"


def test_survey_links_point_at_the_gateway_and_the_token_key_is_shared(compose: dict) -> None:
    """Answer links are <SURVEY_PUBLIC_BASE_URL>/s/<token>: by default the gateway's published port; every survey_svc
    process derives tokens with the same key (the worker signs the links, the api checks them)."""
    services = compose["services"]
    procs = [services[n] for n in ("migrate-survey_svc", "survey_svc-api", "survey_svc-worker")]
    for proc in procs:
        assert proc["environment"]["SURVEY_PUBLIC_BASE_URL"] == "http://localhost:8000"
        assert proc["environment"]["SURVEY_TOKEN_KEY"] == "survey-token-secret"
        assert proc["environment"]["SURVEY_DATABASE_URL"] == \
            "postgresql+asyncpg://survey_svc:sv-secret@postgres:5432/aftercare"
    moved = yaml.safe_load(interpolate(COMPOSE.read_text(), {**ENV, "GATEWAY_PORT": "9000"}))["services"]
    assert moved["survey_svc-worker"]["environment"]["SURVEY_PUBLIC_BASE_URL"] == "http://localhost:9000"
    assert moved["gateway"]["ports"] == ["9000:8000"]
    public = yaml.safe_load(interpolate(COMPOSE.read_text(), {**ENV, "SURVEY_PUBLIC_BASE_URL": "https://s.example"}))
    assert public["services"]["survey_svc-api"]["environment"]["SURVEY_PUBLIC_BASE_URL"] == "https://s.example"


def test_interpolation_helper_matches_compose() -> None:
    env = {"A": "a", "EMPTY": ""}
    assert interpolate("${A}-${B:-b}-${EMPTY:-e}-${EMPTY-e}-$$A", env) == "a-b-e--$A"
    assert interpolate("${B:-http://h:${C:-80}/x}|${A:-${C}}", env) == "http://h:80/x|a"
    with pytest.raises(KeyError, match="B: need B"):
        interpolate("${B:?need B}", env)
    with pytest.raises(AssertionError, match="unbraced"):
        interpolate("$A", env)


def test_database_roles_in_compose_match_roles_sql(compose: dict) -> None:
    services = compose["services"]
    for name in ("postgres", "db-roles"):
        env = services[name]["environment"]
        assert {password_env(s) for s in SERVICE_SCHEMAS} <= set(env), name
    assert "./deploy/postgres/roles.sql:/docker-entrypoint-initdb.d/10-roles.sql:ro" in services["postgres"]["volumes"]
    assert services["db-roles"]["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.fixture(scope="module")
def k8s() -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run([kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(ROOT / "deploy" / "k8s")],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_kustomize_renders_each_service_and_the_gateway(k8s: list[dict]) -> None:
    by = {(d["kind"], d["metadata"]["name"]): d for d in k8s}
    assert all(d["metadata"].get("namespace") == "aftercare" for d in k8s if d["kind"] != "Namespace")
    for service in SERVICE_MODULES:
        name = service.replace("_", "-")
        api = by[("Deployment", f"{name}-api")]["spec"]
        assert api["replicas"] == 2
        [container] = api["template"]["spec"]["containers"]
        assert container["command"][:4] == ["python", "-m", service, "api"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        worker = by[("Deployment", f"{name}-worker")]["spec"]["template"]["spec"]["containers"][0]
        assert worker["command"] == ["python", "-m", service, "worker"]
        job = by[("Job", f"{name}-migrate")]["spec"]["template"]["spec"]["containers"][0]
        assert job["command"] == ["python", "-m", service, "migrate"]
        svc = by[("Service", name)]["spec"]
        assert svc["selector"] == api["selector"]["matchLabels"]
        assert ("ConfigMap", name) in by
        for spec in (container, worker, job):
            assert {"configMapRef": {"name": name}} in spec["envFrom"]
    nginx_text = NGINX.read_text()
    gateway_cm = next(d for d in k8s if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("gateway-nginx"))
    assert gateway_cm["data"]["nginx.conf"] == nginx_text
    gateway = by[("Deployment", "gateway")]["spec"]["template"]["spec"]
    assert gateway["volumes"][0]["configMap"]["name"] == gateway_cm["metadata"]["name"]
    for host, port, svc in re.findall(r"server ([\w.-]+):(\d+); # @upstream (\w+)", nginx_text):
        assert by[("Service", host)]["spec"]["ports"][0]["port"] == int(port)


def test_kustomize_gives_survey_svc_its_token_key_and_public_address(k8s: list[dict]) -> None:
    """survey_svc refuses to start in production without SURVEY_TOKEN_KEY: every one of its containers (the migration
    too) reads the same Secret, and the ConfigMap names the address the answer links point at."""
    by = {(d["kind"], d["metadata"]["name"]): d for d in k8s}
    assert by[("ConfigMap", "survey-svc")]["data"]["SURVEY_PUBLIC_BASE_URL"].startswith("https://")
    for kind, name in (("Deployment", "survey-svc-api"), ("Deployment", "survey-svc-worker"),
                       ("Job", "survey-svc-migrate")):
        [container] = by[(kind, name)]["spec"]["template"]["spec"]["containers"]
        assert {"secretRef": {"name": "survey-svc-token"}} in container["envFrom"], name
        assert {"secretRef": {"name": "survey-svc-db"}} in container["envFrom"], name

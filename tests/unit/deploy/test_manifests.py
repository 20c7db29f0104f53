"""The Kubernetes manifests under deploy/k8s, checked offline (no kubectl, no cluster).

Each kustomization is rendered by `kustomize_lite` (resources resolve, overlays find their base,
patches hit existing objects); the Deployments, Services, PodDisruptionBudgets, ServiceMonitors and the
migrations Job are checked against the contract (CONTRACT.md §1: ports, /healthz, /readyz, /metrics)
and against the services' settings classes (every variable set is one a service reads; every required
one is set); custom resources (CloudNativePG, Strimzi, Prometheus Operator) are validated against their
CRDs' openAPIV3Schema from the shared folder `../shared/k8s-crds` beside the repository.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from catalog.settings import CatalogSettings
from events import topics
from migrator.settings import MigratorSettings

# services/orders has no py.typed marker (yet); its settings class is still a pydantic-settings class.
from orders.settings import OrdersSettings
from pydantic_settings import BaseSettings
from tenancy.settings import TenancySettings
from tenantdb import TenantDBSettings
from tenantschema import migrations
from tenantschema import roles as database_roles
from usage.settings import UsageSettings

from tests.unit.deploy.kustomize_lite import (
    CLUSTER_SCOPED_KINDS,
    Obj,
    Rendered,
    containers,
    load_documents,
    pod_spec,
    render,
    split_image,
)
from tests.unit.deploy.openapi_lite import Schema, load_crd_schemas, validate

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "deploy" / "k8s"
CRD_DIR = REPO.parent / "shared" / "k8s-crds"

NAMESPACE = "tenant-platform"
IMAGE = "tenant-platform"
CONFIG_MAP = "platform-config"
SECRET = "platform-database"
# CONTRACT.md §1, default HTTP ports.
CONTRACT_PORTS = {"tenancy": 8101, "catalog": 8102, "orders": 8103, "usage": 8104, "migrator": 8105}
SETTINGS: dict[str, list[type[BaseSettings]]] = {
    "tenancy": [TenancySettings],
    "catalog": [CatalogSettings, TenantDBSettings],  # catalog reads tenantdb's settings separately
    "orders": [OrdersSettings],
    "usage": [UsageSettings, TenantDBSettings],  # its reconciler reads tenantdb's settings
    "migrator": [MigratorSettings],
}
SERVICE_SECRET_KEYS = {
    "PLATFORM_DATABASE_URL",
    "SHARED_DATABASE_URL",
    "DEDICATED_PASSWORD_SECRET",
    "DEDICATED_DATABASE_URL_TEMPLATE",
    # The outbox relay's own role (outbox_relay), the same for every service's relay.
    "RELAY_PLATFORM_DATABASE_URL",
    "RELAY_SHARED_DATABASE_URL",
}
# Each service's database URLs log in as its own role (tenantschema.roles): the Secret holds them
# under the stack.env names, `<SERVICE>_PLATFORM_DATABASE_URL`, `<SERVICE>_SHARED_DATABASE_URL`.
ROLE_URL_VARIABLES = {"PLATFORM_DATABASE_URL", "SHARED_DATABASE_URL"}
# The migrator alone also gets the schema owner's and an admin's URL (services/migrator/README.md),
# under keys of its own (`MIGRATOR_OWNER_DATABASE_URL`, ...).
ELEVATED_SECRET_KEYS = {"migrator": {"OWNER_DATABASE_URL", "ADMIN_DATABASE_URL"}}


def secret_key(service: str, variable: str) -> str:
    elevated = variable in ELEVATED_SECRET_KEYS.get(service, set())
    return f"{service.upper()}_{variable}" if variable in ROLE_URL_VARIABLES or elevated else variable


SECRET_KEYS = {
    secret_key(service, variable) for service in CONTRACT_PORTS for variable in SERVICE_SECRET_KEYS
} | {"MIGRATOR_OWNER_DATABASE_URL", "MIGRATOR_ADMIN_DATABASE_URL"}  # the migrator's elevated URLs
EXPECTED_TOPICS = {
    "tenancy.tenants.v1",
    "catalog.products.v1",
    "orders.orders.v1",
    "usage.requests.v1",
    "usage.thresholds.v1",
    "migrator.migrations.v1",
}
EXPECTED_TOPICS |= {t + ".dlq" for t in EXPECTED_TOPICS}
KUSTOMIZATIONS = ("base", "infra", "overlays/dev", "overlays/prod")
APP_RENDERS = ("base", "overlays/dev", "overlays/prod")
REPLICAS = {
    "overlays/dev": {"tenancy": 1, "catalog": 1, "orders": 1, "usage": 1, "migrator": 1},
    "overlays/prod": {"tenancy": 2, "catalog": 3, "orders": 3, "usage": 2, "migrator": 2},
}
IMAGE_TAGS = {"base": "latest", "overlays/dev": "dev", "overlays/prod": "0.1.0"}
BUILTIN_API_VERSIONS = {"v1", "apps/v1", "batch/v1", "policy/v1"}
CUSTOM_KINDS = {"Cluster", "Database", "Kafka", "KafkaNodePool", "KafkaTopic", "ServiceMonitor"}


@cache
def rendered(name: str) -> Rendered:
    return render(K8S / name)


def all_objects() -> Iterator[tuple[str, Obj]]:
    for name in KUSTOMIZATIONS:
        for obj in rendered(name).objects:
            yield name, obj


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pod_labels(deployment: Obj) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def only_container(workload: Obj) -> Obj:
    found = list(containers(workload))
    assert len(found) == 1, f"{workload['metadata']['name']}: expected one container"
    return found[0]


def env_of(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


def settings_fields(service: str) -> dict[str, bool]:
    """Environment variable name → required, for every settings class the service reads."""
    fields: dict[str, bool] = {}
    for cls in SETTINGS[service]:
        assert not cls.model_config.get("env_prefix"), f"{cls.__name__}: the manifests assume no env prefix"
        for name, info in cls.model_fields.items():
            fields[name.upper()] = fields.get(name.upper(), False) or info.is_required()
    return fields


def resolve_port(container: Obj, port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert len(named) == 1, f"port {port!r} is not a named port of {container['name']}"
    value: int = named[0]
    return value


# -- files and kustomizations ------------------------------------------------------------------


def test_the_expected_kustomizations_exist() -> None:
    found = {str(p.parent.relative_to(K8S)) for p in K8S.rglob("kustomization.yaml")}
    assert found == set(KUSTOMIZATIONS)


def test_every_yaml_file_parses_and_is_used_by_a_kustomization() -> None:
    files = {p.resolve() for p in K8S.rglob("*.y*ml")}
    assert files
    for path in files:
        assert load_documents(path), f"{path} holds no document"
    used = set().union(*(rendered(name).files for name in KUSTOMIZATIONS))
    assert files - used == set(), "YAML files no kustomization references"


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/prod"])
def test_overlays_build_on_the_base(overlay: str) -> None:
    kustomization = load_documents(K8S / overlay / "kustomization.yaml")[0]
    assert "../../base" in kustomization["resources"]
    base_ids = {(o["kind"], o["metadata"]["name"]) for o in rendered("base").objects}
    assert {(o["kind"], o["metadata"]["name"]) for o in rendered(overlay).objects} == base_ids


def test_no_machine_path_registry_or_secret_value_in_the_files() -> None:
    forbidden = re.compile(
        r"/work/|/home/|/Users/|/root/|[A-Za-z]:\\|https?://"
        r"|docker\.io|ghcr\.io|quay\.io|gcr\.io|registry\.k8s\.io|amazonaws\.com|azurecr\.io"
    )
    for path in sorted(K8S.rglob("*")):
        if path.is_file():
            hits = forbidden.findall(path.read_text(encoding="utf-8"))
            assert not hits, f"{path.relative_to(REPO)}: {hits}"
    for name, obj in all_objects():
        assert obj["kind"] != "Secret", f"{name}: Secrets are created out of band, not defined here"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_namespaced_object_lives_in_the_platform_namespace(name: str) -> None:
    for obj in rendered(name).objects:
        if obj["kind"] in CLUSTER_SCOPED_KINDS:
            assert obj["kind"] != "Namespace" or obj["metadata"]["name"] == NAMESPACE
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, f"{name}: {obj['kind']}"


def test_images_name_no_registry() -> None:
    images = [c["image"] for _, o in all_objects() for c in containers(o)]
    images += [o["spec"]["imageName"] for o in rendered("infra").of_kind("Cluster")]
    for image in images:
        first, slash, _ = split_image(image)[0].partition("/")
        assert not slash or not ("." in first or ":" in first or first == "localhost"), image


# -- the services ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", APP_RENDERS)
def test_one_deployment_and_service_per_contract_service(name: str) -> None:
    r = rendered(name)
    assert {d["metadata"]["name"] for d in r.of_kind("Deployment")} == set(CONTRACT_PORTS)
    assert {s["metadata"]["name"] for s in r.of_kind("Service")} == set(CONTRACT_PORTS)
    assert {p["metadata"]["name"] for p in r.of_kind("PodDisruptionBudget")} == set(CONTRACT_PORTS)
    assert {m["metadata"]["name"] for m in r.of_kind("ServiceMonitor")} == set(CONTRACT_PORTS)


@pytest.mark.parametrize("name", APP_RENDERS)
@pytest.mark.parametrize("service", sorted(CONTRACT_PORTS))
def test_deployment_runs_the_service_on_its_contract_port(name: str, service: str) -> None:
    deployment = rendered(name).get("Deployment", service)
    port = CONTRACT_PORTS[service]
    container = only_container(deployment)
    assert container["command"] == ["python", "-m", service]
    assert split_image(container["image"])[:2] == (IMAGE, IMAGE_TAGS[name])
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("http", port)]
    env = env_of(container)
    assert env["HOST"]["value"] == "0.0.0.0"
    assert env["PORT"]["value"] == str(port)
    assert SETTINGS[service][0].model_fields["port"].default == port, "settings default differs"
    assert labels_match(deployment["spec"]["selector"]["matchLabels"], pod_labels(deployment))
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30


@pytest.mark.parametrize("name", APP_RENDERS)
@pytest.mark.parametrize("service", sorted(CONTRACT_PORTS))
def test_probes_hit_healthz_and_readyz_on_the_container_port(name: str, service: str) -> None:
    container = only_container(rendered(name).get("Deployment", service))
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert resolve_port(container, get["port"]) == CONTRACT_PORTS[service]


def assert_hardened(workload: Obj) -> None:
    spec = pod_spec(workload)
    assert spec is not None
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"].get("runAsUser", 1) != 0
    assert spec.get("automountServiceAccountToken") is False
    for container in containers(workload):
        context = container["securityContext"]
        assert context.get("runAsNonRoot", True) is True
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert "ALL" in context["capabilities"]["drop"]
        assert not context["capabilities"].get("add")
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{container['name']}: {kind}"


@pytest.mark.parametrize("name", APP_RENDERS)
def test_workloads_are_hardened(name: str) -> None:
    workloads = rendered(name).of_kind("Deployment") + rendered(name).of_kind("Job")
    assert len(workloads) == len(CONTRACT_PORTS) + 1
    for workload in workloads:
        assert_hardened(workload)


@pytest.mark.parametrize("name", APP_RENDERS)
@pytest.mark.parametrize("service", sorted(CONTRACT_PORTS))
def test_environment_is_what_the_service_reads(name: str, service: str) -> None:
    r = rendered(name)
    container = only_container(r.get("Deployment", service))
    provided: set[str] = set()
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, "only the ConfigMap comes in whole (envFrom)"
        assert source["configMapRef"]["name"] == CONFIG_MAP
        provided |= set(r.get("ConfigMap", CONFIG_MAP)["data"])
    for variable, entry in env_of(container).items():
        provided.add(variable)
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            assert ref["name"] == SECRET
            allowed = SERVICE_SECRET_KEYS | ELEVATED_SECRET_KEYS.get(service, set())
            assert variable in allowed, f"{variable}: services get only their own role's URLs"
            assert ref["key"] == secret_key(service, variable), f"{service} must log in as its own role"
    fields = settings_fields(service)
    missing = {v for v, required in fields.items() if required} - provided
    assert not missing, f"{service} requires {missing}"
    for variable in env_of(container):
        assert variable in fields, f"{service} reads no {variable}"


def test_config_map_holds_settings_a_service_reads_and_no_credentials() -> None:
    data = rendered("base").get("ConfigMap", CONFIG_MAP)["data"]
    known = set().union(*(settings_fields(s) for s in CONTRACT_PORTS))
    assert set(data) <= known, f"no service reads {set(data) - known}"
    assert {"KAFKA_BOOTSTRAP_SERVERS", "LOG_LEVEL", "DIRECTORY_TTL_SECONDS", "WRITE_WAIT_SECONDS"} <= set(
        data
    )
    assert not set(data) & (SERVICE_SECRET_KEYS | SECRET_KEYS | {"OWNER_PLATFORM_URL", "OWNER_SHARED_URL"})
    assert not {"HOST", "PORT"} & set(data), "HOST and PORT are per container"
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"


def test_kafka_bootstrap_points_at_the_strimzi_cluster() -> None:
    (kafka,) = rendered("infra").of_kind("Kafka")
    plain = [
        lst for lst in kafka["spec"]["kafka"]["listeners"] if lst["type"] == "internal" and not lst["tls"]
    ]
    expected = {f"{kafka['metadata']['name']}-kafka-bootstrap:{lst['port']}" for lst in plain}
    assert rendered("base").get("ConfigMap", CONFIG_MAP)["data"]["KAFKA_BOOTSTRAP_SERVERS"] in expected


def test_every_secret_key_is_documented() -> None:
    readme = (K8S / "README.md").read_text(encoding="utf-8")
    keys = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for w in rendered("base").objects
        for c in containers(w)
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert keys == SECRET_KEYS | {"OWNER_PLATFORM_URL", "OWNER_SHARED_URL"}
    for key in keys:
        assert f"`{key}`" in readme, f"deploy/k8s/README.md does not document {key}"
    assert "kubectl apply -k deploy/k8s/overlays/prod" in readme


@pytest.mark.parametrize("name", APP_RENDERS)
@pytest.mark.parametrize("service", sorted(CONTRACT_PORTS))
def test_service_selects_its_deployment_pods_only(name: str, service: str) -> None:
    r = rendered(name)
    svc = r.get("Service", service)
    selector = svc["spec"]["selector"]
    for deployment in r.of_kind("Deployment"):
        selected = labels_match(selector, pod_labels(deployment))
        assert selected == (deployment["metadata"]["name"] == service), deployment["metadata"]["name"]
    container = only_container(r.get("Deployment", service))
    (port,) = svc["spec"]["ports"]
    assert port["name"] == "http"
    assert port["port"] == CONTRACT_PORTS[service]
    assert resolve_port(container, port["targetPort"]) == CONTRACT_PORTS[service]


@pytest.mark.parametrize("name", APP_RENDERS)
@pytest.mark.parametrize("service", sorted(CONTRACT_PORTS))
def test_disruption_budget_and_service_monitor_cover_the_service(name: str, service: str) -> None:
    r = rendered(name)
    pdb = r.get("PodDisruptionBudget", service)
    assert pdb["spec"]["minAvailable"] == (0 if name == "overlays/dev" else 1)
    for deployment in r.of_kind("Deployment"):
        selected = labels_match(pdb["spec"]["selector"]["matchLabels"], pod_labels(deployment))
        assert selected == (deployment["metadata"]["name"] == service)

    monitor = r.get("ServiceMonitor", service)
    monitored = [
        s
        for s in r.of_kind("Service")
        if labels_match(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    assert [s["metadata"]["name"] for s in monitored] == [service]
    port_names = {p["name"] for p in monitored[0]["spec"]["ports"]}
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [("http", "/metrics")]
    assert port_names >= {"http"}


@pytest.mark.parametrize("overlay", sorted(REPLICAS))
def test_overlay_replicas(overlay: str) -> None:
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in rendered(overlay).of_kind("Deployment")}
    assert replicas == REPLICAS[overlay]


def test_dev_overlay_logs_verbosely() -> None:
    assert rendered("overlays/dev").get("ConfigMap", CONFIG_MAP)["data"]["LOG_LEVEL"] == "DEBUG"
    assert rendered("overlays/prod").get("ConfigMap", CONFIG_MAP)["data"]["LOG_LEVEL"] == "INFO"


# -- the migrations Job ------------------------------------------------------------------------


def test_migrations_job_upgrades_platform_and_shared_as_the_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    (job,) = rendered("base").of_kind("Job")
    container = only_container(job)
    assert split_image(container["image"])[0] == IMAGE
    assert container["command"][:2] == ["python", "-c"]
    assert len(container["command"]) == 3
    env = env_of(container)
    assert set(env) == {"OWNER_PLATFORM_URL", "OWNER_SHARED_URL"}
    for variable, entry in env.items():
        assert entry["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": variable}
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migrations"

    # Run the one-liner against a recording stand-in for the real upgrade.
    calls: list[tuple[str, str]] = []

    def upgrade(url: str, history: str, *args: Any, **kwargs: Any) -> None:
        assert history in migrations.HISTORIES
        calls.append((url, history))

    monkeypatch.setattr(migrations, "upgrade", upgrade)
    monkeypatch.setenv("OWNER_PLATFORM_URL", "postgresql://owner@db/platform")
    monkeypatch.setenv("OWNER_SHARED_URL", "postgresql://owner@db/shared")
    exec(compile(container["command"][2], "<migrations job>", "exec"), {})
    assert calls == [
        ("postgresql://owner@db/platform", "platform"),
        ("postgresql://owner@db/shared", "shared"),
    ]


# -- infrastructure ----------------------------------------------------------------------------


def test_postgres_cluster() -> None:
    (cluster,) = rendered("infra").of_kind("Cluster")
    assert cluster["spec"]["instances"] == 3
    assert split_image(cluster["spec"]["imageName"])[1] == "16"
    assert cluster["spec"]["bootstrap"]["initdb"]["database"] == "platform"
    roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
    assert roles["app_user"]["superuser"] is False
    assert roles["app_user"]["bypassrls"] is False
    for role in database_roles.SERVICE_ROLES:  # one login role per service, in the group app_user
        managed = roles[role.name]
        assert managed["login"] is True
        assert managed["inRoles"] == [database_roles.APP_GROUP]
        for power in ("superuser", "bypassrls", "createdb", "createrole", "replication"):
            assert managed[power] is False, f"{role.name}: {power}"
        assert managed["passwordSecret"]["name"] == f"platform-pg-{role.service}-service"
    databases = {d["spec"]["name"]: d for d in rendered("infra").of_kind("Database")}
    assert databases["shared"]["spec"]["cluster"]["name"] == cluster["metadata"]["name"]


def test_kafka_runs_kraft_with_a_node_pool() -> None:
    infra = rendered("infra")
    (kafka,) = infra.of_kind("Kafka")
    assert "zookeeper" not in kafka["spec"]
    pools = [
        p
        for p in infra.of_kind("KafkaNodePool")
        if p["metadata"]["labels"]["strimzi.io/cluster"] == "platform"
    ]
    assert kafka["metadata"]["name"] == "platform"
    roles = {role for pool in pools for role in pool["spec"]["roles"]}
    assert roles == {"controller", "broker"}
    assert sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"]) >= 3


def test_kafka_topics_are_the_contract_topics_and_their_dead_letter_twins() -> None:
    infra = rendered("infra")
    kafkas = {k["metadata"]["name"] for k in infra.of_kind("Kafka")}
    found: list[str] = []
    for topic in infra.of_kind("KafkaTopic"):
        name = topic["spec"].get("topicName", topic["metadata"]["name"])
        found.append(name)
        assert name in EXPECTED_TOPICS, name
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] in kafkas
        assert topic["spec"]["partitions"] == 6 == topics.PARTITIONS
        assert topic["spec"]["replicas"] == 3
        assert int(topic["spec"]["config"]["min.insync.replicas"]) == 2
    assert sorted(found) == sorted(EXPECTED_TOPICS) == sorted(topics.all_topics())


# -- custom resources against the CRDs ---------------------------------------------------------


@cache
def crd_schemas() -> dict[tuple[str, str], Schema]:
    return load_crd_schemas(sorted(CRD_DIR.glob("*.yaml")))


@pytest.fixture(scope="module")
def schemas() -> dict[tuple[str, str], Schema]:
    if not CRD_DIR.is_dir():
        pytest.skip(f"CRD folder {CRD_DIR} (the shared folder beside the repository) is absent")
    return crd_schemas()


def test_custom_resources_match_their_crds(schemas: dict[tuple[str, str], Schema]) -> None:
    validated: set[str] = set()
    for name, obj in all_objects():
        if obj["apiVersion"] in BUILTIN_API_VERSIONS:
            continue
        key = (obj["apiVersion"], obj["kind"])
        assert key in schemas, f"{name}: no CRD in {CRD_DIR.name} serves {key}"
        errors = validate(obj, schemas[key])
        assert not errors, f"{name}: {obj['kind']}/{obj['metadata']['name']}:\n" + "\n".join(errors)
        validated.add(obj["kind"])
    assert validated == CUSTOM_KINDS

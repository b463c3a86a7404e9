"""`k8s/` rendered as a cluster would receive it, checked offline: core kinds against Kubernetes' schemas
(kubernetes-validate, strict), the operators' kinds against their CRDs, and everything the code declares (topics,
partitions, retention, ports, probe paths, `KUAIJING_*` names, services) against the code, so they cannot drift."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from services.analytics.app import create_app as analytics_app
from services.analytics.settings import AnalyticsSettings
from services.cli import SERVICES
from services.dispatcher.app import create_app as dispatcher_app
from services.dispatcher.settings import DispatcherSettings
from services.ingest.app import create_app as ingest_app
from services.ingest.settings import IngestSettings
from shared.contract.topics import ALL_TOPICS
from tests.harness import kuaijing_variables

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "tests" / "data" / "k8s-crds"
OVERLAYS = ("dev", "production")
KUBERNETES = "1.32.0"
"""The Kubernetes version the manifests target (kubectl in the machine image is 1.32)."""


@cache
def rendered(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is needed to render k8s/ (it is part of the machine image)")
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / overlay)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def of_kind(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in rendered(overlay) if doc["kind"] == kind]


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            api = f"{crd['spec']['group']}/{version['name']}"
            schemas[(api, crd["spec"]["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return schemas


def containers(overlay: str) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0] for d in of_kind(overlay, "Deployment")
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_for_kubernetes_or_its_operator(overlay: str) -> None:
    problems = []
    for doc in rendered(overlay):
        key = (doc["apiVersion"], doc["kind"])
        if key in crd_schemas():
            errors = jsonschema.Draft7Validator(crd_schemas()[key]).iter_errors(doc)
            problems += [f"{doc['kind']}/{doc['metadata']['name']}: {e.message}" for e in errors]
        else:
            try:
                kubernetes_validate.validate(doc, KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {e}")
    assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_operators_kinds_are_all_there(overlay: str) -> None:
    kinds = {doc["kind"] for doc in rendered(overlay)}
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "Cluster", "Job", "HorizontalPodAutoscaler"} <= kinds
    assert {"PodDisruptionBudget", "NetworkPolicy", "ConfigMap", "Service", "Deployment"} <= kinds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topics_partitions_and_retention_are_the_ones_the_code_declares(overlay: str) -> None:
    declared = {t.name: (t.partitions, t.retention_ms) for t in ALL_TOPICS}
    manifests = {
        d["spec"]["topicName"]: (d["spec"]["partitions"], d["spec"].get("config", {}).get("retention.ms"))
        for d in of_kind(overlay, "KafkaTopic")
    }
    assert manifests == declared


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_probes_and_commands_are_the_ones_the_services_have(overlay: str) -> None:
    apps = {
        "ingest": (ingest_app(IngestSettings()), IngestSettings().port),
        "dispatcher": (dispatcher_app(DispatcherSettings()), DispatcherSettings().port),
        "analytics": (analytics_app(AnalyticsSettings()), AnalyticsSettings().port),
    }
    assert set(apps) == set(SERVICES)
    deployed = containers(overlay)
    services = {d["metadata"]["name"]: d for d in of_kind(overlay, "Service")}
    for name, (app, port) in apps.items():
        container = deployed[f"kuaijing-{name}"]
        assert container["args"] == ["serve", name]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] == port
        assert services[f"kuaijing-{name}"]["spec"]["ports"][0]["port"] == port
        paths = set(app.openapi()["paths"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["path"] in paths, (name, probe)
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {p["name"]: p["containerPort"] for p in deployed["kuaijing-ingest"]["ports"]}["jt808"] == 6808
    assert IngestSettings().jt808_port == 6808
    [jt808] = [s for s in of_kind(overlay, "Service") if s["spec"].get("type") == "LoadBalancer"]
    assert jt808["spec"]["ports"] == [{"name": "jt808", "port": 6808, "targetPort": "jt808", "protocol": "TCP"}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_kuaijing_variable_in_the_manifests_is_a_setting(overlay: str) -> None:
    known = kuaijing_variables(IngestSettings, DispatcherSettings, AnalyticsSettings)
    used = set()
    for config in of_kind(overlay, "ConfigMap"):
        used |= set(config["data"])
    for container in containers(overlay).values():
        used |= {e["name"] for e in container.get("env", [])}
    assert {n for n in used if n.startswith("KUAIJING_")} - known == set()
    assert "KUAIJING_BIND_HOST" in used  # the default binds loopback, which no probe or peer could reach


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_as_non_root_on_a_read_only_root_with_limits(overlay: str) -> None:
    pods = [d["spec"]["template"]["spec"] for d in rendered(overlay) if d["kind"] in ("Deployment", "Job")]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert "memory" in container["resources"]["limits"]
            assert "cpu" in container["resources"]["requests"]


def test_production_ships_no_tokens_and_replicates_kafka_and_postgres() -> None:
    assert of_kind("production", "Secret") == []
    assert of_kind("production", "KafkaNodePool")[0]["spec"]["replicas"] == 3
    assert all(t["spec"]["replicas"] == 3 for t in of_kind("production", "KafkaTopic"))
    assert of_kind("production", "Cluster")[0]["spec"]["instances"] == 3
    assert of_kind("production", "HorizontalPodAutoscaler")[0]["spec"]["minReplicas"] == 3


def test_production_services_reach_kafka_as_their_own_scram_user_over_tls() -> None:
    [config] = of_kind("production", "ConfigMap")
    assert config["data"]["KUAIJING_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["data"]["KUAIJING_KAFKA_BOOTSTRAP"].endswith(":9093")
    [kafka] = of_kind("production", "Kafka")
    [listener] = [item for item in kafka["spec"]["kafka"]["listeners"] if item["port"] == 9093]
    assert (listener["tls"], listener["authentication"]["type"]) == (True, "scram-sha-512")
    user = config["data"]["KUAIJING_KAFKA_SASL_USERNAME"]
    assert user in {u["metadata"]["name"] for u in of_kind("production", "KafkaUser")}
    ca = config["data"]["KUAIJING_KAFKA_SSL_CAFILE"]
    for pod in (d["spec"]["template"]["spec"] for d in rendered("production") if d["kind"] in ("Deployment", "Job")):
        [container] = pod["containers"]
        [password] = [e for e in container["env"] if e["name"] == "KUAIJING_KAFKA_SASL_PASSWORD"]
        assert password["valueFrom"]["secretKeyRef"] == {"name": user, "key": "password"}
        [mount] = [m for m in container["volumeMounts"] if ca.startswith(m["mountPath"] + "/")]
        [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == "kuaijing-cluster-ca-cert"

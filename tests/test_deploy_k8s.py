"""The Kubernetes manifests (deploy/k8s): valid against the Kubernetes schemas (kubernetes-validate
ships them, so this runs offline), the ServiceMonitor CRD checked against its own structure, and
the wiring: Services select Deployments by named ports, the graph server's probes, ConfigMaps and
HPA, and a remote vLLM engine (GPU, probes, served name) for every model the artifacts use, named
in a server config that tts-opt's own loader accepts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
from deploy_support import DEPLOY, image_environment, serve_arguments, yaml_documents

from tts_opt.engines.openai_engine import OpenAIEngineConfig
from tts_opt.server.config import ServerConfig, load_config
from tts_opt.server.profiles import ProfileRegistry

K8S = DEPLOY / "k8s"
CPU_IMAGE = DEPLOY / "docker" / "Dockerfile.cpu"
CRD_GROUP = "monitoring.coreos.com/"
# The parts of the ServiceMonitor CRD (monitoring.coreos.com/v1) that the manifests use; any other
# field fails, as a typo would be silently ignored by Prometheus Operator.
SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scheme": {"enum": ["http", "https"]},
                        },
                    },
                },
            },
        },
    },
}


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    [kustomization] = yaml_documents(K8S / "kustomization.yaml")
    return [doc for name in kustomization["resources"] for doc in yaml_documents(K8S / name)]


def of_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == kind}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def backing_deployment(manifests, service: dict[str, Any]) -> dict[str, Any]:
    """The one Deployment whose pods the Service selects."""
    selector = service["spec"]["selector"]
    deployments = of_kind(manifests, "Deployment").values()
    [deployment] = [
        d for d in deployments if selects(selector, d["spec"]["template"]["metadata"]["labels"])
    ]
    return deployment


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


def probe_path(container: dict[str, Any], probe: str) -> str:
    return container[probe]["httpGet"]["path"]


def test_the_kustomization_lists_every_manifest():
    [kustomization] = yaml_documents(K8S / "kustomization.yaml")
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


@pytest.mark.parametrize("version", ["1.30.0", kubernetes_validate.latest_version()])
def test_the_manifests_are_valid_against_the_kubernetes_schemas(manifests, version: str):
    """Strict: unknown fields (typos) fail too. Custom resources are checked below."""
    builtin = [doc for doc in manifests if not doc["apiVersion"].startswith(CRD_GROUP)]
    assert {doc["kind"] for doc in builtin} == {
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
    }
    for doc in builtin:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_service_monitors_scrape_the_server_and_every_engine_by_port_name(manifests):
    monitors = of_kind(manifests, "ServiceMonitor")
    services = of_kind(manifests, "Service")
    scraped: dict[str, list[str]] = {}
    for name, monitor in monitors.items():
        jsonschema.validate(monitor, SERVICE_MONITOR)
        selector = monitor["spec"]["selector"]["matchLabels"]
        matched = [s for s in services.values() if selects(selector, s["metadata"]["labels"])]
        for service in matched:
            ports = {port["name"] for port in service["spec"]["ports"]}
            assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports, name
        scraped[name] = sorted(s["metadata"]["name"] for s in matched)
    # The job label is the Service's name: the alert rules expect "tts-opt" and "vllm-*".
    assert scraped["tts-opt"] == ["tts-opt"]
    engines = sorted(name for name in services if name != "tts-opt")
    assert scraped["vllm-engines"] == engines and all(n.startswith("vllm") for n in engines)


def test_every_service_reaches_one_deployment_on_a_named_container_port(manifests):
    for service in of_kind(manifests, "Service").values():
        ports = {
            port["name"] for port in container(backing_deployment(manifests, service))["ports"]
        }
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports


def server_config(manifests, directory: Path) -> ServerConfig:
    """The server's config file as tts-opt reads it in the pod (image environment included)."""
    path = directory / "server.toml"
    path.write_text(of_kind(manifests, "ConfigMap")["tts-opt-config"]["data"]["server.toml"])
    return load_config(path, environ=image_environment(CPU_IMAGE))


def test_the_graph_server_probes_health_and_ready_and_reads_its_config_maps(manifests, tmp_path):
    deployment = of_kind(manifests, "Deployment")["tts-opt"]
    pod = deployment["spec"]["template"]["spec"]
    server = container(deployment)
    assert probe_path(server, "livenessProbe") == "/health"
    assert probe_path(server, "readinessProbe") == "/ready"
    arguments = serve_arguments(server["args"])
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_maps = of_kind(manifests, "ConfigMap")
    graphs = volumes[mounts[str(arguments["graphs"])]]["configMap"]["name"]
    assert config_maps[graphs]["data"]
    config_volume = volumes[mounts[str(arguments["config"].parent)]]["configMap"]["name"]
    assert arguments["config"].name in config_maps[config_volume]["data"]

    # Non-root as the image's user, read-only root: the cache and /tmp are the writable volumes.
    uid = re.search(r"useradd .*--uid (\d+)", CPU_IMAGE.read_text())[1]  # type: ignore[index]
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert server["securityContext"]["readOnlyRootFilesystem"]
    assert {image_environment(CPU_IMAGE)["TTS_OPT_CACHE"], "/tmp"} <= mounts.keys()
    drain_s = server_config(manifests, tmp_path).drain_timeout_s
    assert pod["terminationGracePeriodSeconds"] > drain_s

    [hpa] = of_kind(manifests, "HorizontalPodAutoscaler").values()
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "tts-opt")


def test_every_served_model_is_a_remote_vllm_engine_on_a_gpu(manifests, tmp_path: Path):
    config = server_config(manifests, tmp_path)
    graphs = tmp_path / "graphs"
    graphs.mkdir()
    for name, text in of_kind(manifests, "ConfigMap")["tts-opt-graphs"]["data"].items():
        (graphs / name).write_text(text)
    served = ProfileRegistry(graphs, config.default_budgets).models  # loads and validates
    engines = {engine.model: engine for engine in config.engines}
    assert served and served <= engines.keys()  # nothing would start in-process

    services = of_kind(manifests, "Service")
    for engine in engines.values():
        assert isinstance(engine, OpenAIEngineConfig)
        url = urlsplit(engine.base_url)
        service = services[url.hostname]
        assert url.port in {port["port"] for port in service["spec"]["ports"]}
        vllm = container(backing_deployment(manifests, service))
        assert vllm["image"].startswith("vllm/vllm-openai:")
        assert f"--served-model-name={engine.served_model or engine.model}" in vllm["args"]
        assert vllm["resources"]["requests"]["nvidia.com/gpu"] >= 1
        assert vllm["resources"]["limits"]["nvidia.com/gpu"] >= 1
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert probe_path(vllm, probe) == "/health"

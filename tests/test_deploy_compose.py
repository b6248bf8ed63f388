"""The compose stack (deploy/compose) parsed with PyYAML and its wiring checked: the image it
builds, the server's command, config and mounts, Prometheus scraping the server by its service
name and port, Grafana provisioned with that Prometheus and the dashboard."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from deploy_support import (
    DASHBOARD,
    DEPLOY,
    ROOT,
    image_environment,
    serve_arguments,
    yaml_documents,
)

from tts_opt.engines.vllm_config import VllmEngineConfig
from tts_opt.graph.io import load_artifact
from tts_opt.server.config import load_config

COMPOSE = DEPLOY / "compose"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    [document] = yaml_documents(COMPOSE / "compose.yaml")
    return document


def with_defaults(text: str) -> str:
    """Compose's `${VAR:-default}` with every variable unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text)


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a host path relative to compose.yaml, or a named volume)."""
    pairs = (with_defaults(volume).split(":")[:2] for volume in service.get("volumes", []))
    return {target: source for source, target in pairs}


def host_path(source: str) -> Path:
    assert source.startswith((".", "/")), f"{source} is a named volume, not a host path"
    return (COMPOSE / source).resolve()


def container_port(service: dict[str, Any]) -> int:
    [mapping] = service["ports"]
    return int(mapping.rsplit(":", 1)[1])


def test_every_mount_is_an_existing_host_path_or_a_declared_volume(compose):
    for name, service in compose["services"].items():
        for source in mounts(service).values():
            if source.startswith((".", "/")):
                assert host_path(source).exists(), f"{name}: {source}"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} not declared"


def test_the_server_is_built_from_the_gpu_image_and_runs_on_a_gpu(compose):
    service = compose["services"]["tts-opt"]
    build = service["build"]
    assert (COMPOSE / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]) == DEPLOY / "docker" / "Dockerfile.gpu"
    [device] = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_the_server_serves_the_mounted_graphs_with_the_mounted_config(compose):
    services = compose["services"]
    server, models = services["tts-opt"], services["models"]
    image_env = image_environment(DEPLOY / "docker" / "Dockerfile.gpu")
    arguments = serve_arguments(server["command"])
    mounted = mounts(server)
    config_file = host_path(mounted[str(arguments["config"])])
    environ = {**image_env, **{k: with_defaults(v) for k, v in server["environment"].items()}}
    config = load_config(config_file, environ=environ)
    assert container_port(server) == config.port

    # The models service provisions the cache that the engines load from, before the server.
    cache = image_env["TTS_OPT_CACHE"]
    assert models["command"] == ["models", "pull"] and mounts(models)[cache] == mounted[cache]
    assert server["depends_on"]["models"]["condition"] == "service_completed_successfully"
    graphs = sorted(host_path(mounted[str(arguments["graphs"])]).glob("*.json"))
    served = {node.model for path in graphs for node in load_artifact(path).nodes}
    engines = {engine.model: engine for engine in config.engines}
    assert graphs and served <= engines.keys()  # none falls back to the CPU defaults
    for engine in engines.values():
        assert isinstance(engine, VllmEngineConfig)  # co-hosted on the machine's GPU
        assert engine.path == f"{cache}/models/{engine.model}"
    shares = [engine.memory_share for engine in engines.values()]  # type: ignore[union-attr]
    assert sum(shares) <= 0.9  # they share one GPU


def test_prometheus_scrapes_the_server_by_service_name_and_port_and_loads_the_rules(compose):
    services = compose["services"]
    prometheus = services["prometheus"]
    mounted = mounts(prometheus)
    config_path = next(a.split("=", 1)[1] for a in prometheus["command"] if "config.file" in a)
    [config] = yaml_documents(host_path(mounted[config_path]))
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    assert targets == [f"tts-opt:{container_port(services['tts-opt'])}"]
    for rule_file in config["rule_files"]:
        assert str(Path(config_path).parent / rule_file) in mounted


def test_grafana_is_provisioned_with_the_prometheus_service_and_the_dashboard(compose):
    services = compose["services"]
    grafana = services["grafana"]
    mounted = mounts(grafana)
    provisioning = host_path(mounted["/etc/grafana/provisioning"])
    [datasources] = yaml_documents(provisioning / "datasources" / "prometheus.yaml")
    [source] = datasources["datasources"]
    assert source["url"] == f"http://prometheus:{container_port(services['prometheus'])}"
    [dashboards] = yaml_documents(provisioning / "dashboards" / "tts-opt.yaml")
    [provider] = dashboards["providers"]
    folder = provider["options"]["path"]
    assert host_path(mounted[folder]) == DASHBOARD.parent
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{folder}/{DASHBOARD.name}"

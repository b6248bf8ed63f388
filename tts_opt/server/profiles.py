"""The profiles a server offers: every graph artifact in a directory, named `task@budget`.

`math@18` is the artifact for task `math` with a budget of 18 FLOPs units (`math@0.002usd` for a
dollar budget). The bare task name (`math`) stands for the task's default budget: the one the
server config's `default_budgets` names, else the largest FLOPs budget (then the largest dollar
budget), i.e. the most compute the operator optimized for.

A profile may have a fallback, a cheaper budget of its task the server degrades to under load
(`tts_opt.server.config.Degradation`); both must be served profiles of one task, the fallback's
budget below the primary's. A profile whose graph needs more node calls than one request may
take is refused, as no request for it could be admitted.

Loading is all or nothing, and a reload swaps the whole set in one assignment: a request in flight
keeps the runner (and so the artifact) it started with, and a bad artifact on disk leaves the
served set as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import msgspec

from tts_opt.engines.base import Engine
from tts_opt.graph.errors import GraphError
from tts_opt.graph.io import load_artifact
from tts_opt.graph.schema import GraphArtifact
from tts_opt.graph.topology import active_nodes
from tts_opt.runtime.executor import GraphRunner
from tts_opt.server.config import ServerConfig
from tts_opt.server.errors import SetupError

log = logging.getLogger(__name__)


class ProfileError(SetupError):
    """The artifacts cannot be served; the message names the file and the problem."""


class Profile(msgspec.Struct, frozen=True):
    name: str
    path: Path
    artifact: GraphArtifact
    runner: GraphRunner

    @property
    def node_calls(self) -> int:
        """Node calls one request runs: the graph's active nodes (what admission counts)."""
        return len(self.runner.plan.order)


class ProfileSet(msgspec.Struct, frozen=True):
    """One consistent generation of profiles; `aliases` maps a task to its default profile,
    `created` is when it was loaded (Unix time, the `created` of /v1/models), `fallbacks` maps a
    profile name to its fallback's."""

    profiles: dict[str, Profile]
    aliases: dict[str, str]
    created: int
    fallbacks: dict[str, str] = {}

    def get(self, name: str) -> Profile | None:
        return self.profiles.get(self.aliases.get(name) or canonical_name(name))

    def fallback(self, profile: Profile) -> Profile | None:
        name = self.fallbacks.get(profile.name)
        return None if name is None else self.profiles[name]


def profile_name(artifact: GraphArtifact) -> str:
    unit = "usd" if artifact.budget.unit == "usd" else ""
    return f"{artifact.task}@{artifact.budget.value:g}{unit}"


def canonical_name(name: str) -> str:
    """`math@18.0` -> `math@18`: a budget may be written as any number."""
    task, at, budget = name.rpartition("@")
    number = budget.removesuffix("usd")
    try:
        value = float(number)
    except ValueError:
        return name
    return f"{task}{at}{value:g}{budget[len(number) :]}" if at else name


def read_artifacts(directory: Path) -> dict[str, tuple[Path, GraphArtifact]]:
    """Profile name -> (file, artifact) for every `*.json` in `directory`, all validated."""
    if not directory.is_dir():
        raise ProfileError(f"{directory}: not a directory of graph artifacts")
    found: dict[str, tuple[Path, GraphArtifact]] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            artifact = load_artifact(path)
        except (OSError, GraphError) as exc:
            raise ProfileError(str(exc)) from exc
        name = profile_name(artifact)
        if name in found:
            raise ProfileError(f"{path} and {found[name][0]} are both profile {name!r}")
        found[name] = (path, artifact)
    if not found:
        raise ProfileError(f"{directory}: no graph artifacts (*.json)")
    return found


def default_aliases(
    artifacts: Mapping[str, tuple[Path, GraphArtifact]], default_budgets: Mapping[str, float]
) -> dict[str, str]:
    by_task: dict[str, list[GraphArtifact]] = {}
    for _, artifact in artifacts.values():
        by_task.setdefault(artifact.task, []).append(artifact)
    aliases = {}
    for task, candidates in by_task.items():
        if task in default_budgets:
            name = f"{task}@{default_budgets[task]:g}"
            if name not in artifacts:
                offered = ", ".join(sorted(profile_name(a) for a in candidates))
                raise ProfileError(
                    f"default budget {name!r} is not a profile (there are {offered})"
                )
        else:
            best = max(candidates, key=lambda a: (a.budget.unit == "flops", a.budget.value))
            name = profile_name(best)
        aliases[task] = name
    unknown = sorted(set(default_budgets) - set(by_task))
    if unknown:
        raise ProfileError(f"default_budgets names task(s) without artifacts: {', '.join(unknown)}")
    return aliases


class ProfileRegistry:
    """The served profiles of one artifact directory, and the engines they run on.

    Artifacts are read and validated at construction, before any engine is started; `activate`
    binds them to the started engines and makes the server ready.
    """

    def __init__(
        self,
        directory: Path,
        default_budgets: Mapping[str, float] | None = None,
        *,
        fallbacks: Mapping[str, str] | None = None,
        max_node_calls: int | None = None,
    ) -> None:
        self.directory = directory
        self.default_budgets = dict(default_budgets or {})
        self.fallbacks = dict(fallbacks or {})
        self.max_node_calls = max_node_calls
        self._artifacts = read_artifacts(directory)
        self._check(self._artifacts)
        self.engines: Mapping[str, Engine] = {}
        self.current: ProfileSet | None = None

    @classmethod
    def from_config(cls, directory: Path, config: ServerConfig) -> ProfileRegistry:
        """The registry of a server with these settings (default budgets, fallbacks, limits)."""
        return cls(
            directory,
            config.default_budgets,
            fallbacks=config.degradation.fallbacks,
            max_node_calls=config.limits.node_calls_per_request,
        )

    @property
    def models(self) -> set[str]:
        """Pool models the artifacts run on."""
        return {node.model for _, a in self._artifacts.values() for node in a.nodes}

    @property
    def ready(self) -> bool:
        return self.current is not None

    def activate(self, engines: Mapping[str, Engine]) -> ProfileSet:
        self.engines = engines
        self.current = self._build(self._artifacts)
        return self.current

    def reload(self) -> ProfileSet:
        """Re-read the directory; on any problem raise and keep serving the current set."""
        if self.current is None:
            raise ProfileError("the engines are still starting; reload once the server is ready")
        artifacts = read_artifacts(self.directory)
        self.current = self._build(artifacts)
        self._artifacts = artifacts
        log.info("reloaded %d profile(s) from %s", len(artifacts), self.directory)
        return self.current

    def _build(self, artifacts: Mapping[str, tuple[Path, GraphArtifact]]) -> ProfileSet:
        aliases, fallbacks = self._check(artifacts)
        profiles = {}
        for name, (path, artifact) in artifacts.items():
            missing = sorted({n.model for n in artifact.nodes} - self.engines.keys())
            if missing:
                raise ProfileError(
                    f"{path}: no engine serves {', '.join(missing)} "
                    f"(running: {', '.join(sorted(self.engines)) or 'none'}); "
                    "add it to the server config's engines and restart"
                )
            profiles[name] = Profile(name, path, artifact, GraphRunner(artifact, self.engines))
        return ProfileSet(profiles, aliases, int(time.time()), fallbacks)

    def _check(
        self, artifacts: Mapping[str, tuple[Path, GraphArtifact]]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The aliases and fallbacks (profile names) of servable artifacts; raise ProfileError
        for any that cannot be served with these settings. Needs no engine."""
        aliases = default_aliases(artifacts, self.default_budgets)
        if self.max_node_calls is not None:
            for path, artifact in artifacts.values():
                calls = len(active_nodes(artifact))
                if calls > self.max_node_calls:
                    raise ProfileError(
                        f"{path}: its graph makes {calls} node calls per request, over the "
                        f"server's limit of {self.max_node_calls} "
                        "(limits.max_node_calls_per_request, limits.max_concurrent_node_calls)"
                    )

        def named(name: str) -> str:
            found = aliases.get(name) or canonical_name(name)
            if found not in artifacts:
                raise ProfileError(f"degradation.fallbacks names {name!r}, not a profile")
            return found

        fallbacks = {}
        for primary, fallback in self.fallbacks.items():
            high, low = named(primary), named(fallback)
            a, b = artifacts[high][1], artifacts[low][1]
            if (
                a.task != b.task
                or a.budget.unit != b.budget.unit
                or b.budget.value >= a.budget.value
            ):
                raise ProfileError(
                    f"degradation.fallbacks: {low} is not a lower budget of the task of {high}"
                )
            fallbacks[high] = low
        return aliases, fallbacks

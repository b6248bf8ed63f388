"""HumanEval scoring runs each problem's whole test: every canonical solution passes and a stub
fails; a completion model's bare function body is scored too."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tasks_fixtures import datasets  # noqa: F401 (a fixture)

from tts_opt.tasks import Question, Score, Task, get_task


async def _full_and_stub(task: Task, question: Question) -> tuple[Score, Score]:
    stub = f"def {question.entry_point}(*args, **kwargs):\n    return None\n"
    return await asyncio.gather(
        task.score(f"Here it is:\n```python\n{question.solution}```\nDone.", question),
        task.score(f"```python\n{stub}```", question),
    )


async def test_every_canonical_solution_passes_and_stubs_fail(
    datasets: dict[str, Path],  # noqa: F811
) -> None:
    task = get_task("humaneval")
    assert len(task.questions) == 164
    # The sandbox bounds how many programs run at once (one per CPU): gathering all is safe.
    results = await asyncio.gather(*(_full_and_stub(task, q) for q in task.questions))
    verdicts = dict(zip((q.id for q in task.questions), results, strict=True))
    assert {qid: full.reason for qid, (full, _) in verdicts.items() if not full.correct} == {}
    assert [qid for qid, (_, stub) in verdicts.items() if stub.correct] == []


async def test_a_bare_function_body_is_completed_from_the_prompt(
    datasets: dict[str, Path],  # noqa: F811
) -> None:
    task = get_task("humaneval")
    questions = task.questions[:20]
    bodies = (q.solution.removeprefix(q.code_prefix) for q in questions)
    scores = await asyncio.gather(
        *(task.score(b, q) for b, q in zip(bodies, questions, strict=True))
    )
    assert all(s.correct for s in scores), [s.reason for s in scores if not s.correct]
    wrong = await task.score("    return None\n", questions[0])
    assert not wrong.correct and wrong.reason.startswith("failed: AssertionError")

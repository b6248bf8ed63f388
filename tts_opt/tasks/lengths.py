"""Average prompt and answer lengths (A, B) of a task: inputs of the cost model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import fmean

from tts_opt.graph.schema import TaskLengths
from tts_opt.tasks.errors import TaskError
from tts_opt.tasks.schema import Question
from tts_opt.tasks.task import Task

TokenCounter = Callable[[str], int]


def measure_lengths(
    task: Task,
    count_tokens: TokenCounter,
    *,
    outputs: Sequence[str] | None = None,
    questions: Sequence[Question] | None = None,
) -> TaskLengths:
    """A: mean tokens of the prompt an assistant without references gets (system prompt plus
    the filled template) over `questions` (default: the val split). B: mean tokens of `outputs`
    when given (a model's real answers, what the cost model should use), else of the reference
    solutions (a stand-in: models usually write longer)."""
    questions = task.split("val") if questions is None else questions
    if not questions:
        raise TaskError(f"task {task.name!r}: no questions to measure lengths on")
    system, assistant = task.templates.system, task.templates.assistant
    prompts = [system + assistant.replace("{question}", q.prompt) for q in questions]
    answers = list(outputs) if outputs is not None else [q.solution or q.answer for q in questions]
    if not answers:
        raise TaskError(f"task {task.name!r}: no outputs to measure lengths on")
    return TaskLengths(
        prompt_tokens=fmean(count_tokens(p) for p in prompts),
        output_tokens=fmean(count_tokens(a) for a in answers),
    )

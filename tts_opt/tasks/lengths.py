"""Average prompt and answer lengths (A, B) of a task: inputs of the cost model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import fmean

from tts_opt.graph.models import PAPER_TASK_LENGTHS
from tts_opt.graph.schema import TaskLengths
from tts_opt.tasks.errors import TaskError
from tts_opt.tasks.schema import Question
from tts_opt.tasks.task import Task

TokenCounter = Callable[[str], int]
CHARS_PER_TOKEN = 4  # the estimate's tokenizer stand-in


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


def task_lengths(
    task: Task, prompt_tokens: float | None = None, output_tokens: float | None = None
) -> TaskLengths:
    """The (A, B) the cost model uses: the given ones, else the paper's for its tasks, else an
    estimate from the val split and its reference solutions at about 4 characters a token."""
    paper = PAPER_TASK_LENGTHS.get(task.name.partition(":")[0])
    if prompt_tokens is None and output_tokens is None and paper is not None:
        return paper
    estimate = measure_lengths(task, lambda text: max(1, len(text) // CHARS_PER_TOKEN))
    return TaskLengths(
        prompt_tokens=prompt_tokens or estimate.prompt_tokens,
        output_tokens=output_tokens or estimate.output_tokens,
    )

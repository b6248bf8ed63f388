"""Shared pieces of the evaluation tests: a small arithmetic task, a scripted solver that gets
some questions wrong on purpose, and a seed-aware engine double."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from tts_opt.engines.base import ChatMessage, SampleDelta, SamplingParams
from tts_opt.engines.scripted import RecordedRequest, ScriptedEngine
from tts_opt.graph import KNOWN_MODELS
from tts_opt.tasks import Task, get_task

SMALL, LARGE = KNOWN_MODELS["llama-3.2-1b"], KNOWN_MODELS["llama-3.2-3b"]
N_QUESTIONS = 10
CRASH_ON = 4  # the scripted solver raises on "What is 4 + 1?"


def arithmetic_task(directory: Path) -> Task:
    """`What is i + 1?` for i < N_QUESTIONS, scored numerically (a custom JSONL task)."""
    rows = [
        {"id": f"q{i}", "question": f"What is {i} + 1?", "answer": i + 1}
        for i in range(N_QUESTIONS)
    ]
    (directory / "sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = directory / "sums.toml"
    spec.write_text('name = "sums"\ndata = "sums.jsonl"\nscorer = "numeric"\nid_field = "id"\n')
    return get_task(str(spec))


def operand(messages: Sequence[ChatMessage]) -> int:
    match = re.search(r"What is (\d+) \+ 1\?", messages[-1].content)
    assert match, messages[-1].content
    return int(match[1])


def solver(messages: Sequence[ChatMessage], index: int) -> str:
    """Right unless the operand is a multiple of 3 (then one too many): 6 of 10 right."""
    i = operand(messages)
    answer = i + 1 + (i % 3 == 0)
    return f"Adding one to {i} gives {answer}. The answer is {answer}"


def crashing_solver(messages: Sequence[ChatMessage], index: int) -> str:
    if operand(messages) == CRASH_ON:
        raise ValueError("scripted crash")
    return solver(messages, index)


class SeededEngine(ScriptedEngine):
    """A scripted engine whose sample i is a function of the prompt and its sample seed s + i
    (one draw for greedy decoding), as with vLLM's seeded sampling: the ground truth a cache
    replay must equal."""

    async def generate(
        self, request_id: str, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[SampleDelta]:
        self.requests.append(RecordedRequest(request_id, tuple(messages), params))
        assert params.seed is not None or params.temperature == 0, "the tests seed every call"
        prompt_tokens = await self.count_tokens(messages)
        for i in range(params.n):
            draw = "greedy" if params.temperature == 0 else params.seed + i  # type: ignore[operator]
            text = f"draw {draw}: {solver(messages, i)}"
            yield SampleDelta(i, text, prompt_tokens, len(text.split()), "stop")

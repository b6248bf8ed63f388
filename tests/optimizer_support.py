"""Shared pieces of the optimizer tests: a synthetic task, the paper space, fast settings."""

from __future__ import annotations

from graph_factory import PAPER_POOL

from tts_opt.graph import PAPER_TASK_LENGTHS, Budget
from tts_opt.optimizer.context import Limits
from tts_opt.optimizer.runner import OptimizeSettings
from tts_opt.optimizer.space import SearchSpace
from tts_opt.tasks import ExactScorer, Question, Task
from tts_opt.tasks.templates import TEXT, role_templates

SMALL_POOL = PAPER_POOL[:3]  # 1B, 3B, 8B: keeps multiset enumeration tiny


def synthetic_task(n: int = 400) -> Task:
    return Task(
        name="math",
        questions=tuple(Question(id=f"q{i}", prompt=f"question {i}", answer="1") for i in range(n)),
        templates=role_templates(TEXT),
        scorer=ExactScorer(),
        val_fraction=0.5,
    )


def paper_space(budget: float = 9.0, max_nodes: int = 6) -> SearchSpace:
    return SearchSpace(
        task="math",
        budget=Budget(value=budget),
        lengths=PAPER_TASK_LENGTHS["math"],
        pool=SMALL_POOL,
        templates=role_templates(TEXT),
        max_nodes=max_nodes,
    )


def fast_settings(method: str = "agent-reinforce", iterations: int = 12, **kw) -> OptimizeSettings:
    return OptimizeSettings(
        method=method,
        limits=Limits(iterations=iterations, patience=kw.pop("patience", 50)),
        val_questions=20,
        pretest_questions=5,
        reeval_questions=40,
        test_questions=40,
        **kw,
    )

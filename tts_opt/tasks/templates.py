"""Role prompts per answer format, and the rendering of multiple-choice questions.

Every role ends with the same answer-format instruction, so whatever node is the sink, its output
has the form the task's scorer extracts. Prompts are plain text with the artifact's placeholders
(`{question}`, `{references}`, `{index}`, `{answer}`); instructions may contain braces (LaTeX).
"""

from __future__ import annotations

from collections.abc import Sequence

from tts_opt.graph.schema import RoleTemplates
from tts_opt.tasks.extract import LETTERS

BOXED = "Reason step by step, then put your final answer within \\boxed{}."
NUMBER = (
    'Reason step by step, then finish with the line "The answer is N", '
    "where N is the final number only."
)
LETTER = (
    'Reason briefly, then finish with the line "Answer: X", '
    "where X is the letter of the correct option."
)
CODE = (
    "Write the complete function, with its signature and the imports it needs, "
    "in a single ```python code block."
)
TEXT = 'Reason step by step, then finish with the line "Answer: <your final answer>".'


def role_templates(instruction: str) -> RoleTemplates:
    """Assistant, assistant-with-references and fuser prompts that all end in `instruction`."""
    return RoleTemplates(
        assistant=f"{{question}}\n\n{instruction}",
        assistant_with_references=(
            "{question}\n\nOther assistants answered this as follows; they may be wrong:\n\n"
            "{references}\n\nCheck their reasoning critically, then write your own complete "
            f"answer. {instruction}"
        ),
        fuser=(
            "{question}\n\nHere are candidate answers:\n\n{references}\n\nCompare them and "
            "check their reasoning; where they disagree, work out which is right (the majority "
            f"can be wrong). Then write one final, complete answer. {instruction}"
        ),
        reference="Answer {index}:\n{answer}",
    )


def multiple_choice_prompt(question: str, choices: Sequence[str]) -> str:
    """The question followed by its options labelled A., B., ..."""
    options = "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))
    return f"{question.strip()}\n\n{options}"

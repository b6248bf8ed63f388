"""Code tasks: assemble a candidate and a question's tests into one program and run it."""

from __future__ import annotations

from tts_opt.tasks.extract import defines
from tts_opt.tasks.sandbox import DEFAULT_LIMITS, SandboxLimits, SandboxResult, run_python
from tts_opt.tasks.schema import Question


def assemble_program(code: str, question: Question) -> str:
    """The program that tests `code`: the question's code prefix, the candidate, the whole test,
    then `check(<entry_point>)`.

    A candidate that defines the entry point follows the prefix, so its definition wins while
    the prefix's imports and helpers stay; one that does not is taken as the body the prefix's
    signature is waiting for (completion style).
    """
    prefix = question.code_prefix
    if prefix and not (question.entry_point and defines(code, question.entry_point)):
        program = prefix + code
    else:
        program = f"{prefix}\n\n{code}" if prefix else code
    check = f"\n\ncheck({question.entry_point})\n" if question.entry_point else "\n"
    return f"{program}\n\n{question.tests}{check}"


async def run_tests(
    code: str, question: Question, limits: SandboxLimits = DEFAULT_LIMITS
) -> SandboxResult:
    """Run `code` against all of `question`'s tests in the sandbox."""
    return await run_python(assemble_program(code, question), limits)

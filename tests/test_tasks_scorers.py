"""Scorers on known equivalent and non-equivalent answers, and the extractors they rely on."""

from __future__ import annotations

import pytest

from tts_opt.tasks import (
    ChoiceScorer,
    ExactScorer,
    MathScorer,
    NumericScorer,
    Question,
    RegexScorer,
)
from tts_opt.tasks.extract import extract_code, last_boxed


def _question(answer: str, choices: tuple[str, ...] = ()) -> Question:
    return Question(id="q", prompt="?", answer=answer, choices=choices)


@pytest.mark.parametrize(
    ("gold", "output"),
    [
        ("\\frac{1}{2}", "so the answer is \\boxed{0.5}"),
        ("\\frac{1}{2}", "\\boxed{1/2}"),
        ("0.5", "\\boxed{\\frac12}"),
        ("\\frac{\\sqrt{2}}{2}", "\\boxed{\\sqrt{2}/2}"),
        ("\\sqrt{2}/2", "\\boxed{\\frac{\\sqrt2}{2}}"),
        ("[1,3)", "The solution set is \\boxed{[1, 3)}."),
        ("(-\\infty, 2]", "\\boxed{(-\\infty,2]}"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\boxed{\\left(3, \\frac{\\pi}{2}\\right)}"),
        ("3, 5, 7", "\\boxed{7, 5, 3}"),
        ("90^\\circ", "\\boxed{90}"),
        ("\\text{Evelyn}", "\\boxed{\\text{Evelyn}}"),
        ("\\dfrac{3}{56}", "\\boxed{\\frac{3}{56}}"),
        ("6 - 5i", "\\boxed{6-5i}"),
        ("p - q", "first \\boxed{1}, then finally \\boxed{p-q}"),
        ("2000", "\\boxed{2,000}"),
        ("10", "The final answer is $10$."),  # no box: math-verify's own extraction
    ],
)
async def test_math_accepts_equivalent_answers(gold: str, output: str) -> None:
    score = await MathScorer().score(output, _question(gold))
    assert score.correct, score


@pytest.mark.parametrize(
    ("gold", "output"),
    [
        ("\\frac{1}{2}", "\\boxed{0.51}"),
        ("\\frac{14}{3}", "\\boxed{4.67}"),
        ("[1,3)", "\\boxed{(1,3)}"),
        ("p - q", "\\boxed{q - p}"),
        ("\\text{Evelyn}", "\\boxed{\\text{Bob}}"),
        ("\\sqrt{2}/2", "\\boxed{\\sqrt{3}/2}"),
        ("3, 5, 7", "\\boxed{3, 5}"),
        ("5", "\\boxed{5} is wrong, it is \\boxed{6}"),
    ],
)
async def test_math_rejects_wrong_answers(gold: str, output: str) -> None:
    assert not (await MathScorer().score(output, _question(gold))).correct


async def test_math_without_any_answer_says_so() -> None:
    score = await MathScorer().score("I am not sure.", _question("1"))
    assert (score.correct, score.extracted, score.reason) == (False, None, "no answer found")


@pytest.mark.parametrize(
    ("text", "content"),
    [
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\left\\{1, \\{2\\}\\right\\}}", "\\left\\{1, \\{2\\}\\right\\}"),
        ("a \\boxed{1} b \\fbox{\\sqrt{x^{2}}}", "\\sqrt{x^{2}}"),
        ("\\boxed 5$.", "5"),
        ("\\boxed{3} and a truncated \\boxed{\\frac{1", "3"),
        ("no box", None),
    ],
)
def test_last_boxed_balances_nested_braces(text: str, content: str | None) -> None:
    assert last_boxed(text) == content


@pytest.mark.parametrize(
    ("gold", "output", "correct"),
    [
        ("18", "She makes 9 * 2 = $18.\nThe answer is 18", True),
        ("18", "The answer is $18.00.", True),
        ("70000", "so the profit is $70,000 in total.", True),
        ("1234", "The answer is: 1,234 dollars", True),
        ("5", "#### 5", True),
        ("5", "The final answer is \\boxed{5}", True),
        ("-3", "The temperature drops to \u22123 degrees", True),
        ("18", "The answer is 18 apples from 3 trees", True),
        ("18", "The answer is 17.", False),
        ("18", "The answer is 18.5", False),
        ("18", "It is 18, no wait, 20", False),
        ("1234", "The answer is 123", False),
    ],
)
async def test_numeric(gold: str, output: str, correct: bool) -> None:
    assert (await NumericScorer().score(output, _question(gold))).correct is correct


CAPITALS = ("Paris", "London", "Berlin", "Madrid")


@pytest.mark.parametrize(
    ("output", "letter"),
    [
        ("Answer: B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("B", "B"),
        ("**B**", "B"),
        ("the answer is b", "B"),
        ("The correct answer is (B) London.", "B"),
        ("**Answer:** B", "B"),
        ("Answer:\n\nB", "B"),
        ("\\boxed{B}", "B"),
        ("B) London", "B"),
        ("London", "B"),
        ("I believe the capital of the UK is London.", "B"),
        ("A. Paris is in France.\nB. London is right.\nSo the answer is B.", "B"),
        ("Let me think.\nParis is not it. Therefore: (B).", "B"),
        ("The answer is a bit unclear to me.", None),
        ("A good question, I do not know.", None),
        ("", None),
    ],
)
async def test_choice_letter_forms(output: str, letter: str | None) -> None:
    question = _question("B", CAPITALS)
    score = await ChoiceScorer().score(output, question)
    assert score.extracted == letter
    assert score.correct is (letter == "B")


async def test_choice_quoted_option_must_be_unambiguous() -> None:
    choices = ("Wrong, Wrong", "Wrong, Not wrong", "Not wrong, Wrong", "Not wrong, Not wrong")
    assert ChoiceScorer().extract("Wrong, Not wrong", _question("B", choices)) == "B"
    assert ChoiceScorer().extract("Either Paris or London", _question("A", CAPITALS)) is None


async def test_exact_and_regex() -> None:
    question = _question("Ulan Bator")
    assert (await ExactScorer().score("Hmm.\nAnswer: **ulan  bator**.", question)).correct
    assert not (await ExactScorer().score("Answer: Ulaanbaatar", question)).correct
    regex = RegexScorer(r"CITY=(?P<answer>[^;]+)")
    assert (await regex.score("CITY=Paris; CITY=Ulan Bator", question)).correct
    assert (await regex.score("no city here", question)).extracted is None


def test_extract_code_prefers_the_block_defining_the_entry_point() -> None:
    output = (
        "```python\ndef add(a, b):\n    return a + b\n```\nUsage:\n```python\nprint(add(1, 2))\n```"
    )
    assert extract_code(output, "add") == "def add(a, b):\n    return a + b\n"
    assert extract_code("```python\ndef add(a, b):\n    return a", "add").endswith("return a")
    assert extract_code("def add(a, b): return a + b", "add") == "def add(a, b): return a + b"

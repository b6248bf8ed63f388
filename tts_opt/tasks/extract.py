"""Answer extraction: find the final answer a model gave in its free-form output.

Each extractor returns None when the output holds no answer in the expected form, so a scorer can
tell "no answer" from "wrong answer". Where several candidates appear, the last one wins: models
state their conclusion at the end.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from functools import cache

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")


def last_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{...}` (or `\\fbox{...}`, `\\boxed 5`), with nested
    braces balanced; a box left open by a truncated output is skipped."""
    for match in reversed(list(_BOXED.finditer(text))):
        start = match.end()
        if text.startswith("{", start):
            content = _balanced(text, start)
            if content is not None:
                return content.strip()
        else:
            token = re.match(r"[^\s$]+", text[start:])
            if token:
                return token.group(0)
    return None


def _balanced(text: str, open_at: int) -> str | None:
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{" and text[i - 1] != "\\":
            depth += 1
        elif text[i] == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return None


# A number as people write it: sign, currency, thousands separators, decimals, a fraction.
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>-)?\$?(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:\s*/\s*(?P<den>\d+))?(?!\d)"
)
_STATED_NUMBER = re.compile(r"(?i)(?:\banswer\s*(?:is|:|=)|####)")


def _numbers(text: str) -> list[tuple[str, Fraction]]:
    """(as written, exact value) of every number in `text`; "$1,234.50" -> 2469/2."""
    found = []
    for m in _NUMBER.finditer(_plain(text)):
        value = Fraction(m.group("num").replace(",", ""))
        if m.group("den"):
            if int(m.group("den")) == 0:
                continue
            value /= int(m.group("den"))
        found.append((m.group(0), -value if m.group("sign") else value))
    return found


def parse_number(text: str) -> Fraction | None:
    """The first number in `text` as an exact fraction, or None."""
    numbers = _numbers(text)
    return numbers[0][1] if numbers else None


def extract_number(text: str) -> str | None:
    """The final numeric answer: the first number after the last "answer is" / "Answer:" /
    "####" that has one on its line, else the number in the last \\boxed{}, else the last
    number in the text."""
    text = _plain(text)
    for match in reversed(list(_STATED_NUMBER.finditer(text))):
        numbers = _numbers(text[match.end() :].split("\n", 1)[0])
        if numbers:
            return numbers[0][0]
    boxed = _numbers(last_boxed(text) or "")
    if boxed:
        return boxed[0][0]
    numbers = _numbers(text)
    return numbers[-1][0] if numbers else None


def _plain(text: str) -> str:
    """Unicode minus and LaTeX's `\\$`, `{,}` and `\\!` spacing written plainly."""
    return text.replace("\u2212", "-").replace("\\$", "$").replace("{,}", ",").replace("\\!", "")


LETTERS = "ABCDEFGHIJ"


@cache
def _choice_patterns(count: int) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    upper = LETTERS[:count]
    # An uppercase letter must not be part of a word; a lowercase one must also not be followed
    # by a word ("the answer is a bit unclear" is no answer).
    letter = (
        rf"(?:(?P<up>[{upper}])(?![A-Za-z])"
        rf"|(?P<low>[{upper.lower()}])(?![A-Za-z]|[ \t]+[A-Za-z]))"
    )
    stated = re.compile(
        rf"(?i:\banswer\b(?:\s+(?:is|would be|should be|will be))?)\s*[:=\-]?\s*"
        rf"(?i:(?:option|choice)\s+)?[(\[*\"'\s]*{letter}"
    )
    label = re.compile(rf"^[(\[]?(?P<up>[{upper}])(?:[)\].:]|$)")
    labelled = re.compile(rf"(?:^|\s)[(\[]?\**(?P<up>[{upper}])\**(?:[)\].:]|\s*$)")
    return stated, label, labelled


def extract_choice(text: str, choices: Sequence[str]) -> str | None:
    """The letter of the chosen option, from (in this order): a stated answer ("Answer: B",
    "the answer is (b)"), a boxed letter, a response that is or starts with just the label
    ("B", "(B)", "B.", "**B**", "B) Paris"), a label on the last line ("so, (B)."), or the text
    of exactly one option quoted in the last line."""
    stated, label, labelled = _choice_patterns(len(choices))
    matches = list(stated.finditer(text))
    if matches:
        return (matches[-1].group("up") or matches[-1].group("low")).upper()
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    first = lines[0].replace("*", "")
    boxed = last_boxed(text)
    candidates = (
        (None if boxed is None else re.sub(r"\\text\{([^}]*)\}", r"\1", boxed), label),
        # A multi-line answer may walk through the options ("A. wrong, because ..."): only a
        # first line that is the bare label counts there.
        (first if len(lines) == 1 or label.fullmatch(first) else None, label),
        (lines[-1], labelled),
    )
    for candidate, pattern in candidates:
        found = [] if candidate is None else list(pattern.finditer(candidate.strip()))
        if found:
            return found[-1].group("up")
    return _quoted_choice(lines[-1], choices)


def _quoted_choice(text: str, choices: Sequence[str]) -> str | None:
    normalized = _normalize(text)
    present = [
        i
        for i, choice in enumerate(choices)
        if (option := _normalize(choice))
        and re.search(rf"(?<!\w){re.escape(option)}(?!\w)", normalized)
    ]
    # "12" inside "125": keep only options that are not part of another present option.
    options = {i: _normalize(choices[i]) for i in present}
    maximal = [i for i in present if not any(options[i] in options[j] for j in present if j != i)]
    return LETTERS[maximal[0]] if len(maximal) == 1 else None


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"[*_`\"'.,;:!?()]", " ", text.casefold()).split())


_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_PYTHON_FENCES = {"", "python", "py", "python3"}


def extract_code(text: str, entry_point: str = "") -> str:
    """The program in a model's answer: the last Python code block that defines `entry_point`,
    else the last Python block, else the whole output (models without markdown). A block left
    open by a truncated output counts."""
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in _PYTHON_FENCES]
    if not blocks:
        return text
    defining = [b for b in blocks if entry_point and defines(b, entry_point)]
    return (defining or blocks)[-1]


def defines(code: str, name: str) -> bool:
    """Whether `code` defines function `name` at top level."""
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.M) is not None


def final_line_answer(text: str) -> str | None:
    """A free-form final answer: what follows the last "Answer:" / "answer is", else the last
    non-empty line."""
    stated = list(re.finditer(r"(?i)\banswer\s*(?:is\s*:?|:)\s*(.+)", text))
    if stated:
        return stated[-1].group(1).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


def regex_answer(text: str, pattern: re.Pattern[str]) -> str | None:
    """The answer `pattern` finds in `text`: at its last match, the group named `answer`, else
    group 1, else the whole match."""
    matches = list(pattern.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    if "answer" in pattern.groupindex:
        return last.group("answer")
    return last.group(1) if pattern.groups else last.group(0)


def normalize_text(text: str) -> str:
    """Case, markdown, quotes, surrounding punctuation and runs of whitespace do not matter."""
    text = re.sub(r"[*`]", "", text).strip().strip("\"'").rstrip(".").strip()
    return " ".join(text.casefold().split())

"""Builds each node's messages from the artifact's role templates and its predecessors' answers."""

from __future__ import annotations

import re
from collections.abc import Sequence

from tts_opt.engines.base import ChatMessage
from tts_opt.errors import UserError
from tts_opt.graph.schema import Role, RoleTemplates


class PromptError(UserError, ValueError):
    """The conversation cannot be run through a graph (e.g. it has no user message)."""


def split_conversation(
    conversation: Sequence[ChatMessage],
) -> tuple[tuple[ChatMessage, ...], str]:
    """Return (earlier turns, last user text): a graph answers the last user turn."""
    if not conversation or conversation[-1].role != "user":
        raise PromptError("the conversation must end with a user message")
    return tuple(conversation[:-1]), conversation[-1].content


_PLACEHOLDER = re.compile(r"\{(question|references|index|answer)\}")


def fill(template: str, **values: str) -> str:
    """Replace the known placeholders in one pass; inserted text is never scanned again, so
    questions and answers may contain braces (LaTeX, code) or even placeholder names."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def render_references(templates: RoleTemplates, answers: Sequence[str]) -> str:
    return templates.reference_separator.join(
        fill(templates.reference, index=str(i), answer=answer.strip())
        for i, answer in enumerate(answers, start=1)
    )


def node_messages(
    templates: RoleTemplates,
    role: Role,
    conversation: Sequence[ChatMessage],
    references: Sequence[str],
) -> list[ChatMessage]:
    """Messages for one node: the task's system prompt, earlier turns, then the role's prompt.

    An assistant whose predecessors all failed falls back to its plain template.
    """
    history, question = split_conversation(conversation)
    if role == "fuser":
        template = templates.fuser
    elif references:
        template = templates.assistant_with_references
    else:
        template = templates.assistant
    content = fill(template, question=question, references=render_references(templates, references))
    has_system = bool(history) and history[0].role == "system"
    messages: list[ChatMessage] = []
    if templates.system and not has_system:
        messages.append(ChatMessage("system", templates.system))
    messages.extend(history)
    messages.append(ChatMessage("user", content))
    return messages

"""Bounded work: past a limit a request is refused at once with 429 and Retry-After.

No queue: the engines batch whatever is admitted, and a client that backs off and retries (the
`openai` client does on 429) is better served than one waiting in an unbounded line.

Work is counted in requests and in node calls: a graph request holds as many node calls as its
graph has nodes for its whole run, so a 5-node graph weighs five one-node requests. Under load a
request whose profile has a fallback is admitted on the fallback's weight instead (see
`tts_opt.server.config.Degradation`). Every admission takes the next sequence number, the rank
its engine calls get when the server schedules by request.
"""

from __future__ import annotations

import itertools
from typing import NoReturn

from tts_opt.server.config import Degradation, Limits
from tts_opt.server.errors import APIError


class Permit:
    """One admitted request's share; `release` is idempotent, so every exit path may call it.
    `degraded`: admitted on its fallback's weight, so it must run the fallback."""

    def __init__(self, admission: Admission, node_calls: int, degraded: bool) -> None:
        self._admission: Admission | None = admission
        self.node_calls = node_calls
        self.degraded = degraded
        self.sequence = next(admission.sequence)

    def release(self) -> None:
        if self._admission is not None:
            self._admission.active -= 1
            self._admission.node_calls -= self.node_calls
            self._admission = None


class Admission:
    def __init__(self, limits: Limits, degradation: Degradation | None = None) -> None:
        degradation = degradation or Degradation()
        self.limit = limits.max_concurrent_requests
        self.node_limit = limits.max_concurrent_node_calls
        self.retry_after_s = limits.retry_after_s
        self.above = degradation.above_node_calls
        self.below = degradation.below_node_calls
        self.active = 0
        self.node_calls = 0
        self.overloaded = False  # past `above`, and not yet back below `below`
        self.sequence = itertools.count()

    def admit(self, node_calls: int = 1, fallback_node_calls: int | None = None) -> Permit:
        """Admit a request of `node_calls`, or of `fallback_node_calls` on its fallback (the
        permit says which); raise APIError 429 if neither fits."""
        if self.active >= self.limit:
            self.refuse(f"the server is at its limit of {self.limit} concurrent requests")
        self._update_load()
        weight, degraded = node_calls, False
        if fallback_node_calls is not None and (self.overloaded or not self._fits(node_calls)):
            weight, degraded = fallback_node_calls, True
        if not self._fits(weight):
            self.refuse(
                f"the server is at its limit of {self.node_limit} concurrent node calls "
                f"({self.node_calls} in flight, this request needs {weight})"
            )
        self.active += 1
        self.node_calls += weight
        return Permit(self, weight, degraded)

    def _fits(self, node_calls: int) -> bool:
        return self.node_limit is None or self.node_calls + node_calls <= self.node_limit

    def _update_load(self) -> None:
        if self.above is None or self.below is None:
            return
        if self.node_calls > self.above:
            self.overloaded = True
        elif self.node_calls < self.below:
            self.overloaded = False

    def refuse(self, reason: str) -> NoReturn:
        raise APIError(
            429,
            f"{reason}; retry shortly",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(self.retry_after_s)},
        )

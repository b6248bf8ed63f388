"""Bounded concurrency: past the limit a request is refused at once with 429 and Retry-After.

No queue: the engines batch whatever is admitted, and a client that backs off and retries (the
`openai` client does on 429) is better served than one waiting in an unbounded line.
"""

from __future__ import annotations

from tts_opt.server.errors import APIError


class Permit:
    """One admitted request's slot; `release` is idempotent, so every exit path may call it."""

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    def release(self) -> None:
        if self._admission is not None:
            self._admission.active -= 1
            self._admission = None


class Admission:
    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.active = 0

    def admit(self) -> Permit:
        if self.active >= self.limit:
            raise APIError(
                429,
                f"the server is at its limit of {self.limit} concurrent requests; retry shortly",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        self.active += 1
        return Permit(self)

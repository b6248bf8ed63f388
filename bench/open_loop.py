"""Open-loop load for bench/server.py: requests arrive on a schedule drawn in advance, whether or
not earlier ones have been answered.

A closed loop (server_load.closed_loop) slows its clients down as the server slows, so it never
offers more than the server takes and hides queueing; arrivals that ignore the server show it.
The schedule is a Poisson process at a set rate, or bursts: `multiple` x the rate for `on_s`,
then nothing for `off_s`, repeating. It comes from a seeded generator, so two runs offer the
same arrivals, and it stops at `max_requests` or at `duration_s`, whichever comes first.
A reply records the profile that served it, and the one asked for when the server degraded it to
a fallback (the `tts_opt` object of its last chunk).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

import aiohttp
import msgspec

from tts_opt.engines.openai_engine import parse_event
from tts_opt.errors import UserError
from tts_opt.evaluation.stats import percentile

Result = Literal["ok", "error", "timeout"]


class ScheduleError(UserError):
    """A schedule that cannot be drawn (a rate, bound or burst that is not positive)."""


class Burst(msgspec.Struct, frozen=True):
    on_s: float
    off_s: float
    multiple: float  # of the schedule's rate, during the on periods


class Schedule(msgspec.Struct, frozen=True):
    rate: float  # requests/s of the Poisson process (in bursts: the base the multiple applies to)
    max_requests: int
    duration_s: float
    seed: int
    burst: Burst | None = None

    @property
    def mean_rate(self) -> float:
        """Arrivals per second averaged over on and off periods."""
        if self.burst is None:
            return self.rate
        b = self.burst
        return self.rate * b.multiple * b.on_s / (b.on_s + b.off_s)


def check_schedule(schedule: Schedule) -> None:
    """Raise ScheduleError for a field that is out of range."""
    positive = {"rate": schedule.rate, "duration_s": schedule.duration_s}
    if schedule.burst is not None:
        positive |= msgspec.structs.asdict(schedule.burst)
    for name, value in positive.items():
        if not value > 0:
            raise ScheduleError(f"the load schedule's {name} must be positive, got {value}")
    if schedule.max_requests < 0:
        raise ScheduleError(f"max_requests must not be negative, got {schedule.max_requests}")


def arrival_times(schedule: Schedule) -> list[float]:
    """Arrival offsets in seconds from the start, increasing, all below `duration_s`.

    Each gap is an exponential draw of unit mean in "arrival mass" (rate x time); in bursts the
    mass accrues only during on periods, at `multiple` x rate. The process is memoryless, so
    carrying what is left of a draw over an off period gives exactly the on/off Poisson process.
    """
    check_schedule(schedule)
    rng = random.Random(schedule.seed)
    burst = schedule.burst
    times: list[float] = []
    t = 0.0
    while len(times) < schedule.max_requests:
        mass = rng.expovariate(1.0)
        if burst is None:
            t += mass / schedule.rate
        else:
            rate = schedule.rate * burst.multiple
            period = burst.on_s + burst.off_s
            while True:
                start = t - t % period
                if t - start >= burst.on_s:  # in an off period: skip to the next on period
                    t = start + period
                    continue
                left = (start + burst.on_s - t) * rate
                if mass <= left:
                    t += mass / rate
                    break
                mass -= left
                t = start + period
        if t >= schedule.duration_s:
            break
        times.append(t)
    return times


class Reply(msgspec.Struct, frozen=True):
    """What one request got back; `ttft_s` is from its own start to the first content chunk.
    `model`: the profile that served it; `degraded_from`: the profile asked for, when a fallback
    served it."""

    status: int
    ttft_s: float | None
    failed: bool = False  # a status other than 200, or an error event in the stream
    model: str | None = None
    degraded_from: str | None = None


class _RunInfo(msgspec.Struct):
    degraded_from: str | None = None


class _Served(msgspec.Struct):
    """The fields of a finishing chunk that say who served it."""

    model: str | None = None
    tts_opt: _RunInfo | None = None


_decode_served = msgspec.json.Decoder(_Served).decode


class Outcome(msgspec.Struct, frozen=True):
    scheduled_s: float  # the arrival offset in the schedule
    lag_s: float  # how much later than scheduled the client sent it (its own event loop)
    result: Result
    status: int | None  # HTTP status; None when none came (timeout, connection failure)
    e2e_s: float
    ttft_s: float | None
    model: str | None = None
    degraded_from: str | None = None


Attempt = Callable[[int], Awaitable[Reply]]


async def stream_reply(session: aiohttp.ClientSession, body: bytes) -> Reply:
    """POST a streamed chat completion and read it to the end."""
    started = time.perf_counter()
    async with session.post(
        "/v1/chat/completions", data=body, headers={"content-type": "application/json"}
    ) as response:
        if response.status != 200:
            await response.read()
            return Reply(response.status, None, failed=True)
        first: float | None = None
        served = _Served()
        async for raw in response.content:  # line by line
            try:
                chunk = parse_event(raw.decode())
            except ValueError:  # an error event: the request failed after its headers
                return Reply(response.status, first, failed=True)
            if chunk is None:
                continue
            if first is None and any(c.delta.content for c in chunk.choices):
                first = time.perf_counter() - started
            if any(c.finish_reason for c in chunk.choices):  # the server's `tts_opt` rides here
                served = _decode_served(raw.partition(b":")[2])
    degraded_from = served.tts_opt.degraded_from if served.tts_opt is not None else None
    return Reply(response.status, first, model=served.model, degraded_from=degraded_from)


async def open_loop(
    attempt: Attempt, times: Sequence[float], timeout_s: float
) -> tuple[list[Outcome], float]:
    """Send request i at `times[i]` after the start; every request's outcome and the wall time
    from the start to the last answer."""
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(i: int, at: float) -> Outcome:
        await asyncio.sleep(start + at - loop.time())
        sent = loop.time()
        reply: Reply | None = None
        try:
            async with asyncio.timeout(timeout_s):
                reply = await attempt(i)
            result: Result = "error" if reply.failed else "ok"
        except TimeoutError:
            result = "timeout"
        except (aiohttp.ClientError, OSError):
            result = "error"
        e2e_s = loop.time() - sent
        if reply is None:
            return Outcome(at, sent - start - at, result, None, e2e_s, None)
        return Outcome(
            at,
            sent - start - at,
            result,
            reply.status,
            e2e_s,
            reply.ttft_s,
            reply.model,
            reply.degraded_from,
        )

    outcomes = await asyncio.gather(*(one(i, at) for i, at in enumerate(times)))
    return list(outcomes), loop.time() - start


class Spread(msgspec.Struct, frozen=True):
    p50: float
    p95: float
    p99: float


def spread(values: Sequence[float]) -> Spread | None:
    if not values:
        return None
    return Spread(*(percentile(values, q) for q in (50, 95, 99)))


class LoadSummary(msgspec.Struct, frozen=True):
    sent: int
    ok: int
    errors: int
    timeouts: int
    statuses: dict[int, int]  # HTTP statuses that came back, e.g. {200: 98, 429: 2}
    throughput_rps: float  # ok requests per second of wall time
    e2e_s: Spread | None  # over ok requests
    ttft_s: Spread | None  # over ok requests
    lag_p99_s: float  # how late the client sent: when large, the load was not open-loop
    degraded: int = 0  # ok requests a fallback served


def summarize(outcomes: Sequence[Outcome], wall_s: float) -> LoadSummary:
    results = Counter(o.result for o in outcomes)
    ok = [o for o in outcomes if o.result == "ok"]
    statuses = Counter(o.status for o in outcomes if o.status is not None)
    return LoadSummary(
        sent=len(outcomes),
        ok=results["ok"],
        errors=results["error"],
        timeouts=results["timeout"],
        statuses=dict(sorted(statuses.items())),
        throughput_rps=len(ok) / wall_s if wall_s > 0 else 0.0,
        e2e_s=spread([o.e2e_s for o in ok]),
        ttft_s=spread([o.ttft_s for o in ok if o.ttft_s is not None]),
        lag_p99_s=percentile([o.lag_s for o in outcomes], 99) if outcomes else 0.0,
        degraded=sum(o.degraded_from is not None for o in ok),
    )


def format_summary(summary: LoadSummary) -> str:
    def ms(s: Spread | None) -> str:
        if s is None:
            return "p50       - p95       - p99       -"
        return f"p50 {s.p50 * 1e3:7.1f} p95 {s.p95 * 1e3:7.1f} p99 {s.p99 * 1e3:7.1f}"

    statuses = " ".join(f"{code}:{count}" for code, count in summary.statuses.items()) or "-"
    degraded = f"  degraded {summary.degraded}" if summary.degraded else ""
    return (
        f"sent {summary.sent:5}  ok {summary.ok:5}  error {summary.errors:4}  "
        f"timeout {summary.timeouts:4}  ({statuses}){degraded}  "
        f"{summary.throughput_rps:7.2f} ok/s  "
        f"e2e ms {ms(summary.e2e_s)}  TTFT ms {ms(summary.ttft_s)}  "
        f"lag p99 {summary.lag_p99_s * 1e3:.1f} ms"
    )

"""bench/open_loop.py: the arrival schedule and the summary of an open-loop run, as pure
functions; the driver's outcome classes with a scripted attempt (a test double); the profile a
streamed reply was served by, from a real server on scripted engines."""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

import aiohttp
import msgspec
import pytest
from server_support import (
    config,
    eventually,
    fan_in_artifact,
    make_app,
    scripted_engines,
    serving,
    single_artifact,
    write_artifacts,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # scripts, not a package

from open_loop import (
    Burst,
    Outcome,
    Reply,
    Schedule,
    ScheduleError,
    Spread,
    arrival_times,
    format_summary,
    open_loop,
    stream_reply,
    summarize,
)

from tts_opt.engines.scripted import ScriptedEngine
from tts_opt.errors import UserError


def poisson(rate: float = 10.0, requests: int = 10**6, duration_s: float = 1000.0, seed: int = 0):
    return Schedule(rate, requests, duration_s, seed)


def test_the_same_seed_draws_the_same_arrivals_and_another_seed_others():
    assert arrival_times(poisson(seed=3)) == arrival_times(poisson(seed=3))
    assert arrival_times(poisson(seed=3)) != arrival_times(poisson(seed=4))


def test_poisson_arrivals_come_at_the_rate_with_exponential_gaps():
    times = arrival_times(poisson(rate=10.0, duration_s=2000.0))
    assert times == sorted(times) and times[0] > 0
    assert len(times) / 2000.0 == pytest.approx(10.0, rel=0.02)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Exponential: mean = standard deviation = 1 / rate; a fixed grid would have no spread.
    mean = sum(gaps) / len(gaps)
    sd = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5
    assert mean == pytest.approx(0.1, rel=0.02) and sd == pytest.approx(0.1, rel=0.03)


def test_the_schedule_stops_at_its_request_count_or_its_duration_whichever_is_first():
    assert len(arrival_times(poisson(rate=100.0, requests=50))) == 50
    short = arrival_times(poisson(rate=100.0, duration_s=2.0))
    assert 150 < len(short) < 250 and max(short) < 2.0
    assert arrival_times(poisson(requests=0)) == []


def test_bursts_arrive_at_the_multiple_during_on_periods_and_never_during_off_periods():
    schedule = Schedule(10.0, 10**6, 1000.0, seed=1, burst=Burst(on_s=2.0, off_s=3.0, multiple=4))
    times = arrival_times(schedule)
    assert all(t % 5.0 < 2.0 for t in times)
    # 40/s for 2 s of every 5: a mean of 16/s.
    assert schedule.mean_rate == 16.0
    assert len(times) / 1000.0 == pytest.approx(16.0, rel=0.03)
    assert arrival_times(schedule) == times


@pytest.mark.parametrize(
    ("schedule", "named"),
    [
        (Schedule(0.0, 10, 1.0, 0), "rate"),
        (Schedule(1.0, 10, -1.0, 0), "duration_s"),
        (Schedule(1.0, -1, 1.0, 0), "max_requests"),
        (Schedule(1.0, 10, 1.0, 0, Burst(1.0, 0.0, 2.0)), "off_s"),
    ],
)
def test_a_schedule_that_cannot_be_drawn_is_refused_naming_the_field(schedule, named):
    with pytest.raises(ScheduleError, match=named) as caught:
        arrival_times(schedule)
    assert isinstance(caught.value, UserError)


def outcome(result: str, status: int | None, e2e_s: float, ttft_s: float | None, lag_s=0.0):
    return Outcome(0.0, lag_s, result, status, e2e_s, ttft_s)  # type: ignore[arg-type]


def test_the_summary_counts_outcomes_and_statuses_and_takes_percentiles_of_ok_requests():
    ok = [outcome("ok", 200, e2e_s=i / 100, ttft_s=i / 1000) for i in range(1, 101)]
    failed = [
        outcome("error", 429, e2e_s=0.001, ttft_s=None),
        outcome("error", None, e2e_s=0.002, ttft_s=None, lag_s=0.5),
        outcome("timeout", None, e2e_s=9.0, ttft_s=None),
        outcome("ok", 200, e2e_s=0.5, ttft_s=None),  # answered without any content
    ]
    summary = summarize(ok + failed, wall_s=20.0)
    assert (summary.sent, summary.ok, summary.errors, summary.timeouts) == (104, 101, 2, 1)
    assert summary.statuses == {200: 101, 429: 1}
    assert summary.throughput_rps == pytest.approx(101 / 20)
    # The failures' latencies stay out: 0.01..1.00 s and 0.5 s.
    assert summary.e2e_s == Spread(*(pytest.approx(v) for v in (0.5, 0.95, 0.99)))
    assert summary.ttft_s == Spread(*(pytest.approx(v) for v in (0.0505, 0.09505, 0.09901)))
    assert summary.lag_p99_s == 0.0  # one late request of 104 is above the 99th percentile
    line = format_summary(summary)
    assert "ok   101" in line and "(200:101 429:1)" in line and "e2e ms p50   500.0" in line


def test_a_run_with_nothing_answered_has_no_percentiles():
    summary = summarize([outcome("timeout", None, 1.0, None)], wall_s=1.0)
    assert summary.e2e_s is None and summary.ttft_s is None and summary.throughput_rps == 0
    assert "e2e ms p50       -" in format_summary(summary)
    assert summarize([], wall_s=0.0).sent == 0


async def test_the_driver_tells_ok_from_errors_and_timeouts():
    """The attempt is a test double scripted per request index."""
    never = asyncio.Event()

    async def attempt(i: int) -> Reply:
        if i == 2:
            raise aiohttp.ClientConnectionError("refused")
        if i == 3:
            await never.wait()  # past the timeout
        return Reply(status=200 if i == 0 else 503, ttft_s=0.01, failed=i == 1)

    outcomes, wall_s = await open_loop(attempt, [0.0, 0.0, 0.0, 0.0], timeout_s=0.05)
    assert [(o.result, o.status) for o in outcomes] == [
        ("ok", 200),
        ("error", 503),
        ("error", None),
        ("timeout", None),
    ]
    assert outcomes[0].ttft_s == 0.01 and outcomes[3].e2e_s >= 0.05 and wall_s >= 0.05


def test_the_summary_counts_the_answers_a_fallback_served():
    served = [outcome("ok", 200, e2e_s=0.1, ttft_s=0.01) for _ in range(3)]
    degraded = msgspec.structs.replace(served[0], model="math@2", degraded_from="math@100")
    summary = summarize([*served, degraded], wall_s=1.0)
    assert summary.degraded == 1
    assert "(200:4)  degraded 1" in format_summary(summary)
    assert "degraded" not in format_summary(summarize(served, wall_s=1.0))


async def test_a_streamed_reply_names_the_profile_that_served_it(tmp_path: Path):
    """A real server on scripted engines (test doubles): while a pool-model request held at its
    gate takes 2 of the 4 node calls, only the fallback (1) fits, not the primary (3)."""

    gate = asyncio.Event()
    engines = {**scripted_engines(), "ballast": ScriptedEngine("ballast", gate=gate)}
    graphs = write_artifacts(tmp_path / "graphs", fan_in_artifact(100), single_artifact(2))
    settings = config(
        limits={"max_concurrent_node_calls": 4, "max_n": 2},
        degradation={"fallbacks": {"math@100": "math@2"}},
    )
    app, _ = make_app(graphs, engines, settings)
    question = [{"role": "user", "content": "What is 2 + 2?"}]

    def body(model: str, n: int = 1) -> bytes:
        return msgspec.json.encode({"model": model, "messages": question, "stream": True, "n": n})

    async with serving(app) as url, aiohttp.ClientSession(url) as session:
        held = asyncio.create_task(stream_reply(session, body("ballast", n=2)))
        assert await eventually(lambda: engines["ballast"].started)
        degraded = await stream_reply(session, body("math@100"))
        gate.set()
        await held
        served = await stream_reply(session, body("math@100"))
    assert (degraded.status, degraded.model, degraded.degraded_from) == (200, "math@2", "math@100")
    assert (served.status, served.model, served.degraded_from) == (200, "math@100", None)

"""Serving under load on a real server on loopback with scripted engines (test doubles): the
priority of node calls, admission counted in node calls, and degradation to a fallback profile.

Requests are held in place by the scripted engines' gates (events), never by delays.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from graph_factory import make_artifact
from prometheus_client.parser import text_string_to_metric_families
from server_support import (
    LARGE,
    QUESTION,
    SMALL,
    TEMPLATES,
    config,
    eventually,
    fan_in_artifact,
    make_app,
    serving,
    single_artifact,
    write_artifacts,
)

from tts_opt.engines.scripted import ScriptedEngine
from tts_opt.server.config import ConfigError, load_config
from tts_opt.server.profiles import ProfileError, ProfileRegistry

PRIMARY, FALLBACK = "math@100", "math@2"  # fan-in (3 node calls), one small assistant (1)


def five_node_artifact(budget: float = 500.0):
    """Four small assistants feed a large fuser: 5 node calls."""
    sources = [(s, SMALL, "assistant") for s in "abcd"]
    return make_artifact(
        [*sources, ("f", LARGE, "fuser")],
        [(s, "f") for s in "abcd"],
        "f",
        budget=budget,
        templates=TEMPLATES,
    )


def engines(**gates: asyncio.Event) -> dict[str, ScriptedEngine]:
    """The two models, plus pool models `ballast-*` that only load the server, each held by the
    gate of its name when one is given."""
    names = [SMALL, LARGE, "ballast-1", "ballast-2"]
    return {name: ScriptedEngine(name, gate=gates.get(name)) for name in names}


def chat(model: str, **fields: object) -> dict[str, object]:
    return {"model": model, "messages": QUESTION, **fields}


def run_id(engine_request_id: str) -> str:
    """The completion id (`chatcmpl-<hex>`) of an engine request: a graph's node calls append
    `-<group>-<attempt>`, a pool-model request is sent under the completion id itself."""
    return "-".join(engine_request_id.split("-")[:2])


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


@pytest.mark.parametrize("scheduling", ["request", "call"])
async def test_node_calls_carry_their_requests_admission_order(tmp_path: Path, scheduling: str):
    pool = engines()
    graphs = write_artifacts(tmp_path / "graphs", fan_in_artifact(100))
    app, _ = make_app(graphs, pool, config(scheduling=scheduling))
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        ids = []
        for _ in range(3):
            response = await http.post("/v1/chat/completions", json=chat(PRIMARY))
            ids.append(response.json()["id"])
    calls = pool[SMALL].requests + pool[LARGE].requests
    assert len(calls) == 6  # per request: the assistants' n=2 call and the fuser
    for rank, completion_id in enumerate(ids):
        priorities = {c.params.priority for c in calls if c.request_id.startswith(completion_id)}
        assert priorities == {rank if scheduling == "request" else 0}


@pytest.mark.parametrize("scheduling", ["request", "call"])
async def test_an_older_requests_calls_run_before_a_newer_requests(tmp_path: Path, scheduling: str):
    """The large engine runs one request at a time. While a blocker holds it, a newer one-node
    request queues first, then the fuser of an older graph request: ranked by request, the
    older request's fuser runs first; ranked by call, the engine serves them as they came."""
    small_gate, large_gate = asyncio.Event(), asyncio.Event()
    pool = engines()
    pool[SMALL].gate = small_gate
    pool[LARGE] = ScriptedEngine(LARGE, slots=1, gate=large_gate)
    large = pool[LARGE]
    one_large = make_artifact([("s", LARGE, "assistant")], [], "s", budget=4, templates=TEMPLATES)
    graphs = write_artifacts(tmp_path / "graphs", fan_in_artifact(100), one_large)
    app, _ = make_app(graphs, pool, config(scheduling=scheduling))
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:

        def send(model: str) -> asyncio.Task[httpx.Response]:
            return asyncio.create_task(http.post("/v1/chat/completions", json=chat(model)))

        blocker = send(LARGE)  # admitted first: holds the large engine's slot
        assert await eventually(lambda: large.started)
        older = send(PRIMARY)  # its assistants wait at the small engine's gate
        assert await eventually(lambda: pool[SMALL].started)
        newer = send("math@4")  # one large call: queues for the slot
        assert await eventually(lambda: large.waiting == 1)
        small_gate.set()  # the older request's fuser queues behind the newer request's call
        assert await eventually(lambda: large.waiting == 2)
        large_gate.set()
        responses = [(await task).json()["id"] for task in (blocker, older, newer)]
    started = [run_id(request_id) for request_id in large.started]
    assert started[0] == responses[0]
    if scheduling == "request":
        assert started[1:] == [responses[1], responses[2]]
    else:
        assert started[1:] == [responses[2], responses[1]]


async def test_admission_counts_node_calls_and_refuses_past_the_capacity(tmp_path: Path):
    gate = asyncio.Event()
    pool = engines()
    pool[SMALL].gate = gate
    graphs = write_artifacts(tmp_path / "graphs", five_node_artifact(), single_artifact(2))
    limits = {"max_concurrent_node_calls": 6, "max_n": 2}
    app, _ = make_app(graphs, pool, config(limits=limits))
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        wide = asyncio.create_task(http.post("/v1/chat/completions", json=chat("math@500")))
        narrow = asyncio.create_task(http.post("/v1/chat/completions", json=chat(FALLBACK)))
        assert await eventually(lambda: len(pool[SMALL].started) == 2)
        in_flight = metric((await http.get("/metrics")).text, "tts_node_calls_in_flight")
        assert in_flight == 6  # the 5-node request weighs 5, the one-node request 1
        refused = await http.post("/v1/chat/completions", json=chat(FALLBACK))
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        error = refused.json()["error"]
        assert (
            error["code"] == "rate_limit_exceeded" and "6 concurrent node calls" in error["message"]
        )
        gate.set()
        assert [(await t).status_code for t in (wide, narrow)] == [200, 200]
        assert metric((await http.get("/metrics")).text, "tts_node_calls_in_flight") == 0
        assert (await http.post("/v1/chat/completions", json=chat("math@500"))).status_code == 200


def test_a_profile_over_the_per_request_cap_is_refused_at_load(tmp_path: Path):
    graphs = write_artifacts(tmp_path / "graphs", five_node_artifact(), single_artifact(2))
    capped = config(limits={"max_node_calls_per_request": 4})
    with pytest.raises(ProfileError, match=r"math-500\.json.* 5 node calls .* limit of 4"):
        ProfileRegistry.from_config(graphs, capped)
    # The capacity bounds a request too: one heavier than the whole capacity never fits.
    small = config(limits={"max_concurrent_node_calls": 3, "max_n": 2})
    with pytest.raises(ProfileError, match="limit of 3"):
        ProfileRegistry.from_config(graphs, small)
    assert ProfileRegistry.from_config(graphs, config(limits={"max_node_calls_per_request": 5}))


def test_fallbacks_must_be_lower_budgets_of_the_same_task(tmp_path: Path):
    graphs = write_artifacts(tmp_path / "graphs", fan_in_artifact(100), single_artifact(2))
    with pytest.raises(ProfileError, match="'math@7', not a profile"):
        ProfileRegistry.from_config(graphs, config(degradation={"fallbacks": {PRIMARY: "math@7"}}))
    with pytest.raises(ProfileError, match="math@100 is not a lower budget of the task of math@2"):
        ProfileRegistry.from_config(graphs, config(degradation={"fallbacks": {FALLBACK: PRIMARY}}))
    # The bare task name stands for its default profile.
    fallbacks = {"math": FALLBACK}
    registry = ProfileRegistry.from_config(graphs, config(degradation={"fallbacks": fallbacks}))
    assert registry.activate(engines()).fallbacks == {PRIMARY: FALLBACK}


def test_degradation_and_capacity_settings_are_checked(tmp_path: Path):
    path = tmp_path / "server.toml"
    path.write_text("[degradation]\nabove_node_calls = 8\n")
    with pytest.raises(ConfigError, match="both above_node_calls and below_node_calls"):
        load_config(path)
    path.write_text("[degradation]\nabove_node_calls = 8\nbelow_node_calls = 9\n")
    with pytest.raises(ConfigError, match=r"below_node_calls \(9\) is over above_node_calls"):
        load_config(path)
    path.write_text("[limits]\nmax_concurrent_node_calls = 8\n")
    with pytest.raises(ConfigError, match=r"max_n \(16\) is over .*max_concurrent_node_calls"):
        load_config(path)
    environ = {"TTS_OPT_SERVER_DEGRADATION__FALLBACKS": '{"math@100": "math@2"}'}
    assert load_config(environ=environ).degradation.fallbacks == {PRIMARY: FALLBACK}


async def test_past_the_threshold_requests_go_to_the_fallback_until_below_the_lower_one(
    tmp_path: Path,
):
    """Thresholds 4 (degrade above) and 2 (recover below); pool-model requests held at their
    gates set the load: their `n` is their weight in node calls."""
    gates = {"ballast-1": asyncio.Event(), "ballast-2": asyncio.Event()}
    pool = engines(**gates)
    graphs = write_artifacts(tmp_path / "graphs", fan_in_artifact(100), single_artifact(2))
    degradation = {"fallbacks": {PRIMARY: FALLBACK}, "above_node_calls": 4, "below_node_calls": 2}
    app, _ = make_app(graphs, pool, config(degradation=degradation))
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def ask(**fields: object) -> dict:
            response = await http.post("/v1/chat/completions", json=chat(PRIMARY, **fields))
            assert response.status_code == 200
            return response.json()

        def hold(model: str, n: int) -> asyncio.Task[httpx.Response]:
            body = chat(model, n=n)
            return asyncio.create_task(http.post("/v1/chat/completions", json=body))

        ballast = [hold("ballast-1", 3)]
        assert await eventually(lambda: pool["ballast-1"].started)
        served = await ask()  # 3 in flight: not above 4
        assert served["model"] == PRIMARY and "tts_opt" not in served
        ballast.append(hold("ballast-2", 2))
        assert await eventually(lambda: pool["ballast-2"].started)
        served = await ask(tts_opt={"trace": True})  # 5 in flight: above 4
        assert served["model"] == FALLBACK
        assert served["tts_opt"]["profile"] == FALLBACK
        assert served["tts_opt"]["degraded_from"] == PRIMARY
        assert [n["node"] for n in served["tts_opt"]["trace"]["nodes"]] == ["s"]
        gates["ballast-2"].set()
        await ballast[1]
        streamed = await http.post("/v1/chat/completions", json=chat(PRIMARY, stream=True))
        # 3 in flight: not below 2, so still degraded; the last chunk says so.
        last = [line for line in streamed.text.splitlines() if '"tts_opt"' in line]
        assert len(last) == 1 and '"degraded_from":"math@100"' in last[0]
        gates["ballast-1"].set()
        await ballast[0]
        served = await ask()  # nothing in flight: below 2, back to the primary
        assert served["model"] == PRIMARY and "tts_opt" not in served
        text = (await http.get("/metrics")).text
    counted = metric(text, "tts_degraded_requests_total", profile=PRIMARY, fallback=FALLBACK)
    assert counted == 2


async def test_a_request_the_primary_cannot_take_goes_to_the_fallback_then_429(tmp_path: Path):
    gates = {"ballast-1": asyncio.Event(), "ballast-2": asyncio.Event()}
    pool = engines(**gates)
    graphs = write_artifacts(tmp_path / "graphs", fan_in_artifact(100), single_artifact(2))
    app, _ = make_app(
        graphs,
        pool,
        config(
            limits={"max_concurrent_node_calls": 4, "max_n": 2},
            degradation={"fallbacks": {PRIMARY: FALLBACK}},  # no thresholds
        ),
    )
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        body = chat(PRIMARY)
        first = asyncio.create_task(http.post("/v1/chat/completions", json=chat("ballast-1", n=2)))
        assert await eventually(lambda: pool["ballast-1"].started)
        served = await http.post("/v1/chat/completions", json=body)  # 2 + 3 > 4, 2 + 1 fits
        assert served.status_code == 200 and served.json()["tts_opt"]["degraded_from"] == PRIMARY
        second = asyncio.create_task(http.post("/v1/chat/completions", json=chat("ballast-2", n=2)))
        assert await eventually(lambda: pool["ballast-2"].started)
        refused = await http.post("/v1/chat/completions", json=body)  # 4 in flight: none fits
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        for gate in gates.values():
            gate.set()
        assert [(await t).status_code for t in (first, second)] == [200, 200]
        served = await http.post("/v1/chat/completions", json=body)
        assert served.status_code == 200 and served.json()["model"] == PRIMARY

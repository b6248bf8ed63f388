"""(c) Long prompts: does tokenizing a long prompt stall the server's other streams?

`tts-opt serve` with Gemma in-process. Short streaming requests (the pool model, greedy, 32
tokens) are timed alone, then while other clients keep sending prompts of about 8k tokens. The
server tokenizes each long prompt and refuses it (the config's `max_prompt_tokens` is below it),
so the engine does no extra work: a change in the short requests' time to first token or in the
gaps between their chunks is the front end's. Rounds alternate (alone, with long prompts) so a
drift of the shared machine falls on both. Reports medians and p99s and their ratios.

    python bench/long_prompts.py [--short 24] [--rounds 4] [--long-clients 2]
        [--prompt-words 8000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec
import openai
from server import (
    START_TIMEOUT_S,
    EngineSettings,
    inprocess_engine,
    tts_config,
    write_graphs,
)
from server_load import free_port, process, wait_ready

from tts_opt.evaluation.stats import percentile

MODEL = "gemma-3-270m"
PROMPT_LIMIT = 4096


class Timings(msgspec.Struct):
    first_token_s: list[float] = msgspec.field(default_factory=list)
    max_gap_s: list[float] = msgspec.field(default_factory=list)
    refused_s: list[float] = msgspec.field(default_factory=list)  # the long prompts' 400s


async def short_request(client: openai.AsyncOpenAI, i: int, timings: Timings) -> None:
    start = time.perf_counter()
    arrivals: list[float] = []
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"Count from {i} to {i + 40}:"}],
        max_tokens=32,
        temperature=0.0,
        stream=True,
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter())
    if arrivals:
        timings.first_token_s.append(arrivals[0] - start)
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        timings.max_gap_s.append(max(gaps, default=0.0))


async def long_prompts(url: str, words: int, stop: asyncio.Event, timings: Timings) -> None:
    text = " ".join(f"word{i % 97}" for i in range(words))
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        while not stop.is_set():
            # A new prompt each time: a repeated one could be served from a tokenizer cache.
            content = f"{len(timings.refused_s)} {time.perf_counter()} {text}"
            body = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
            start = time.perf_counter()
            response = await http.post("/v1/chat/completions", json={**body, "max_tokens": 8})
            if response.status_code != 400:
                raise RuntimeError(f"a long prompt was not refused: {response.status_code}")
            timings.refused_s.append(time.perf_counter() - start)


async def measure(url: str, args: argparse.Namespace) -> dict[str, Timings]:
    results = {"alone": Timings(), "with long prompts": Timings()}
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0) as client:
        for i in range(2):  # warm-up: the first requests pay for lazy initialisation
            await short_request(client, i, Timings())
        for _ in range(args.rounds):
            for name, timings in results.items():
                stop = asyncio.Event()
                loaders = [
                    asyncio.create_task(long_prompts(url, args.prompt_words, stop, timings))
                    for _ in range(args.long_clients if name != "alone" else 0)
                ]
                for i in range(args.short):
                    await short_request(client, i, timings)
                stop.set()
                await asyncio.gather(*loaders)
    return results


def report(results: dict[str, Timings]) -> None:
    alone, loaded = results["alone"], results["with long prompts"]
    print(f"{'':<20} {'TTFT p50':>9} {'TTFT p99':>9} {'max gap p50':>12} {'max gap p99':>12}")
    for name, t in results.items():
        print(
            f"{name:<20} {statistics.median(t.first_token_s) * 1e3:>7.1f}ms "
            f"{percentile(t.first_token_s, 99) * 1e3:>7.1f}ms "
            f"{statistics.median(t.max_gap_s) * 1e3:>10.1f}ms "
            f"{percentile(t.max_gap_s, 99) * 1e3:>10.1f}ms"
        )
    ratio = statistics.median(loaded.first_token_s) / statistics.median(alone.first_token_s)
    gap = statistics.median(loaded.max_gap_s) / statistics.median(alone.max_gap_s)
    print(f"ratios with/without long prompts: TTFT p50 {ratio:.2f}, max gap p50 {gap:.2f}")
    refused = loaded.refused_s
    print(
        f"long prompts refused: {len(refused)}, "
        f"p50 {statistics.median(refused) * 1e3:.1f} ms each (tokenize + 400)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=24, help="short requests per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--long-clients", type=int, default=2)
    parser.add_argument("--prompt-words", type=int, default=8000, help="about a token each")
    args = parser.parse_args()
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))

    from tts_opt.engines.specs import model_spec
    from tts_opt.models import pull

    path = pull([MODEL])[MODEL]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        graphs = write_graphs(directory / "graphs", model_spec(MODEL))
        engine = inprocess_engine(MODEL, path, EngineSettings(max_model_len=8192))
        config = tts_config(directory, port, engine)
        config.write_text(
            config.read_text().replace(
                "[limits]\n", f"[limits]\nmax_prompt_tokens = {PROMPT_LIMIT}\n"
            )
        )
        command = [str(Path(sys.executable).with_name("tts-opt")), "serve", "--graphs"]
        server = stack.enter_context(process([*command, str(graphs), "--config", str(config)]))
        wait_ready(server, f"{url}/ready", START_TIMEOUT_S)
        results = await measure(url, args)
    report(results)


if __name__ == "__main__":
    asyncio.run(main())

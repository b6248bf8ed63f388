"""`serve()` as an operator runs it: a process on uvicorn whose engines are remote OpenAI-compatible
endpoints (here: a second tts-opt serving scripted engines directly), reloading on SIGHUP and
draining requests in flight on SIGTERM; and its refusal to start on bad input."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import httpx
import openai
import pytest
from server_support import (
    LARGE,
    QUESTION,
    SMALL,
    eventually,
    fan_in_artifact,
    make_app,
    scripted_engines,
    serving,
    single_artifact,
    write_artifacts,
)
from vllm_server import free_port

from tts_opt.cli.serve_command import serve
from tts_opt.server.errors import SetupError

SERVE = "import sys; from pathlib import Path; from tts_opt.cli.serve_command import serve; " \
    "serve(Path(sys.argv[1]), Path(sys.argv[2]), port=int(sys.argv[3]))"  # fmt: skip


def engines_toml(upstream: str) -> str:
    return "".join(
        f'[[engines]]\nkind = "openai"\nmodel = "{model}"\nbase_url = "{upstream}/v1"\n'
        for model in (SMALL, LARGE)
    )


async def test_serve_reloads_on_sighup_and_drains_on_sigterm(tmp_path: Path):
    upstream_engines = scripted_engines()
    upstream_app, _ = make_app(
        write_artifacts(tmp_path / "up", single_artifact(2)), upstream_engines
    )
    async with serving(upstream_app) as upstream:
        config = tmp_path / "server.toml"
        config.write_text('api_keys = ["sk-test"]\ndrain_timeout_s = 20\n' + engines_toml(upstream))
        graphs = write_artifacts(tmp_path / "graphs", fan_in_artifact(100))
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SERVE, str(graphs), str(config), str(port)
        )
        url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=url) as http:

                async def ready() -> bool:
                    try:
                        return (await http.get("/ready")).status_code == 200
                    except httpx.TransportError:
                        return False

                for _ in range(300):
                    if await ready():
                        break
                    await asyncio.sleep(0.1)
                client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0)
                answer = await client.chat.completions.create(model="math", messages=QUESTION)
                assert answer.choices[0].message.content.startswith("answer 0 to Q: What")
                assert answer.usage.completion_tokens > 0  # reported by the remote engines

                write_artifacts(graphs, single_artifact(2))
                process.send_signal(signal.SIGHUP)

                async def reloaded() -> bool:
                    models = await client.models.list()
                    return "math@2" in {m.id for m in models.data}

                for _ in range(100):
                    if await reloaded():
                        break
                    await asyncio.sleep(0.05)
                assert await reloaded()

                upstream_engines[LARGE].first_token_delay_s = 1.0
                in_flight = asyncio.create_task(
                    client.chat.completions.create(model="math@100", messages=QUESTION)
                )
                assert await eventually(lambda: upstream_engines[LARGE].in_flight)
                process.send_signal(signal.SIGTERM)
                answer = await in_flight  # drained, not dropped
                assert answer.choices[0].message.content
            # uvicorn re-raises the signal once it has shut down gracefully.
            assert await asyncio.wait_for(process.wait(), 20) in (0, -signal.SIGTERM)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


def test_serve_refuses_to_start_with_its_problem_named(tmp_path: Path):
    graphs = write_artifacts(tmp_path / "graphs", single_artifact(2))
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nrequest_timeout_s = -1\n")
    with pytest.raises(SetupError, match="request_timeout_s"):
        serve(graphs, bad)
    with pytest.raises(SetupError, match="no graph artifacts"):
        serve(tmp_path, None)
    with pytest.raises(SetupError, match=f"cannot serve the models {SMALL}"):
        serve(graphs, None)  # a paper model is neither configured nor embedded

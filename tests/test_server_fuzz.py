"""API fuzzing with hypothesis: arbitrary and mutated requests never get a 500 or hang.

Every answer must be a success or an OpenAI-shaped error with a 4xx status; a request that does
not finish within the client timeout fails the test (a hang). Bounded in count and time.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from server_support import (
    SMALL,
    fan_in_artifact,
    make_app,
    scripted_engines,
    serving_in_thread,
    single_artifact,
    write_artifacts,
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = (
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
    "temperature", "top_p", "n", "seed", "stop", "tools", "logprobs", "logit_bias",
    "presence_penalty", "response_format", "tts_opt",
)  # fmt: skip
plausible = {
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "max_tokens": st.integers(-2, 50),
    "n": st.integers(-1, 20),
    "temperature": st.floats(-1, 3),
    "stop": st.text(max_size=3) | st.lists(st.text(max_size=3), max_size=3),
    "tts_opt": st.fixed_dictionaries(
        {}, optional={"trace": st.booleans(), "profile": st.sampled_from(["math@2", "y"])}
    ),
    "seed": st.integers(-(2**63), 2**64),
}
valid_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "developer"]), "content": st.text(max_size=40)}
)
last_message = st.fixed_dictionaries({"role": st.just("user"), "content": st.text(max_size=40)})
odd_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["assistant", "tool"]) | st.text(), "content": json_values},
    optional={"name": json_values, "tool_calls": json_values},
)


def mostly(usual: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """`usual` four times in five: enough well-formed requests get through to run."""
    return st.integers(0, 4).flatmap(lambda k: odd if k == 0 else usual)


@st.composite
def chat_requests(draw) -> dict:
    """A well-formed request, mostly, with a few fields set to plausible or arbitrary values."""
    body = {
        "model": draw(mostly(st.sampled_from(["math", "math@100", "math@2", SMALL]), st.text())),
        "messages": [
            *draw(st.lists(mostly(valid_message, odd_message), max_size=2)),
            draw(mostly(last_message, odd_message)),
        ],
    }
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        body[field] = draw(mostly(plausible.get(field, json_values), json_values))
    return body


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory):
    graphs = write_artifacts(
        Path(tmp_path_factory.mktemp("fuzz")), fan_in_artifact(100), single_artifact(2)
    )
    app, _ = make_app(graphs, scripted_engines())
    with serving_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def check(response: httpx.Response) -> None:
    event(f"status {response.status_code}")
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and isinstance(error["type"], str)
    elif response.headers["content-type"].startswith("text/event-stream"):
        assert response.text.endswith("data: [DONE]\n\n")
        lines = response.text.splitlines()
        frames = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
        assert frames and not any("error" in frame for frame in frames)
    else:
        assert response.json()["choices"]


def post(http: httpx.Client, content: bytes) -> httpx.Response:
    headers = {"content-type": "application/json"}
    return http.post("/v1/chat/completions", content=content, headers=headers)


@FUZZ
@given(body=chat_requests())
def test_mutated_chat_requests_never_fail_the_server(http: httpx.Client, body: dict) -> None:
    check(post(http, json.dumps(body).encode()))


@FUZZ
@given(body=json_values)
def test_arbitrary_json_bodies_get_400(http: httpx.Client, body: object) -> None:
    response = post(http, json.dumps(body).encode())
    assert response.status_code == 400, response.text
    check(response)


@FUZZ
@given(content=st.binary(max_size=200))
def test_arbitrary_bytes_get_a_client_error(http: httpx.Client, content: bytes) -> None:
    check(post(http, content))


@settings(FUZZ, max_examples=50)
@given(model=st.text(min_size=1, max_size=30))
def test_model_lookup_never_fails_the_server(http: httpx.Client, model: str) -> None:
    response = http.get(f"/v1/models/{quote(model, safe='')}")
    assert response.status_code in (200, 404), response.text

"""agent.serve as people use it: a real server process, called through the official openai SDK and
raw HTTP, in front of the fake completions server (a real HTTP server that speaks llama.cpp's API).

Covered: the models list, chat and text completions (plain and streamed), usage and the treeloop
extension, the live tree endpoints, bad requests in OpenAI's error format, the bearer key, 429 with
Retry-After when every slot and queue place is taken, a client that disconnects cancelling its
search (the model server stops receiving requests for it), and the Prometheus metrics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from agent.fakes import FakeServer
from servers.process import free_port

KEY = "test-key-123"
QUESTION = "Ann has 2 apples and buys 3 more. How many apples does she have?"


@dataclass
class Served:
    url: str
    fake: FakeServer
    process: subprocess.Popen[str]

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=60)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with FakeServer(0.05, 8) as fake, log.open("w") as stderr:
        port = free_port()
        env = dict(
            os.environ, AGENT_SERVE__API_KEY=KEY, AGENT_SERVE__MAX_CONCURRENT="2", AGENT_SERVE__MAX_QUEUE="1"
        )
        cmd = [
            sys.executable,
            "-m",
            "agent.serve",
            "--url",
            fake.url,
            "--backend",
            "llamacpp",
            "--port",
            str(port),
        ]
        process = subprocess.Popen(cmd, env=env, stderr=stderr, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"agent.serve did not start: {process.stderr.read() if process.stderr else ''}"
                    )
                time.sleep(0.1)
            yield Served(url, fake, process)
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_models_and_health(served: Served) -> None:
    ids = [m.id for m in served.client().models.list()]
    assert ids == ["treeloop-greedy", "treeloop-sc", "treeloop-rerank", "treeloop-mcts"]
    health = httpx.get(f"{served.url}/health").json()  # no key needed
    assert health["status"] == "ok" and health["capacity"] == 3


def test_chat_completion_with_a_search(served: Served) -> None:
    reply = served.client().chat.completions.create(
        model="treeloop-mcts",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": QUESTION}],
        extra_body={"simulations": 8, "critics": "arithmetic"},
    )
    assert reply.object == "chat.completion" and reply.model == "treeloop-mcts"
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].message.content
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens > 0
    ext = reply.model_extra["treeloop"]
    assert ext["method"] == "mcts" and ext["tree_id"] == reply.id and ext["requests"] > 1
    assert set(ext["selector_answers"]) >= {"greedy", "vote"}

    tree = httpx.get(f"{served.url}/trees/{reply.id}.json", headers=served.headers()).json()
    assert tree["status"] == "done" and tree["question"] == QUESTION and tree["simulations"] >= 8
    assert len(tree["nodes"]) > 1 and tree["nodes"][0]["parent"] is None
    page = httpx.get(f"{served.url}/trees/{reply.id}", headers=served.headers())
    assert page.status_code == 200 and f"/trees/{reply.id}.json" in page.text and "<script" in page.text
    listed = httpx.get(f"{served.url}/trees", headers=served.headers()).json()["data"]
    assert any(t["id"] == reply.id and t["status"] == "done" for t in listed)


def test_text_completion_and_its_stream_agree(served: Served) -> None:
    client = served.client()
    plain = client.completions.create(model="treeloop-greedy", prompt=QUESTION)
    assert plain.object == "text_completion" and plain.choices[0].text
    answer = plain.model_extra["treeloop"]["answer"]
    assert answer is None or answer in plain.choices[0].text
    chunks = list(client.completions.create(model="treeloop-greedy", prompt=QUESTION, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_streamed_search_reports_progress_then_the_solution(served: Served) -> None:
    stream = served.client().chat.completions.create(
        model="treeloop-mcts",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"simulations": 48, "workers": 1},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    progress = [
        c.model_extra["treeloop"]["progress"]
        for c in chunks
        if "progress" in (c.model_extra or {}).get("treeloop", {})
    ]
    assert progress[0]["simulations"] == 0 and len(progress) >= 2
    assert progress[-1]["simulations"] > 0  # the search was seen growing
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.strip()
    last_choice = [c for c in chunks if c.choices][-1]
    assert last_choice.choices[0].finish_reason == "stop" and last_choice.model_extra["treeloop"]["tree_id"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (
            {"model": "treeloop-mcts", "messages": [{"role": "user", "content": "x"}], "simulations": 0},
            400,
            "simulations",
        ),
        (
            {"model": "treeloop-mcts", "messages": [{"role": "user", "content": "x"}], "preset": "huge"},
            400,
            "preset",
        ),
        ({"model": "treeloop-sc", "messages": [{"role": "user", "content": "x"}], "n": "many"}, 400, "n"),
        (
            {"model": "treeloop-sc", "messages": [{"role": "user", "content": "x"}], "critics": "oracle"},
            400,
            "critics",
        ),
        (
            {"model": "treeloop-sc", "messages": [{"role": "user", "content": "x"}], "prompt_variant": "?"},
            400,
            "prompt_variant",
        ),
        ({"model": "treeloop-sc", "messages": []}, 400, "messages"),
        ({"model": "treeloop-sc", "messages": [{"role": "system", "content": "hi"}]}, 400, "messages"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}, 404, "model"),
        ({"messages": [{"role": "user", "content": "x"}]}, 400, "model"),
    ],
)
def test_bad_requests_name_the_field(
    served: Served, body: dict[str, object], status: int, param: str
) -> None:
    r = httpx.post(f"{served.url}/v1/chat/completions", json=body, headers=served.headers())
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"] and error["type"] == "invalid_request_error"


def test_bad_json_and_several_prompts(served: Served) -> None:
    r = httpx.post(f"{served.url}/v1/completions", content=b"{not json", headers=served.headers())
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="one prompt"):
        served.client().completions.create(model="treeloop-greedy", prompt=["a", "b"])


def test_the_key_is_required_and_checked(served: Served) -> None:
    with pytest.raises(openai.AuthenticationError):
        served.client(key="wrong").models.list()
    r = httpx.post(f"{served.url}/v1/chat/completions", json={"model": "treeloop-greedy", "messages": []})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{served.url}/trees").status_code == 401
    assert KEY not in (httpx.get(f"{served.url}/metrics").text)


def _slow_search(served: Served, timeout: float) -> httpx.Response:
    body = {"model": "treeloop-mcts", "messages": [{"role": "user", "content": QUESTION}], "simulations": 400}
    # the paper's wide preset keeps requesting for all 400 simulations; a narrow cpu-small tree on
    # the fake model saturates and finishes its revisits without requests, in well under a second
    body |= {"workers": 1, "preset": "gsm8k-small"}
    return httpx.post(
        f"{served.url}/v1/chat/completions", json=body, headers=served.headers(), timeout=timeout
    )


def _quiet(served: Served) -> int:
    """Wait until the fake model server has received no request for a second; return its count."""
    deadline = time.monotonic() + 20
    last = served.fake.stats().requests
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = served.fake.stats().requests
        if now == last:
            return now
        last = now
    raise AssertionError("the model server kept receiving requests")


def test_a_client_that_disconnects_cancels_its_search(served: Served) -> None:
    _quiet(served)
    before = served.fake.stats().requests
    with pytest.raises(httpx.ReadTimeout):
        _slow_search(served, timeout=1.5)
    settled = _quiet(served)
    assert settled > before  # it was searching
    assert settled - before < 60  # and stopped long before 400 simulations' worth of requests
    time.sleep(1.0)
    assert served.fake.stats().requests == settled
    assert httpx.get(f"{served.url}/health").json()["running"] == 0
    metrics = httpx.get(f"{served.url}/metrics").text
    assert 'treeloop_requests_total{model="treeloop-mcts",status="cancelled"}' in metrics


def test_a_streaming_client_that_disconnects_cancels_its_search(served: Served) -> None:
    _quiet(served)
    before = served.fake.stats().requests
    body = {"model": "treeloop-mcts", "messages": [{"role": "user", "content": QUESTION}], "simulations": 400}
    body |= {"workers": 1, "stream": True}
    with httpx.stream("POST", f"{served.url}/v1/chat/completions", json=body, headers=served.headers()) as r:
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"
        time.sleep(1.0)
    settled = _quiet(served)
    assert 0 < settled - before < 60
    assert httpx.get(f"{served.url}/health").json()["running"] == 0


def test_a_full_queue_answers_429_with_retry_after(served: Served) -> None:
    import concurrent.futures

    _quiet(served)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(_slow_search, served, 3.0) for _ in range(6)]
        results = []
        for f in futures:
            try:
                results.append(f.result())
            except httpx.ReadTimeout:
                results.append(None)  # admitted, still searching when the client gave up
    busy = [r for r in results if r is not None and r.status_code == 429]
    assert len(busy) == 3  # 2 running + 1 queued were admitted
    assert all(
        r.headers["retry-after"] == "2" and r.json()["error"]["code"] == "rate_limit_exceeded" for r in busy
    )
    _quiet(served)
    assert httpx.get(f"{served.url}/health").json()["running"] == 0
    assert 'treeloop_errors_total{type="rate_limit_error"} 3.0' in httpx.get(f"{served.url}/metrics").text


def test_metrics(served: Served) -> None:
    served.client().chat.completions.create(
        model="treeloop-sc", messages=[{"role": "user", "content": QUESTION}]
    )
    text = httpx.get(f"{served.url}/metrics").text
    assert 'treeloop_requests_total{model="treeloop-sc",status="ok"}' in text
    assert 'treeloop_tokens_total{kind="completion"}' in text
    assert "treeloop_solve_seconds_bucket" in text and "treeloop_queue_depth" in text


def test_a_failing_model_server_is_a_502_in_the_openai_format() -> None:
    """In process (FastAPI's TestClient runs the app's lifespan): the policy's server refuses every
    request; the plain reply is a 502 naming the model server, the stream ends with an error event."""
    from fastapi.testclient import TestClient

    from agent.clients import Endpoint, RetryPolicy
    from agent.errors import EndpointRejected
    from agent.fakes.backend import FunctionBackend
    from agent.prompts import get_format
    from agent.runtime import Policy
    from agent.serve import create_app
    from agent.settings import load_settings

    def refuse(call: int) -> EndpointRejected:
        return EndpointRejected("HTTP 400: bad grammar", url="fake://backend", status=400)

    backend = FunctionBackend(lambda prompt, sampling, index: "x", fail=refuse)
    policy = Policy(
        endpoint=Endpoint(backend, retry=RetryPolicy(attempts=1)), fmt=get_format("chatml"), embedded=False
    )
    body = {"model": "treeloop-sc", "messages": [{"role": "user", "content": QUESTION}]}
    with TestClient(create_app(load_settings(), policy=policy)) as client:
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 502 and r.json()["error"]["type"] == "server_error"
        assert (
            "the model server failed" in r.json()["error"]["message"]
            and "bad grammar" in r.json()["error"]["message"]
        )
        events = [
            line
            for line in client.post("/v1/chat/completions", json=body | {"stream": True}).text.splitlines()
            if line
        ]
        assert json.loads(events[-2][6:])["error"]["type"] == "server_error" and events[-1] == "data: [DONE]"
        metrics = client.get("/metrics").text
        assert 'treeloop_requests_total{model="treeloop-sc",status="error"} 2.0' in metrics

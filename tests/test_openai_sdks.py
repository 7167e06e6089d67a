"""OpenAI-compatible endpoints (issue 21 item 1), Python target: the OFFICIAL OpenAI Python SDK
pointed at the rendered service's /v1 with a caller key as its api_key: a chat, a stream, a
tool-call round trip, response_format with a JSON schema, embeddings, the models list, errors in
OpenAI's shape. The official Node SDK (npm `openai`, the Worker's own version, installed from
the shared npm cache into a scratch folder) runs the same six against the same service. And POST /feedback (item 2): the loopback fake Cloudflare API receives exactly
the documented PATCH, valid against the spec extract.

Everything over real HTTP: `python -m demo_svc serve` (uvicorn) in front of the loopback fake
gateway; the upstream bodies the fake received are asserted field by field.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import httpx
import openai
import openai_sdk_checks as checks
import pytest
from cases import (
    NODE_SDK_ANSWERS,
    NODE_SDK_CLIENT,
    NODE_SDK_FIRST_BODY,
    NODE_SDK_TOOL_CALL,
)
from conftest import ACCOUNT_ID, TEMPLATE_ROOT, render
from fake_cloudflare_api import TOKEN, FakeCloudflareAPI, body_problems
from testkit import FakeGateway, ServiceProcess, run

SERVICE_KEY = "svc-key-canary-v1-77a0"
GATEWAY_TOKEN = "tok-gw-canary-v1-19c3"
MODELS = "gpt-4o-mini,text-embedding-3-small,@cf/baai/bge-small-en-v1.5"
ALICE_KEY = "alice-key-canary-v1-5b2e"  # callers.toml: alice may name gpt-4o-mini only


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("v1") / "svc", language="python-app",
                  gateway_id="demo-gw", providers=["workers-ai"])


@pytest.fixture(scope="module")
def gateway():
    with FakeGateway() as fake:
        yield fake


@pytest.fixture(scope="module")
def cloudflare_api():
    with FakeCloudflareAPI() as api:
        api.seed(id="demo-gw")
        yield api


@pytest.fixture(scope="module")
def service_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("v1-log") / "service.log"


@pytest.fixture(scope="module")
def service(project, gateway, cloudflare_api, service_log):
    """The service on a free port; yields its base URL."""
    log = service_log
    callers = log.parent / "callers.toml"
    digest = hashlib.sha256(ALICE_KEY.encode()).hexdigest()
    callers.write_text(f'[callers.alice]\nkey_sha256 = "{digest}"\nmodels = ["gpt-4o-mini"]\n')
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CF_", "CLOUDFLARE_", "AI_GATEWAY_", "OPENAI_", "SERVICE_"))}
    env.update(PYTHONPATH=str(project / "src"), CLOUDFLARE_ACCOUNT_ID=ACCOUNT_ID,
               AI_GATEWAY_BASE_URL=gateway.url, CF_AIG_TOKEN=GATEWAY_TOKEN,
               SERVICE_API_KEY=SERVICE_KEY, ALLOWED_MODELS=MODELS,
               CLOUDFLARE_API_BASE_URL=cloudflare_api.base_url, CLOUDFLARE_API_TOKEN=TOKEN,
               CALLERS_FILE=str(callers))
    with ServiceProcess(project, env, log) as running:
        yield running.url


def fresh(gateway: FakeGateway) -> None:
    """No requests recorded, a well-behaved gateway (the next answer's log id is LOG1)."""
    gateway.requests.clear()
    gateway.status = 200


@pytest.fixture
def client(service, gateway):
    fresh(gateway)
    with openai.OpenAI(base_url=f"{service}/v1", api_key=SERVICE_KEY, max_retries=0,
                       timeout=30) as sdk:
        yield sdk


def test_a_chat_goes_through_as_sent_and_comes_back_in_openais_shape(client, gateway):
    checks.chat(client, gateway)
    headers = gateway.requests[0].headers
    assert headers["cf-aig-metadata"] == json.dumps(checks.IDENTITY)
    assert headers["cf-aig-authorization"] == f"Bearer {GATEWAY_TOKEN}"


def test_a_stream_passes_the_chunks_through_and_ends_with_done(client, gateway):
    checks.stream(client, gateway)


def test_the_raw_stream_is_the_gateways_events_then_done(service, gateway):
    fresh(gateway)
    answer = httpx.post(f"{service}/v1/chat/completions", timeout=30,
                        headers={"authorization": f"Bearer {SERVICE_KEY}"},
                        json={"model": "gpt-4o-mini", "stream": True,
                              "messages": [{"role": "user", "content": "Hi"}]})

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = answer.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert [c["choices"][0]["delta"] for c in chunks if c["choices"]] == [
        {"content": "Hello"}, {"content": " there"}]
    assert chunks[-1]["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


def test_a_tool_call_round_trip(client, gateway):
    checks.tool_call_round_trip(client, gateway)


def test_tool_call_deltas_stream_through(client, gateway):
    checks.tool_call_deltas(client, gateway)


def test_response_format_with_a_json_schema(client, gateway):
    checks.response_format_json_schema(client, gateway)


def test_embeddings_from_openai_and_workers_ai(client, gateway):
    checks.openai_embeddings(client, gateway)
    workers_ai = client.embeddings.create(model="@cf/baai/bge-small-en-v1.5", input="hello",
                                          encoding_format="float")

    assert [d.embedding for d in workers_ai.data] == [[5.0, 0.5, -0.5]]
    assert checks.sent(gateway)[1] == (
        f"/v1/{ACCOUNT_ID}/demo-gw/workers-ai/v1/embeddings",
        {"model": "@cf/baai/bge-small-en-v1.5", "input": "hello", "encoding_format": "float"})


def test_the_models_list_is_the_allow_list(client):
    listed = client.models.list()

    assert [(m.id, m.owned_by) for m in listed.data] == [
        ("gpt-4o-mini", "openai"), ("text-embedding-3-small", "openai"),
        ("@cf/baai/bge-small-en-v1.5", "workers-ai")]


def test_a_caller_sees_and_names_only_its_own_models(service, gateway):
    fresh(gateway)
    with openai.OpenAI(base_url=f"{service}/v1", api_key=ALICE_KEY, max_retries=0) as alice:
        listed = [m.id for m in alice.models.list().data]
        alice.chat.completions.create(model="gpt-4o-mini",
                                      messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.BadRequestError) as refused:
            alice.embeddings.create(model="text-embedding-3-small", input="x")

    assert listed == ["gpt-4o-mini"]
    assert refused.value.body == {
        "message": 'model "text-embedding-3-small" is not allowed for caller "alice" '
                   "(callers.toml models)",
        "type": "invalid_request_error", "param": "model", "code": "bad_request"}
    [chat] = gateway.requests
    assert chat.headers["cf-aig-metadata"] == json.dumps({"caller": "alice",
                                                          "service": "demo-svc"})


def test_a_wrong_key_is_a_401_in_openais_shape(service, gateway):
    fresh(gateway)
    with openai.OpenAI(base_url=f"{service}/v1", api_key="wrong", max_retries=0) as sdk, \
            pytest.raises(openai.AuthenticationError) as refused:
        sdk.models.list()

    assert refused.value.status_code == 401
    assert refused.value.body == {"message": "send Authorization: Bearer <SERVICE_API_KEY>",
                                  "type": "authentication_error", "param": None,
                                  "code": "unauthorized"}
    assert gateway.requests == []


def test_a_model_off_the_allow_list_is_a_400_naming_the_param(client, gateway):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="o3-pro", messages=[{"role": "user", "content": "x"}])

    assert refused.value.body == {"message": 'model "o3-pro" is not allowed (ALLOWED_MODELS)',
                                  "type": "invalid_request_error", "param": "model",
                                  "code": "bad_request"}
    assert gateway.requests == []


def test_an_unknown_field_is_a_400_not_passed_on(service, gateway):
    fresh(gateway)
    answer = httpx.post(f"{service}/v1/chat/completions", timeout=30,
                        headers={"authorization": f"Bearer {SERVICE_KEY}"},
                        json={"model": "gpt-4o-mini", "store": True,
                              "messages": [{"role": "user", "content": "x"}]})

    assert (answer.status_code, answer.json()) == (400, {"error": {
        "message": "unknown field 'store'", "type": "invalid_request_error", "param": "store",
        "code": "bad_request"}})
    assert gateway.requests == []


def test_a_gateway_failure_is_a_502_without_its_body(client, gateway):
    gateway.status = 500
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="gpt-4o-mini",
                                       messages=[{"role": "user", "content": "x"}])

    assert failed.value.status_code == 502
    assert failed.value.body == {"message": "the gateway answered 500 (gateway log id LOG1)",
                                 "type": "api_error", "param": None, "code": "upstream"}


def test_chat_passes_temperature_and_response_format(service, gateway):
    fresh(gateway)
    response_format = {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": {"type": "object"}, "strict": True}}
    answer = httpx.post(f"{service}/chat", timeout=30,
                        headers={"authorization": f"Bearer {SERVICE_KEY}"},
                        json={"prompt": "Hi", "temperature": 0.3, "max_tokens": 20,
                              "response_format": response_format})

    assert answer.status_code == 200
    assert json.loads(answer.json()["reply"]) == {"answer": "Hello there"}
    assert gateway.requests[0].body == {
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 20, "temperature": 0.3, "response_format": response_format}


def test_a_callers_hang_up_closes_the_upstream_stream(service, gateway):
    fresh(gateway)
    before = gateway.hang_ups
    body = {"model": "gpt-4o-mini", "stream": True,
            "messages": [{"role": "user", "content": "trickle"}]}  # a delta every 0.1 s
    with httpx.stream("POST", f"{service}/v1/chat/completions", json=body, timeout=30,
                      headers={"authorization": f"Bearer {SERVICE_KEY}"}) as answer:
        first = next(answer.iter_lines())
    assert first.startswith("data: {")

    assert gateway.hung_up.wait(30), "the upstream stream was not closed"
    assert gateway.hang_ups == before + 1


def test_an_endless_answer_ends_at_max_upstream_bytes(client, gateway):
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="gpt-4o-mini",
                                       messages=[{"role": "user", "content": "endless"}])

    assert failed.value.status_code == 502
    assert failed.value.body["message"] == (
        "the gateway's answer is larger than 4194304 bytes (MAX_UPSTREAM_BYTES)")


def request_lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()
            if line.startswith('{"event": "request"')]


def test_each_v1_request_logs_one_line_like_chat(client, gateway, service_log):
    before = len(request_lines(service_log))
    client.chat.completions.create(model="gpt-4o-mini",
                                   messages=[{"role": "user", "content": "log me"}])

    def mine() -> list[dict]:  # (a stream hung up earlier may log its line late)
        return [line for line in request_lines(service_log)[before:] if not line["stream"]]

    give_up = time.monotonic() + 10
    while not mine() and time.monotonic() < give_up:
        time.sleep(0.05)
    [line] = mine()
    assert isinstance(line.pop("latency_ms"), float) and isinstance(line.pop("upstream_ms"), float)
    assert line == {"event": "request", "method": "POST", "route": "/v1/chat/completions",
                    "provider": "openai", "model": "gpt-4o-mini", "status": 200, "log_id": "LOG1",
                    "cache_status": "MISS", "caller": "default", "stream": False, "error": None,
                    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
    assert "log me" not in service_log.read_text() and SERVICE_KEY not in service_log.read_text()


def test_the_node_sdk_does_the_same_against_the_python_service(service, gateway, npm_env,
                                                             tmp_path):
    version = json.loads((TEMPLATE_ROOT / "includes" / "providers.jinja").read_text()
                         .split('"npm": {"openai": ', 1)[1].split("}", 1)[0])
    (tmp_path / "package.json").write_text('{"private": true, "type": "module"}')
    installed = run(["npm", "install", f"openai@{version}", "--prefer-offline", "--no-audit",
                     "--no-fund"], tmp_path, npm_env, timeout=300)
    assert installed.returncode == 0, installed.output
    shutil.copy(NODE_SDK_CLIENT, tmp_path / "client.mjs")
    fresh(gateway)
    env = {**npm_env, "BASE_URL": f"{service}/v1", "API_KEY": SERVICE_KEY,
           "TOOL": json.dumps(checks.WEATHER)}
    result = run(["node", "client.mjs"], tmp_path, env, timeout=120)

    assert result.returncode == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1]) == {
        **NODE_SDK_ANSWERS,
        "models": ["gpt-4o-mini", "text-embedding-3-small", "@cf/baai/bge-small-en-v1.5"]}
    assert gateway.requests[0].body == NODE_SDK_FIRST_BODY
    assert gateway.requests[3].body["messages"][1] == NODE_SDK_TOOL_CALL


# --- POST /feedback ---------------------------------------------------------------------------

def test_feedback_is_the_documented_patch_of_the_log(service, cloudflare_api):
    before = len(cloudflare_api.requests)
    answer = httpx.post(f"{service}/feedback", timeout=30,
                        headers={"authorization": f"Bearer {SERVICE_KEY}"},
                        json={"log_id": "01JADMCQQQBWH3NXZ5GCRN98DP", "score": 90, "feedback": 1})

    assert (answer.status_code, answer.json()) == (200, {"log_id": "01JADMCQQQBWH3NXZ5GCRN98DP"})
    [patch] = cloudflare_api.requests[before:]
    path = f"/accounts/{ACCOUNT_ID}/ai-gateway/gateways/demo-gw/logs/01JADMCQQQBWH3NXZ5GCRN98DP"
    assert (patch.method, patch.path, patch.body) == ("PATCH", f"/client/v4{path}",
                                                      {"score": 90, "feedback": 1})
    assert {k.lower(): v for k, v in patch.headers.items()}["authorization"] == f"Bearer {TOKEN}"
    assert body_problems("PATCH", path, patch.body) == []
    assert patch.status == 200


def test_feedback_for_a_log_the_api_does_not_know_is_a_502(service, cloudflare_api):
    cloudflare_api.add_fault(method="PATCH", status=404, body={
        "success": False, "errors": [{"code": 7002, "message": "Not Found"}], "messages": [],
        "result": None})
    answer = httpx.post(f"{service}/feedback", timeout=30,
                        headers={"authorization": f"Bearer {SERVICE_KEY}"},
                        json={"log_id": "01JNOSUCHLOG", "feedback": -1})

    assert (answer.status_code, answer.json()) == (502, {
        "error": "the Cloudflare API answered 404 to the feedback for log 01JNOSUCHLOG"
                 " (code 7002: Not Found)"})


@pytest.mark.parametrize(("body", "message"), [
    ({"log_id": "L1", "score": 101}, '"score" must be a number from 0 to 100'),
    ({"log_id": "L1", "feedback": 0}, '"feedback" must be -1 or 1'),
    ({"log_id": "L1"}, 'send "score" (0 to 100), "feedback" (-1 or 1) or both'),
    ({"log_id": "a/../b", "score": 1}, '"log_id" must be a gateway log id (cf-aig-log-id)'),
])
def test_a_bad_feedback_body_is_a_400_and_nothing_is_sent(service, cloudflare_api, body, message):
    before = len(cloudflare_api.requests)
    answer = httpx.post(f"{service}/feedback", timeout=30, json=body,
                        headers={"authorization": f"Bearer {SERVICE_KEY}"})

    assert (answer.status_code, answer.json()) == (400, {"error": message})
    assert cloudflare_api.requests[before:] == []

"""OpenAI-compatible endpoints (issue 21 item 1), Worker target: the OFFICIAL OpenAI Python SDK
pointed at the rendered Worker's /v1 (`wrangler dev --local`) with a caller key as its api_key,
in front of the loopback fake gateway: a chat, a stream, a tool-call round trip, response_format
with a JSON schema, embeddings, the models list, a 401 in OpenAI's shape; the official Node SDK
the same (tests/openai_node_client.mjs, also run against Python); and POST /feedback
(item 2): the loopback fake Cloudflare API receives exactly the documented PATCH, valid against
the spec extract. The same cases as tests/test_openai_sdks.py (the Python service): one contract.
And `npm run eval` (item 3) against that Worker, the fake answering "Reply with exactly: X" with X.

One copy of the "unified-billing" variant (its npm install, shared through a node_modules
link), one `wrangler dev` for the module.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess

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
from conftest import ACCOUNT_ID
from fake_cloudflare_api import TOKEN, FakeCloudflareAPI, body_problems
from testkit import run
from worker_toolchain import (
    CI_VARIANT,
    FakeGateway,
    WranglerDev,
    copy_project,
    npm_group,
)

pytestmark = pytest.mark.xdist_group(npm_group(CI_VARIANT))  # its npm install, once per run

SERVICE_KEY = "svc-key-canary-w1-3f0a"
GATEWAY_TOKEN = "tok-gw-canary-w1-8d21"
MODELS = "gpt-4o-mini,text-embedding-3-small"


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
def worker_dir(worker_project, tmp_path_factory):
    """The module's copy of the Worker project (node_modules linked)."""
    project = worker_project(CI_VARIANT)
    return copy_project(project.path, tmp_path_factory.mktemp("v1") / "svc", project.path / "node_modules")


@pytest.fixture(scope="module")
def worker(worker_project, worker_dir, gateway, cloudflare_api):
    """The Worker under `wrangler dev --local`; yields its base URL."""
    project, path = worker_project(CI_VARIANT), worker_dir
    config = path / "wrangler.toml"
    text = re.sub(r'(?m)^ALLOWED_MODELS = ".*"$', f'ALLOWED_MODELS = "{MODELS}"', config.read_text())
    config.write_text(re.sub(r'(?m)^AI_GATEWAY_ID = ".*"$', 'AI_GATEWAY_ID = "demo-gw"', text))
    (path / ".dev.vars").write_text(f"CF_AIG_TOKEN={GATEWAY_TOKEN}\nSERVICE_API_KEY={SERVICE_KEY}\n")
    # wrangler dev reads from .dev.vars only the secrets the config requires; the feedback
    # token is optional (POST /feedback answers 500 naming it without), so it comes as a --var.
    variables = {"CLOUDFLARE_ACCOUNT_ID": ACCOUNT_ID, "AI_GATEWAY_BASE_URL": gateway.url,
                 "CLOUDFLARE_API_BASE_URL": cloudflare_api.base_url, "CLOUDFLARE_API_TOKEN": TOKEN}
    extra = [arg for name, value in variables.items() for arg in ("--var", f"{name}:{value}")]
    with WranglerDev(path, project.env, extra, path.parent / "dev.log") as dev:
        yield f"http://127.0.0.1:{dev.port}"


@pytest.fixture
def client(worker, gateway):
    gateway.requests.clear()
    gateway.status = 200
    with openai.OpenAI(base_url=f"{worker}/v1", api_key=SERVICE_KEY, max_retries=0,
                       timeout=30) as sdk:
        yield sdk


def test_a_chat_goes_through_as_sent(client, gateway):
    checks.chat(client, gateway)
    assert gateway.requests[0].headers["cf-aig-authorization"] == f"Bearer {GATEWAY_TOKEN}"


def test_a_stream_passes_the_chunks_through(client, gateway):
    checks.stream(client, gateway)


def test_a_tool_call_round_trip(client, gateway):
    checks.tool_call_round_trip(client, gateway)


def test_tool_call_deltas_stream_through(client, gateway):
    checks.tool_call_deltas(client, gateway)


def test_response_format_with_a_json_schema(client, gateway):
    checks.response_format_json_schema(client, gateway)


def test_embeddings(client, gateway):
    checks.openai_embeddings(client, gateway)
    assert len(gateway.requests) == 1


def test_the_models_list_is_the_allow_list(client):
    assert [(m.id, m.owned_by) for m in client.models.list().data] == [
        ("gpt-4o-mini", "openai"), ("text-embedding-3-small", "openai")]


def test_the_node_sdk_does_the_same(worker, worker_dir, worker_project, gateway, tmp_path):
    """The official Node SDK (npm `openai`: the project's own dependency, its node_modules)
    runs tests/openai_node_client.mjs, as tests/test_openai_sdks.py does against Python."""
    (tmp_path / "node_modules").symlink_to(worker_dir / "node_modules", target_is_directory=True)
    shutil.copy(NODE_SDK_CLIENT, tmp_path / "client.mjs")
    gateway.requests.clear()
    env = {**worker_project(CI_VARIANT).env, "BASE_URL": f"{worker}/v1", "API_KEY": SERVICE_KEY,
           "TOOL": json.dumps(checks.WEATHER)}
    result = run(["node", "client.mjs"], tmp_path, env, timeout=120)

    assert result.returncode == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1]) == {
        **NODE_SDK_ANSWERS, "models": ["gpt-4o-mini", "text-embedding-3-small"]}
    assert gateway.requests[0].body == NODE_SDK_FIRST_BODY
    assert gateway.requests[3].body["messages"][1] == NODE_SDK_TOOL_CALL


def test_a_wrong_key_is_a_401_in_openais_shape(worker, gateway):
    gateway.requests.clear()
    with (openai.OpenAI(base_url=f"{worker}/v1", api_key="wrong", max_retries=0) as sdk,
          pytest.raises(openai.AuthenticationError) as raised):
        sdk.models.list()
    assert raised.value.body == {"message": "send Authorization: Bearer <SERVICE_API_KEY>",
                                 "type": "authentication_error", "param": None,
                                 "code": "unauthorized"}
    assert gateway.requests == []


def test_feedback_is_the_documented_patch_of_the_log(worker, cloudflare_api):
    before = len(cloudflare_api.requests)
    answer = httpx.post(f"{worker}/feedback", timeout=30,
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


# --- npm run eval (issue 21 item 3) -----------------------------------------------------------

def run_eval(worker_dir, env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["node", "scripts/eval.mjs", *args], cwd=worker_dir, capture_output=True,
                          text=True, timeout=120, check=False, env={**env, "SERVICE_API_KEY": SERVICE_KEY})


@pytest.fixture
def echoing(gateway):
    """The fake answers X to "Reply with exactly: X" (deterministic replies for the evals)."""
    gateway.requests.clear()
    gateway.echo = True
    yield gateway
    gateway.echo = False


def test_npm_run_eval_passes_the_dataset_and_sends_feedback(worker, worker_dir, worker_project,
                                                             echoing, cloudflare_api):
    before = len(cloudflare_api.requests)
    done = run_eval(worker_dir, worker_project(CI_VARIANT).env, "--url", worker, "--feedback")

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["case", "scorer", "result", "log", "id"]
    assert "passed 5 of 5: 100% (threshold 80%)" in lines
    assert max(len(line) for line in lines) <= 80
    report = json.loads((worker_dir / "evals" / "report.json").read_text())
    assert (report["passed"], report["total"]) == (5, 5)
    assert all(case["feedback_sent"] for case in report["cases"])
    patches = cloudflare_api.requests[before:]
    assert [(p.method, p.body) for p in patches] == [("PATCH", {"score": 100, "feedback": 1})] * 5
    assert [r.path for r in echoing.requests] == [f"{checks.OPENAI}/chat/completions"] * 5


def test_npm_run_eval_exits_1_when_a_case_fails(worker, worker_dir, worker_project, echoing, tmp_path):
    dataset = tmp_path / "fail.jsonl"
    dataset.write_text('{"name": "nope", "prompt": "Reply with exactly: a", "expect": {"exact": "b"}}\n')
    done = run_eval(worker_dir, worker_project(CI_VARIANT).env, "--url", worker,
                    "--dataset", str(dataset), "--report", str(tmp_path / "r.json"))

    assert done.returncode == 1, done.stdout + done.stderr
    assert '  not exactly "b"' in done.stdout.splitlines()
    assert "passed 0 of 1: 0% (threshold 80%)" in done.stdout

    # CI's command (ci.yml; it passes there: tests/test_quick_start.py) fails the same way: its own
    # fake (scripts/fake_gateway.py --echo), its own `wrangler dev --local`, in a copy of the
    # project (its build must not touch the module's Worker), no SERVICE_API_KEY, no .dev.vars.
    copy = copy_project(worker_dir, tmp_path / "ci", worker_dir / "node_modules")
    env = {k: v for k, v in worker_project(CI_VARIANT).env.items() if k != "SERVICE_API_KEY"}
    ci = run(["npm", "run", "eval:fake", "--", "--dataset", str(dataset), "--report",
              str(tmp_path / "ci.json")], copy, env, timeout=300)

    assert ci.returncode == 1, ci.output
    assert '  not exactly "b"' in ci.output.splitlines()
    assert "passed 0 of 1: 0% (threshold 80%)" in ci.output
    assert json.loads((tmp_path / "ci.json").read_text())["cases"][0]["reply"] == "a"

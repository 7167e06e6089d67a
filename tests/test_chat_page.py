"""The chat page (question chat_page, default on) in a real headless browser, both targets.

Debian's Chromium (/usr/bin/chromium; tools/run_tests.py installs it when missing), driven
by Playwright's Python package with that executable (Playwright's own browser download is
never used). The page is served by the rendered Python service (`python -m demo_svc serve`,
uvicorn) and by the Worker (`wrangler dev --local`, the page from static assets), both in
front of the rendered project's own fake gateway (tests/fake_gateway.py), which streams the
reply one word every PAUSE seconds so that the page can be seen filling in.

One render per target (the Worker reuses the shared npm install of WORKER_VARIANT, and runs
on its xdist worker), one browser per xdist worker, one browser context per test. A screenshot of each target's page
after a streamed reply is kept in .cache/artifacts/ (git-ignored).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import ACCOUNT_ID, render
from testkit import ServiceProcess, load_module
from worker_toolchain import REPO, WranglerDev, npm_group

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / ".cache" / "artifacts"
# A Worker variant with caller_auth=api-key whose wrangler dev run is already part of the
# suite (test_worker_target.py): same npm install, same xdist worker, same caller key.
WORKER_VARIANT = "all-request-headers"
SERVICE_KEY = "svc-key"
REPLY = "The reply arrives one word at a time"
PAUSE = 0.15  # seconds between the fake gateway's stream events
LOG_ID = "01JTESTLOGID0000000000000"  # the fake gateway's cf-aig-log-id
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# The Worker's tests run on the xdist worker that holds WORKER_VARIANT's npm install.
TARGETS = ["python", pytest.param("worker", marks=pytest.mark.xdist_group(npm_group(WORKER_VARIANT)))]


@pytest.fixture(scope="module")
def python_project(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("chat-page") / "svc", language="python-app",
                  gateway_id="demo-gw")


@pytest.fixture(scope="module")
def gateway(python_project):
    """The rendered project's fake gateway, streaming REPLY word by word, PAUSE apart."""
    fake = load_module(python_project / "tests" / "fake_gateway.py", "chat_page_fake_gateway")
    with fake.FakeGateway(reply=REPLY, stream_pause=PAUSE) as running:
        yield running


@pytest.fixture(scope="module")
def python_url(python_project, gateway, tmp_path_factory):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CF_", "CLOUDFLARE_", "AI_GATEWAY_", "OPENAI_", "SERVICE_"))}
    env.update(PYTHONPATH=str(python_project / "src"), CLOUDFLARE_ACCOUNT_ID=ACCOUNT_ID,
               AI_GATEWAY_BASE_URL=gateway.url, CF_AIG_TOKEN="tok-gw", SERVICE_API_KEY=SERVICE_KEY)
    log = tmp_path_factory.mktemp("chat-page-python") / "service.log"
    with ServiceProcess(python_project, env, log) as service:
        yield f"http://127.0.0.1:{service.port}"


@pytest.fixture(scope="module")
def worker_url(worker_project, gateway, tmp_path_factory):
    project = worker_project(WORKER_VARIANT)
    extra = []
    for name, value in {"AI_GATEWAY_BASE_URL": gateway.url, "SERVICE_API_KEY": SERVICE_KEY,
                        "CF_AIG_TOKEN": "tok-gw", "OPENAI_API_KEY": "sk-openai"}.items():
        extra += ["--var", f"{name}:{value}"]
    log = tmp_path_factory.mktemp("chat-page-worker") / "wrangler-dev.log"
    with WranglerDev(project.path, project.env, extra, log) as dev:
        yield f"http://127.0.0.1:{dev.port}"


@pytest.fixture(params=TARGETS)
def service_url(request) -> str:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM.is_file(), (
        f"{CHROMIUM} is missing: run the tests with `python3 tools/run_tests.py` (it installs "
        "it), or `apt-get install chromium`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, service_url, gateway):
    """The chat page, freshly loaded in a context of its own; its console errors collected."""
    gateway.reset()
    gateway.reply, gateway.stream_pause = REPLY, PAUSE
    context = browser.new_context()
    opened = context.new_page()
    opened.console_errors = []
    opened.on("console", lambda m: m.type == "error" and opened.console_errors.append(m.text))
    opened.goto(service_url)
    yield opened
    context.close()


# Records every text the last reply shows, in order (a MutationObserver sees each change).
RECORD_REPLY = """() => {
  window.seen = [];
  const transcript = document.getElementById("transcript");
  new MutationObserver(() => {
    const text = transcript.querySelector(".assistant:last-child .text");
    if (text && window.seen.at(-1) !== text.textContent) window.seen.push(text.textContent);
  }).observe(transcript, { childList: true, subtree: true, characterData: true });
}"""


def send(page, key: str, prompt: str) -> None:
    page.fill("#key", key)
    page.fill("#prompt", prompt)
    page.click("#send")


def test_the_page_is_served_without_a_key_under_a_strict_csp(service_url):
    pages = {path: httpx.get(f"{service_url}{path}", timeout=30)
             for path in ("/", "/chat.js", "/chat.css")}

    assert {path: (r.status_code, r.headers["content-type"].replace(" ", "").lower())
            for path, r in pages.items()} == {
        "/": (200, "text/html;charset=utf-8"),
        "/chat.js": (200, "text/javascript;charset=utf-8"),
        "/chat.css": (200, "text/css;charset=utf-8"),
    }
    for answer in pages.values():
        assert answer.headers["content-security-policy"] == CSP
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
    assert '<script type="module" src="chat.js"></script>' in pages["/"].text
    assert "<style" not in pages["/"].text and "onclick" not in pages["/"].text


def test_the_page_loads_its_own_script_and_style_under_its_csp(page):
    page.wait_for_function("document.getElementById('key').value === ''")

    # chat.css applied (main is 46rem wide at most), chat.js ran, nothing refused.
    assert page.eval_on_selector("main", "m => getComputedStyle(m).maxWidth") == "736px"
    assert page.title() == "demo-svc: chat"
    assert page.console_errors == []


def test_the_reply_arrives_piece_by_piece_with_its_details(page, gateway, request):
    page.evaluate(RECORD_REPLY)
    send(page, SERVICE_KEY, "Say something")
    page.wait_for_selector(".assistant .details", timeout=30_000)
    seen = page.evaluate("window.seen")
    target = request.node.callspec.params["service_url"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"chat-page-{target}.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")

    assert seen[-1] == REPLY
    growing = [text for text in seen if text]
    assert all(REPLY.startswith(text) for text in growing), seen
    assert growing == sorted(set(growing), key=len), seen  # it only grows
    assert len(growing) >= 4, seen  # several states before the whole reply (8 words)
    details = {name: page.inner_text(f".assistant .details .{name}")
               for name in ("model", "log-id", "cache-status")}
    assert details == {"model": "model gpt-4o-mini", "log-id": f"log id {LOG_ID}",
                       "cache-status": "cache MISS"}
    assert page.query_selector(".assistant .error") is None
    sent = gateway.requests[-1].body
    assert (sent["stream"], sent["messages"][-1]) == (True, {"role": "user", "content": "Say something"})


def test_the_conversation_so_far_goes_with_the_next_message(page, gateway):
    gateway.stream_pause = 0  # only the streaming test needs to see the reply grow
    send(page, SERVICE_KEY, "First")
    page.wait_for_selector(".assistant .details")
    page.fill("#prompt", "Second")
    page.press("#prompt", "Enter")  # Enter sends too
    page.wait_for_selector(".assistant:nth-of-type(4) .details")

    roles = [(m["role"], m["content"]) for m in gateway.requests[-1].body["messages"]]
    assert roles == [("user", "First"), ("assistant", REPLY), ("user", "Second")]


def test_a_wrong_key_shows_a_readable_401(page, gateway):
    send(page, "not-the-key", "Hello")
    error = page.wait_for_selector(".assistant .error")

    assert error.inner_text() == (
        "401: wrong or missing key (send Authorization: Bearer <SERVICE_API_KEY>)")
    assert gateway.requests == []


def test_a_failing_gateway_shows_the_services_error_text(page, gateway, service_url):
    gateway.status = 500
    direct = httpx.post(f"{service_url}/chat", json={"prompt": "Hello", "stream": True},
                        headers={"authorization": f"Bearer {SERVICE_KEY}"}, timeout=30)
    send(page, SERVICE_KEY, "Hello")
    error = page.wait_for_selector(".assistant .error")

    assert direct.status_code == 502
    assert error.inner_text() == f"502: {direct.json()['error']}"


def test_the_key_is_kept_in_session_storage_only(page, gateway):
    gateway.stream_pause = 0
    send(page, SERVICE_KEY, "Hello")
    page.wait_for_selector(".assistant .details")
    stored = page.evaluate("[sessionStorage.getItem('caller-key'), localStorage.length]")
    page.reload()
    page.wait_for_function(f"document.getElementById('key').value === {json.dumps(SERVICE_KEY)}")

    assert stored == [SERVICE_KEY, 0]
    assert SERVICE_KEY not in page.url
    assert page.context.cookies() == []


@pytest.mark.standalone
def test_without_the_page_python_answers_get_root_as_before(tmp_path):
    project = render(tmp_path / "svc", language="python-app", chat_page=False)
    script = ("from fastapi.testclient import TestClient; from demo_svc.app import app; "
              "c = TestClient(app); print(json.dumps([c.get('/').status_code, c.get('/').json(), "
              "c.get('/', headers={'authorization': 'Bearer k'}).json()]))")
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "SERVICE_API_KEY": "k"}
    done = subprocess.run([sys.executable, "-c", f"import json; {script}"], env=env,
                          capture_output=True, text=True, check=False, timeout=120)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        401, {"error": "send Authorization: Bearer <SERVICE_API_KEY>"},
        {"error": "no route for GET /"}]
    assert not (project / "src/demo_svc/static").exists()
    assert not (project / "src/demo_svc/chat_page.py").exists()


@pytest.mark.standalone
def test_without_the_page_the_worker_has_no_assets(tmp_path):
    project = render(tmp_path / "wk", language="typescript-worker", chat_page=False)

    assert not (project / "public").exists()
    assert "assets" not in (project / "wrangler.toml").read_text()


@pytest.mark.standalone
def test_with_caller_auth_none_the_page_asks_for_no_key_and_jsonc_serves_it(tmp_path):
    project = render(tmp_path / "wk", language="typescript-worker", caller_auth="none",
                     wrangler_config="jsonc", environments=["staging", "production"])
    lines = [line for line in (project / "wrangler.jsonc").read_text().splitlines()
             if not line.lstrip().startswith("//")]
    config = json.loads("\n".join(lines))

    assert 'id="key"' not in (project / "public/index.html").read_text()
    assert config["assets"] == {"directory": "./public"}  # every env inherits it
    assert "assets" not in config["env"]["staging"]

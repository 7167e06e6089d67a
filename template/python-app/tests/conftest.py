from __future__ import annotations

import pytest

from fake_gateway import FakeGateway

ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
GATEWAY_TOKEN = "cf-aig-test-token"
OPENAI_KEY = "sk-test-openai-key"

# Variables the app reads; tests start from a clean slate, whatever the shell has.
APP_VARIABLES = (
    "APP_ENV",
    "CLOUDFLARE_ACCOUNT_ID",
    "AI_GATEWAY_ID",
    "AI_GATEWAY_BASE_URL",
    "CF_AIG_TOKEN",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GOOGLE_API_KEY",
    "OPENAI_BASE_URL",
    "CLOUDFLARE_API_BASE_URL",
    "SERVICE_API_KEY",
    "ALLOWED_MODELS",
    "MAX_BODY_BYTES",
    "REQUEST_TIMEOUT_SECONDS",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in APP_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def gateway_server():
    with FakeGateway() as fake:
        yield fake


@pytest.fixture
def gateway(gateway_server):
    """The loopback gateway, reset for this test."""
    gateway_server.reset()
    return gateway_server


@pytest.fixture
def gateway_env(gateway, monkeypatch):
    """Environment of a configured app pointed at the fake gateway."""
    values = {
        "CLOUDFLARE_ACCOUNT_ID": ACCOUNT_ID,
        "AI_GATEWAY_BASE_URL": gateway.url,
        "CF_AIG_TOKEN": GATEWAY_TOKEN,
        "OPENAI_API_KEY": OPENAI_KEY,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values

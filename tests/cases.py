"""Test data more than one test module uses: answers, bad answers, the README's commands.

Test modules import from here (or from tools/testkit.py for helper functions), never from
each other, so any one of them can be read, moved or deleted on its own.
"""
from __future__ import annotations

import re
from pathlib import Path

TEMPLATE_ROOT = Path(__file__).resolve().parents[1]

ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
AUTH_MODES = ("unified-billing", "byok", "request-headers")

# Answers every test starts from; a test overrides what it cares about.
BASE_ANSWERS = {
    "project_name": "demo-svc",
    "account_id": ACCOUNT_ID,
    "gateway_id": "demo-gw",
}

# Bad values for one question each: (question, value given with --data, what Copier says).
# tests/test_questions.py refuses them through Copier's API, tests/test_interactive.py at
# the prompt.
BAD_ANSWERS = [
    ("project_name", "My-Service", "project_name: a letter, then a-z 0-9 and single hyphens"),
    ("project_name", "my_service", "project_name: a letter, then a-z 0-9 and single hyphens"),
    ("project_name", "my-service-", '54 at most (got "my-service-")'),
    ("project_name", "9lives", "project_name: a letter, then a-z 0-9 and single hyphens"),
    ("project_name", "a" * 55, "54 at most"),
    ("account_id", "0123456789ABCDEF0123456789ABCDEF", "account_id must be 32 lowercase hex"),
    ("account_id", "0123456789abcdef", "account_id must be 32 lowercase hex"),
    ("gateway_id", "-prod", "gateway_id must be 1 to 64 of a-z 0-9 _, hyphens only between"),
    ("gateway_id", "a--b", 'gateway_id must be 1 to 64 of a-z 0-9 _, hyphens only between (got "a--b")'),
    ("gateway_id", "g" * 65, "gateway_id must be 1 to 64 of a-z 0-9 _"),
]
# Python module rules apply to the python-app target only (language is asked first).
PYTHON_BAD_ANSWERS = [
    ("project_name", "import", 'project_name "import" is a Python keyword'),
    ("project_name", "openai", 'project_name "openai" would shadow the Python module'),
]


# Bad --data answers refused by the command line (tests/test_hostile_input.py) and,
# where they can be typed, at the prompt (tests/test_interactive.py).
G60 = "g" * 60  # + "-development"/"-staging" is over 64 characters

# (id, answers given with --data on top of a valid project_name, what stderr's last line says)
BAD_DATA = [
    # project_name
    ("project_name-empty", {"project_name": ""},
     'project_name: a letter, then a-z 0-9 and single hyphens, 54 at most (got "")'),
    ("project_name-double-hyphen", {"project_name": "my--service"}, '(got "my--service")'),
    ("project_name-leading-hyphen", {"project_name": "-svc"}, '(got "-svc")'),
    ("project_name-space", {"project_name": "my service"}, '(got "my service")'),
    ("project_name-dot", {"project_name": "my.service"}, '(got "my.service")'),
    ("project_name-non-ascii", {"project_name": "café"}, '(got "caf\\u00e9")'),
    ("project_name-trailing-newline", {"project_name": "demo-svc\n"}, '(got "demo-svc\\n")'),
    ("project_name-injection", {"project_name": 'x" = 1\n[evil]'},
     '(got "x\\" = 1\\n[evil]")'),
    ("project_name-jinja", {"project_name": "{{ 7*7 }}"}, '(got "{{ 7*7 }}")'),
    ("project_name-keyword-class", {"language": "python-app", "project_name": "class"},
     'project_name "class" is a Python keyword: it cannot name a package'),
    ("project_name-keyword-with-hyphen", {"language": "python-app", "project_name": "async"},
     'project_name "async" is a Python keyword'),
    # account_id
    ("account_id-31-hex", {"account_id": ACCOUNT_ID[:-1]},
     f'account_id must be 32 lowercase hex characters, or empty (got "{ACCOUNT_ID[:-1]}")'),
    ("account_id-33-hex", {"account_id": ACCOUNT_ID + "0"}, f'(got "{ACCOUNT_ID}0")'),
    ("account_id-not-hex", {"account_id": "g" * 32}, f'(got "{"g" * 32}")'),
    ("account_id-spaces", {"account_id": f" {ACCOUNT_ID} "}, f'(got " {ACCOUNT_ID} ")'),
    ("account_id-trailing-newline", {"account_id": ACCOUNT_ID + "\n"},
     f'(got "{ACCOUNT_ID}\\n")'),
    # gateway_id
    ("gateway_id-empty", {"gateway_id": ""},
     'gateway_id must be 1 to 64 of a-z 0-9 _, hyphens only between (got "")'),
    ("gateway_id-double-hyphen", {"gateway_id": "a--b"}, '(got "a--b")'),
    ("gateway_id-dot", {"gateway_id": "."}, '(got ".")'),
    ("gateway_id-dot-dot", {"gateway_id": ".."}, '(got "..")'),
    ("gateway_id-percent", {"gateway_id": "%2e%2e"}, '(got "%2e%2e")'),
    ("gateway_id-trailing-hyphen", {"gateway_id": "prod-"}, '(got "prod-")'),
    ("gateway_id-uppercase", {"gateway_id": "Prod"}, '(got "Prod")'),
    ("gateway_id-space", {"gateway_id": "prod api"}, '(got "prod api")'),
    ("gateway_id-slash", {"gateway_id": "prod/../x"}, '(got "prod/../x")'),
    ("gateway_id-non-ascii", {"gateway_id": "prüd"}, '(got "pr\\u00fcd")'),
    ("gateway_id-trailing-newline", {"gateway_id": "prod\n"}, '(got "prod\\n")'),
    # gateway_authentication with a keyless mode
    ("gateway_authentication-unified-billing", {"gateway_authentication": False},
     "unified-billing needs an authenticated gateway (or use request-headers)"),
    ("gateway_authentication-byok-explicit", {"auth_mode": "byok", "gateway_authentication": "no"},
     "byok needs an authenticated gateway"),
    # environments
    ("environments-empty", {"environments": []}, "choose at least one environment"),
    ("environments-unknown", {"environments": ["prod"]},
     "Invalid choice for 'environments': 'prod' is not in ['development', 'staging', "
     "'production']"),
    # the id of each environment besides production (default: gateway_id-<environment>)
    ("staging_gateway_id-derived-too-long",
     {"gateway_id": G60, "environments": ["staging", "production"]},
     f'the staging gateway ID must be 1 to 64 of a-z 0-9 _, hyphens only between '
     f'(got "{G60}-staging")'),
    ("development_gateway_id-uppercase",
     {"environments": ["development", "production"], "development_gateway_id": "Dev-GW"},
     'the development gateway ID must be 1 to 64 of a-z 0-9 _, hyphens only between '
     '(got "Dev-GW")'),
    ("staging_gateway_id-trailing-hyphen",
     {"environments": ["staging", "production"], "staging_gateway_id": "stg-"},
     'the staging gateway ID must be 1 to 64 of a-z 0-9 _, hyphens only between (got "stg-")'),
    # no two environments share a gateway
    ("staging_gateway_id-same-as-production",
     {"environments": ["staging", "production"], "staging_gateway_id": "demo-svc"},
     'staging and production would share the gateway "demo-svc": give staging its own'),
    ("staging_gateway_id-same-as-development",
     {"environments": ["development", "staging"], "development_gateway_id": "dev-gw",
      "staging_gateway_id": "dev-gw"},
     'staging and development would share the gateway "dev-gw": give staging its own'),
    # choices outside the list
    ("language-unknown", {"language": "rust"},
     "Invalid choice for 'language': 'rust' is not in ['typescript-worker', 'python-app']"),
    ("language-label-not-value", {"language": "Python service (FastAPI, openai SDK, CLI + library)"},
     "Invalid choice for 'language'"),
    ("auth_mode-unknown", {"auth_mode": "free"},
     "Invalid choice for 'auth_mode': 'free' is not in ['unified-billing', 'byok', "
     "'request-headers']"),
    ("auth_mode-wrong-case", {"auth_mode": "BYOK"}, "Invalid choice for 'auth_mode': 'BYOK'"),
    ("providers-unknown", {"providers": ["openai", "mistral"]},
     "Invalid choice for 'providers': 'mistral' is not in ['openai', 'anthropic', "
     "'google-ai-studio', 'workers-ai', 'compat']"),
    ("caller_auth-unknown", {"caller_auth": "open"},
     "Invalid choice for 'caller_auth': 'open' is not in ['api-key', 'none']"),
    ("wrangler_config-unknown", {"wrangler_config": "yaml"},
     "Invalid choice for 'wrangler_config': 'yaml' is not in ['toml', 'jsonc']"),
    ("rate_limiting_technique-unknown", {"rate_limiting_technique": "leaky"},
     "Invalid choice for 'rate_limiting_technique': 'leaky' is not in ['fixed', 'sliding']"),
    # integers: negative, then not integers at all
    ("cache_ttl-negative", {"cache_ttl": -1},
     "Validation error for question 'cache_ttl': whole number, 0 or more"),
    ("rate_limiting_interval-negative", {"rate_limiting_interval": -60},
     "Validation error for question 'rate_limiting_interval': whole number, 0 or more"),
    ("rate_limiting_limit-negative", {"rate_limiting_limit": -1},
     "Validation error for question 'rate_limiting_limit': whole number, 0 or more"),
    ("cache_ttl-word", {"cache_ttl": "abc"},
     "Validation error for question 'cache_ttl': whole number, 0 or more"),
    ("cache_ttl-float", {"cache_ttl": "1.5"},
     "Validation error for question 'cache_ttl': whole number, 0 or more"),
    ("rate_limiting_interval-word", {"rate_limiting_interval": "ten"},
     "Validation error for question 'rate_limiting_interval': whole number, 0 or more"),
    ("rate_limiting_limit-empty", {"rate_limiting_limit": ""},
     "Validation error for question 'rate_limiting_limit': whole number, 0 or more"),
    # description: free text, but not blank
    ("description-empty", {"description": ""},
     "description: one line for the README and package metadata; it cannot be empty"),
    ("description-blank", {"description": "  "}, "Validation error for question 'description'"),
]


def quick_start_commands() -> list[str]:
    """The README's quick start code blocks: the render command, then the test command."""
    readme = (TEMPLATE_ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, flags=re.S)


# The official Node OpenAI SDK against a service's /v1 (tests/openai_node_client.mjs), the same
# run for the Python service (tests/test_openai_sdks.py) and the Worker
# (tests/test_worker_openai_sdks.py), each in front of the fake gateway, which answers
# "Hello there": what the script prints, but for "models" (each service's ALLOWED_MODELS).
NODE_SDK_CLIENT = TEMPLATE_ROOT / "tests" / "openai_node_client.mjs"
NODE_SDK_ANSWERS = {
    "chat": "Hello there", "stream": "Hello there", "tool": "The tool answered: rain",
    "json": {"answer": "Hello there"}, "embedding": [4.0, 0.5, -0.5],
    "unauthorized": [401, "authentication_error"]}
# What the gateway receives: the first chat as the SDK sent it, and (the 4th request) the
# assistant's tool call sent back as it came.
NODE_SDK_FIRST_BODY = {"model": "gpt-4o-mini", "temperature": 0.5,
                       "messages": [{"role": "user", "content": "Hi"}]}
NODE_SDK_TOOL_CALL = {
    "role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"q": "Paris?"}'}}]}

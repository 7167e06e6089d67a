"""The typescript-worker target, checked by Cloudflare's own toolchain.

Each variant below is rendered, then for real: `npm install`, `npm run typecheck`, `npm test`
(vitest inside workerd), `wrangler types --check` and `wrangler deploy --dry-run`; its
wrangler.toml is validated against wrangler's own JSON schema. Needs Node >= 22.12: without it
these tests fail (never skip) with a message that says how to get it.
"""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest

from conftest import ACCOUNT_ID, AUTH_MODES, rendered_files
from worker_toolchain import REPO, Result, node22_bin_dir, node_env, plain, run, upload_size, vitest_counts

ALL_PROVIDERS = ["anthropic", "google-ai-studio", "workers-ai", "compat"]
ALL_ENVIRONMENTS = ["development", "staging", "production"]

# name -> answers. Every auth mode, an open gateway without an answered account, and one with
# every provider and three environments.
VARIANTS: dict[str, dict] = {
    "unified-billing": {"auth_mode": "unified-billing"},
    "byok": {"auth_mode": "byok"},
    "request-headers": {"auth_mode": "request-headers"},
    "request-headers-open": {"auth_mode": "request-headers", "gateway_authentication": False, "account_id": ""},
}
WORKER_FILES = {
    "package.json", "tsconfig.json", "vitest.config.ts", "wrangler.toml", ".dev.vars.example",
    "src/index.ts", "src/config.ts", "src/gateway.ts", "src/gateway-options.ts",
    "test/chat.test.ts", "test/gateway-options.test.ts", "test/helpers.ts",
}

METRICS: dict[str, dict] = {}


# ---------------------------------------------------------------------------------------------
# Fixtures: one npm cache for the session, each variant rendered and installed once.


@pytest.fixture(scope="session")
def npm_env(tmp_path_factory) -> dict[str, str]:
    try:
        bin_dir = node22_bin_dir()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    # A persistent cache makes reruns offline-fast; CI's fresh clone fills it once.
    cache = REPO / ".cache" / "npm"
    cache.mkdir(parents=True, exist_ok=True)
    return node_env(bin_dir, cache)


class Project:
    def __init__(self, name: str, path: Path, env: dict[str, str], install: Result):
        self.name, self.path, self.env, self.install = name, path, env, install

    def run(self, *args: str, timeout: float = 600) -> Result:
        return run(list(args), self.path, self.env, timeout)


_PROJECTS: dict[str, Project] = {}


@pytest.fixture(scope="session")
def worker_project(tmp_path_factory, npm_env):
    """``worker_project(name)``: the variant rendered and ``npm install``-ed (once per session)."""
    from conftest import render

    def get(name: str) -> Project:
        if name not in _PROJECTS:
            path = render(tmp_path_factory.mktemp("worker") / name, language="typescript-worker", **VARIANTS[name])
            install = run(
                ["npm", "install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"],
                path, npm_env,
            ).check()
            _PROJECTS[name] = Project(name, path, npm_env, install)
            METRICS.setdefault(name, {})["npm install s"] = round(install.seconds, 1)
        return _PROJECTS[name]

    yield get
    if METRICS:
        out = REPO / ".cache" / "worker-metrics.json"
        out.write_text(json.dumps(METRICS, indent=2) + "\n")
        print("\nWorker target metrics:", json.dumps(METRICS, indent=2))


# ---------------------------------------------------------------------------------------------
# Rendering alone (no Node needed)


@pytest.mark.parametrize("auth_mode", AUTH_MODES)
def test_worker_renders_its_files_and_no_python_ones(render_project, auth_mode):
    project = render_project(language="typescript-worker", auth_mode=auth_mode)
    files = rendered_files(project)
    assert WORKER_FILES <= files
    assert not {f for f in files if f.endswith(".jinja")}
    assert "pyproject.toml" not in files and ".env.example" not in files
    assert not any(f.startswith(("tests/", "src/demo_svc")) for f in files)
    config = (project / "src/config.ts").read_text()
    assert f'export const AUTH_MODE: AuthMode = "{auth_mode}";' in config
    assert "export const GATEWAY_AUTHENTICATION: boolean = true;" in config


def test_python_render_has_no_worker_files(render_project):
    files = rendered_files(render_project(language="python-app"))
    leaked = {f for f in files if f in WORKER_FILES or f.startswith("test/") or f.endswith(".ts")}
    assert not leaked


def test_package_json(render_project):
    description = 'Says "hi" \\ to ünïcode ✓'
    project = render_project(language="typescript-worker", description=description)
    package = json.loads((project / "package.json").read_text())
    assert package["name"] == "demo-svc"
    assert package["description"] == description
    assert package["type"] == "module"
    assert package["engines"] == {"node": ">=22.12"}
    scripts = package["scripts"]
    assert scripts["dev"] == "wrangler dev"
    assert scripts["deploy"] == "wrangler deploy"
    assert scripts["deploy:production"] == "wrangler deploy"
    assert scripts["test"] == "vitest run"
    assert scripts["typecheck"] == "tsc --noEmit"
    assert scripts["cf-typegen"].startswith("wrangler types")
    assert scripts["gateway:sync"] == "python3 scripts/ai_gateway.py sync"
    deps = {**package["dependencies"], **package["devDependencies"]}
    for name, major in [("wrangler", "^4."), ("vitest", "^5."), ("typescript", "^7."), ("openai", "^7.")]:
        assert deps[name].startswith(major), (name, deps[name])
    assert {"@cloudflare/vitest-plugin", "@cloudflare/workers-types"} <= deps.keys()


@pytest.mark.parametrize(
    "answers, token, key",
    [
        ({"auth_mode": "unified-billing"}, True, False),
        ({"auth_mode": "byok"}, True, False),
        ({"auth_mode": "request-headers"}, True, True),
        ({"auth_mode": "request-headers", "gateway_authentication": False}, False, True),
    ],
)
def test_secrets_per_auth_mode(render_project, answers, token, key):
    project = render_project(language="typescript-worker", **answers)
    wrangler = tomllib.loads((project / "wrangler.toml").read_text())
    expected = (["CF_AIG_TOKEN"] if token else []) + (["OPENAI_API_KEY"] if key else [])
    assert wrangler["secrets"] == {"required": expected}
    example = (project / ".dev.vars.example").read_text()
    assert ("\nCF_AIG_TOKEN=\n" in example) is token
    assert ("\nOPENAI_API_KEY=\n" in example) is key
    readme = (project / "README.md").read_text()
    assert ("npx wrangler secret put CF_AIG_TOKEN" in readme) is token
    assert ("npx wrangler secret put OPENAI_API_KEY" in readme) is key
    gitignore = (project / ".gitignore").read_text().splitlines()
    assert {".dev.vars*", "!.dev.vars.example", ".wrangler/", "node_modules/"} <= set(gitignore)


def test_wrangler_toml_values(render_project):
    project = render_project(language="typescript-worker")
    config = tomllib.loads((project / "wrangler.toml").read_text())
    assert config["name"] == "demo-svc"
    assert config["main"] == "src/index.ts"
    assert config["account_id"] == ACCOUNT_ID
    assert config["ai"] == {"binding": "AI"}
    assert config["vars"] == {"CLOUDFLARE_ACCOUNT_ID": ACCOUNT_ID, "AI_GATEWAY_ID": "demo-gw"}
    assert config["observability"] == {"enabled": True}
    assert "env" not in config  # one environment: the top level is it
    assert "gateway" not in config["ai"]  # the guide's [[ai.gateway]] does not exist


def test_wrangler_toml_without_account_id(render_project):
    project = render_project(language="typescript-worker", account_id="")
    config = tomllib.loads((project / "wrangler.toml").read_text())
    assert "account_id" not in config
    assert config["vars"]["CLOUDFLARE_ACCOUNT_ID"] == ""
    assert "\nCLOUDFLARE_ACCOUNT_ID=\n" in (project / ".dev.vars.example").read_text()


# ---------------------------------------------------------------------------------------------
# The real toolchain, per variant


@pytest.mark.parametrize("name", VARIANTS)
def test_wrangler_toml_matches_wranglers_schema(worker_project, name):
    project = worker_project(name)
    schema = json.loads((project.path / "node_modules/wrangler/config-schema.json").read_text())
    config = tomllib.loads((project.path / "wrangler.toml").read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(config), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    # The schema itself must catch an invented key (the guide's [[ai.gateway]]), or this proves nothing.
    bad = {**config, "ai": {"binding": "AI", "gateway": [{"id": "x"}]}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(bad))


@pytest.mark.parametrize("name", VARIANTS)
def test_typecheck(worker_project, name):
    project = worker_project(name)
    # `npm install` ran cf-typegen (the prepare script): the types match wrangler.toml.
    assert (project.path / "worker-configuration.d.ts").is_file()
    project.run("npx", "wrangler", "types", "--include-runtime=false", "--strict-vars=false", "--check").check()
    result = project.run("npm", "run", "typecheck").check()
    METRICS[name]["typecheck s"] = round(result.seconds, 1)


@pytest.mark.parametrize("name", VARIANTS)
def test_rendered_vitest_suite_passes_in_workerd(worker_project, name):
    project = worker_project(name)
    result = project.run("npm", "test").check()
    counts = vitest_counts(result.output)
    assert counts.get("passed", 0) >= 25 and not counts.get("failed") and not counts.get("skipped"), counts
    METRICS[name]["npm test s"] = round(result.seconds, 1)
    METRICS[name]["vitest tests"] = counts["passed"]


@pytest.mark.parametrize("name", VARIANTS)
def test_dry_run_deploy(worker_project, name):
    project = worker_project(name)
    result = project.run("npx", "wrangler", "deploy", "--dry-run", "--outdir", "dist").check()
    out = plain(result.output)
    assert "--dry-run: exiting now." in out
    assert (project.path / "dist/index.js").stat().st_size > 0
    assert 'env.AI_GATEWAY_ID ("demo-gw")' in out
    kib, gzip_kib = upload_size(out)
    METRICS[name]["bundle KiB"], METRICS[name]["gzip KiB"] = kib, gzip_kib
    assert gzip_kib < 1024  # far below the 3 MiB (free) / 10 MiB (paid) Worker size limits


def test_rendered_tests_catch_a_leaked_authorization_header(worker_project):
    """The rendered suite is not decorative: put the provider-key header back and it fails."""
    project = worker_project("byok")
    source = project.path / "src/gateway.ts"
    original = source.read_text()
    assert "{ Authorization: null }" in original
    source.write_text(original.replace("{ Authorization: null }", "{}"))
    try:
        result = project.run("npx", "vitest", "run", "test/chat.test.ts")
    finally:
        source.write_text(original)
    assert result.returncode != 0, result.output[-3000:]
    out = plain(result.output)
    assert "never sends a provider key outside request-headers mode" in out
    assert vitest_counts(out).get("failed", 0) >= 1

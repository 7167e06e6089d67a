"""The typescript-worker target, checked by Cloudflare's own toolchain.

Each variant (VARIANTS, in worker_toolchain.py: unified-billing, request-headers-open,
all-request-headers, all-byok) is rendered once, then for real: `npm install`, `npm run typecheck`,
`npm test` (vitest inside workerd), `wrangler types --check` and `wrangler deploy --dry-run`
(per environment too, for all-byok), `npm run lint` (Biome); its wrangler.toml (or
wrangler.jsonc) is validated against wrangler's own JSON schema. For CI_VARIANT's code shape
(unified-billing, the default answers) the quick start's Worker runs its rendered ci.yml's
typecheck, types check, vitest, dry-run deploy and `npm ci` instead, with the same assertions
(tests/test_quick_start.py): each runs once per code shape; lint runs here for every variant.
Needs Node >= 22.12: without it these tests fail (never skip) with a message that says how to
get it. Measured numbers land in .cache/worker-metrics.json.
"""
from __future__ import annotations

import json
import re
import shutil
import time
import tomllib
from pathlib import Path

import pytest
from conftest import ACCOUNT_ID, render, rendered_files
from worker_toolchain import (  # the fixtures rendered, npm_env, worker_project: see conftest
    ALL_ENVIRONMENTS,
    ALL_PROVIDERS,
    CI_VARIANT,
    METRICS,
    ODD_DESCRIPTION,
    RENDERED,
    REPO,
    TOOLCHAIN_VARIANTS,
    VARIANTS,
    VITEST,
    WRANGLER,
    FakeGateway,
    WranglerDev,
    check_dry_run,
    check_lint,
    check_vitest,
    npm_group,
    one_worker_each,
    plain,
    run,
    vitest_counts,
)

MULTI_ENV = sorted(name for name, answers in VARIANTS.items() if len(answers.get("environments", [])) > 1)
WORKER_FILES = {
    "package.json", "tsconfig.json", "vitest.config.ts", ".dev.vars.example", "biome.json",
    ".editorconfig", ".nvmrc", ".npmrc",
    "src/index.ts", "src/settings.ts", "src/gateway.ts", "src/errors.ts", "src/streaming.ts",
    "src/auth.ts", "src/request-log.ts", "src/chat-request.ts", "src/providers.ts",
    "src/providers/openai.ts", "src/openai-compatible.ts", "src/openapi.json",
    "test/chat.test.ts", "test/contract.test.ts", "test/providers.test.ts", "test/gateway.test.ts",
    "test/limits.test.ts", "test/request-log.test.ts", "test/streaming.test.ts", "test/helpers.ts",
}
# Workers Logs (the one JSON line per request) and traces, at the top level and in every environment.
OBSERVABILITY = {"enabled": True, "logs": {"enabled": True, "invocation_logs": True}, "traces": {"enabled": True}}
PROVIDER_FILES = {p: {f"src/providers/{p}.ts"} for p in ALL_PROVIDERS}
DEFAULT_MODELS = {
    "openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "google-ai-studio": "gemini-2.5-flash",
    "workers-ai": "@cf/meta/llama-3.1-8b-instruct", "compat": "openai/gpt-4o-mini",
}


def wrangler_config(project: Path) -> dict:
    """The project's wrangler.toml or wrangler.jsonc (whole-line // comments only), parsed."""
    toml, jsonc = project / "wrangler.toml", project / "wrangler.jsonc"
    assert toml.is_file() != jsonc.is_file(), "exactly one wrangler config"
    if toml.is_file():
        return tomllib.loads(toml.read_text())
    lines = [line for line in jsonc.read_text().splitlines() if not line.lstrip().startswith("//")]
    return json.loads("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# Rendering alone (no Node needed)


@pytest.mark.parametrize("name", RENDERED)
def test_worker_renders_its_files_and_no_python_ones(rendered, name):
    project = rendered(name)
    files = rendered_files(project)
    assert WORKER_FILES <= files
    assert not {f for f in files if f.endswith(".jinja") or "{" in f}
    assert "pyproject.toml" not in files and ".env.example" not in files
    assert not any(f.startswith(("tests/", "src/demo_svc")) for f in files)
    answers = RENDERED[name]
    config = (project / "src/settings.ts").read_text()
    assert f'export const AUTH_MODE: AuthMode = "{answers["auth_mode"]}";' in config
    authenticated = answers.get("gateway_authentication", True)
    assert f"export const GATEWAY_AUTHENTICATION: boolean = {str(authenticated).lower()};" in config
    caller_auth = answers.get("caller_auth", "api-key")
    assert f'export const CALLER_AUTH: CallerAuth = "{caller_auth}";' in config
    # Plain web-platform code: no SDK outside the provider modules and the one chat helper.
    for module in ["src/errors.ts", "src/streaming.ts", "src/chat-request.ts", "src/index.ts", "src/gateway.ts",
                   "src/settings.ts", "src/request-log.ts", "src/auth.ts"]:
        assert ' from "openai"' not in (project / module).read_text(), module


def test_python_render_has_no_worker_files(tmp_path):
    files = rendered_files(render(tmp_path / "py", language="python-app", providers=ALL_PROVIDERS))
    leaked = {f for f in files if f in WORKER_FILES or f.startswith("test/") or f.endswith(".ts")}
    assert not leaked


def test_jsonc_readme_names_jsonc_keys_not_toml_tables(rendered):
    readme = (rendered("byok") / "README.md").read_text()

    assert "`vars` in `wrangler.jsonc`" in readme and "`secrets.required` list" in readme
    assert not re.findall(r"`\[(?:vars|secrets|env)[^`]*`", readme)


def test_package_json(rendered):
    package = json.loads((rendered("unified-billing") / "package.json").read_text())
    assert package["name"] == "demo-svc"
    assert package["description"] == ODD_DESCRIPTION
    assert package["type"] == "module"
    assert package["engines"] == {"node": ">=22.12"}
    scripts = package["scripts"]
    assert scripts["dev"] == "wrangler dev"
    assert scripts["deploy"] == "wrangler deploy"
    assert scripts["deploy:production"] == "wrangler deploy"
    assert scripts["test"] == "vitest run"
    assert scripts["typecheck"] == "tsc --noEmit"
    assert scripts["cf-typegen"] == "wrangler types --include-runtime=false --strict-vars=false"
    # npm install runs it: wrangler's warnings and errors show (and fail the install), not the types
    assert scripts["prepare"] == "node scripts/callers.mjs build && WRANGLER_LOG=warn npm run -s cf-typegen"
    assert scripts["gateway:sync"] == "python3 scripts/ai_gateway.py sync"
    deps = {**package["dependencies"], **package["devDependencies"]}
    for dep, major in [("wrangler", "4."), ("vitest", "^5."), ("typescript", "^7."), ("openai", "^7.")]:
        assert deps[dep].startswith(major), (dep, deps[dep])
    assert {"@cloudflare/vitest-plugin", "@cloudflare/workers-types"} <= deps.keys()
    assert package["allowScripts"] == {"esbuild": True, "workerd": True}  # openai has none


@pytest.mark.parametrize(
    "name, secrets",
    [
        ("unified-billing", ["CF_AIG_TOKEN", "SERVICE_API_KEY"]),
        ("byok", ["CF_AIG_TOKEN"]),  # caller_auth=none
        ("request-headers", ["CF_AIG_TOKEN", "OPENAI_API_KEY", "SERVICE_API_KEY"]),
        ("request-headers-open", ["OPENAI_API_KEY", "SERVICE_API_KEY"]),
        ("all-request-headers",
         ["CF_AIG_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "SERVICE_API_KEY"]),
        ("all-byok", ["CF_AIG_TOKEN"]),  # caller_auth=none; the unified API (/chat/compat) needs the token
    ],
)
def test_secrets(rendered, name, secrets):
    project = rendered(name)
    wrangler = wrangler_config(project)
    assert wrangler["secrets"] == {"required": secrets}
    for env in wrangler.get("env", {}).values():
        assert env["secrets"] == {"required": secrets}
    example = (project / ".dev.vars.example").read_text()
    readme = (project / "README.md").read_text()
    for secret in ["CF_AIG_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "SERVICE_API_KEY"]:
        assert (f"\n{secret}=\n" in example) is (secret in secrets), secret
        assert (f"npx wrangler secret put {secret}" in readme) is (secret in secrets), secret
    gitignore = (project / ".gitignore").read_text().splitlines()
    assert {".dev.vars*", "!.dev.vars.example", ".wrangler/", "node_modules/"} <= set(gitignore)


def test_wrangler_toml_values(rendered):
    config = tomllib.loads((rendered("unified-billing") / "wrangler.toml").read_text())
    assert config["name"] == "demo-svc"
    assert config["main"] == "src/index.ts"
    assert config["account_id"] == ACCOUNT_ID
    assert "ai" not in config  # no workers-ai: no AI binding, so `wrangler dev` needs no login
    assert config["vars"] == {
        "CLOUDFLARE_ACCOUNT_ID": ACCOUNT_ID, "AI_GATEWAY_ID": "demo-gw", "ALLOWED_MODELS": "gpt-4o-mini",
        "MAX_BODY_BYTES": "1048576", "MAX_UPSTREAM_BYTES": "4194304", "REQUEST_TIMEOUT_SECONDS": "60",
    }
    assert config["observability"] == OBSERVABILITY
    assert "env" not in config  # one environment: the top level is it
    assert "README" not in (rendered("unified-billing") / "wrangler.toml").read_text()


def test_wrangler_toml_without_account_id(rendered):
    project = rendered("request-headers-open")
    config = wrangler_config(project)
    assert "account_id" not in config
    assert config["vars"]["CLOUDFLARE_ACCOUNT_ID"] == ""
    assert "\nCLOUDFLARE_ACCOUNT_ID=" not in (project / ".dev.vars.example").read_text()  # secrets only


@pytest.mark.parametrize(
    "name, chosen",
    [
        ("unified-billing", []),
        ("only-anthropic", ["anthropic"]),
        ("binding-and-compat", ["workers-ai", "compat"]),
        ("all-byok", ALL_PROVIDERS),
    ],
)
def test_only_chosen_providers_are_rendered(rendered, name, chosen):
    project = rendered(name, **({} if name in VARIANTS else {"providers": chosen}))
    files = rendered_files(project)
    for provider, paths in PROVIDER_FILES.items():
        assert (paths <= files) is (provider in chosen), provider
        assert not (paths & files) or provider in chosen, provider
    routes = (project / "src/providers.ts").read_text()
    for provider in ALL_PROVIDERS:
        assert (f"./providers/{provider}" in routes) is (provider in chosen)
    deps = json.loads((project / "package.json").read_text())["dependencies"]
    assert ("@anthropic-ai/sdk" in deps) is ("anthropic" in chosen)
    assert ("@google/genai" in deps) is ("google-ai-studio" in chosen)
    # The tests pre-bundle exactly the SDKs the Worker depends on.
    assert f"const SDKS = {json.dumps(sorted(deps))};" in (project / "vitest.config.ts").read_text()
    readme = (project / "README.md").read_text()
    provider_tests = (project / "test/providers.test.ts").read_text()
    for provider in ALL_PROVIDERS:
        assert (f"`POST /chat/{provider}`" in readme) is (provider in chosen), provider
        assert (f'route: "/chat/{provider}"' in provider_tests) is (provider in chosen and provider != "workers-ai")
    # The provider table drives the defaults: allow-list, route registry, README.
    wrangler = wrangler_config(project)
    models = [DEFAULT_MODELS[p] for p in ["openai", *ALL_PROVIDERS] if p == "openai" or p in chosen]
    assert wrangler["vars"]["ALLOWED_MODELS"] == ",".join(models)
    assert ("ai" in wrangler) is ("workers-ai" in chosen)
    for provider in ["openai", *chosen]:
        assert f'defaultModel: "{DEFAULT_MODELS[provider]}"' in routes
        assert f"| `{DEFAULT_MODELS[provider]}` |" in readme


def test_environments(rendered):
    project = rendered("all-byok")
    config = wrangler_config(project)
    assert config["name"] == "demo-svc" and config["vars"]["AI_GATEWAY_ID"] == "demo-gw"  # top = production
    for env, worker, gateway in [
        ("development", "demo-svc-development", "demo-gw-development"),
        ("staging", "demo-svc-staging", "demo-gw-staging"),
        ("production", "demo-svc", "demo-gw"),
    ]:
        section = config["env"][env]
        assert section["name"] == worker
        assert section["ai"] == {"binding": "AI"}  # workers-ai is chosen; never [[ai.gateway]]
        assert section["vars"] == {
            "CLOUDFLARE_ACCOUNT_ID": "", "AI_GATEWAY_ID": gateway,
            "ALLOWED_MODELS": ",".join(DEFAULT_MODELS.values()),
            "MAX_BODY_BYTES": "1048576", "MAX_UPSTREAM_BYTES": "4194304", "REQUEST_TIMEOUT_SECONDS": "60",
        }
        assert section["observability"] == OBSERVABILITY  # set in each environment, not left to inheritance
    assert config["observability"] == OBSERVABILITY
    scripts = json.loads((project / "package.json").read_text())["scripts"]
    assert scripts["deploy"] == "wrangler deploy --env production"
    for env in ALL_ENVIRONMENTS:
        assert scripts[f"deploy:{env}"] == f"wrangler deploy --env {env}"
    readme = (project / "README.md").read_text()
    for env in ALL_ENVIRONMENTS:
        assert f"npx wrangler secret put CF_AIG_TOKEN --env {env}" in readme


def test_environments_without_production(rendered):
    project = rendered("dev-and-staging", environments=["development", "staging"])
    config = wrangler_config(project)
    assert config["vars"]["AI_GATEWAY_ID"] == "demo-gw-development"  # the default environment
    assert config["env"]["development"]["name"] == "demo-svc"
    assert set(config["env"]) == {"development", "staging"}


@pytest.mark.parametrize("name", ["byok", "all-byok"])
def test_wrangler_jsonc_says_what_wrangler_toml_says(rendered, name):
    """wrangler_config=jsonc renders wrangler.jsonc (and no wrangler.toml) with the same content."""
    answers = RENDERED[name]
    assert answers["wrangler_config"] == "jsonc"
    jsonc = rendered(name)
    toml = rendered(f"{name}-toml", **{**answers, "wrangler_config": "toml"})
    assert (jsonc / "wrangler.jsonc").is_file() and not (jsonc / "wrangler.toml").exists()
    assert (toml / "wrangler.toml").is_file() and not (toml / "wrangler.jsonc").exists()
    from_jsonc = wrangler_config(jsonc)
    assert from_jsonc.pop("$schema") == "node_modules/wrangler/config-schema.json"  # toml: #:schema
    assert from_jsonc == wrangler_config(toml)
    assert '"./wrangler.jsonc"' in (jsonc / "vitest.config.ts").read_text()
    readme = (jsonc / "README.md").read_text()
    assert "`wrangler.jsonc`" in readme and "wrangler.toml" not in readme


def test_node_version_and_editor_settings(rendered):
    project = rendered("unified-billing")
    assert (project / ".nvmrc").read_text() == "22\n"
    assert json.loads((project / "package.json").read_text())["engines"] == {"node": ">=22.12"}
    assert "engine-strict=true" in (project / ".npmrc").read_text().splitlines()
    editorconfig = (project / ".editorconfig").read_text()
    assert "root = true" in editorconfig and "indent_size = 2" in editorconfig
    readme = (project / "README.md").read_text()
    assert "Node.js 22" in readme and "Commit `package-lock.json`" in readme


# ---------------------------------------------------------------------------------------------
# The real toolchain, per variant


@pytest.mark.parametrize("name", one_worker_each(VARIANTS))
def test_wrangler_toml_matches_wranglers_schema(worker_project, name):
    import jsonschema  # requirements-dev.txt; imported here so a missing copy fails this test only

    project = worker_project(name)
    schema = json.loads((project.path / "node_modules/wrangler/config-schema.json").read_text())
    config = wrangler_config(project.path)
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(config), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    # The schema itself must refuse an invented key (the guide's [[ai.gateway]]), or this proves nothing.
    assert list(validator.iter_errors({**config, "ai": {"binding": "AI", "gateway": [{"id": "x"}]}}))


@pytest.mark.parametrize("name", one_worker_each(VARIANTS))  # CI_VARIANT too: its odd description
def test_lint_clean_as_rendered(worker_project, name):
    project = worker_project(name)
    # What `npm run lint` runs, without npm's start-up.
    assert json.loads((project.path / "package.json").read_text())["scripts"]["lint"] == "biome check ."
    check_lint(project.run("node_modules/.bin/biome", "check", ".").check().output)


@pytest.mark.parametrize("name", one_worker_each(["all-request-headers"]))  # every provider's packages
def test_every_install_script_is_reviewed_in_allow_scripts(worker_project, name):
    """npm 11.16+ lists dependencies whose install scripts package.json's allowScripts does not
    cover (a warning at the end of every install today; npm 12 skips those scripts)."""
    project = worker_project(name)
    listed = project.run("npm", "install-scripts", "ls")
    assert listed.returncode == 0, listed.output
    assert "not yet covered" not in listed.output, listed.output
    package = json.loads((project.path / "package.json").read_text())
    # esbuild's and workerd's set up their binaries; @google/genai's protobufjs only prints notes.
    assert package["allowScripts"] == {"esbuild": True, "workerd": True, "protobufjs": False}


@pytest.mark.xdist_group(npm_group(CI_VARIANT))  # its npm install, once per run
def test_wrangler_is_the_vitest_plugins_so_one_workerd_is_installed(worker_project):
    """package.json pins the wrangler @cloudflare/vitest-plugin pins (renovate.json leaves it
    alone): the tests run the workerd that dev and deploy run, and npm installs it once."""
    project = worker_project(CI_VARIANT)
    modules = project.path / "node_modules"
    plugin = json.loads((modules / "@cloudflare/vitest-plugin/package.json").read_text())
    package = json.loads((project.path / "package.json").read_text())
    assert package["devDependencies"]["wrangler"] == plugin["dependencies"]["wrangler"]
    installed = project.run("npm", "ls", "workerd", "--all", "--parseable").check()
    assert installed.output.split() == [str(modules / "workerd")]
    renovate = json.loads((project.path / "renovate.json").read_text())
    assert renovate["packageRules"][0]["matchPackageNames"] == ["wrangler"]
    assert renovate["packageRules"][0]["enabled"] is False


@pytest.mark.xdist_group(npm_group(CI_VARIANT))  # its npm install, once per run
def test_an_old_node_fails_fast_with_one_clear_line(worker_project, tmp_path):
    """.npmrc engine-strict: npm refuses the project itself before installing anything when Node
    is older than "engines" (shown with a requirement this Node cannot meet, in a copy)."""
    project = worker_project(CI_VARIANT)
    copy = tmp_path / "old-node"
    copy.mkdir()
    shutil.copy2(project.path / ".npmrc", copy / ".npmrc")
    # With the lock the first install wrote, as the owner's clone has it (npm then need not
    # resolve the whole tree before it looks at the project's own engines).
    shutil.copy2(project.path / "package-lock.json", copy / "package-lock.json")
    package = json.loads((project.path / "package.json").read_text())
    (copy / "package.json").write_text(json.dumps({**package, "engines": {"node": ">=99"}}))
    result = run(["npm", "install", "--dry-run", "--prefer-offline"], copy, project.env, timeout=120)
    assert result.returncode != 0
    out = plain(result.output)
    assert "Not compatible with your version of node/npm: demo-svc@0.1.0" in out, out[-2000:]
    assert 'Required: {"node":">=99"}' in out
    assert not (copy / "node_modules").exists()


@pytest.mark.xdist_group(npm_group(CI_VARIANT))  # its npm install, once per run
def test_npm_install_prints_npms_lines_only(worker_project):
    """The prepare script writes worker-configuration.d.ts without printing it: what the
    install showed is npm's prepare banner and its summary (the fixture's --loglevel=error)."""
    lines = [line for line in plain(worker_project(CI_VARIANT).install.output).splitlines()
             if line.strip()]

    assert lines[:2] == ["> demo-svc@0.1.0 prepare",
                         "> node scripts/callers.mjs build && WRANGLER_LOG=warn npm run -s cf-typegen"], lines
    assert len(lines) == 3 and re.fullmatch(r"(added|removed|changed|up to date).* in [\d.]+m?s",
                                            lines[2]), lines


@pytest.mark.xdist_group(npm_group(CI_VARIANT))  # its npm install, once per run
def test_plain_fetch_benchmark_worker_is_the_rendered_worker_with_one_module_swapped(worker_project, tmp_path):
    """benchmarks/fixtures/plain_fetch_worker replaces src/openai-compatible.ts only, as
    benchmarks/run.py lays it over the rendered Worker: the rendered suite must pass on it, so the
    yardstick keeps the rendered routes, contract and errors (and cannot drift from them)."""
    project = worker_project(CI_VARIANT)
    plain_worker = tmp_path / "plain-fetch"
    shutil.copytree(project.path, plain_worker, symlinks=True,
                    ignore=shutil.ignore_patterns("node_modules", "dist*", ".wrangler"))
    (plain_worker / "node_modules").symlink_to(project.path / "node_modules", target_is_directory=True)
    fixture = REPO / "benchmarks/fixtures/plain_fetch_worker/src"
    assert sorted(p.name for p in fixture.iterdir()) == ["openai-compatible.ts"]
    shutil.copy2(fixture / "openai-compatible.ts", plain_worker / "src/openai-compatible.ts")
    assert 'from "openai"' not in (plain_worker / "src/openai-compatible.ts").read_text()
    result = run([VITEST, "run"], plain_worker, project.env)
    result.check()
    assert not vitest_counts(result.output).get("failed")


@pytest.mark.parametrize("name", one_worker_each(TOOLCHAIN_VARIANTS))  # CI_VARIANT's shape: the quick start's ci.yml
def test_typecheck(worker_project, name):
    project = worker_project(name)
    # `npm install` ran cf-typegen (the prepare script): the types match wrangler.toml.
    assert (project.path / "worker-configuration.d.ts").is_file()
    project.run(WRANGLER, "types", "--include-runtime=false", "--strict-vars=false", "--check").check()
    result = project.run("npm", "run", "typecheck").check()
    METRICS[name]["typecheck s"] = round(result.seconds, 1)


@pytest.mark.parametrize("name", one_worker_each(TOOLCHAIN_VARIANTS))  # CI_VARIANT's shape: the quick start's ci.yml
def test_rendered_vitest_suite_passes_in_workerd(worker_project, name):
    project = worker_project(name)
    result = project.run("npm", "test").check()
    check_vitest(name, result.output, result.seconds)


@pytest.mark.parametrize("name", one_worker_each(TOOLCHAIN_VARIANTS))  # CI_VARIANT's shape: the quick start's ci.yml
def test_dry_run_deploy(worker_project, name):
    project = worker_project(name)
    result = project.run(WRANGLER, "deploy", "--dry-run", "--outdir", "dist").check()
    check_dry_run(name, project.path, result.output)


# The [env.*] sections have one shape in every multi-environment variant (their names, vars
# and secrets are checked on the render: test_environments, test_secrets; wrangler's schema
# and its top-level dry run read them in each): one variant's dry runs per environment show
# that wrangler deploys that shape, a second variant's would repeat them. all-byok, the
# wrangler.jsonc one, so the jsonc config gets each environment deployed as well.
@pytest.mark.parametrize("name", one_worker_each(["all-byok"]))
@pytest.mark.parametrize("environment", ALL_ENVIRONMENTS)
def test_dry_run_deploy_per_environment(worker_project, name, environment):
    assert name in MULTI_ENV and VARIANTS[name]["wrangler_config"] == "jsonc"
    project = worker_project(name)
    result = project.run(
        WRANGLER, "deploy", "--dry-run", "--env", environment, "--outdir", f"dist-{environment}"
    ).check()
    out = plain(result.output)
    gateway = "demo-gw" if environment == "production" else f"demo-gw-{environment}"
    assert f'env.AI_GATEWAY_ID ("{gateway}")' in out, out[-2000:]
    assert "env.AI " in out  # the AI binding, in every environment
    assert "Multiple environments" not in out
    assert (project.path / f"dist-{environment}/index.js").is_file()


@pytest.mark.xdist_group(npm_group(CI_VARIANT))  # its npm install, once per run
def test_rendered_tests_catch_a_leaked_authorization_header(worker_project):
    """The rendered suite is not decorative: put the provider-key header back and it fails.
    Outside request-headers mode no provider key may leave the Worker (unified-billing: the
    openai-only Worker, the lightest to load); the test that says so is in test/chat.test.ts,
    so only that file runs."""
    project = worker_project(CI_VARIANT)
    assert VARIANTS[CI_VARIANT]["auth_mode"] != "request-headers"
    source = project.path / "src/openai-compatible.ts"
    original = source.read_text()
    assert "{ Authorization: null }" in original
    source.write_text(original.replace("{ Authorization: null }", "{}"))
    try:
        result = project.run(VITEST, "run", "test/chat.test.ts")
    finally:
        source.write_text(original)
    assert result.returncode != 0, result.output[-3000:]
    out = plain(result.output)
    assert re.search(
        r"FAIL +test/chat\.test\.ts > POST /chat > never sends a provider key outside request-headers mode\n", out
    ), out[-3000:]
    assert vitest_counts(out).get("failed", 0) >= 1


@pytest.mark.parametrize("name", one_worker_each(["all-byok", "all-request-headers"]))
def test_wrangler_dev_sends_the_exact_headers_over_real_http(worker_project, name, tmp_path):
    """`wrangler dev --local` (workerd, real sockets) against a loopback fake gateway: what each
    provider route really puts on the wire, per auth mode, and the hostile cases of the HTTP
    contract (caller key or none, limits, a redirecting and a dripping gateway)."""
    project = worker_project(name)
    request_headers = VARIANTS[name]["auth_mode"] == "request-headers"
    api_key = VARIANTS[name].get("caller_auth", "api-key") == "api-key"  # all-byok: caller_auth=none
    (project.path / ".dev.vars").write_text(
        "CF_AIG_TOKEN=tok-gw\nOPENAI_API_KEY=sk-openai\nANTHROPIC_API_KEY=sk-ant\nGOOGLE_API_KEY=g-key\n"
        "SERVICE_API_KEY=svc-key\n"
    )
    caller = {"authorization": "Bearer svc-key"}
    deadline_s = 4
    with FakeGateway() as gateway:
        base = f"http://127.0.0.1:{gateway.port}"
        extra = [
            "--var", f"AI_GATEWAY_BASE_URL:{base}/v1",
            "--var", f"CLOUDFLARE_API_BASE_URL:{base}/client/v4",
            "--var", f"CLOUDFLARE_ACCOUNT_ID:{ACCOUNT_ID}",  # all-byok renders it empty
            "--var", f"REQUEST_TIMEOUT_SECONDS:{deadline_s}",
        ]
        with WranglerDev(project.path, project.env, extra, tmp_path / "wrangler-dev.log") as dev:
            # Refused before anything goes upstream.
            refused = {
                "constructor": dev.post("/chat/constructor", {"prompt": "ping"}, caller),
                "2 MiB": dev.post("/chat", {"prompt": "x" * (2 * 1024 * 1024)}, caller),
                "text/plain": dev.post("/chat", {"prompt": "ping"}, {**caller, "content-type": "text/plain"}),
            }
            if api_key:
                refused["no key"] = dev.post("/chat", {"prompt": "ping"})
                refused["wrong key"] = dev.post("/chat", {"prompt": "ping"}, {"authorization": "Bearer svc-kez"})
                unauthorized = dev.request(
                    "POST", "/chat", b'{"prompt": "ping"}', {"content-type": "application/json"})
            get_constructor = dev.request("GET", "/chat/constructor", None, caller)
            assert not gateway.requests, gateway.requests
            if not api_key:  # caller_auth=none: answered with no key or any key (never sent on)
                keyless = {
                    "no key": dev.post("/chat", {"prompt": "ping"}),
                    "wrong key": dev.post("/chat", {"prompt": "ping"}, {"authorization": "Bearer svc-kez"}),
                }
            before = len(gateway.requests)
            answers = {
                route: dev.post(route, {"prompt": "ping"}, caller)
                for route in ["/chat", "/chat/anthropic", "/chat/google-ai-studio", "/chat/compat"]
            }
            seen = {r["path"]: r["headers"] for r in gateway.requests[before:]}
            before = len(gateway.requests)
            redirected = dev.post("/chat", {"prompt": "redirect"}, caller)
            after_redirect = gateway.requests[before:]
            started = time.monotonic()
            dripped = dev.post("/chat", {"prompt": "drip"}, caller)
            drip_seconds = time.monotonic() - started
            # An endless answer read through another SDK (Anthropic's) stops at MAX_UPSTREAM_BYTES.
            endless = dev.post("/chat/anthropic", {"prompt": "endless"}, caller)
            closed_by = time.monotonic() + 30  # the upstream answer is cancelled, not read to its end
            while gateway.open_answers and time.monotonic() < closed_by:
                time.sleep(0.05)
            left_open = gateway.open_answers
    assert {k: v[0] for k, v in refused.items()} == {
        "constructor": 404, "2 MiB": 413, "text/plain": 415, **({"no key": 401, "wrong key": 401} if api_key else {}),
    }, refused
    if api_key:
        assert refused["no key"][1] == {"error": "send Authorization: Bearer <SERVICE_API_KEY>"}
        assert unauthorized[1]["www-authenticate"] == "Bearer"
    else:
        for case, (status, body) in keyless.items():
            assert status == 200 and body["reply"] == "Hello there", (case, status, body)
    assert get_constructor[0] == 404
    for route, (status, body) in answers.items():
        assert status == 200 and body["reply"] == "Hello there", (route, status, body)
    # The caller's key (right or wrong) never travels upstream, in any header.
    assert not [r for r in gateway.requests if "svc-ke" in json.dumps(r["headers"])]
    # A redirect is answered 502 naming it, and the token went out once: never to the Location.
    location = f"{base}/elsewhere/v1/{ACCOUNT_ID}/demo-gw/openai/chat/completions"
    assert redirected == (502, {
        "error": f"the gateway redirected (307) to {location}; redirects are not followed", "status": 307,
        "log_id": None,
    })
    assert [r["path"] for r in after_redirect] == [f"/v1/{ACCOUNT_ID}/demo-gw/openai/chat/completions"]
    # A gateway that drips its answer ends in 504 at the deadline, not when it finishes.
    assert dripped == (504, {"error": f"no answer within {deadline_s} s (REQUEST_TIMEOUT_SECONDS)"})
    assert deadline_s <= drip_seconds < deadline_s + 20, drip_seconds  # the drip itself lasts 30 s
    status, body = endless
    assert (status, body["error"], body["status"]) == (
        502, "the gateway's answer is larger than 4194304 bytes (MAX_UPSTREAM_BYTES)", 200), endless
    assert body["log_id"].startswith("LOG"), body
    assert left_open == 0 and gateway.hang_ups == 1, (left_open, gateway.hang_ups)
    gw = f"/v1/{ACCOUNT_ID}/demo-gw"
    assert sorted(seen) == sorted([
        f"{gw}/openai/chat/completions",
        f"{gw}/anthropic/v1/messages",
        f"{gw}/google-ai-studio/v1/models/gemini-2.5-flash:generateContent",
        f"/client/v4/accounts/{ACCOUNT_ID}/ai/v1/chat/completions",
    ])
    auth_names = ("authorization", "cf-aig-authorization", "x-api-key", "x-goog-api-key", "cf-aig-gateway-id")

    def auth(path: str) -> dict[str, str]:
        return {k: v for k, v in seen[path].items() if k in auth_names}

    gateway_auth = {"cf-aig-authorization": "Bearer tok-gw"}
    assert auth(f"{gw}/openai/chat/completions") == {
        **gateway_auth, **({"authorization": "Bearer sk-openai"} if request_headers else {})
    }
    assert auth(f"{gw}/anthropic/v1/messages") == {**gateway_auth, **({"x-api-key": "sk-ant"} if request_headers else {})}
    assert auth(f"{gw}/google-ai-studio/v1/models/gemini-2.5-flash:generateContent") == {
        **gateway_auth, **({"x-goog-api-key": "g-key"} if request_headers else {})
    }
    assert auth(f"/client/v4/accounts/{ACCOUNT_ID}/ai/v1/chat/completions") == {
        "authorization": "Bearer tok-gw", "cf-aig-gateway-id": "demo-gw"
    }


def test_next_steps_after_copy_name_the_node_version(tmp_path):
    from conftest import BASE_ANSWERS, plain_template
    from template_repo import copier, data_args

    # The working tree as every render here (conftest's plain copy: no git clone of HEAD).
    result = copier("copy", "--trust", "--defaults",
                    *data_args({**BASE_ANSWERS, "language": "typescript-worker"}),
                    str(plain_template()), str(tmp_path / "svc"), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    message = result.stdout + result.stderr
    assert ("\n  node --version                    # v22.12 or newer: nodejs.org/en/download\n"
            in message)
    assert "\n  npx wrangler secret put SERVICE_API_KEY\n" in message
    assert (tmp_path / "svc" / ".nvmrc").read_text() == "22\n"

"""Manage this project's Cloudflare AI Gateway(s) as code.

The gateways are described in ``ai-gateway.toml`` at the project root (one table per
environment). This script talks to the Cloudflare v4 API:

    python3 scripts/ai_gateway.py plan [--env NAME]               # what sync would change
    python3 scripts/ai_gateway.py sync [--env NAME] [--dry-run]   # make Cloudflare match the file
    python3 scripts/ai_gateway.py list                             # every gateway of the account
    python3 scripts/ai_gateway.py get [ID] [--env NAME]
    python3 scripts/ai_gateway.py create [--env NAME]
    python3 scripts/ai_gateway.py update [--env NAME]
    python3 scripts/ai_gateway.py delete [ID] [--env NAME] [--yes]

`update` and `sync` read the gateway first and send back its whole configuration with the
file's settings applied: a setting made in the dashboard and absent from the file is kept.
`sync` also adds the dynamic routes ([routes.<name>]: a route, a version, a deployment; a
changed route gets a new version and its deployment) and stored provider keys
([provider_configs.<alias>]) the file names. Every body is checked against the API's own
request schemas (ai_gateway.schema.json, next to this script) before it is sent.

Environment:
    CLOUDFLARE_API_TOKEN (or CF_API_TOKEN)   API token with "AI Gateway Read" (plan, list,
                                             get) and "AI Gateway Edit" (writes); never printed
    the variables ai-gateway.toml names      secrets (`authorization_env`, `secret_env`)
    CLOUDFLARE_ACCOUNT_ID                    account; wins over account_id in the settings file
    CLOUDFLARE_API_BASE_URL                  default https://api.cloudflare.com/client/v4
                                             (https://, or http:// to a loopback address)
    AI_GATEWAY_TIMEOUT                       seconds for the whole command, every request and
                                             retry included (default 60; --timeout)
    AI_GATEWAY_RETRY_BASE_DELAY              first retry delay in seconds (default 1)

Exit codes: 0 done, 1 the API call failed, 2 usage or settings error (bad arguments,
unreadable settings file, no token or account id), 130 interrupted.

Python 3.11+ and the standard library only: the Worker target (Node) can run it too.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import re
import secrets
import socket
import ssl
import sys
import textwrap
import threading
import time
import tomllib
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

DEFAULT_API_BASE_URL = "https://api.cloudflare.com/client/v4"
# The project root is the folder above scripts/: the default settings file lives there,
# whatever the current directory is.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "ai-gateway.toml"

# The API's rules (Cloudflare v4 API, operations aig-config-create-gateway and
# aig-config-update-gateway; the `cloudflare` SDKs and Terraform's cloudflare_ai_gateway).
# Gateway id: 1 to 64 characters, lowercase letters, digits and underscores in groups joined
# by single hyphens ("my_gw" and "a-b" are valid, "a--b", "-a", "." and ".." are not).
GATEWAY_ID_RE = re.compile(r"[a-z0-9_]+(?:-[a-z0-9_]+)*")
GATEWAY_ID_MAX = 64
GATEWAY_ID_RULE = (
    "1 to 64 lowercase letters, digits and underscores, in groups joined by single hyphens"
)
# Create and update require these keys. The first two need a value; the API takes null for
# the other three (null = off), so a file may leave them out: create then sends null and
# update keeps the gateway's current value.
REQUIRED_SETTINGS = ("cache_invalidate_on_update", "collect_logs")
NULLABLE_SETTINGS = ("cache_ttl", "rate_limiting_interval", "rate_limiting_limit")
# Set by Cloudflare, never by a request: not allowed in the settings file.
READ_ONLY_FIELDS = (
    "account_id",
    "account_tag",
    "internal_id",
    "created_at",
    "modified_at",
    "is_default",
)
# The API's rules for every body this script sends are the request schemas of the Cloudflare
# v4 API, shipped next to this script (ai_gateway.schema.json, copied unchanged). A settings
# file is held to them plus these stricter rules, where a Cloudflare doc page is stricter
# than the API's schema:
# - retry_delay: the schema allows 0-60000 ms (SDK 5.9.0), the request-handling docs and
#   Terraform v5.22.0 say at most 5000 ms: 5000 it is;
# - unknown keys: the schema does not forbid them, the API refuses them ("Unrecognized key"):
#   a key the schema does not name is refused, so that a typo is not sent and ignored.
STRICTER = {"retry_delay": {"maximum": 5000}}
SCHEMA_FILE = Path(__file__).resolve().with_name("ai_gateway.schema.json")
# Secrets never go in the settings file: `<field>_env = "VARIABLE"` names the environment
# variable that holds them (otel[].authorization, stripe.authorization, a stored key's secret).
SECRET_FIELDS = ("authorization", "secret")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NOT_A_SECRET_SOURCE = frozenset(
    {
        "CLOUDFLARE_API_TOKEN",
        "CF_API_TOKEN",
        "CLOUDFLARE_API_TOKEN_READ",
        "GITHUB_TOKEN",
        "ACTIONS_RUNTIME_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    }
)
# A dynamic route's name is part of the model name `dynamic/<name>`: kept plain.
ROUTE_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# What a [gateways.<env>] table holds besides the gateway's settings.
NOT_SETTINGS = ("id", "routes", "provider_configs")
ACCOUNT_ID_RE = re.compile(r"[0-9a-fA-F]{32}")
# The API returns null for an unset optional number or flag; treat it like the "off" value
# so that a gateway whose API state is null does not look drifted forever.
NULL_EQUIVALENT = {
    "cache_ttl": 0,
    "rate_limiting_interval": 0,
    "rate_limiting_limit": 0,
    "authentication": False,
    "byok_only": False,
    "zdr": False,
    "logpush": False,
}

EXIT_OK, EXIT_API, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_TIMEOUT = 60.0  # seconds for the whole command, retries included
MAX_RETRY_AFTER = 60.0  # seconds: a longer Retry-After is capped at this
MAX_BODY = 32 * 1024 * 1024  # bytes: a larger answer is refused
LIST_PER_PAGE = 100  # the API's maximum
MAX_PAGES = 100  # 10,000 gateways: more is reported as an error, never cut silently

API_ACCESS_HELP = (
    "create an API token (Cloudflare dashboard > My Profile > API Tokens > Create Token > "
    "Custom token, permissions Account > AI Gateway > Read and Edit) and export it as "
    "CLOUDFLARE_API_TOKEN (or CF_API_TOKEN)"
)


# ---------------------------------------------------------------- terminal hygiene


class Redactor:
    """Masks secrets in text, also when cut, split across lines or changed in case.

    A secret is found through any run of WINDOW consecutive characters of it, compared
    without case and across whitespace; the whole run it belongs to becomes ***.
    """

    WINDOW = 8

    def __init__(self) -> None:
        self.secrets: list[str] = []
        self._windows: set[str] = set()

    def add(self, secret: str) -> None:
        secret = "".join(secret.split()).lower()
        if not secret:
            return
        self.secrets.append(secret)
        width = min(self.WINDOW, len(secret))
        for i in range(len(secret) - width + 1):
            self._windows.add(secret[i : i + width])

    def __call__(self, text: str) -> str:
        if not self.secrets:
            return text
        # The text without whitespace, lowercased, and where each character came from.
        positions = [i for i, ch in enumerate(text) if not ch.isspace()]
        squeezed = "".join(text[i] for i in positions).lower()
        hidden = [False] * len(text)
        for width in {min(self.WINDOW, len(s)) for s in self.secrets}:
            for j in range(len(squeezed) - width + 1):
                if squeezed[j : j + width] in self._windows:
                    for k in range(positions[j], positions[j + width - 1] + 1):
                        hidden[k] = True
        out, i = [], 0
        while i < len(text):
            if hidden[i]:
                while i < len(text) and hidden[i]:
                    i += 1
                out.append("***")
            else:
                out.append(text[i])
                i += 1
        return "".join(out)


redact = Redactor()
_jitter = secrets.SystemRandom()
# C0 and C1 control characters (but newline and tab) and the bidirectional overrides: what
# could move the cursor, recolour or rewrite the terminal when an API message is printed.
CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe(text) -> str:
    """What may reach the terminal: no secret, no control character."""
    return CONTROL_RE.sub("", redact(str(text)))


def one_line(text) -> str:
    """A value from the API inside one line of output."""
    return " ".join(CONTROL_RE.sub("", re.sub(r"[\r\n\t]", " ", str(text))).split())


def out(text: str = "") -> None:
    print(safe(text), flush=True)


def note(text: str) -> None:
    print(safe(text), file=sys.stderr, flush=True)


class CliError(Exception):
    """A failure that ends the run with one line on stderr and an exit code."""

    def __init__(self, message: str, code: int = EXIT_API):
        super().__init__(message)
        self.message = message
        self.exit_code = code


class ApiError(CliError):
    def __init__(self, message: str, status: int | None = None, error_code=None):
        super().__init__(message, EXIT_API)
        self.status = status
        self.error_code = error_code


# ---------------------------------------------------------------- settings file (TOML)


def valid_gateway_id(value) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= GATEWAY_ID_MAX
        and GATEWAY_ID_RE.fullmatch(value) is not None
    )


class EnvSecret(str):
    """A secret the settings file names by its environment variable (`<field>_env`): its
    value, or "" when the variable is unset (then `unset` is true and it is never compared)."""

    variable: str
    unset: bool

    def __new__(cls, variable: str):
        value = os.environ.get(variable, "")
        if value:
            redact.add(value)
        obj = super().__new__(cls, value)
        obj.variable = variable
        obj.unset = not value
        return obj


_schemas: dict = {}


def schema(name: str) -> dict:
    """One request body schema from ai_gateway.schema.json (read once)."""
    if not _schemas:
        try:
            data = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
            _schemas.update({k: op["schema"] for k, op in data["operations"].items()})
        except (OSError, ValueError, KeyError, TypeError):
            raise CliError(
                f"cannot read {SCHEMA_FILE.name}, the API's rules, next to this script: "
                "restore it from the project (scripts/)",
                EXIT_USAGE,
            ) from None
    return _schemas[name]


def strict(base: dict, stricter: dict | None = None) -> dict:
    """`base` refusing keys it does not name, with `stricter` rules laid over its properties."""
    props = {k: {**v, **(stricter or {}).get(k, {})} for k, v in base["properties"].items()}
    return {**base, "properties": props, "additionalProperties": False}


def _is(value, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, JSON_TYPES[kind])


JSON_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": (int, float),
    "null": type(None),
}
TYPE_WORDS = {
    "object": "a table",
    "array": "a list",
    "string": "a string",
    "boolean": "true or false",
    "integer": "a whole number",
    "number": "a number",
}


def schema_errors(value, rules: dict, path: tuple = ()) -> list:
    """(path, problem) for each way `value` breaks `rules`: the JSON Schema keywords the API's
    body schemas use (type, enum, minimum, maximum, minLength, maxLength, pattern, required,
    properties, additionalProperties, items, anyOf), checked as draft 2020-12 does."""
    kinds = rules.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, k) for k in kinds):
            words = " or ".join(TYPE_WORDS[k] for k in kinds if k != "null")
            return [(path, f"must be {words} (got {json.dumps(value)})")]
    if "enum" in rules and not any(value == e and type(value) is type(e) for e in rules["enum"]):
        choices = " or ".join(json.dumps(e) for e in rules["enum"] if e is not None)
        return [(path, f"must be {choices} (got {json.dumps(value)})")]
    problem = _bounds(value, rules)
    if problem:
        return [(path, problem)]
    errors: list = []
    if isinstance(value, dict):
        errors += [
            (path + (k,), "is missing (the API requires it)")
            for k in rules.get("required", ())
            if k not in value
        ]
        extra = rules.get("additionalProperties", True)
        for key, item in value.items():
            if key in rules.get("properties", {}):
                errors += schema_errors(item, rules["properties"][key], path + (key,))
            elif extra is False:
                errors.append((path + (key,), "is not a setting the API knows (a typo?)"))
            elif isinstance(extra, dict):
                errors += schema_errors(item, extra, path + (key,))
    if isinstance(value, list) and "items" in rules:
        for i, item in enumerate(value):
            errors += schema_errors(item, rules["items"], path + (i,))
    if "anyOf" in rules:
        tries = [schema_errors(value, branch, path) for branch in rules["anyOf"]]
        if all(tries):  # no shape fits: the one of its kind that fits furthest explains it
            kin = [t for t, b in zip(tries, rules["anyOf"], strict=True) if _same_kind(value, b)]
            errors += max(kin or tries, key=lambda t: max(len(p) for p, _ in t))
    return errors


def _same_kind(value, branch: dict) -> bool:
    """Whether a table names the kind a one-value enum of `branch` asks for (type = "model")."""
    props = branch.get("properties", {})
    return not isinstance(value, dict) or all(
        value[k] in props[k]["enum"]
        for k in props
        if k in value and len(props[k].get("enum", ())) == 1
    )


def _bounds(value, rules: dict) -> str | None:
    low, high = rules.get("minimum"), rules.get("maximum")
    if _is(value, "number") and (
        (low is not None and value < low) or (high is not None and value > high)
    ):
        span = (
            f"from {low} to {high}"
            if None not in (low, high)
            else (f"{low} or more" if high is None else f"at most {high}")
        )
        return f"must be {span} (got {json.dumps(value)})"
    low, high = rules.get("minLength"), rules.get("maxLength")
    if isinstance(value, str) and (
        (low is not None and len(value) < low) or (high is not None and len(value) > high)
    ):
        return f"must be {low or 0} to {high or 'any number of'} characters long (got {len(value)})"
    if isinstance(value, str) and "pattern" in rules and not re.search(rules["pattern"], value):
        return f"must match {rules['pattern']} (got {json.dumps(value)})"
    return None


def dotted(path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def check_body(what: str, body: dict, name: str) -> None:
    """Refuse, before it is sent, a body the API's schema refuses: one line, exit 2."""
    errors = schema_errors(body, schema(name))
    if errors:
        path, problem = errors[0]
        raise CliError(f"{what}: {dotted(path) or 'the body'} {problem}", EXIT_USAGE)


def with_secrets(value, where: str, path: tuple = ()):
    """`value` with each `<field>_env = "VAR"` replaced by `<field>` = the variable's value.
    A secret written in the file itself is refused."""
    if isinstance(value, list):
        return [with_secrets(v, where, path + (i,)) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        spot = f"{where} {dotted(path + (key,))}"
        if key in SECRET_FIELDS:
            raise CliError(
                f"{spot}: a secret never goes in the file; name its environment variable "
                f'instead: {key}_env = "VARIABLE"',
                EXIT_USAGE,
            )
        if key.endswith("_env") and key[:-4] in SECRET_FIELDS:
            if not isinstance(item, str) or not ENV_NAME_RE.fullmatch(item):
                raise CliError(
                    f"{spot} must name an environment variable (got {json.dumps(item)})",
                    EXIT_USAGE,
                )
            if item.upper() in NOT_A_SECRET_SOURCE:
                # The file is data a pull request can change: it never gets to send the
                # script's own credentials to an exporter or store them as a provider key.
                raise CliError(
                    f"{spot} may not name {item}: that variable is a credential of this "
                    "script or of CI, never a value sent to Cloudflare",
                    EXIT_USAGE,
                )
            out[key[:-4]] = EnvSecret(item)
        else:
            out[key] = with_secrets(item, where, path + (key,))
    return out


def _table(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise CliError(f"{where} must be a table of tables", EXIT_USAGE)
    return value


def load_routes(tables: dict, where: str) -> dict:
    """{name: route create body} from [routes.<name>] tables, each checked by the schema."""
    routes = {}
    for name, table in tables.items():
        spot = f"{where} routes.{name}"
        if not ROUTE_NAME_RE.fullmatch(name):
            raise CliError(
                f"{spot}: a route name is 1 to 64 letters, digits, - or _ (the model "
                "is then dynamic/<name>)",
                EXIT_USAGE,
            )
        routes[name] = check_strict(spot, {"name": name, **table}, "route_create")
        ids = {element["id"] for element in table["elements"]}
        for element in table["elements"]:
            for output, target in element["outputs"].items():
                if target["elementId"] not in ids:
                    raise CliError(
                        f"{spot} element {json.dumps(element['id'])}: outputs.{output} leads to "
                        f"{json.dumps(target['elementId'])}, which no element has as its id",
                        EXIT_USAGE,
                    )
    return routes


def check_strict(what: str, body: dict, name: str, stricter: dict | None = None) -> dict:
    """`body` if the schema `name` allows it with no unknown key (and `stricter`), else exit 2."""
    errors = schema_errors(body, strict(schema(name), stricter))
    if errors:
        path, problem = errors[0]
        raise CliError(f"{what} {dotted(path)} {problem}", EXIT_USAGE)
    return body


def load_keys(tables: dict, where: str) -> dict:
    """{alias: provider config create body} from [provider_configs.<alias>] tables."""
    keys = {}
    for alias, table in tables.items():
        spot = f"{where} provider_configs.{alias}"
        body = {"alias": alias, "default_config": False, **with_secrets(table, spot)}
        if ("secret" in body) == ("secret_id" in body):
            raise CliError(
                f"{spot}: give the key as secret_env (an environment variable) or "
                "secret_id (a Secrets Store secret), one of them",
                EXIT_USAGE,
            )
        keys[alias] = check_strict(spot, body, "provider_config_create")
    return keys


def load_settings(path: Path) -> dict:
    """Read and check the settings file; returns {"account_id": str, "gateways": {env: {...}}}.
    Each gateway is {"id", "settings", "routes", "keys"}, secrets resolved, all checked."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise CliError(
            f"settings file {path} not found: run from the project, or pass --config PATH",
            EXIT_USAGE,
        ) from None
    except OSError as exc:
        raise CliError(f"cannot read settings file {path}: {exc.strerror}", EXIT_USAGE) from None
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"{path} is not valid TOML: {exc}", EXIT_USAGE) from None

    def bad(msg: str) -> CliError:
        return CliError(f"{path}: {msg}", EXIT_USAGE)

    account_id = data.get("account_id", "")
    if not isinstance(account_id, str):
        raise bad("account_id must be a string")
    gateways = data.get("gateways")
    if not isinstance(gateways, dict) or not gateways:
        raise bad("no [gateways.<environment>] table")
    unknown = set(data) - {"account_id", "gateways", "routes", "provider_configs"}
    if unknown:
        raise bad(
            f"{min(unknown)} is not a table this file knows (gateways, routes, provider_configs)"
        )
    try:
        every_route = _table(data.get("routes"), "[routes]")
        every_key = _table(data.get("provider_configs"), "[provider_configs]")
        loaded = {
            env: load_gateway(env, gw, every_route, every_key) for env, gw in gateways.items()
        }
    except CliError as exc:
        raise bad(exc.message) from None
    ids = [gw["id"] for gw in loaded.values()]
    if len(set(ids)) != len(ids):
        raise bad("two environments use the same gateway id")
    return {"account_id": account_id, "gateways": loaded, "path": path}


def load_gateway(env: str, gw, every_route: dict, every_key: dict) -> dict:
    where = f"[gateways.{env}]"
    if not isinstance(gw, dict):
        raise CliError(f"gateways.{env} must be a table", EXIT_USAGE)
    if not valid_gateway_id(gw.get("id")):
        raise CliError(
            f"{where} id must be {GATEWAY_ID_RULE} (got {json.dumps(gw.get('id'))})", EXIT_USAGE
        )
    for key in READ_ONLY_FIELDS:
        if key in gw:
            raise CliError(
                f"{where} {key} is set by Cloudflare: remove it from the file", EXIT_USAGE
            )
    settings = with_secrets({k: v for k, v in gw.items() if k not in NOT_SETTINGS}, where)
    check_spend_rules(settings.get("spend_limits"), where)
    check_strict(
        where, create_body({"id": gw["id"], "settings": settings}), "gateway_create", STRICTER
    )
    routes = {**every_route, **_table(gw.get("routes"), f"{where} routes")}
    keys = {**every_key, **_table(gw.get("provider_configs"), f"{where} provider_configs")}
    return {
        "id": gw["id"],
        "settings": settings,
        "routes": load_routes(routes, where),
        "keys": load_keys(keys, where),
    }


def create_body(gw: dict) -> dict:
    """POST body: the id, the file's settings, and null for a nullable setting left out."""
    body = {"id": gw["id"], **gw["settings"]}
    for key in NULLABLE_SETTINGS:
        body.setdefault(key, None)
    return body


def update_body(current: dict, gw: dict) -> dict:
    """PUT body: the gateway's current configuration with the file's settings applied.

    Only what update accepts is sent back; an unset (null) optional setting stays unset,
    and so does a null inside a setting (the schema takes no null there). The three
    nullable settings are always sent (the API requires them), null included.
    """
    updatable = schema("gateway_update")["properties"]
    body = {k: pruned(v) for k, v in current.items() if k in updatable and v is not None}
    for key in NULLABLE_SETTINGS:
        body.setdefault(key, current.get(key))
    body.update(wanted_settings(current, gw))
    return body


# Spend limits: the file owns the gateway's rules it names: by "id" when a rule of the file
# has one, else by what the rule applies to (its metadata, model and provider). The gateway's
# other rules (made in the dashboard, say) are kept, in their place; an owned rule keeps what
# the file leaves out of it. A rule named by what it applies to that changes what it applies
# to is another rule: the old one stays on the gateway until deleted there.
SPEND_RULE_SELECTORS = ("metadata", "model", "provider")


def spend_rule_key(rule: dict) -> str:
    if "id" in rule:
        return json.dumps({"id": rule["id"]})
    return json.dumps({k: rule.get(k) for k in SPEND_RULE_SELECTORS}, sort_keys=True)


def check_spend_rules(spend_limits, where: str) -> None:
    """Each rule of the file is named once: by its id, or by what it applies to."""
    seen = set()
    rules = spend_limits.get("rules") if isinstance(spend_limits, dict) else None
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        if not isinstance(rule, dict):
            continue  # the schema check says what a rule must be
        key = spend_rule_key(rule)
        if key in seen:
            what = "id" if "id" in rule else "metadata, model and provider"
            raise CliError(
                f"{where} spend_limits.rules[{i}] has the same {what} as an earlier rule",
                EXIT_USAGE,
            )
        seen.add(key)


def merged_spend_limits(current, wanted: dict) -> dict:
    """The gateway's spend limits with the file's applied: each rule of the file replaces
    the gateway's rule it names, or is added after the gateway's; the others are kept."""
    current = pruned(current or {})
    mine = {spend_rule_key(rule): rule for rule in wanted.get("rules", [])}
    rules = []
    for rule in current.get("rules") or []:
        by_id = json.dumps({"id": rule.get("id")})
        applies_to = spend_rule_key({k: v for k, v in rule.items() if k != "id"})
        key = by_id if by_id in mine else applies_to
        rules.append({**rule, **mine.pop(key)} if key in mine else rule)
    rules += mine.values()
    return {**current, **{k: v for k, v in wanted.items() if k != "rules"}, "rules": rules}


def wanted_settings(current: dict, gw: dict) -> dict:
    """The file's settings as they apply to the gateway `current` (spend limits merged)."""
    settings = gw["settings"]
    if not isinstance(settings.get("spend_limits"), dict):
        return settings
    spend = merged_spend_limits(current.get("spend_limits"), settings["spend_limits"])
    return {**settings, "spend_limits": spend}


def pruned(value):
    """`value` without null members, at any depth: the API answers null for what is unset."""
    if isinstance(value, dict):
        return {k: pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [pruned(v) for v in value]
    return value


def same_value(key: str, current, wanted) -> bool:
    if current is None and key in NULL_EQUIVALENT:
        current = NULL_EQUIVALENT[key]
    if wanted is None and key in NULL_EQUIVALENT:
        wanted = NULL_EQUIVALENT[key]
    return not leaf_changes(pruned(current), wanted)


def leaf_changes(current, wanted, path: tuple = ()) -> list:
    """[(path, old, new)] where `wanted` differs from `current`, table by table and item by
    item. A secret from an unset variable is not compared; nor is one the API does not show."""
    if isinstance(wanted, EnvSecret):
        same = wanted.unset or current is None or current == wanted
        return [] if same else [(path, current, wanted)]
    if isinstance(current, dict | None) and isinstance(wanted, dict | None) and (current or wanted):
        current, wanted = current or {}, wanted or {}
        return [
            c
            for k in sorted(set(current) | set(wanted), key=str)
            for c in leaf_changes(current.get(k), wanted.get(k), path + (k,))
        ]
    if isinstance(current, list | None) and isinstance(wanted, list | None) and (current or wanted):
        current, wanted = current or [], wanted or []
        return [
            c
            for i in range(max(len(current), len(wanted)))
            for c in leaf_changes(_at(current, i), _at(wanted, i), path + (i,))
        ]
    if isinstance(wanted, bool) or isinstance(current, bool):
        return [] if current is wanted else [(path, current, wanted)]
    return [] if current == wanted else [(path, current, wanted)]


def _at(items: list, i: int):
    return items[i] if i < len(items) else None


def drift(current: dict, gw: dict) -> dict:
    """{setting: (current, wanted)} for every setting of the file that differs."""
    return {
        key: (current.get(key), wanted)
        for key, wanted in wanted_settings(current, gw).items()
        if not same_value(key, current.get(key), wanted)
    }


# ---------------------------------------------------------------- HTTP client


def check_base_url(base_url: str) -> str:
    """The API address, refused when it carries credentials or is plain http:// elsewhere
    than this machine (the token would travel in clear text)."""
    parts = urlsplit(base_url)
    name = "CLOUDFLARE_API_BASE_URL"
    if "@" in parts.netloc:
        raise CliError(
            f"{name} must not contain a user name or password (user:pass@host): the API "
            "token is the only credential; remove that part",
            EXIT_USAGE,
        )
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise CliError(
            f"{name} must be an https:// URL (got {json.dumps(one_line(base_url))})", EXIT_USAGE
        )
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise CliError(
            f"{name} must start with https:// (plain http:// only to this machine, e.g. "
            f"http://127.0.0.1; got host {json.dumps(one_line(parts.hostname))})",
            EXIT_USAGE,
        )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise CliError(f"{name} has an invalid port", EXIT_USAGE) from None
    return base_url.rstrip("/")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Api:
    """The Cloudflare v4 AI Gateway endpoints, with one deadline, retries and clear errors.

    ``timeout`` bounds everything the command sends: each attempt gets an equal share of the
    time left for the attempts left, and no retry starts once the time is up.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        account_id: str,
        timeout: float,
        attempts: int,
        base_delay: float,
        verbose: bool,
    ):
        self.base_url = check_base_url(base_url)
        self.token = token
        self.account_id = account_id
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.attempts = max(1, attempts)
        self.base_delay = max(0.0, base_delay)
        self.verbose = verbose
        self.ambiguous = False  # the last write may have reached the API before it failed
        self.requests = 0  # HTTP requests sent (retries included)
        self.writes = 0  # successful POST/PUT/DELETE

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def _url(self, gateway_id: str | None = None, query: dict | None = None, sub=()) -> str:
        """.../gateways[/{gateway_id}[/{sub}...]][?query]: every segment quoted."""
        url = f"{self.base_url}/accounts/{quote(self.account_id, safe='')}/ai-gateway/gateways"
        for segment in ([gateway_id] if gateway_id is not None else []) + list(sub):
            url += "/" + quote(segment, safe="")
        if query:
            url += "?" + urlencode(query)
        return url

    def _send_once(self, method: str, url: str, body: bytes | None, limit: float):
        """One HTTP exchange within `limit` seconds, however slowly the server answers:
        (status, reason, headers, body bytes). No redirects followed."""
        parts = urlsplit(url)
        host = parts.hostname or ""  # check_base_url() refused a base URL without a host
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                host, parts.port, timeout=limit, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(host, parts.port, timeout=limit)
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "User-Agent": "ai-gateway-starter/ai_gateway.py",
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        path = parts.path + ("?" + parts.query if parts.query else "")
        result: dict = {}

        def exchange() -> None:
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                raw = resp.read(MAX_BODY + 1)
                result["value"] = (resp.status, resp.reason, resp.headers, raw)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                result["error"] = exc

        worker = threading.Thread(target=exchange, daemon=True)
        worker.start()
        worker.join(limit)
        if worker.is_alive():  # a server that answers too slowly (or drips bytes)
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            conn.close()
            worker.join(1.0)
            raise TimeoutError
        conn.close()
        if "error" in result:
            raise result["error"]
        if len(result["value"][3]) > MAX_BODY:
            raise http.client.HTTPException(f"answer larger than {MAX_BODY} bytes")
        return result["value"]

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: base * 2^(attempt-1), between half and all of it."""
        ceiling = self.base_delay * (2 ** (attempt - 1))
        return ceiling / 2 + _jitter.uniform(0, ceiling / 2)

    def _out_of_time(self, what: str, problem: str, attempt: int) -> ApiError:
        return ApiError(
            f"{what} failed: {problem} (after {_count(attempt, 'attempt')}; --timeout "
            f"{self.timeout:g}s bounds the whole command). Check your network, or raise "
            "--timeout / AI_GATEWAY_TIMEOUT, then retry"
        )

    def request(
        self,
        method: str,
        what: str,
        gateway_id: str | None = None,
        query: dict | None = None,
        body: dict | None = None,
        write: bool = False,
        sub=(),
    ):
        """Send one API call (retrying what is worth retrying); returns the parsed envelope."""
        url = self._url(gateway_id, query, sub)
        data = json.dumps(body).encode() if body is not None else None
        permission = "AI Gateway Edit" if write else "AI Gateway Read"
        self.ambiguous = False
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.attempts
            left = self.left()
            if left <= 0:
                raise self._out_of_time(what, "no time left", attempt - 1)
            limit = left / (self.attempts - attempt + 1)  # a fair share for each attempt left
            if self.verbose:
                note(
                    f"> {method} {url}"
                    + (f" (attempt {attempt}/{self.attempts})" if attempt > 1 else "")
                )
            started = time.monotonic()
            self.requests += 1
            try:
                status, reason, headers, raw = self._send_once(method, url, data, limit)
            except TimeoutError:
                self.ambiguous = self.ambiguous or write
                problem = f"no complete answer within {limit:.1f}s"
                if last:
                    raise self._out_of_time(what, problem, attempt) from None
                self._wait(what, self._delay(attempt), problem, attempt)
                continue
            except (ConnectionError, OSError, http.client.HTTPException) as exc:
                if isinstance(exc, ssl.SSLCertVerificationError):
                    raise ApiError(
                        f"{what} failed: TLS certificate check failed for "
                        f"{urlsplit(url).hostname}: {exc.verify_message}. "
                        "Check CLOUDFLARE_API_BASE_URL and any proxy"
                    ) from None
                self.ambiguous = self.ambiguous or (
                    write and not isinstance(exc, ConnectionRefusedError)
                )
                problem = f"connection error ({type(exc).__name__}: {one_line(exc)})"
                if last:
                    raise ApiError(
                        f"{what} failed: {problem} talking to {self.base_url} (after "
                        f"{_count(attempt, 'attempt')}). Check your network and "
                        "CLOUDFLARE_API_BASE_URL, then retry"
                    ) from None
                self._wait(what, self._delay(attempt), problem, attempt)
                continue
            if self.verbose:
                note(f"< {status} {one_line(reason)} ({time.monotonic() - started:.2f}s)")

            envelope = None
            try:
                envelope = json.loads(raw.decode("utf-8")) if raw else None
            except (UnicodeDecodeError, ValueError):
                envelope = None
            if envelope is not None and not isinstance(envelope, dict):
                envelope = None

            if status == 429 or status >= 500:
                if status >= 500:
                    self.ambiguous = self.ambiguous or write
                retry_after = _retry_after(headers.get("Retry-After"))
                label = f"HTTP {status}" + (" (rate limited)" if status == 429 else "")
                if last:
                    if status == 429:
                        todo = "Wait a minute, then retry"
                    else:
                        todo = (
                            "Cloudflare's API is failing: retry later "
                            "(https://www.cloudflarestatus.com)"
                        )
                    raise ApiError(
                        f"{what} failed: {label}{_describe(envelope, raw, headers)} after "
                        f"{_count(attempt, 'attempt')}. {todo}",
                        status,
                        _first_code(envelope),
                    ) from None
                delay = self._delay(attempt)
                if status == 429 and retry_after is not None:
                    delay = max(delay, retry_after)
                self._wait(
                    what,
                    delay,
                    label + (f", Retry-After {retry_after:g}s" if retry_after is not None else ""),
                    attempt,
                )
                continue

            if envelope is None:
                ctype = one_line(headers.get("Content-Type", "no content type"))
                raise ApiError(
                    f"{what} failed: the API answered HTTP {status} with a body that is not a "
                    f"JSON envelope ({ctype}: {_snippet(raw)!r}). Check "
                    "CLOUDFLARE_API_BASE_URL (a proxy or captive portal?)",
                    status,
                )
            if 200 <= status < 300 and envelope.get("success") is not False:
                if write:
                    self.writes += 1
                return envelope
            raise self._error(what, status, envelope, raw, headers, permission, gateway_id)

    def _wait(self, what: str, delay: float, problem: str, attempt: int) -> None:
        if delay >= self.left():
            raise self._out_of_time(what, f"{problem}; no time left to retry", attempt)
        note(f"  {problem}; retrying in {delay:.1f}s (attempt {attempt + 1} of {self.attempts})")
        time.sleep(delay)

    def _error(self, what, status, envelope, raw, headers, permission, gateway_id) -> ApiError:
        detail = _describe(envelope, raw, headers)
        code = _first_code(envelope)
        if status in (401, 403):
            todo = (
                "Check that CLOUDFLARE_API_TOKEN (or CF_API_TOKEN) is a valid token with "
                f'the "{permission}" permission for account {self.account_id} (dashboard '
                "> My Profile > API Tokens)"
            )
        elif status == 404 and gateway_id is not None:
            todo = (
                f"Gateway {json.dumps(gateway_id)} does not exist in account "
                f"{self.account_id}: create it with `python3 scripts/ai_gateway.py sync`, or "
                "check the id and CLOUDFLARE_ACCOUNT_ID"
            )
        elif status == 404:
            todo = (
                f"Check the account id ({self.account_id}: CLOUDFLARE_ACCOUNT_ID or "
                "account_id in ai-gateway.toml) and CLOUDFLARE_API_BASE_URL"
            )
        elif 400 <= status < 500:
            todo = "Check the settings in ai-gateway.toml against the API's message"
        else:
            todo = "Retry later"
        return ApiError(f"{what} failed: HTTP {status}{detail}. {todo}", status, code)


def _retry_after(value) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _first_code(envelope):
    errors = (envelope or {}).get("errors") or []
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return errors[0].get("code")
    return None


def _snippet(raw: bytes, limit: int = 80) -> str:
    return one_line(raw.decode("utf-8", "replace"))[:limit]


def _describe(envelope, raw, headers) -> str:
    """', Cloudflare error 7001: Invalid value (at cache_ttl)' from the envelope, or a body
    snippet. Error entries follow the v4 envelope: code, message, optional path and
    documentation_url."""
    if envelope is None:
        if not raw:
            return ""
        ctype = one_line(headers.get("Content-Type", "no content type"))
        return f" (non-JSON body, {ctype}: {_snippet(raw)!r})"
    errors = envelope.get("errors") or []
    if not isinstance(errors, list):
        errors = [errors]
    parts = []
    for err in errors[:3]:
        if not isinstance(err, dict):
            parts.append(one_line(err)[:200])
            continue
        code = err.get("code")
        text = one_line(err.get("message", ""))[:200]
        if code is not None:
            text = f"Cloudflare error {one_line(code)}: {text}"
        path = err.get("path")
        if isinstance(path, list) and path:
            text += f" (at {one_line('.'.join(str(p) for p in path))})"
        doc = err.get("documentation_url")
        if isinstance(doc, str) and doc:
            text += f" (see {one_line(doc)})"
        parts.append(text)
    return (", " + "; ".join(parts)) if parts else ""


# ---------------------------------------------------------------- API operations


def all_pages(api: Api, what: str, noun: str, pick, gateway_id=None, sub=()) -> list:
    """Every item of a list operation: pages of 100 until an empty page (or a page shorter
    than the page size the API says it used). More than MAX_PAGES pages is an error."""
    found: list = []
    for page in range(1, MAX_PAGES + 1):
        env = api.request(
            "GET",
            what,
            gateway_id=gateway_id,
            sub=sub,
            query={"page": page, "per_page": LIST_PER_PAGE},
        )
        items, served = pick(env)
        items = [] if items is None else items
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ApiError(f"{what} failed: the API's result is not a list")
        if not items:
            return found
        found.extend(items)
        if _is(served, "number") and len(items) < served:
            return found
    raise ApiError(
        f"{what} failed: the API still had more after {MAX_PAGES} pages "
        f"({len(found)} {noun}), where this script stops; nothing was written. Delete "
        f"unused {noun}, or manage this account with another tool"
    )


def _result_list(env: dict) -> tuple:
    """(items, per_page) of a list whose result is the list (gateways, stored keys)."""
    info = env.get("result_info")
    return env.get("result"), info.get("per_page") if isinstance(info, dict) else None


def _data_list(key: str):
    """(items, per_page) of a list whose result is {data: {<key>: [...], per_page}} (routes)."""

    def pick(env: dict) -> tuple:
        result = env.get("result")
        data = result.get("data") if isinstance(result, dict) else None
        data = data if isinstance(data, dict) else {}
        return data.get(key), data.get("per_page")

    return pick


def list_gateways(api: Api) -> list:
    return all_pages(api, "listing the gateways", "gateways", _result_list)


def list_routes(api: Api, gid: str) -> list:
    return all_pages(
        api,
        f"listing the routes of gateway {json.dumps(gid)}",
        "routes",
        _data_list("routes"),
        gid,
        ("routes",),
    )


def list_keys(api: Api, gid: str) -> list:
    return all_pages(
        api,
        f"listing the stored keys of gateway {json.dumps(gid)}",
        "stored keys",
        _result_list,
        gid,
        ("provider_configs",),
    )


def send(api: Api, method: str, what: str, body: dict, name: str, gid=None, sub=()) -> dict:
    """A write whose body the API's schema `name` allows (checked first: exit 2 if not)."""
    check_body(what, body, name)
    return (
        api.request(method, what, gateway_id=gid, sub=sub, body=body, write=True).get("result")
        or {}
    )


def create_route(api: Api, gid: str, body: dict) -> dict:
    """POST .../routes: the route, its first version and that version's deployment."""
    what = f"creating route {json.dumps(body['name'])} of gateway {json.dumps(gid)}"
    return send(api, "POST", what, body, "route_create", gid, ("routes",))


def deploy_route(api: Api, gid: str, route: dict, elements: list) -> None:
    """A new version of the route with these elements, then its deployment."""
    rid, label = route["id"], f"route {json.dumps(route.get('name'))} of gateway {json.dumps(gid)}"
    sub = ("routes", rid)
    result = send(
        api,
        "POST",
        f"adding a version to {label}",
        {"elements": elements},
        "version_create",
        gid,
        sub + ("versions",),
    )
    version = result.get("version_id")
    if not isinstance(version, str):  # the SDK's answer names no version: take the newest
        env = api.request(
            "GET", f"listing the versions of {label}", gateway_id=gid, sub=sub + ("versions",)
        )
        versions = _data_list("versions")(env)[0] or []
        newest = max(versions, key=lambda v: str(v.get("created_at", "")), default={})
        version = newest.get("version_id")
    send(
        api,
        "POST",
        f"deploying the new version of {label}",
        {"version_id": version},
        "deployment_create",
        gid,
        sub + ("deployments",),
    )


def create_key(api: Api, gid: str, body: dict) -> dict:
    what = f"storing key {json.dumps(body['alias'])} in gateway {json.dumps(gid)}"
    return send(api, "POST", what, body, "provider_config_create", gid, ("provider_configs",))


def get_gateway(api: Api, gateway_id: str) -> dict:
    return (
        api.request("GET", f"reading gateway {json.dumps(gateway_id)}", gateway_id=gateway_id).get(
            "result"
        )
        or {}
    )


def create_gateway(api: Api, env: str, gw: dict) -> dict:
    what = f"creating gateway {json.dumps(gw['id'])} ({env})"
    try:
        return send(api, "POST", what, create_body(gw), "gateway_create")
    except ApiError as exc:
        # A timed-out or 5xx create may still have happened: then its retry fails with
        # "already exists". Look before reporting an error.
        if api.ambiguous and exc.status is not None and 400 <= exc.status < 500:
            try:
                current = get_gateway(api, gw["id"])
            except ApiError:
                raise exc from None
            if current and not drift(current, gw):
                note(f"  {gw['id']}: the first attempt went through; the gateway exists")
                api.writes += 1
                return current
        raise


def update_gateway(api: Api, env: str, gw: dict, current: dict) -> dict:
    """PUT the gateway's current configuration (as read just before) with the file applied."""
    what = f"updating gateway {json.dumps(gw['id'])} ({env})"
    return send(api, "PUT", what, update_body(current, gw), "gateway_update", gw["id"])


def delete_gateway(api: Api, gateway_id: str) -> dict:
    return (
        api.request(
            "DELETE",
            f"deleting gateway {json.dumps(gateway_id)}",
            gateway_id=gateway_id,
            write=True,
        ).get("result")
        or {}
    )


# ---------------------------------------------------------------- output

SUMMARY_COLUMNS = (
    "id",
    "authentication",
    "cache_ttl",
    "rate_limiting_limit",
    "rate_limiting_interval",
    "rate_limiting_technique",
    "collect_logs",
    "modified_at",
)
HEADERS = {
    "id": "ID",
    "authentication": "AUTH",
    "cache_ttl": "CACHE_TTL",
    "rate_limiting_limit": "LIMIT",
    "rate_limiting_interval": "PER_SECONDS",
    "rate_limiting_technique": "WINDOW",
    "collect_logs": "LOGS",
    "modified_at": "MODIFIED",
}


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return one_line(value)
    return json.dumps(value)


def print_table(rows: list, columns: list) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(columns)
    ]
    out("  ".join(h.ljust(w) for h, w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        out("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def print_gateway(gw: dict) -> None:
    keys = sorted(gw, key=lambda k: (k != "id", k))
    width = max(len(k) for k in keys) if keys else 0
    for key in keys:
        out(f"{key.ljust(width)}  {fmt(gw[key])}")


def print_json(data) -> None:
    out(json.dumps(data, indent=2, sort_keys=False))


# ---------------------------------------------------------------- commands


def resolve_token(required: bool = True) -> str:
    token = os.environ.get("CLOUDFLARE_API_TOKEN") or os.environ.get("CF_API_TOKEN") or ""
    token = token.strip()
    if token:
        redact.add(token)
        if re.search(r"[^\x21-\x7e]", token):
            raise CliError(
                "the API token contains spaces or control characters: copy it "
                "again into CLOUDFLARE_API_TOKEN",
                EXIT_USAGE,
            )
    elif required:
        raise CliError(f"no Cloudflare API token: {API_ACCESS_HELP}", EXIT_USAGE)
    return token


def resolve_account(settings: dict | None) -> tuple:
    """(account_id, where it came from): CLOUDFLARE_ACCOUNT_ID wins over the settings file."""
    env_value = os.environ.get("CLOUDFLARE_ACCOUNT_ID", "").strip()
    if env_value:
        account, source = env_value, "CLOUDFLARE_ACCOUNT_ID"
    elif settings and settings["account_id"]:
        account, source = settings["account_id"], settings["path"].name
    else:
        raise CliError(
            "no Cloudflare account id: set CLOUDFLARE_ACCOUNT_ID or account_id in "
            "ai-gateway.toml (dashboard > Overview > Account ID)",
            EXIT_USAGE,
        )
    if not ACCOUNT_ID_RE.fullmatch(account):
        raise CliError(
            f"the account id from {source} must be 32 hex characters (got {json.dumps(account)})",
            EXIT_USAGE,
        )
    return account, source


def make_api(args, account_id: str, token: str) -> Api:
    base_url = os.environ.get("CLOUDFLARE_API_BASE_URL", "").strip() or DEFAULT_API_BASE_URL
    return Api(
        base_url,
        token,
        account_id,
        timeout=args.timeout,
        attempts=args.attempts,
        base_delay=_env_float("AI_GATEWAY_RETRY_BASE_DELAY", 1.0),
        verbose=getattr(args, "verbose", False),
    )


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise CliError(f"{name} must be a number of seconds (got {raw!r})", EXIT_USAGE) from None
    if value < 0:
        raise CliError(f"{name} must be 0 or more seconds (got {raw!r})", EXIT_USAGE)
    return value


def pick_env(settings: dict, env: str | None, command: str) -> str:
    envs = list(settings["gateways"])
    if env is None:
        if len(envs) == 1:
            return envs[0]
        raise CliError(
            f"{command}: several environments ({', '.join(envs)}): choose one with --env NAME",
            EXIT_USAGE,
        )
    if env not in settings["gateways"]:
        raise CliError(
            f"unknown environment {env!r}: ai-gateway.toml has {', '.join(envs)}", EXIT_USAGE
        )
    return env


def cmd_list(args, settings) -> int:
    token = resolve_token()
    account, _ = resolve_account(settings)
    api = make_api(args, account, token)
    gateways = list_gateways(api)
    if args.json:
        print_json(masked(gateways))  # an exporter's authorization is a secret
        return EXIT_OK
    if not gateways:
        out(f"no gateways in account {account}")
        return EXIT_OK
    rows = [[fmt(gw.get(c)) for c in SUMMARY_COLUMNS] for gw in gateways]
    print_table(rows, [HEADERS[c] for c in SUMMARY_COLUMNS])
    return EXIT_OK


def _target_id(args, settings) -> tuple:
    if getattr(args, "gateway_id", None) is not None:
        if args.env:
            raise CliError("give a gateway id or --env, not both", EXIT_USAGE)
        if not valid_gateway_id(args.gateway_id):
            raise CliError(
                f"gateway id {json.dumps(args.gateway_id)} is not valid: {GATEWAY_ID_RULE}",
                EXIT_USAGE,
            )
        return args.gateway_id, None
    env = pick_env(settings, args.env, args.command)
    return settings["gateways"][env]["id"], env


def cmd_get(args, settings) -> int:
    gid, _ = _target_id(args, settings)
    token = resolve_token()
    account, _ = resolve_account(settings)
    gw = masked(get_gateway(make_api(args, account, token), gid))
    print_json(gw) if args.json else print_gateway(gw)
    return EXIT_OK


def cmd_create(args, settings) -> int:
    env = pick_env(settings, args.env, "create")
    token = resolve_token()
    account, _ = resolve_account(settings)
    api = make_api(args, account, token)
    try:
        gw = create_gateway(api, env, settings["gateways"][env])
    except ApiError as exc:
        if exc.status in (400, 409):
            exc.message += ". If the gateway already exists, use `update` or `sync` instead"
        raise
    return report_written(args, "created", gw, settings["gateways"][env], env)


def report_written(args, verb: str, gw: dict, wanted: dict, env: str) -> int:
    """What create and update print: the gateway as the API returned it."""
    if args.json:
        print_json(gw)
    else:
        out(f"{verb} gateway {gw.get('id', wanted['id'])} ({env})")
        print_gateway(gw)
    return EXIT_OK


def cmd_update(args, settings) -> int:
    env = pick_env(settings, args.env, "update")
    token = resolve_token()
    account, _ = resolve_account(settings)
    api = make_api(args, account, token)
    wanted = settings["gateways"][env]
    current = get_gateway(api, wanted["id"])  # read, merge, write: keep what the file omits
    gw = update_gateway(api, env, wanted, current)
    return report_written(args, "updated", gw, wanted, env)


def cmd_delete(args, settings) -> int:
    gid, env = _target_id(args, settings)
    token = resolve_token()
    account, _ = resolve_account(settings)
    label = f"gateway {json.dumps(gid)}" + (f" ({env})" if env else "")
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(
                f"refusing to delete {label} without confirmation: there is no "
                "terminal to ask; pass --yes to delete anyway",
                EXIT_USAGE,
            )
        note(f"Delete {label} in account {account}? Its settings and logs are lost.")
        print(f"Type the gateway id ({gid}) to confirm: ", end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline().strip()
        if not sys.stderr.isatty():
            print(file=sys.stderr)  # the terminal echoed the answer elsewhere: end the line
        if answer != gid:
            raise CliError(f"not deleted: the answer did not match {gid!r}", EXIT_API)
    result = delete_gateway(make_api(args, account, token), gid)
    if args.json:
        print_json(result or {"id": gid, "deleted": True})
    else:
        out(f"deleted {label}")
    return EXIT_OK


def cmd_plan(args, settings) -> int:
    args.dry_run = True
    return cmd_sync(args, settings)


def cmd_sync(args, settings) -> int:
    envs = (
        list(settings["gateways"]) if args.env is None else [pick_env(settings, args.env, "sync")]
    )
    token = resolve_token(required=not args.dry_run)
    if not token:
        return _offline_plan(args, settings, envs)
    account, source = resolve_account(settings)
    api = make_api(args, account, token)
    existing = {gw.get("id"): gw for gw in list_gateways(api)}  # the one read of gateways
    plan = [plan_gateway(api, env, settings["gateways"][env], existing) for env in envs]
    if not args.dry_run:
        refuse_unset_secrets(plan, settings)
    if not args.json:
        out(
            f"account {account} (from {source})"
            + ("; dry run: nothing is written" if args.dry_run else "")
        )
    done, failure = [], None
    for item in plan:
        if not args.json:
            print_plan_item(item, args.dry_run)
        if args.dry_run:
            continue
        try:
            apply_item(api, item, settings["gateways"][item["env"]])
            if item["action"] != "unchanged":
                done.append(item["id"])
        except ApiError as exc:
            failure = exc
            item["error"] = exc.message
            break  # later environments are left for the next sync
    for item in plan:  # the working fields are not part of the report
        item.pop("current", None)
        for entry in item.get("routes", []):
            entry.pop("current", None)
    report_sync(args, api, account, plan, failure)
    if args.dry_run and not args.json:
        chosen = [settings["gateways"][env] for env in envs]
        for name in sorted(
            {n for gw in chosen for n in unset_secrets([gw["settings"], gw["keys"]])}
        ):
            out(f"note: {name} is not set here: the secret it holds is not compared")
    if failure:
        if done:
            failure.message += f" (already done: {', '.join(done)})"
        raise failure
    return EXIT_OK


def plan_gateway(api: Api, env: str, gw: dict, existing: dict) -> dict:
    """What sync would do to one environment: its gateway, routes and stored keys. Routes and
    keys are read only when the file names some, and only from a gateway that exists."""
    current = existing.get(gw["id"])
    item = {"env": env, "id": gw["id"], "current": current}
    if current is None:
        item.update(action="create", changes={})
    else:
        changes = drift(current, gw)
        item.update(
            action="update" if changes else "unchanged",
            changes={k: {"old": masked(o), "new": masked(n)} for k, (o, n) in changes.items()},
        )
    if gw["routes"]:
        routes = {r.get("name"): r for r in list_routes(api, gw["id"])} if current else {}
        item["routes"] = plan_routes(gw["routes"], routes)
    if gw["keys"]:
        keys = {k.get("alias"): k for k in list_keys(api, gw["id"])} if current else {}
        item["provider_configs"] = plan_keys(gw["keys"], keys)
    return item


def plan_routes(wanted: dict, routes: dict) -> list:
    plan = []
    for name, body in wanted.items():
        route = routes.get(name)
        if route is None:
            plan.append({"name": name, "action": "add", "changes": []})
            continue
        changes = leaf_changes(pruned(route.get("elements")), body["elements"], ("elements",))
        plan.append(
            {
                "name": name,
                "action": "update" if changes else "unchanged",
                "changes": [{"path": dotted(p), "old": o, "new": n} for p, o, n in changes],
                "current": route,
            }
        )
    plan += [{"name": n, "action": "kept", "changes": []} for n in routes if n not in wanted]
    return plan


KEY_FIELDS = ("provider_slug", "default_config", "secret_id", "rate_limit", "rate_limit_period")


def plan_keys(wanted: dict, keys: dict) -> list:
    """Stored keys: the API can add one, not change one (no update in its schema)."""
    plan = []
    for alias, body in wanted.items():
        key = keys.get(alias)
        if key is None:
            plan.append({"alias": alias, "action": "add", "changes": {}})
            continue
        changes = {
            f: {"old": key.get(f), "new": body[f]}
            for f in KEY_FIELDS
            if f in body and not same_value(f, key.get(f), body[f])
        }
        plan.append(
            {"alias": alias, "action": "differs" if changes else "unchanged", "changes": changes}
        )
    plan += [{"alias": a, "action": "kept", "changes": {}} for a in keys if a not in wanted]
    return plan


def masked(value):
    """A setting for the plan: the value of each secret field shown as ***."""
    if isinstance(value, dict):
        return {
            k: "***" if k in SECRET_FIELDS and v is not None else masked(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def unset_secrets(value) -> list:
    if isinstance(value, EnvSecret):
        return [value.variable] if value.unset else []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [name for v in value for name in unset_secrets(v)]
    return []


def refuse_unset_secrets(plan: list, settings: dict) -> None:
    """Before the first write: every secret a planned write sends must be set."""
    for item in plan:
        gw = settings["gateways"][item["env"]]
        needed = unset_secrets(gw["settings"]) if item["action"] != "unchanged" else []
        needed += [
            name
            for entry in item.get("provider_configs", [])
            if entry["action"] == "add"
            for name in unset_secrets(gw["keys"][entry["alias"]])
        ]
        if needed:
            raise CliError(
                f"{needed[0]} is not set: sync needs it to write the gateway of "
                f"{item['env']} ({item['id']}); nothing was written",
                EXIT_USAGE,
            )


def apply_item(api: Api, item: dict, gw: dict) -> None:
    """Carry out one environment's plan, exactly as printed."""
    env = item["env"]
    if item["action"] == "create":
        create_gateway(api, env, gw)
    elif item["action"] == "update":
        update_gateway(api, env, gw, item["current"])
    for entry in item.get("routes", []):
        if entry["action"] == "add":
            create_route(api, gw["id"], gw["routes"][entry["name"]])
        elif entry["action"] == "update":
            deploy_route(api, gw["id"], entry["current"], gw["routes"][entry["name"]]["elements"])
    for entry in item.get("provider_configs", []):
        if entry["action"] == "add":
            create_key(api, gw["id"], gw["keys"][entry["alias"]])


VERBS = {  # (dry run, sync)
    "create": ("create", "creating"),
    "update": ("update", "updating"),
    "unchanged": ("unchanged (matches ai-gateway.toml)",) * 2,
    "add": ("add", "adding"),
    "kept": ("kept (not in ai-gateway.toml)",) * 2,
    "differs": (
        "differs: the API cannot change a stored key; delete it in the dashboard, "
        "then sync adds it again",
    )
    * 2,
}


def print_plan_item(item: dict, dry_run: bool) -> None:
    head = f"{item['env']}: {item['id']}"
    out(f"{head}: {VERBS[item['action']][not dry_run]}")
    for key, change in item["changes"].items():
        print_changes(
            leaf_changes(change["old"], change["new"], (key,))
            or [((key,), "***", "*** (a secret changed)")]
        )
    for entry in item.get("routes", []):
        out(
            f"{head}: route {entry['name']} (model dynamic/{entry['name']}): "
            f"{VERBS[entry['action']][not dry_run]}"
        )
        print_changes([(c["path"], c["old"], c["new"]) for c in entry["changes"]])
    for entry in item.get("provider_configs", []):
        out(f"{head}: stored key {entry['alias']}: {VERBS[entry['action']][not dry_run]}")
        for field, change in entry["changes"].items():
            out(f"    {field}: {fmt(change['old'])} -> {fmt(change['new'])}")


def print_changes(changes: list) -> None:
    for path, old, new in changes:
        secret = any(p in SECRET_FIELDS for p in (path if isinstance(path, tuple) else ()))
        what = " (added)" if old is None else " (removed)" if new is None else ""
        old, new = ("***", "***") if secret else (old, new)
        name = dotted(path) if isinstance(path, tuple) else path
        out(f"    {name}: {fmt(old)} -> {fmt(new)}{what}")


def report_sync(args, api: Api, account: str, plan: list, failure) -> None:
    counts = {
        a: sum(1 for i in plan if i["action"] == a) for a in ("create", "update", "unchanged")
    }
    if args.json:
        print_json(
            {
                "account_id": account,
                "dry_run": args.dry_run,
                "compared": True,
                "gateways": plan,
                "requests": api.requests,
                "writes": api.writes,
            }
        )
        return
    if failure:
        return
    for kind, label in (("routes", "routes"), ("provider_configs", "stored keys")):
        entries = [e for i in plan for e in i.get(kind, [])]
        if entries:
            tally = {
                a: sum(1 for e in entries if e["action"] == a)
                for a in ("add", "update", "differs", "unchanged", "kept")
            }
            words = {
                "add": "to add" if args.dry_run else "added",
                "update": "to update" if args.dry_run else "updated",
            }
            out(f"{label}: " + ", ".join(f"{n} {words.get(a, a)}" for a, n in tally.items() if n))
    if args.dry_run:
        out(
            f"plan: {counts['create']} to create, {counts['update']} to update, "
            f"{counts['unchanged']} unchanged"
        )
    else:
        out(
            f"sync done: {counts['create']} created, {counts['update']} updated, "
            f"{counts['unchanged']} unchanged ({_count(api.requests, 'API request')}, "
            f"{_count(api.writes, 'write')})"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _offline_plan(args, settings, envs) -> int:
    """sync --dry-run without a token: show what the file asks for, compare nothing."""
    plan: list[dict] = [
        {
            "env": env,
            "id": settings["gateways"][env]["id"],
            "settings": masked(settings["gateways"][env]["settings"]),
            "routes": list(settings["gateways"][env]["routes"]),
            "provider_configs": list(settings["gateways"][env]["keys"]),
        }
        for env in envs
    ]
    if args.json:
        print_json(
            {
                "account_id": settings["account_id"],
                "dry_run": True,
                "compared": False,
                "gateways": plan,
                "requests": 0,
                "writes": 0,
            }
        )
        return EXIT_OK
    out("dry run without an API token: ai-gateway.toml, not compared with Cloudflare")
    for item in plan:
        out(f"{item['env']}: {item['id']}")
        for key, value in item["settings"].items():
            out(f"    {key} = {fmt(value)}")
        for name in item["routes"]:
            out(f"    route {name} (model dynamic/{name})")
        for alias in item["provider_configs"]:
            out(f"    stored key {alias}")
    # Whole words at 80 columns: this is the first thing a new owner runs.
    note(textwrap.fill(f"To compare with Cloudflare and then sync: {API_ACCESS_HELP}", 80))
    return EXIT_OK


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="settings file (default: ai-gateway.toml in the project root, "
        "the folder above scripts/; a relative PATH is from the current "
        "directory)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print JSON for scripts instead of a table",
    )
    common.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log each HTTP request (method, URL, status; never the token) to stderr",
    )
    common.add_argument(
        "--timeout",
        type=float,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="seconds for the whole command, every request and retry "
        "included (default: AI_GATEWAY_TIMEOUT or 60)",
    )
    common.add_argument(
        "--attempts",
        type=int,
        default=argparse.SUPPRESS,
        metavar="N",
        help="tries per API call on 429, 5xx, timeouts and connection errors (default 4)",
    )

    parser = argparse.ArgumentParser(
        prog="ai_gateway.py",
        parents=[common],
        description="Manage this project's Cloudflare AI Gateway(s) from ai-gateway.toml "
        "through the Cloudflare v4 API. Token: CLOUDFLARE_API_TOKEN (or "
        "CF_API_TOKEN), account: CLOUDFLARE_ACCOUNT_ID (wins) or the settings "
        "file, API: CLOUDFLARE_API_BASE_URL (default " + DEFAULT_API_BASE_URL + ").",
        epilog="Exit codes: 0 done, 1 API failure, 2 usage or settings error.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name, help_text, description):
        p = sub.add_parser(name, parents=[common], help=help_text, description=description)
        return p

    env_help = (
        "environment (a [gateways.NAME] table in the settings file); may be left out "
        "when the file has only one"
    )
    add(
        "list",
        "list every gateway of the account",
        "List every AI Gateway of the account (all pages).",
    )
    p = add(
        "get",
        "show one gateway",
        "Show one gateway as Cloudflare has it: ID, or the gateway of --env.",
    )
    p.add_argument("gateway_id", nargs="?", metavar="ID", help="gateway id (default: --env's)")
    p.add_argument("--env", metavar="NAME", help=env_help)
    p = add(
        "create",
        "create the gateway of an environment",
        "Create the gateway of an environment with the settings from the file (POST). "
        "Fails if it exists: use sync to create or update as needed.",
    )
    p.add_argument("--env", metavar="NAME", help=env_help)
    p = add(
        "update",
        "apply the file's settings to an environment's gateway",
        "Read the environment's gateway (GET), then send its configuration back with the "
        "settings from the file applied (PUT): settings the file does not name are kept.",
    )
    p.add_argument("--env", metavar="NAME", help=env_help)
    p = add(
        "delete",
        "delete a gateway (asks first)",
        "Delete a gateway: ID, or the gateway of --env. Asks you to type the id unless "
        "--yes; without a terminal it refuses unless --yes.",
    )
    p.add_argument("gateway_id", nargs="?", metavar="ID", help="gateway id (default: --env's)")
    p.add_argument("--env", metavar="NAME", help=env_help)
    p.add_argument("--yes", "-y", action="store_true", help="delete without asking")
    p = add(
        "sync",
        "create or update the gateways so that they match the file",
        "Read every gateway of the account with one list call, then per environment: "
        "create it if missing, update it if a setting of the file drifted (printing "
        "old -> new; settings the file does not name are sent back unchanged), or leave "
        "it alone. A repeated sync writes nothing.",
    )
    p.add_argument("--env", metavar="NAME", help="only this environment (default: all)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan, write nothing (without a token: show the file)",
    )
    p = add(
        "plan",
        "show what sync would change (sync --dry-run)",
        "Read the account's gateways (and the routes and stored keys the file names), then "
        "print per environment what sync would add, change or leave alone; secrets masked. "
        "Writes nothing: a read-only token (AI Gateway Read) is enough.",
    )
    p.add_argument("--env", metavar="NAME", help="only this environment (default: all)")
    return parser


COMMANDS = {
    "list": cmd_list,
    "get": cmd_get,
    "create": cmd_create,
    "update": cmd_update,
    "delete": cmd_delete,
    "sync": cmd_sync,
    "plan": cmd_plan,
}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.json = getattr(args, "json", False)
    args.verbose = getattr(args, "verbose", False)
    try:
        timeout = getattr(args, "timeout", None)
        args.timeout = (
            timeout if timeout is not None else _env_float("AI_GATEWAY_TIMEOUT", DEFAULT_TIMEOUT)
        )
        if not 0 < args.timeout <= 86400:  # also refuses nan and inf
            raise CliError("--timeout must be more than 0 and at most 86400 seconds", EXIT_USAGE)
        args.attempts = getattr(args, "attempts", 4)
        if args.attempts < 1:
            raise CliError("--attempts must be 1 or more", EXIT_USAGE)
        config = getattr(args, "config", None) or DEFAULT_CONFIG
        schema("gateway_create")  # the API's rules first: without them nothing is checked
        settings = load_settings(Path(config))
        return COMMANDS[args.command](args, settings)
    except CliError as exc:
        note(f"error: {exc.message}")
        return exc.exit_code
    except KeyboardInterrupt:
        note("error: interrupted; nothing more was sent (run the same command again)")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a bug: one line, never a traceback
        note(
            f"error: unexpected {type(exc).__name__}: {exc} (please report it; rerun with "
            "--verbose to see which request failed)"
        )
        return EXIT_API


if __name__ == "__main__":
    sys.exit(main())

"""``python -m {{ package_name }} eval``: the cases of ``evals/dataset.jsonl`` sent through the
gateway with the service's own client code (providers.Upstream: the same settings, headers
and limits as the service, no service needed), each reply scored, a table and the pass rate
printed, a JSON report written; exit 1 under ``--threshold``.

A case is one JSON line::

    {"name": "pong", "prompt": "Reply with exactly: pong", "expect": {"exact": "pong"}}

``prompt`` or ``messages``; optional ``provider``, ``model``, ``max_tokens``, ``temperature``,
``response_format``. ``expect`` holds one or more scorers, all of which must pass:
``exact`` (the reply, stripped), ``contains`` (case-insensitive), ``regex`` (``re.search``),
``json_schema`` (the reply is JSON valid against it: the keywords JSON_SCHEMA_KEYWORDS) and
``judge`` (criteria a model judges through the same gateway: its answer starts with PASS).

``--feedback`` sends each case's result to its gateway log (feedback.py: 100 and 1 for a
pass, 0 and -1 for a failure), where the gateway's evaluations can use it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import UpstreamError
from .providers import DEFAULT_PROVIDER, PROVIDERS, Upstream
from .settings import Settings, SettingsError, load_settings

DATASET = Path("evals/dataset.jsonl")
SCORERS = ("exact", "contains", "regex", "json_schema", "judge")
JSON_SCHEMA_KEYWORDS = (
    "type, enum, const, properties, required, additionalProperties (false), items, "
    "minItems, maxItems, minLength, maxLength, pattern, minimum, maximum"
)
JUDGE_PROMPT = """You grade an assistant's reply against criteria.
Criteria: {criteria}
Reply: {reply}
Answer with one word: PASS if the reply meets the criteria, else FAIL."""
TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


class DatasetError(Exception):
    """The dataset cannot be used; the message names the file and line."""


@dataclass
class Case:
    name: str
    messages: list[dict[str, Any]]
    expect: dict[str, Any]
    provider: str = DEFAULT_PROVIDER
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # max_tokens, temperature, ...


@dataclass
class Result:
    name: str
    scorers: str
    passed: bool
    reply: str
    detail: str
    log_id: str | None
    model: str | None = None
    feedback_sent: bool = False


def read_dataset(path: Path) -> list[Case]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DatasetError(f"{path}: {error.strerror}") from None
    cases = [parse_case(path, number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if not cases:
        raise DatasetError(f"{path}: no cases")
    return cases


def parse_case(path: Path, number: int, line: str) -> Case:
    where = f"{path}:{number}"
    try:
        data = json.loads(line)
    except ValueError:
        raise DatasetError(f"{where}: not a JSON line") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise DatasetError(f'{where}: a case is a JSON object with a "name"')
    expect = data.get("expect")
    if not isinstance(expect, dict) or not expect or set(expect) - set(SCORERS):
        raise DatasetError(f'{where}: "expect" takes one or more of {", ".join(SCORERS)}')
    messages = data.get("messages") or [{"role": "user", "content": data.get("prompt")}]
    if not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
        raise DatasetError(f'{where}: give "prompt" (text) or "messages" ({{role, content}})')
    provider = data.get("provider", DEFAULT_PROVIDER)
    if provider not in PROVIDERS:
        raise DatasetError(f'{where}: "provider" is one of {", ".join(PROVIDERS)}')
    options = {k: data[k] for k in ("max_tokens", "temperature", "response_format") if k in data}
    return Case(data["name"], messages, expect, provider, data.get("model"), options)


def schema_problem(value: Any, schema: dict[str, Any], where: str = "$") -> str | None:
    """The first way ``value`` breaks ``schema`` (JSON_SCHEMA_KEYWORDS only), or None."""
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    if kinds and not any(_is(value, k) for k in kinds):
        return f"{where} is not {' or '.join(kinds)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} is not one of {schema['enum']}"
    if "const" in schema and value != schema["const"]:
        return f"{where} is not {schema['const']!r}"
    if isinstance(value, dict):
        return _object_problem(value, schema, where)
    if isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            return f"{where} has {len(value)} items"
        found = (
            schema_problem(v, schema.get("items", {}), f"{where}[{i}]") for i, v in enumerate(value)
        )
        return next((p for p in found if p), None)
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            return f"{where} has {len(value)} characters"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{where} does not match {schema['pattern']!r}"
    if _is(value, "number"):
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            return f"{where} is out of range"
    return None


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    return isinstance(value, TYPES.get(kind, object))


def _object_problem(value: dict[str, Any], schema: dict[str, Any], where: str) -> str | None:
    missing = [key for key in schema.get("required", []) if key not in value]
    if missing:
        return f"{where} lacks {', '.join(missing)}"
    properties = schema.get("properties", {})
    if schema.get("additionalProperties") is False and set(value) - set(properties):
        return f"{where} has {', '.join(sorted(set(value) - set(properties)))}"
    for key, sub in properties.items():
        problem = schema_problem(value[key], sub, f"{where}.{key}") if key in value else None
        if problem:
            return problem
    return None


def score(kind: str, expected: Any, reply: str) -> str | None:
    """Why ``reply`` fails the scorer, or None (``judge`` is scored by ``judged``)."""
    if kind == "exact":
        return None if reply.strip() == expected else f"not exactly {expected!r}"
    if kind == "contains":
        return None if str(expected).lower() in reply.lower() else f"no {expected!r}"
    if kind == "regex":
        return None if re.search(expected, reply) else f"no match for {expected!r}"
    try:
        value = json.loads(reply)
    except ValueError:
        return "not JSON"
    return schema_problem(value, expected)


async def judged(
    upstream: Upstream, case: Case, criteria: str, reply: str, model: str | None
) -> str | None:
    """The judge model's verdict on ``reply`` (through the same gateway), or why not PASS."""
    prompt = JUDGE_PROMPT.format(criteria=criteria, reply=reply)
    answer = await upstream.chat(
        [{"role": "user", "content": prompt}], provider=case.provider, model=model or case.model
    )
    verdict = (await answer.text()).strip()
    return None if verdict.upper().startswith("PASS") else f"judge: {verdict[:40]!r}"


async def run_case(upstream: Upstream, case: Case, judge_model: str | None) -> Result:
    scorers = "+".join(case.expect)
    try:
        answer = await upstream.chat(
            case.messages, provider=case.provider, model=case.model, **case.options
        )
        reply = await answer.text()
    except UpstreamError as error:
        return Result(case.name, scorers, False, "", str(error), error.log_id)
    problems = [score(k, v, reply) for k, v in case.expect.items() if k != "judge"]
    if "judge" in case.expect and not any(problems):
        problems.append(await judged(upstream, case, case.expect["judge"], reply, judge_model))
    found = [p for p in problems if p]
    detail = "; ".join(found) if found else "ok"
    return Result(case.name, scorers, not found, reply, detail, answer.gateway.log_id, answer.model)


async def evaluate(settings: Settings, cases: list[Case], judge_model: str | None) -> list[Result]:
    results = []
    async with Upstream(settings) as upstream:
        for case in cases:
            async with asyncio.timeout(settings.request_timeout):
                results.append(await run_case(upstream, case, judge_model))
    return results


async def send_all_feedback(settings: Settings, results: list[Result]) -> list[str]:
    """Each result to its log (100/1 or 0/-1); the problems, one line each."""
    # Here, not at the top: feedback.py is also the /feedback route, and FastAPI's import
    # would slow every command of the CLI by a tenth of a second.
    from .feedback import Feedback, FeedbackError, send_feedback

    problems = []
    for result in results:
        if result.log_id is None:
            continue
        mark = Feedback(
            log_id=result.log_id,
            score=100 if result.passed else 0,
            feedback=1 if result.passed else -1,
        )
        try:
            await send_feedback(settings, mark)
            result.feedback_sent = True
        except (FeedbackError, TimeoutError) as error:
            problems.append(f"feedback for {result.name}: {error or 'no answer in time'}")
    return problems


def table(results: list[Result]) -> str:
    """The results, one line each, at most 80 columns."""
    lines = [f"{'case':<24} {'scorer':<18} {'result':<6} {'log id':<28}"]
    for r in results:
        name, scorers = r.name[:24], r.scorers[:18]
        lines.append(
            f"{name:<24} {scorers:<18} {'pass' if r.passed else 'FAIL':<6} {(r.log_id or '-')[:28]}"
        )
        if not r.passed:
            lines.append(f"  {r.detail}"[:80])
    return "\n".join(line.rstrip() for line in lines)


def add_parser(commands: Any) -> None:
    command = commands.add_parser("eval", help="score the evals dataset through the gateway")
    command.add_argument(
        "--dataset", type=Path, default=DATASET, help=f"JSONL cases (default {DATASET})"
    )
    command.add_argument(
        "--threshold", type=float, default=0.8, help="pass rate needed, 0 to 1 (default 0.8)"
    )
    command.add_argument(
        "--report",
        type=Path,
        default=Path("evals/report.json"),
        help="JSON report to write (default evals/report.json)",
    )
    command.add_argument("--judge-model", help="model of the judge (default: the case's model)")
    command.add_argument(
        "--feedback",
        action="store_true",
        help="send each score to its gateway log (CLOUDFLARE_API_TOKEN)",
    )


def run(args: argparse.Namespace) -> int:
    """Exit 0 at or over the threshold, 1 under it (or when feedback failed), 2 when the
    dataset or a setting cannot be used."""
    try:
        settings = load_settings()
        settings.check()
        cases = read_dataset(args.dataset)
    except (DatasetError, SettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        results = asyncio.run(evaluate(settings, cases, args.judge_model))
        problems = asyncio.run(send_all_feedback(settings, results)) if args.feedback else []
    except SettingsError as error:  # one a provider needs only when it is called
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TimeoutError:
        print(f"error: a case had no answer within {settings.request_timeout:g} s", file=sys.stderr)
        return 1
    passed = sum(r.passed for r in results)
    rate = passed / len(results)
    print(table(results))
    print(f"\npassed {passed} of {len(results)}: {rate:.0%} (threshold {args.threshold:.0%})")
    report = {
        "dataset": str(args.dataset),
        "threshold": args.threshold,
        "passed": passed,
        "total": len(results),
        "pass_rate": rate,
        "cases": [asdict(r) for r in results],
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(
        json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    print(f"report: {args.report}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 0 if rate >= args.threshold and not problems else 1

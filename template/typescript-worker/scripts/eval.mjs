#!/usr/bin/env node
// `npm run eval -- [--url U | --local] [--dataset F] [--threshold 0.8] [--report F] [--model M]
// [--judge-model M] [--feedback]`: the cases of evals/dataset.jsonl sent to the running Worker
// (`npm run dev`, or the deployed one) through its own /v1/chat/completions, with the caller key
// in SERVICE_API_KEY; each reply scored, a table and the pass rate printed, a JSON report
// written. --local starts this Worker for the run instead (`wrangler dev --local` on a free
// port, stopped at the end) with AI_GATEWAY_BASE_URL, CLOUDFLARE_API_BASE_URL and its secrets
// taken from this environment, never from .dev.vars: `npm run eval:fake` runs it that way in
// front of scripts/fake_gateway.py, which sets them all to stand-ins (what CI runs). Exit 0 at
// or over the threshold, 1 under it (or when feedback failed), 2 when the dataset or an option
// cannot be used. The same dataset and scorers as the Python service's
// `python -m <package> eval`: exact (the reply, trimmed), contains (case-insensitive), regex,
// json_schema (a subset: type, enum, const, properties, required, additionalProperties false,
// items, minItems, maxItems, minLength, maxLength, pattern, minimum, maximum) and judge
// (criteria a model judges through the same Worker: its answer starts with PASS).
// --feedback sends each result to its gateway log through the Worker's POST /feedback.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { devNull } from "node:os";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const SCORERS = ["exact", "contains", "regex", "json_schema", "judge"];
const TIMEOUT_MS = 60_000; // per request: a case never hangs the run
const JUDGE_PROMPT = (criteria, reply) =>
  `You grade an assistant's reply against criteria.\nCriteria: ${criteria}\nReply: ${reply}\n` +
  "Answer with one word: PASS if the reply meets the criteria, else FAIL.";

class UsageError extends Error {}

function options() {
  const { values } = parseArgs({
    options: {
      url: { type: "string", default: "http://127.0.0.1:8787" },
      dataset: { type: "string", default: "evals/dataset.jsonl" },
      threshold: { type: "string", default: "0.8" },
      report: { type: "string", default: "evals/report.json" },
      model: { type: "string" },
      "judge-model": { type: "string" },
      feedback: { type: "boolean", default: false },
      local: { type: "boolean", default: false },
    },
  });
  const threshold = Number(values.threshold);
  if (!(threshold >= 0 && threshold <= 1)) throw new UsageError("--threshold is a number from 0 to 1");
  return { ...values, threshold, url: values.url.replace(/\/+$/, "") };
}

function parseCase(where, line) {
  let data;
  try {
    data = JSON.parse(line);
  } catch {
    throw new UsageError(`${where}: not a JSON line`);
  }
  if (typeof data !== "object" || data === null || typeof data.name !== "string") {
    throw new UsageError(`${where}: a case is a JSON object with a "name"`);
  }
  const { expect } = data;
  const kinds = typeof expect === "object" && expect !== null ? Object.keys(expect) : [];
  if (!kinds.length || kinds.some((kind) => !SCORERS.includes(kind))) {
    throw new UsageError(`${where}: "expect" takes one or more of ${SCORERS.join(", ")}`);
  }
  const messages = data.messages ?? [{ role: "user", content: data.prompt }];
  if (!Array.isArray(messages) || !messages.every((m) => typeof m?.content === "string")) {
    throw new UsageError(`${where}: give "prompt" (text) or "messages" ({role, content})`);
  }
  const extra = Object.fromEntries(
    ["max_tokens", "temperature", "response_format"].filter((k) => k in data).map((k) => [k, data[k]]),
  );
  return { name: data.name, messages, expect, model: data.model, extra };
}

function readDataset(path) {
  let text;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`${path}: ${err.code === "ENOENT" ? "no such file" : err.message}`);
  }
  const cases = text
    .split("\n")
    .map((line, i) => [i + 1, line.trim()])
    .filter(([, line]) => line && !line.startsWith("#"))
    .map(([number, line]) => parseCase(`${path}:${number}`, line));
  if (!cases.length) throw new UsageError(`${path}: no cases`);
  return cases;
}

const is = (value, kind) =>
  ({
    object: typeof value === "object" && value !== null && !Array.isArray(value),
    array: Array.isArray(value),
    string: typeof value === "string",
    integer: Number.isInteger(value),
    number: typeof value === "number",
    boolean: typeof value === "boolean",
    null: value === null,
  })[kind] ?? true;

/** The first way `value` breaks `schema` (the subset above), or null. */
export function schemaProblem(value, schema, where = "$") {
  const kinds = [schema.type ?? []].flat();
  if (kinds.length && !kinds.some((kind) => is(value, kind))) return `${where} is not ${kinds.join(" or ")}`;
  if (schema.enum && !schema.enum.some((v) => JSON.stringify(v) === JSON.stringify(value))) {
    return `${where} is not one of ${JSON.stringify(schema.enum)}`;
  }
  if ("const" in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) {
    return `${where} is not ${JSON.stringify(schema.const)}`;
  }
  if (is(value, "object")) return objectProblem(value, schema, where);
  if (Array.isArray(value)) {
    if (value.length < (schema.minItems ?? 0) || value.length > (schema.maxItems ?? Infinity)) {
      return `${where} has ${value.length} items`;
    }
    for (const [i, item] of value.entries()) {
      const problem = schemaProblem(item, schema.items ?? {}, `${where}[${i}]`);
      if (problem) return problem;
    }
  }
  if (typeof value === "string") {
    if (value.length < (schema.minLength ?? 0) || value.length > (schema.maxLength ?? Infinity)) {
      return `${where} has ${value.length} characters`;
    }
    if (schema.pattern && !new RegExp(schema.pattern, "u").test(value)) {
      return `${where} does not match ${JSON.stringify(schema.pattern)}`;
    }
  }
  if (typeof value === "number" && (value < (schema.minimum ?? value) || value > (schema.maximum ?? value))) {
    return `${where} is out of range`;
  }
  return null;
}

function objectProblem(value, schema, where) {
  const missing = (schema.required ?? []).filter((key) => !(key in value));
  if (missing.length) return `${where} lacks ${missing.join(", ")}`;
  const properties = schema.properties ?? {};
  const extra = Object.keys(value).filter((key) => !(key in properties));
  if (schema.additionalProperties === false && extra.length) return `${where} has ${extra.sort().join(", ")}`;
  for (const [key, sub] of Object.entries(properties)) {
    const problem = key in value ? schemaProblem(value[key], sub, `${where}.${key}`) : null;
    if (problem) return problem;
  }
  return null;
}

/** Why `reply` fails the scorer, or null (`judge` is scored by the judge model). */
export function score(kind, expected, reply) {
  if (kind === "exact") return reply.trim() === expected ? null : `not exactly ${JSON.stringify(expected)}`;
  if (kind === "contains") {
    return reply.toLowerCase().includes(String(expected).toLowerCase()) ? null : `no ${JSON.stringify(expected)}`;
  }
  if (kind === "regex") return new RegExp(expected, "u").test(reply) ? null : `no match for ${JSON.stringify(expected)}`;
  let value;
  try {
    value = JSON.parse(reply);
  } catch {
    return "not JSON";
  }
  return schemaProblem(value, expected);
}

/** One call to the Worker: its JSON answer and headers, or an Error naming the status. */
async function call(url, path, body, key) {
  const headers = { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) };
  const init = { method: body ? "POST" : "GET", headers, signal: AbortSignal.timeout(TIMEOUT_MS) };
  const response = await fetch(`${url}${path}`, body ? { ...init, body: JSON.stringify(body) } : init);
  const answer = await response.json().catch(() => ({}));
  const logId = response.headers.get("cf-aig-log-id");
  if (!response.ok) {
    const message = answer?.error?.message ?? answer?.error ?? "no message";
    throw Object.assign(new Error(`${path} answered ${response.status}: ${message}`), { logId });
  }
  return { answer, logId };
}

async function runCase(run, item) {
  const scorers = Object.keys(item.expect).join("+");
  const model = item.model ?? run.model;
  let answer;
  let logId;
  try {
    ({ answer, logId } = await call(run.url, "/v1/chat/completions", { model, messages: item.messages, ...item.extra }, run.key));
  } catch (err) {
    return { name: item.name, scorers, passed: false, reply: "", detail: err.message, log_id: err.logId ?? null, model };
  }
  const reply = answer.choices?.[0]?.message?.content ?? "";
  const problems = Object.entries(item.expect)
    .filter(([kind]) => kind !== "judge")
    .map(([kind, expected]) => score(kind, expected, reply));
  if (item.expect.judge !== undefined && !problems.some(Boolean)) {
    problems.push(await judged(run, item.expect.judge, reply, run.judgeModel ?? model));
  }
  const found = problems.filter(Boolean);
  const detail = found.length ? found.join("; ") : "ok";
  return { name: item.name, scorers, passed: !found.length, reply, detail, log_id: logId, model: answer.model ?? model };
}

async function judged(run, criteria, reply, model) {
  const messages = [{ role: "user", content: JUDGE_PROMPT(criteria, reply) }];
  try {
    const { answer } = await call(run.url, "/v1/chat/completions", { model, messages }, run.key);
    const verdict = String(answer.choices?.[0]?.message?.content ?? "").trim();
    return verdict.toUpperCase().startsWith("PASS") ? null : `judge: ${JSON.stringify(verdict.slice(0, 40))}`;
  } catch (err) {
    return `judge: ${err.message}`;
  }
}

/** Each result to its log (100/1 or 0/-1); the problems, one line each. */
async function sendFeedback(run, results) {
  const problems = [];
  for (const result of results.filter((r) => r.log_id)) {
    const body = { log_id: result.log_id, score: result.passed ? 100 : 0, feedback: result.passed ? 1 : -1 };
    try {
      await call(run.url, "/feedback", body, run.key);
      result.feedback_sent = true;
    } catch (err) {
      problems.push(`feedback for ${result.name}: ${err.message}`);
    }
  }
  return problems;
}

/** The results, one line each, at most 80 columns. */
function table(results) {
  const row = (...cells) => cells.map((cell, i) => String(cell).slice(0, [24, 18, 6, 28][i]).padEnd([24, 18, 6, 28][i])).join(" ").trimEnd();
  const lines = [row("case", "scorer", "result", "log id")];
  for (const r of results) {
    lines.push(row(r.name, r.scorers, r.passed ? "pass" : "FAIL", r.log_id ?? "-"));
    if (!r.passed) lines.push(`  ${r.detail}`.slice(0, 80));
  }
  return lines.join("\n");
}

/** A loopback TCP port nobody listens on right now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer().once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const WRANGLER = fileURLToPath(new URL("../node_modules/wrangler/bin/wrangler.js", import.meta.url));
const START_MS = 120_000; // the build (callers.toml) and workerd's start, on a slow runner

/**
 * This Worker under `wrangler dev --local`, in its own process group: its URL and `stop()`.
 * The gateway's and the API's URLs go in as --var (they are no secrets); `--env-file` with an
 * empty file makes wrangler skip .dev.vars and read the secrets the config requires from this
 * process's environment instead, so none is ever on a command line.
 */
async function startWorker(env) {
  const port = await freePort();
  const vars = ["AI_GATEWAY_BASE_URL", "CLOUDFLARE_API_BASE_URL"]
    .filter((name) => env[name])
    .flatMap((name) => ["--var", `${name}:${env[name]}`]);
  const args = ["dev", "--local", "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", String(await freePort())];
  const child = spawn(process.execPath, [WRANGLER, ...args, "--env-file", devNull, ...vars], {
    env,
    detached: true, // its own process group: stop() ends workerd too
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (chunk) => {
    output = (output + chunk).slice(-4000); // shown only if it does not come up
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      child.kill("SIGTERM");
    }
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  };
  const url = `http://127.0.0.1:${port}`;
  const giveUp = Date.now() + START_MS;
  let gone = false;
  exited.then(() => {
    gone = true;
  });
  while (!gone && Date.now() < giveUp) {
    const health = fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) });
    if (await health.then((answer) => answer.ok, () => false)) return { url, stop };
    await new Promise((resolve) => setTimeout(resolve, 100)); // not up yet, or not healthy
  }
  await stop();
  throw new UsageError(`wrangler dev --local did not start:\n${output.trim()}`);
}

async function main() {
  let run;
  let cases;
  try {
    const args = options();
    cases = readDataset(args.dataset);
    run = { ...args, key: process.env.SERVICE_API_KEY, judgeModel: args["judge-model"] };
  } catch (err) {
    if (!(err instanceof UsageError || err instanceof TypeError)) throw err;
    console.error(`error: ${err.message}`);
    return 2;
  }
  if (!run.local) return evaluate(run, cases);
  // A caller key for this run only, unless one is given (callers.toml's keys work as well).
  const env = { ...process.env, SERVICE_API_KEY: run.key || randomBytes(24).toString("base64url") };
  let worker;
  try {
    worker = await startWorker(env);
  } catch (err) {
    console.error(`error: ${err.message}`);
    return 2;
  }
  try {
    return await evaluate({ ...run, url: worker.url, key: env.SERVICE_API_KEY }, cases);
  } finally {
    await worker.stop();
  }
}

async function evaluate(run, cases) {
  try {
    run.model ??= (await call(run.url, "/v1/models", null, run.key)).answer.data?.[0]?.id;
  } catch (err) {
    console.error(`error: ${err.message} (is the Worker running at ${run.url}?)`);
    return 2;
  }
  const results = [];
  for (const item of cases) results.push(await runCase(run, item));
  const problems = run.feedback ? await sendFeedback(run, results) : [];
  const passed = results.filter((r) => r.passed).length;
  const rate = passed / results.length;
  const percent = (x) => `${Math.round(x * 100)}%`;
  console.log(table(results));
  console.log(`\npassed ${passed} of ${results.length}: ${percent(rate)} (threshold ${percent(run.threshold)})`);
  const report = { dataset: run.dataset, threshold: run.threshold, passed, total: results.length, pass_rate: rate, cases: results };
  mkdirSync(dirname(run.report), { recursive: true });
  writeFileSync(run.report, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`report: ${run.report}`);
  for (const problem of problems) console.error(`error: ${problem}`);
  return rate >= run.threshold && !problems.length ? 0 : 1;
}

process.exitCode = await main();

#!/usr/bin/env node
// callers.toml, the Worker's callers: checked and compiled into src/callers.generated.ts when
// the Worker is built, so the Worker reads no file at run time.
//
//   node scripts/callers.mjs [build]      check callers.toml, write src/callers.generated.ts
//   npm run callers -- add NAME [--models a,b] [--max-tokens N] [--rpm N]
//   npm run callers -- remove NAME
//   npm run callers -- bindings           add the rate limiting bindings callers.toml needs
//
// wrangler runs `build` before `wrangler dev` and `wrangler deploy` (its [build] command), npm
// install and the tests run it too. A file that is not valid exits 1 with one line naming the
// file and the rule; add and remove refuse with exit 2 and leave every file as it was.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { parse } from "smol-toml";

const CALLERS_FILE = "callers.toml";
const GENERATED = "src/callers.generated.ts";
const NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const FIELDS = ["key_sha256", "models", "max_tokens", "requests_per_minute"];
const MAX_TOKENS_LIMIT = 1_000_000; // the largest max_tokens /chat takes
const PERIOD = 60; // seconds: requests_per_minute's window

/** callers.toml (or the wrangler config) is not valid: exit 1, the message names the rule. */
class Invalid extends Error {}
/** add/remove cannot do what was asked: exit 2, nothing written. */
class Refused extends Error {}

const bindingName = (perMinute) => `CALLERS_RPM_${perMinute}`;

// --- The wrangler config: its environments, their ALLOWED_MODELS and rate limiting bindings.

/** `text` without // and /* comments and trailing commas (outside strings): JSON. */
function stripJsonc(text) {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const end = /"(?:[^"\\]|\\.)*"/y;
      end.lastIndex = i;
      const match = end.exec(text);
      if (!match) throw new Invalid("an unterminated string");
      out += match[0];
      i += match[0].length - 1;
    } else if (c === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") i++;
      out += "\n";
    } else if (c === "/" && text[i + 1] === "*") {
      i = text.indexOf("*/", i + 2) + 1;
      if (i === 0) throw new Invalid("an unterminated comment");
    } else out += c;
  }
  return out.replace(/,(\s*[}\]])/g, "$1");
}

function readWrangler() {
  const path = ["wrangler.toml", "wrangler.jsonc", "wrangler.json"].find((name) => existsSync(name));
  if (!path) throw new Invalid("no wrangler.toml or wrangler.jsonc in this directory");
  const text = readFileSync(path, "utf8");
  let config;
  try {
    config = path.endsWith(".toml") ? parse(text) : JSON.parse(stripJsonc(text));
  } catch (error) {
    throw new Invalid(`${path}: cannot be read: ${error.message.split("\n")[0]}`);
  }
  // The top level is an environment too; [env.<name>] inherit no bindings and no [vars].
  const environments = [{ key: null, name: config.name, table: config }];
  for (const [key, table] of Object.entries(config.env ?? {})) {
    environments.push({ key, name: table.name ?? `${config.name}-${key}`, table });
  }
  return { path, text, environments };
}

/** Every model of ALLOWED_MODELS in any environment (null: some environment has none set). */
function allowedModels(environments) {
  const models = new Set();
  for (const { table } of environments) {
    const list = String(table.vars?.ALLOWED_MODELS ?? "")
      .split(",")
      .map((model) => model.trim())
      .filter(Boolean);
    if (!list.length) return null; // its routes' default models: not known here
    for (const model of list) models.add(model);
  }
  return models;
}

// --- callers.toml: the same rules as the service's Python twin, in the same words.

function readCallersText() {
  return existsSync(CALLERS_FILE) ? readFileSync(CALLERS_FILE, "utf8") : "";
}

function parseCallers(text, allowed) {
  let data;
  try {
    data = parse(text);
  } catch (error) {
    throw new Invalid(`${CALLERS_FILE}: cannot be read: ${error.message.split("\n")[0]}`);
  }
  const unknown = Object.keys(data).filter((key) => key !== "callers");
  if (unknown.length) throw new Invalid(`${CALLERS_FILE}: unknown table '${unknown[0]}' (only [callers.<name>])`);
  const tables = data.callers ?? {};
  if (typeof tables !== "object" || Array.isArray(tables)) {
    throw new Invalid(`${CALLERS_FILE}: callers must be tables: [callers.<name>]`);
  }
  const owners = new Map();
  const keys = [];
  let defaultCaller = caller("default", {});
  for (const [name, table] of Object.entries(tables)) {
    const where = `${CALLERS_FILE}: callers.${name}`;
    const { found, hashes } = checkCaller(where, name, table, allowed);
    for (const sha256 of hashes) {
      if (owners.has(sha256)) throw new Invalid(`${where}: a key_sha256 also used by callers.${owners.get(sha256)}`);
      owners.set(sha256, name);
      keys.push({ sha256, caller: found });
    }
    if (name === "default") defaultCaller = found;
  }
  return { default: defaultCaller, keys };
}

function caller(name, table) {
  const perMinute = table.requests_per_minute ?? null;
  return {
    name,
    models: table.models ?? [],
    max_tokens: table.max_tokens ?? null,
    requests_per_minute: perMinute,
    rate_limit: perMinute === null ? null : bindingName(perMinute),
  };
}

function checkCaller(where, name, table, allowed) {
  if (!NAME.test(name)) throw new Invalid(`${where}: a name is 1 to 64 of a-z 0-9 _ -, not starting with _ -`);
  if (typeof table !== "object" || table === null || Array.isArray(table)) throw new Invalid(`${where} must be a table`);
  const unknown = Object.keys(table).filter((key) => !FIELDS.includes(key));
  if (unknown.length) throw new Invalid(`${where}: unknown key '${unknown[0]}' (known: ${FIELDS.join(", ")})`);
  const hashes = checkHashes(where, name, table.key_sha256);
  const { models = [] } = table;
  if (!Array.isArray(models) || !models.every((model) => typeof model === "string")) {
    throw new Invalid(`${where}.models must be a list of model names`);
  }
  for (const model of models) {
    if (allowed && !allowed.has(model)) throw new Invalid(`${where}.models: '${model}' is not in ALLOWED_MODELS`);
  }
  checkCount(where, table, "max_tokens", MAX_TOKENS_LIMIT);
  checkCount(where, table, "requests_per_minute", null);
  return { found: caller(name, table), hashes };
}

function checkHashes(where, name, value) {
  if (name === "default") {
    if (value !== undefined) throw new Invalid(`${where}.key_sha256: default's key is SERVICE_API_KEY; remove the hash`);
    return [];
  }
  const values = Array.isArray(value) ? value : [value];
  if (value === undefined || !values.length) {
    throw new Invalid(`${where}: key_sha256 is missing (the SHA-256 of its key)`);
  }
  const hashes = [];
  for (const one of values) {
    if (typeof one !== "string" || !SHA256_HEX.test(one.toLowerCase())) {
      throw new Invalid(`${where}.key_sha256: not 64 hex characters (a SHA-256)`);
    }
    if (hashes.includes(one.toLowerCase())) throw new Invalid(`${where}.key_sha256: the same hash is listed twice`);
    hashes.push(one.toLowerCase());
  }
  return hashes;
}

function checkCount(where, table, key, most) {
  const value = table[key];
  if (value === undefined) return;
  const whole = (typeof value === "bigint" || Number.isInteger(value)) && value >= 1;
  if (!whole || (most !== null && value > most) || !Number.isSafeInteger(Number(value))) {
    throw new Invalid(`${where}.${key} must be a whole number from 1${most ? ` to ${most}` : " or more"}`);
  }
  table[key] = Number(value);
}

// --- The rate limiting bindings: one per requests_per_minute, in every environment.

/** The requests_per_minute values whose binding an environment lacks: `[[env, perMinute]]`. */
function missingBindings(table, environments) {
  const wanted = new Set(
    [table.default, ...table.keys.map((key) => key.caller)].flatMap((c) => c.requests_per_minute ?? []),
  );
  const missing = [];
  for (const environment of environments) {
    const bindings = environment.table.ratelimits ?? [];
    for (const perMinute of [...wanted].sort((a, b) => a - b)) {
      const found = bindings.find((binding) => binding.name === bindingName(perMinute));
      const fits = found?.simple?.limit === perMinute && found?.simple?.period === PERIOD;
      if (found && !fits) {
        throw new Invalid(
          `${environment.key ? `env.${environment.key}.` : ""}ratelimits ${found.name}: ` +
            `its simple must be { limit = ${perMinute}, period = ${PERIOD} }`,
        );
      }
      if (!found) missing.push([environment, perMinute]);
    }
  }
  return missing;
}

/** A namespace id of its own per Worker and limit (the account's namespaces are shared). */
function namespaceId(workerName, perMinute) {
  const hash = createHash("sha256").update(`${workerName}:${perMinute}`).digest();
  return String(1_000_000_000 + (hash.readUInt32BE(0) % 1_000_000_000));
}

function tomlBinding(environment, perMinute) {
  const header = environment.key ? `[[env.${environment.key}.ratelimits]]` : "[[ratelimits]]";
  return [
    "",
    `# The callers of callers.toml with requests_per_minute = ${perMinute} (npm run callers).`,
    header,
    `name = "${bindingName(perMinute)}"`,
    `namespace_id = "${namespaceId(environment.name, perMinute)}"`,
    `simple = { limit = ${perMinute}, period = ${PERIOD} }`,
    "",
  ].join("\n");
}

function jsoncBinding(indent, environment, perMinute) {
  return [
    `${indent}{`,
    `${indent}  "name": "${bindingName(perMinute)}",`,
    `${indent}  "namespace_id": "${namespaceId(environment.name, perMinute)}",`,
    `${indent}  "simple": { "limit": ${perMinute}, "period": ${PERIOD} }`,
    `${indent}}`,
  ].join("\n");
}

/**
 * The wrangler config with the missing bindings added. TOML: new [[ratelimits]] tables at the
 * end. JSONC: into each environment's "ratelimits" array or, where there is none yet, a new
 * one before its "vars" (environments in file order, the top level first).
 */
function withBindings(wrangler, missing) {
  if (wrangler.path.endsWith(".toml")) {
    const added = missing.map(([environment, perMinute]) => tomlBinding(environment, perMinute)).join("");
    return wrangler.text.replace(/\n*$/, "\n") + added;
  }
  const count = wrangler.environments.length;
  const arrays = [...wrangler.text.matchAll(/^([ \t]*)"ratelimits":\s*\[/gm)];
  const vars = [...wrangler.text.matchAll(/^([ \t]*)"vars":\s*\{/gm)];
  const anchors = arrays.length ? arrays : vars;
  if (anchors.length !== count) {
    throw new Refused(
      `${wrangler.path}: cannot tell where each environment's "ratelimits" goes; add\n` +
        `"ratelimits": [] to each of its ${count} environments, then run this again`,
    );
  }
  let text = wrangler.text;
  // From the last environment to the first, so earlier offsets stay right.
  for (let index = count - 1; index >= 0; index--) {
    const environment = wrangler.environments[index];
    const adds = missing.filter(([env]) => env === environment).map(([, perMinute]) => perMinute);
    if (!adds.length) continue;
    const [match, indent] = anchors[index];
    const items = adds.map((perMinute) => jsoncBinding(`${indent}  `, environment, perMinute)).join(",\n");
    if (anchors === vars) {
      const at = anchors[index].index;
      text = `${text.slice(0, at)}${indent}"ratelimits": [\n${items}\n${indent}],\n${text.slice(at)}`;
      continue;
    }
    const at = anchors[index].index + match.length;
    const empty = /^\s*\]/.test(text.slice(at));
    text = `${text.slice(0, at)}\n${items}${empty ? `\n${indent}` : ","}${text.slice(at).replace(/^\s*\]/, "]")}`;
  }
  return text;
}

// --- What wrangler's build runs: the table as a TypeScript module.

function generated(table) {
  return [
    "// Generated from callers.toml by scripts/callers.mjs when the Worker is built: edit",
    "// callers.toml, not this file (it is not committed).",
    'import type { CallerTable } from "./callers";',
    "",
    `export const TABLE: CallerTable = ${JSON.stringify(table, null, 2)};`,
    "",
  ].join("\n");
}

function build() {
  const wrangler = readWrangler();
  const table = parseCallers(readCallersText(), allowedModels(wrangler.environments));
  const missing = missingBindings(table, wrangler.environments);
  if (missing.length) {
    const [[environment, perMinute]] = missing;
    const where = environment.key ? `env.${environment.key}` : "the top level";
    throw new Invalid(
      `${wrangler.path}: no rate limiting binding ${bindingName(perMinute)} at ${where}\n` +
        `(${CALLERS_FILE}: requests_per_minute = ${perMinute}): run npm run callers -- bindings`,
    );
  }
  const text = generated(table);
  // Written only when it changes: wrangler dev rebuilds on every change under src/.
  if (!existsSync(GENERATED) || readFileSync(GENERATED, "utf8") !== text) writeFileSync(GENERATED, text);
}

// --- add, remove, bindings: edit the text, keeping its comments; check before writing.

function replaceFile(path, text) {
  const temporary = `${path}.tmp`;
  writeFileSync(temporary, text);
  renameSync(temporary, path);
}

/** Check `callersText` as the build will; write it (and the config's new bindings). */
function save(callersText) {
  const wrangler = readWrangler();
  let table;
  try {
    table = parseCallers(callersText, allowedModels(wrangler.environments));
  } catch (error) {
    throw error instanceof Invalid ? new Refused(error.message) : error;
  }
  const missing = missingBindings(table, wrangler.environments);
  if (missing.length) replaceFile(wrangler.path, withBindings(wrangler, missing));
  if (callersText !== readCallersText()) replaceFile(CALLERS_FILE, callersText);
  if (!missing.length) return;
  // The new bindings go into Env too (CI checks that the committed types match the config);
  // stdout is the new key's alone.
  const env = { ...process.env, WRANGLER_LOG: "warn" };
  execFileSync("npm", ["run", "--silent", "cf-typegen"], { stdio: ["ignore", 2, 2], env });
  console.error(`${wrangler.path}: ${missing.length} rate limiting binding(s) added (worker-configuration.d.ts too)`);
}

function options(args) {
  const found = {};
  for (let i = 0; i < args.length; i += 2) {
    const [flag, value] = [args[i], args[i + 1]];
    if (!["--models", "--max-tokens", "--rpm"].includes(flag) || value === undefined) {
      throw new Refused(`unknown or incomplete option ${flag}: add NAME [--models a,b] [--max-tokens N] [--rpm N]`);
    }
    found[flag] = value;
  }
  return found;
}

function count(flag, value) {
  if (!/^[1-9][0-9]*$/.test(value)) throw new Refused(`${flag} must be a whole number from 1`);
  return Number(value);
}

const headerOf = (name) => new RegExp(`^[ \\t]*\\[[ \\t]*callers\\.(?:${name}|"${name}")[ \\t]*\\][ \\t]*(?:#.*)?$`, "m");

function add(name, args) {
  if (!NAME.test(name ?? "")) throw new Refused(`'${name ?? ""}': a caller's name is 1 to 64 of a-z 0-9 _ -`);
  if (name === "default") throw new Refused("default is SERVICE_API_KEY's caller: add [callers.default] by hand");
  const flags = options(args);
  const text = readCallersText();
  const current = (() => {
    try {
      return parse(text).callers ?? {};
    } catch (error) {
      throw new Refused(`${CALLERS_FILE}: cannot be read: ${error.message.split("\n")[0]}`);
    }
  })();
  if (Object.hasOwn(current, name)) throw new Refused(`caller "${name}" is already in ${CALLERS_FILE} (remove it first)`);
  const key = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
  const lines = [`[callers.${name}]`, `key_sha256 = "${createHash("sha256").update(key).digest("hex")}"`];
  if (flags["--models"] !== undefined) {
    const models = flags["--models"].split(",").map((model) => model.trim()).filter(Boolean);
    lines.push(`models = [${models.map((model) => JSON.stringify(model)).join(", ")}]`);
  }
  if (flags["--max-tokens"] !== undefined) lines.push(`max_tokens = ${count("--max-tokens", flags["--max-tokens"])}`);
  if (flags["--rpm"] !== undefined) lines.push(`requests_per_minute = ${count("--rpm", flags["--rpm"])}`);
  save(`${text.replace(/\n*$/, text ? "\n\n" : "")}${lines.join("\n")}\n`);
  console.log(key);
  console.error(
    `caller "${name}" added to ${CALLERS_FILE}: give it the key above now,\n` +
      "only its SHA-256 is kept. Deploy the Worker to use it.",
  );
}

function remove(name) {
  const text = readCallersText();
  const header = headerOf(name ?? "").exec(text);
  if (!NAME.test(name ?? "") || !header) throw new Refused(`no caller "${name ?? ""}" in ${CALLERS_FILE}`);
  // The table runs from its header to the next table header (or the end of the file).
  const rest = text.slice(header.index + header[0].length);
  const next = /^[ \t]*\[/m.exec(rest);
  const end = header.index + header[0].length + (next ? next.index : rest.length);
  const left = `${text.slice(0, header.index).replace(/\n+$/, "\n")}${next ? "\n" : ""}${text.slice(end)}`;
  let callers;
  try {
    callers = parse(left).callers ?? {};
  } catch {
    callers = { [name]: true };
  }
  if (Object.hasOwn(callers, name)) {
    throw new Refused(`callers.${name} is not one [callers.${name}] table in ${CALLERS_FILE}: edit it by hand`);
  }
  save(left);
  console.error(`caller "${name}" removed from ${CALLERS_FILE}; deploy the Worker to revoke its keys`);
}

function bindings() {
  save(readCallersText());
}

const [command = "build", name, ...rest] = process.argv.slice(2);
const commands = { build, add: () => add(name, rest), remove: () => remove(name), bindings };
try {
  if (!Object.hasOwn(commands, command)) throw new Refused(`unknown command ${command}: build, add, remove, bindings`);
  commands[command]();
} catch (error) {
  if (!(error instanceof Invalid || error instanceof Refused)) throw error;
  console.error(`error: ${error.message}`);
  process.exitCode = error instanceof Invalid ? 1 : 2;
}

// Settings ([vars] in the wrangler config) and secrets (`wrangler secret put`, locally .dev.vars),
// each checked before any request leaves the Worker. Errors name the variable, never its value.
import { DEFAULT_MAX_BODY_BYTES, DEFAULT_REQUEST_TIMEOUT_SECONDS } from "./config";
import { SettingError } from "./http";

/** Everything the Worker reads from its environment, as strings (absent: undefined or ""). */
export interface Settings {
  CLOUDFLARE_ACCOUNT_ID?: string;
  AI_GATEWAY_ID?: string;
  AI_GATEWAY_BASE_URL?: string;
  CLOUDFLARE_API_BASE_URL?: string;
  ALLOWED_MODELS?: string;
  MAX_BODY_BYTES?: string;
  REQUEST_TIMEOUT_SECONDS?: string;
  CF_AIG_TOKEN?: string;
  SERVICE_API_KEY?: string;
  OPENAI_API_KEY?: string;
  ANTHROPIC_API_KEY?: string;
  GOOGLE_API_KEY?: string;
}

type Name = keyof Settings;

const HINTS: Partial<Record<Name, string>> = {
  CLOUDFLARE_ACCOUNT_ID: "set it under [vars] in the wrangler config (Dashboard > Overview > Account ID)",
  AI_GATEWAY_ID: "set it under [vars] in the wrangler config",
};

function hint(name: Name): string {
  return HINTS[name] ?? `run \`npx wrangler secret put ${name}\` (locally: .dev.vars)`;
}

/** A required value, or a 500 naming it. */
export function required(env: Settings, name: Name): string {
  const value = env[name];
  if (typeof value !== "string" || value === "") throw new SettingError(name, `${name} is not set: ${hint(name)}`);
  return value;
}

/** A secret: set, and free of whitespace and control characters (a pasted newline, say). */
export function secret(env: Settings, name: Name): string {
  const value = required(env, name);
  if (/[\s\p{Cc}]/u.test(value)) {
    throw new SettingError(name, `${name} contains whitespace or control characters: set it again without them`, false);
  }
  return value;
}

/** The account id: 32 lowercase hex characters. */
export function accountId(env: Settings): string {
  const value = required(env, "CLOUDFLARE_ACCOUNT_ID");
  if (!/^[0-9a-f]{32}$/.test(value)) {
    throw new SettingError("CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_ACCOUNT_ID must be 32 lowercase hex characters", false);
  }
  return value;
}

/** The gateway id, by the API's own rule: lowercase letters, digits, `_`, single hyphens, 1 to 64. */
export function gatewayId(env: Settings): string {
  const value = required(env, "AI_GATEWAY_ID");
  if (value.length > 64 || !/^[a-z0-9_]+(?:-[a-z0-9_]+)*$/.test(value)) {
    throw new SettingError(
      "AI_GATEWAY_ID",
      "AI_GATEWAY_ID must be 1 to 64 lowercase letters, digits, underscores and single hyphens",
      false,
    );
  }
  return value;
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

/** A base URL without its trailing slash: https, or http to this machine only (a local mock). */
export function baseUrl(env: Settings, name: Name, fallback: string): string {
  const value = env[name] || fallback;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new SettingError(name, `${name} is not a URL`, false);
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && LOOPBACK.has(url.hostname))) {
    throw new SettingError(name, `${name} must be an https:// URL (http:// only to 127.0.0.1 or localhost)`, false);
  }
  return value.replace(/\/+$/, "");
}

function positive(env: Settings, name: Name, fallback: number, whole: boolean): number {
  const value = env[name];
  if (value === undefined || value === "") return fallback;
  const number = Number(value);
  if (!(Number.isFinite(number) && number > 0 && (!whole || Number.isSafeInteger(number)))) {
    throw new SettingError(name, `${name} must be a ${whole ? "whole number" : "number"} above 0`, false);
  }
  return number;
}

/** MAX_BODY_BYTES: the largest request body accepted (default 1 MiB). */
export function maxBodyBytes(env: Settings): number {
  return positive(env, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, true);
}

/** REQUEST_TIMEOUT_SECONDS: the deadline of a whole request (default 60). */
export function requestTimeoutSeconds(env: Settings): number {
  return positive(env, "REQUEST_TIMEOUT_SECONDS", DEFAULT_REQUEST_TIMEOUT_SECONDS, false);
}

/** The models callers may ask for: `ALLOWED_MODELS` (comma-separated), else the route's default. */
export function allowedModels(env: Settings, defaultModel: string): string[] {
  const list = (env.ALLOWED_MODELS ?? "")
    .split(",")
    .map((model) => model.trim())
    .filter(Boolean);
  return list.length ? list : [defaultModel];
}

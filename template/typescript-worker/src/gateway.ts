import OpenAI from "openai";
import { AUTH_MODE, DEFAULT_GATEWAY_BASE_URL, GATEWAY_AUTHENTICATION } from "./config";

/** Bindings and secrets the gateway clients read (secrets come from `wrangler secret put`). */
export interface GatewayEnv {
  CLOUDFLARE_ACCOUNT_ID: string;
  AI_GATEWAY_ID: string;
  AI_GATEWAY_BASE_URL?: string;
  CLOUDFLARE_API_BASE_URL?: string;
  CF_AIG_TOKEN?: string;
  OPENAI_API_KEY?: string;
  ANTHROPIC_API_KEY?: string;
  GOOGLE_API_KEY?: string;
}

/** The provider keys, each sent only in request-headers mode. */
export type ProviderKeyName = "OPENAI_API_KEY" | "ANTHROPIC_API_KEY" | "GOOGLE_API_KEY";

/** A setting the Worker needs is missing: answered as 500 naming it, before any request. */
export class MissingSettingError extends Error {
  constructor(readonly setting: string, hint: string) {
    super(`${setting} is not set: ${hint}`);
    this.name = "MissingSettingError";
  }
}

export function required(env: GatewayEnv, name: keyof GatewayEnv, hint: string): string {
  const value = env[name];
  if (typeof value !== "string" || value === "") throw new MissingSettingError(name, hint);
  return value;
}

/** `{AI_GATEWAY_BASE_URL}/{account}/{gateway}/{provider}` without a trailing slash. */
export function gatewayUrl(env: GatewayEnv, provider: string): string {
  const base = (env.AI_GATEWAY_BASE_URL || DEFAULT_GATEWAY_BASE_URL).replace(/\/+$/, "");
  const account = required(env, "CLOUDFLARE_ACCOUNT_ID", "set it in wrangler.toml [vars] (Dashboard > Overview > Account ID)");
  const gateway = required(env, "AI_GATEWAY_ID", "set it in wrangler.toml [vars]");
  return `${base}/${account}/${gateway}/${provider}`;
}

/** `cf-aig-authorization` for an authenticated gateway, nothing otherwise. */
export function gatewayAuthHeaders(env: GatewayEnv): Record<string, string> {
  if (!GATEWAY_AUTHENTICATION) return {};
  const token = required(env, "CF_AIG_TOKEN", "run `npx wrangler secret put CF_AIG_TOKEN` (locally: .dev.vars)");
  return { "cf-aig-authorization": `Bearer ${token}` };
}

/**
 * The provider key, sent by the Worker only in request-headers mode. In unified-billing and
 * byok modes no provider key exists in the Worker: undefined means "send none".
 */
export function providerKey(env: GatewayEnv, name: ProviderKeyName): string | undefined {
  if (AUTH_MODE !== "request-headers") return undefined;
  return required(env, name, `run \`npx wrangler secret put ${name}\` (locally: .dev.vars)`);
}

/**
 * An OpenAI client whose requests go to the gateway's `openai` endpoint. Outside request-headers
 * mode the `Authorization` header is removed (`null`), so no provider key ever leaves the Worker;
 * the gateway adds it (BYOK) or bills through Cloudflare (Unified Billing).
 */
export function openaiClient(env: GatewayEnv): OpenAI {
  const apiKey = providerKey(env, "OPENAI_API_KEY");
  return new OpenAI({
    baseURL: gatewayUrl(env, "openai"),
    // The SDK insists on a key; this placeholder is never sent because the header is dropped.
    apiKey: apiKey ?? "no-provider-key",
    maxRetries: 0, // retries belong to the gateway (cf-aig-max-attempts), not to every caller
    defaultHeaders: {
      ...gatewayAuthHeaders(env),
      ...(apiKey === undefined ? { Authorization: null } : {}),
    },
  });
}

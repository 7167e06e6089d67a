// Where requests go and which credentials they carry, by this project's auth mode.
import { AUTH_MODE, DEFAULT_CLOUDFLARE_API_BASE_URL, DEFAULT_GATEWAY_BASE_URL, GATEWAY_AUTHENTICATION } from "./config";
import { accountId, baseUrl, gatewayId, type Settings, secret } from "./settings";

/** The provider keys, each sent only in request-headers mode. */
export type ProviderKeyName = "OPENAI_API_KEY" | "ANTHROPIC_API_KEY" | "GOOGLE_API_KEY";

/** `{AI_GATEWAY_BASE_URL}/{account}/{gateway}/{provider}`, every part checked first. */
export function gatewayUrl(env: Settings, provider: string): string {
  const base = baseUrl(env, "AI_GATEWAY_BASE_URL", DEFAULT_GATEWAY_BASE_URL);
  return `${base}/${accountId(env)}/${gatewayId(env)}/${provider}`;
}

/** Cloudflare's unified AI REST API: `{CLOUDFLARE_API_BASE_URL}/accounts/{account}/ai/v1`. */
export function unifiedApiUrl(env: Settings): string {
  const base = baseUrl(env, "CLOUDFLARE_API_BASE_URL", DEFAULT_CLOUDFLARE_API_BASE_URL);
  return `${base}/accounts/${accountId(env)}/ai/v1`;
}

/** `cf-aig-authorization` for an authenticated gateway, nothing otherwise. */
export function gatewayAuthHeaders(env: Settings): Record<string, string> {
  if (!GATEWAY_AUTHENTICATION) return {};
  return { "cf-aig-authorization": `Bearer ${secret(env, "CF_AIG_TOKEN")}` };
}

/**
 * The provider key, sent by the Worker only in request-headers mode. In unified-billing and
 * byok modes no provider key exists in the Worker: undefined means "send none".
 */
export function providerKey(env: Settings, name: ProviderKeyName): string | undefined {
  if (AUTH_MODE !== "request-headers") return undefined;
  return secret(env, name);
}

/**
 * Per-request controls of Cloudflare AI Gateway, sent as `cf-aig-*` request headers, and the
 * gateway's answer headers. The limits are the documented ones (Cloudflare AI Gateway docs:
 * features/caching, configuration/request-handling, observability/custom-metadata,
 * observability/logging, configuration/bring-your-own-keys), the same as the Python app's
 * gateway_options.py: a value the gateway would not take throws before any request.
 */

/** Values the gateway accepts in `cf-aig-metadata`: flat, at most five entries. */
export type MetadataValue = string | number | boolean;

export type Backoff = "constant" | "linear" | "exponential";

export interface GatewayOptions {
  /** `cf-aig-cache-ttl`: seconds to cache this response, 60 to one month (2592000). */
  cacheTtl?: number;
  /** `cf-aig-skip-cache`: bypass the cache for this request. */
  skipCache?: boolean;
  /** `cf-aig-cache-key`: your own cache key instead of the hash of the request. */
  cacheKey?: string;
  /** `cf-aig-metadata`: up to five flat tags stored with the log entry (user id, team, ...). */
  metadata?: Record<string, MetadataValue>;
  /** `cf-aig-request-timeout`: milliseconds until the provider's first byte; above 0. */
  requestTimeoutMs?: number;
  /** `cf-aig-max-attempts`: tries in all, 1 to 5 (the gateway retries failures). */
  maxAttempts?: number;
  /** `cf-aig-retry-delay`: milliseconds between tries, at most 5000. */
  retryDelayMs?: number;
  /** `cf-aig-backoff`: how the delay grows between tries. */
  backoff?: Backoff;
  /** `cf-aig-collect-log`: false keeps this request out of the gateway's logs. */
  collectLog?: boolean;
  /** `cf-aig-collect-log-payload`: false logs this request without its bodies. */
  collectLogPayload?: boolean;
  /** `cf-aig-zdr`: zero data retention at the provider for this request. */
  zdr?: boolean;
  /** `cf-aig-byok-alias`: which of the gateway's stored provider keys (BYOK) to use. */
  byokAlias?: string;
  /** `cf-aig-event-id`: your own id, to trace this request in the logs. */
  eventId?: string;
}

/** The headers the gateway answers with. */
export interface GatewayResult {
  /** `cf-aig-log-id`: the log entry of this request (for feedback, or finding it later). */
  logId: string | null;
  /** `cf-aig-cache-status`: `HIT` or `MISS` when caching is on. */
  cacheStatus: string | null;
}

const BACKOFFS: readonly Backoff[] = ["constant", "linear", "exponential"];
export const CACHE_TTL_MIN = 60; // seconds: the shortest cache the gateway accepts
export const CACHE_TTL_MAX = 30 * 24 * 3600; // one month
export const MAX_ATTEMPTS = 5; // tries in all, the first included
export const MAX_RETRY_DELAY_MS = 5000;
export const MAX_METADATA_ENTRIES = 5;
const CONTROL = /\p{Cc}/u; // control characters

/** The `cf-aig-*` request headers for these options; options left out send nothing. */
export function gatewayHeaders(options: GatewayOptions = {}): Record<string, string> {
  const headers: Record<string, string> = {};
  const int = (name: string, value: number | undefined, min: number, max?: number) => {
    if (value === undefined) return;
    if (!Number.isInteger(value) || value < min || (max !== undefined && value > max)) {
      const span = max !== undefined ? `from ${min} to ${max}` : `>= ${min}`;
      throw new RangeError(`${name} must be an integer ${span} (got ${value})`);
    }
    headers[name] = String(value);
  };
  const flag = (name: string, value: boolean | undefined) => {
    if (value === undefined) return;
    if (typeof value !== "boolean") throw new TypeError(`${name} must be true or false (got ${String(value)})`);
    headers[name] = String(value);
  };
  const text = (name: string, value: string | undefined) => {
    if (value === undefined) return;
    if (typeof value !== "string" || value === "" || CONTROL.test(value)) {
      throw new RangeError(`${name} must be a non-empty string without control characters`);
    }
    headers[name] = value;
  };
  int("cf-aig-cache-ttl", options.cacheTtl, CACHE_TTL_MIN, CACHE_TTL_MAX);
  flag("cf-aig-skip-cache", options.skipCache);
  text("cf-aig-cache-key", options.cacheKey);
  if (options.metadata !== undefined) {
    const entries = Object.entries(options.metadata);
    if (entries.length > MAX_METADATA_ENTRIES) {
      throw new RangeError(`cf-aig-metadata keeps at most ${MAX_METADATA_ENTRIES} entries`);
    }
    for (const [key, value] of entries) {
      const flat =
        typeof value === "string" ||
        typeof value === "boolean" ||
        (typeof value === "number" && Number.isFinite(value));
      if (!flat) throw new TypeError(`cf-aig-metadata values must be strings, numbers or booleans (${key})`);
    }
    headers["cf-aig-metadata"] = JSON.stringify(options.metadata);
  }
  int("cf-aig-request-timeout", options.requestTimeoutMs, 1);
  int("cf-aig-max-attempts", options.maxAttempts, 1, MAX_ATTEMPTS);
  int("cf-aig-retry-delay", options.retryDelayMs, 0, MAX_RETRY_DELAY_MS);
  if (options.backoff !== undefined) {
    if (!BACKOFFS.includes(options.backoff)) {
      throw new RangeError(`cf-aig-backoff must be one of ${BACKOFFS.join(", ")}`);
    }
    headers["cf-aig-backoff"] = options.backoff;
  }
  flag("cf-aig-collect-log", options.collectLog);
  flag("cf-aig-collect-log-payload", options.collectLogPayload);
  flag("cf-aig-zdr", options.zdr);
  text("cf-aig-byok-alias", options.byokAlias);
  text("cf-aig-event-id", options.eventId);
  return headers;
}

/** Reads `cf-aig-log-id` and `cf-aig-cache-status` from a gateway response. */
export function gatewayResult(response: { headers: Headers }): GatewayResult {
  return {
    logId: response.headers.get("cf-aig-log-id"),
    cacheStatus: response.headers.get("cf-aig-cache-status"),
  };
}

/**
 * Options from a JSON request body's `"gateway"` object, checked field by field; throws
 * TypeError with a message fit for a 400 answer.
 */
export function parseGatewayOptions(value: unknown): GatewayOptions {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) throw new TypeError('"gateway" must be an object');
  const input = value as Record<string, unknown>;
  const out: GatewayOptions = {};
  const known: Record<keyof GatewayOptions, "number" | "boolean" | "string" | "object"> = {
    cacheTtl: "number",
    skipCache: "boolean",
    cacheKey: "string",
    metadata: "object",
    requestTimeoutMs: "number",
    maxAttempts: "number",
    retryDelayMs: "number",
    backoff: "string",
    collectLog: "boolean",
    collectLogPayload: "boolean",
    zdr: "boolean",
    byokAlias: "string",
    eventId: "string",
  };
  for (const [key, raw] of Object.entries(input)) {
    const type = known[key as keyof GatewayOptions];
    if (type === undefined) throw new TypeError(`unknown gateway option "${key}"`);
    if (typeof raw !== type || (type === "object" && (raw === null || Array.isArray(raw)))) {
      throw new TypeError(`gateway option "${key}" must be ${type === "object" ? "an object" : `a ${type}`}`);
    }
    (out as Record<string, unknown>)[key] = raw;
  }
  gatewayHeaders(out); // validates ranges and value types; throws RangeError/TypeError
  return out;
}

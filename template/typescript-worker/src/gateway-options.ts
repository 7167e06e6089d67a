/**
 * Per-request controls of Cloudflare AI Gateway, sent as `cf-aig-*` request headers, and the
 * gateway's answer headers. Docs: ai-gateway/features/caching, configuration/request-handling,
 * observability/custom-metadata, observability/logging.
 */

/** Values the gateway accepts in `cf-aig-metadata` (at most five entries are kept). */
export type MetadataValue = string | number | boolean;

export type Backoff = "constant" | "linear" | "exponential";

export interface GatewayOptions {
  /** `cf-aig-cache-ttl`: seconds to cache this response (overrides the gateway default). */
  cacheTtl?: number;
  /** `cf-aig-skip-cache`: bypass the cache for this request. */
  skipCache?: boolean;
  /** `cf-aig-cache-key`: your own cache key instead of the hash of the request. */
  cacheKey?: string;
  /** `cf-aig-metadata`: tags stored with the log entry (user id, team, ...). */
  metadata?: Record<string, MetadataValue>;
  /** `cf-aig-request-timeout`: milliseconds until the provider's first byte. */
  requestTimeoutMs?: number;
  /** `cf-aig-max-attempts`: tries in all, 1 to 5 (the gateway retries failures). */
  maxAttempts?: number;
  /** `cf-aig-retry-delay`: milliseconds between tries. */
  retryDelayMs?: number;
  /** `cf-aig-backoff`: how the delay grows between tries. */
  backoff?: Backoff;
  /** `cf-aig-collect-log`: false keeps this request out of the gateway's logs. */
  collectLog?: boolean;
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

/** The `cf-aig-*` request headers for these options; options left out send nothing. */
export function gatewayHeaders(options: GatewayOptions = {}): Record<string, string> {
  const headers: Record<string, string> = {};
  const int = (name: string, value: number | undefined, min: number, max = Number.MAX_SAFE_INTEGER) => {
    if (value === undefined) return;
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new RangeError(`${name} must be an integer from ${min} to ${max} (got ${value})`);
    }
    headers[name] = String(value);
  };
  int("cf-aig-cache-ttl", options.cacheTtl, 0);
  if (options.skipCache !== undefined) headers["cf-aig-skip-cache"] = String(options.skipCache);
  if (options.cacheKey !== undefined) headers["cf-aig-cache-key"] = options.cacheKey;
  if (options.metadata !== undefined) {
    const entries = Object.entries(options.metadata);
    if (entries.length > 5) throw new RangeError("cf-aig-metadata keeps at most 5 entries");
    for (const [key, value] of entries) {
      if (!["string", "number", "boolean"].includes(typeof value)) {
        throw new TypeError(`cf-aig-metadata values must be strings, numbers or booleans (${key})`);
      }
    }
    headers["cf-aig-metadata"] = JSON.stringify(options.metadata);
  }
  int("cf-aig-request-timeout", options.requestTimeoutMs, 1);
  int("cf-aig-max-attempts", options.maxAttempts, 1, 5);
  int("cf-aig-retry-delay", options.retryDelayMs, 0);
  if (options.backoff !== undefined) {
    if (!BACKOFFS.includes(options.backoff)) {
      throw new RangeError(`cf-aig-backoff must be one of ${BACKOFFS.join(", ")}`);
    }
    headers["cf-aig-backoff"] = options.backoff;
  }
  if (options.collectLog !== undefined) headers["cf-aig-collect-log"] = String(options.collectLog);
  if (options.eventId !== undefined) headers["cf-aig-event-id"] = options.eventId;
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

/**
 * The way to Cloudflare AI Gateway: where requests go, which credentials they carry (by this
 * project's auth mode), the per-request controls sent as `cf-aig-*` headers, and the rules every
 * call follows (`Upstream`). The limits are the documented ones (Cloudflare AI Gateway docs:
 * features/caching, configuration/request-handling, observability/custom-metadata,
 * observability/logging, configuration/bring-your-own-keys), the same as the Python service's:
 * a value the gateway would not take throws before any request.
 */
import { answerTooLarge, BadRequestError, describe, HttpError, UpstreamError } from "./errors";
import {
  AUTH_MODE,
  accountId,
  baseUrl,
  DEFAULT_CLOUDFLARE_API_BASE_URL,
  DEFAULT_GATEWAY_BASE_URL,
  GATEWAY_AUTHENTICATION,
  gatewayId,
  type Settings,
  secret,
} from "./settings";
import { bounded, type StreamSource } from "./streaming";

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
/** The longest `cf-aig-metadata` header sent, serialized. */
export const MAX_METADATA_CHARS = 1024;
/** What a value sent as a header may be: 1 to 256 printable ASCII characters (0x20-0x7E). */
const HEADER_TEXT = /^[\x20-\x7e]{1,256}$/;

/** Whether `value` may be sent as a header value as it is. */
export function isHeaderText(value: unknown): value is string {
  return typeof value === "string" && HEADER_TEXT.test(value);
}

function int(headers: Record<string, string>, name: string, value: number | undefined, min: number, max?: number) {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < min || (max !== undefined && value > max)) {
    const span = max !== undefined ? `from ${min} to ${max}` : `>= ${min}`;
    throw new RangeError(`${name} must be an integer ${span} (got ${value})`);
  }
  headers[name] = String(value);
}

function flag(headers: Record<string, string>, name: string, value: boolean | undefined) {
  if (value === undefined) return;
  if (typeof value !== "boolean") throw new TypeError(`${name} must be true or false (got ${String(value)})`);
  headers[name] = String(value);
}

function text(headers: Record<string, string>, name: string, option: keyof GatewayOptions, value: unknown) {
  if (value === undefined) return;
  if (!isHeaderText(value))
    throw new RangeError(`gateway option "${option}" must be 1 to 256 printable ASCII characters`);
  headers[name] = value;
}

function metadataHeader(metadata: Record<string, MetadataValue>): string {
  const entries = Object.entries(metadata);
  if (entries.length > MAX_METADATA_ENTRIES) {
    throw new RangeError(`cf-aig-metadata keeps at most ${MAX_METADATA_ENTRIES} entries`);
  }
  const refused = new RangeError(
    'gateway option "metadata" must have keys and values of 1 to 256 printable ASCII characters',
  );
  for (const [key, value] of entries) {
    const flat =
      typeof value === "string" || typeof value === "boolean" || (typeof value === "number" && Number.isFinite(value));
    if (!flat) throw new TypeError(`cf-aig-metadata values must be strings, numbers or booleans (${key})`);
    if (!isHeaderText(key) || (typeof value === "string" && !isHeaderText(value))) throw refused;
  }
  const header = JSON.stringify(metadata);
  if (header.length > MAX_METADATA_CHARS) throw refused;
  return header;
}

/** The `cf-aig-*` request headers for these options; options left out send nothing. */
/**
 * 400 when the request sets an option that `route` cannot carry: `why` says which part of
 * Cloudflare lacks it. Dropping it silently would break a promise such as "no payload in logs".
 */
export function refuseOptions(options: GatewayOptions, names: (keyof GatewayOptions)[], route: string, why: string) {
  const given = names.find((name) => options[name] !== undefined);
  if (given) throw new BadRequestError(`gateway option "${given}" is not available on ${route} (${why})`);
}

export function gatewayHeaders(options: GatewayOptions = {}): Record<string, string> {
  const headers: Record<string, string> = {};
  int(headers, "cf-aig-cache-ttl", options.cacheTtl, CACHE_TTL_MIN, CACHE_TTL_MAX);
  flag(headers, "cf-aig-skip-cache", options.skipCache);
  text(headers, "cf-aig-cache-key", "cacheKey", options.cacheKey);
  if (options.metadata !== undefined) headers["cf-aig-metadata"] = metadataHeader(options.metadata);
  int(headers, "cf-aig-request-timeout", options.requestTimeoutMs, 1);
  int(headers, "cf-aig-max-attempts", options.maxAttempts, 1, MAX_ATTEMPTS);
  int(headers, "cf-aig-retry-delay", options.retryDelayMs, 0, MAX_RETRY_DELAY_MS);
  if (options.backoff !== undefined) {
    if (!BACKOFFS.includes(options.backoff)) {
      throw new RangeError(`cf-aig-backoff must be one of ${BACKOFFS.join(", ")}`);
    }
    headers["cf-aig-backoff"] = options.backoff;
  }
  flag(headers, "cf-aig-collect-log", options.collectLog);
  flag(headers, "cf-aig-collect-log-payload", options.collectLogPayload);
  flag(headers, "cf-aig-zdr", options.zdr);
  text(headers, "cf-aig-byok-alias", "byokAlias", options.byokAlias);
  text(headers, "cf-aig-event-id", "eventId", options.eventId);
  return headers;
}

/** Reads `cf-aig-log-id` and `cf-aig-cache-status` from a gateway response. */
export function gatewayResult(response: { headers: Headers }): GatewayResult {
  return {
    logId: response.headers.get("cf-aig-log-id"),
    cacheStatus: response.headers.get("cf-aig-cache-status"),
  };
}

const OPTION_TYPES: Record<keyof GatewayOptions, "number" | "boolean" | "string" | "object"> = {
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

/**
 * Options from a JSON request body's `"gateway"` object, checked field by field; throws
 * TypeError or RangeError with a message fit for a 400 answer.
 */
export function parseGatewayOptions(value: unknown): GatewayOptions {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) throw new TypeError('"gateway" must be an object');
  const out: GatewayOptions = {};
  for (const [key, raw] of Object.entries(value)) {
    const type = Object.hasOwn(OPTION_TYPES, key) ? OPTION_TYPES[key as keyof GatewayOptions] : undefined;
    if (type === undefined) throw new TypeError(`unknown gateway option "${key}"`);
    if (typeof raw !== type || (type === "object" && (raw === null || Array.isArray(raw)))) {
      throw new TypeError(`gateway option "${key}" must be ${type === "object" ? "an object" : `a ${type}`}`);
    }
    (out as Record<string, unknown>)[key] = raw;
  }
  gatewayHeaders(out); // validates ranges and values; throws RangeError/TypeError
  return out;
}

const ANSWER_TYPES = ["application/json", "text/event-stream"];

/** Why an answer is not used (a redirect, an error status, a type or a size it may not have). */
function refusal(response: Response, logId: string | null, maxBytes: number): HttpError | undefined {
  const { status } = response;
  const type = (response.headers.get("content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (status >= 300 && status < 400) {
    const location = response.headers.get("location") ?? "nowhere";
    return new UpstreamError(
      `the gateway redirected (${status}) to ${location}; redirects are not followed`,
      status,
      logId,
    );
  }
  if (!response.ok) return new UpstreamError(`the gateway answered ${status}`, status, logId);
  if (!ANSWER_TYPES.includes(type)) {
    return new UpstreamError(`the gateway answered ${status} with ${type || "no content type"}`, status, logId);
  }
  if (Number(response.headers.get("content-length") ?? "0") > maxBytes) return answerTooLarge(maxBytes, status, logId);
  return undefined;
}

/**
 * The way out to the gateway, for SDK clients (their `fetch` option) and direct calls alike:
 * never follows a redirect (a 3xx would carry the token to another host), cancels at the
 * request's deadline or at `close()`, accepts only a 2xx JSON or event-stream answer, and reads
 * at most `maxBytes` of it (MAX_UPSTREAM_BYTES: of a stream, the raw bytes read). Whatever went
 * wrong is kept, so `error()` answers with it whichever SDK wrapped it on the way.
 */
/** Where a request went, without its query string (an SDK may put a key there). */
function withoutQuery(input: RequestInfo | URL): string {
  const url = input instanceof Request ? input.url : String(input);
  return url.split("?", 1)[0] ?? url;
}

export class Upstream implements StreamSource {
  /** The log id and cache status of the last answer. */
  result: GatewayResult = { logId: null, cacheStatus: null };
  readonly signal: AbortSignal;
  #failure: HttpError | undefined;
  #closer = new AbortController();
  #stops: (() => void)[] = [];
  #started: number | undefined;
  #answered: number | undefined;

  constructor(
    readonly deadline: AbortSignal,
    readonly maxBytes: number,
  ) {
    this.signal = AbortSignal.any([deadline, this.#closer.signal]);
  }

  readonly fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const signal = init?.signal ? AbortSignal.any([this.signal, init.signal]) : this.signal;
    const response = await this.timed(async () => {
      try {
        return await fetch(input, { ...init, redirect: "manual", signal });
      } catch {
        // The URL, as the Python service says it: workerd's own message is only a reference.
        throw this.#fail(new UpstreamError(`could not reach the gateway at ${withoutQuery(input)}`, null));
      }
    });
    this.result = gatewayResult(response);
    const failure = refusal(response, this.result.logId, this.maxBytes);
    if (failure) {
      await response.body?.cancel().catch(() => {});
      throw this.#fail(failure);
    }
    const body = response.body && this.bound(response.body, response.status);
    return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  };

  /** `work` (a call to the gateway), timed for the request log. */
  async timed<T>(work: () => Promise<T>): Promise<T> {
    this.#started ??= performance.now();
    try {
      return await work();
    } finally {
      this.#answered = performance.now();
    }
  }

  /** Milliseconds from the first call until its answer's headers (null before any call). */
  get ms(): number | null {
    return this.#started === undefined || this.#answered === undefined ? null : this.#answered - this.#started;
  }

  /** `body` capped at `maxBytes`; `close()` cancels it. */
  bound(body: ReadableStream<Uint8Array>, status: number | null): ReadableStream<Uint8Array> {
    const tooLarge = () => this.#fail(answerTooLarge(this.maxBytes, status, this.result.logId));
    const { stream, stop } = bounded(body, this.maxBytes, tooLarge);
    this.#stops.push(stop);
    return stream;
  }

  /** Stops reading the gateway: the open answer is cancelled and its connection closed. */
  close(): void {
    for (const stop of this.#stops.splice(0)) stop();
    this.#closer.abort(new UpstreamError("the request ended", null));
  }

  /**
   * The `error` event of a stream cut off by `err`: the 504 past the deadline, else a 502 that
   * echoes nothing the connection said.
   */
  streamError(err: unknown): HttpError {
    if (this.deadline.aborted && this.deadline.reason instanceof HttpError) return this.deadline.reason;
    if (this.#failure) return this.#failure;
    if (err instanceof HttpError) return err;
    return new UpstreamError("the gateway's answer broke off", null, this.result.logId);
  }

  /** The answer for an error thrown while calling through `fetch`. */
  error(err: unknown): HttpError {
    if (this.#failure) return this.#failure;
    if (err instanceof HttpError) return err;
    return new UpstreamError(`the gateway's answer could not be read: ${describe(err)}`, null);
  }

  #fail(failure: HttpError): HttpError {
    this.#failure ??= failure;
    return failure;
  }
}

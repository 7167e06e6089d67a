/**
 * OpenAI's API, for any OpenAI SDK or agent framework pointed at `{worker}/v1` with a caller
 * key as its API key: `POST /v1/chat/completions` (streamed or not), `GET /v1/models` and
 * `POST /v1/embeddings`. The same caller key, limits and log line as /chat (src/index.ts).
 *
 * A checked request goes on as it came (tools, tool_choice, response_format, sampling options:
 * nothing is re-serialised through an SDK) to the gateway's OpenAI-compatible endpoint of the
 * model's provider: `@cf/...` models to Workers AI (when this project has it), `author/model`
 * names to the AI REST API (compat, when it has it), every other model to OpenAI. Answers and
 * stream chunks are the provider's own, tool-call deltas included, a stream ended by
 * `data: [DONE]`; `cf-aig-log-id` and `cf-aig-cache-status` are copied. Errors have OpenAI's
 * shape `{"error": {"message", "type", "param", "code"}}` (openAiErrorResponse).
 */
import { type Caller, cappedMaxTokens, checkModel, checkRate, identityMetadata } from "./callers";
import { readJson, resultHeaders } from "./chat-request";
import { BadRequestError, HttpError, json, UpstreamError } from "./errors";
import {
  gatewayAuthHeaders,
  gatewayHeaders,
  gatewayUrl,
  isHeaderText,
  providerKey,
  Upstream,
  unifiedApiUrl,
} from "./gateway";
import { PROVIDERS } from "./providers";
import { type RequestLog, usageOf } from "./request-log";
import { gatewayId, limits, type Settings, secret } from "./settings";
import { eventData } from "./streaming";

/** The providers that speak OpenAI's API through the gateway. */
const OPENAI_COMPATIBLE = ["openai", "workers-ai", "compat"];

/** A 400 naming the request's field at fault (OpenAI's `param`). */
export class Refused extends BadRequestError {
  constructor(
    message: string,
    readonly param: string | null,
  ) {
    super(message);
  }
}

const ERROR_TYPES: Record<number, string> = { 401: "authentication_error", 429: "rate_limit_error" };

/** An error in OpenAI's shape (the SDKs read it); `code` is the log line's error class. */
export function openAiErrorBody(err: HttpError): Record<string, unknown> {
  const type = ERROR_TYPES[err.status] ?? (err.status < 500 ? "invalid_request_error" : "api_error");
  const param = err instanceof Refused ? err.param : null;
  return { error: { message: err.message, type, param, code: err.kind } };
}

export function openAiErrorResponse(err: unknown): Response {
  const failure = err instanceof HttpError ? err : new HttpError(500, "internal error");
  return json(openAiErrorBody(failure), failure.status, failure.headers);
}

/** Which provider serves `model` on /v1 (see the module's comment). */
export function openAiProvider(model: string): string {
  if (model.startsWith("@cf/") && PROVIDERS.has("workers-ai")) return "workers-ai";
  if (model.includes("/") && !model.startsWith("@cf/") && PROVIDERS.has("compat")) return "compat";
  return "openai";
}

/** ALLOWED_MODELS; empty: the default model of each OpenAI-compatible provider. */
export function servedModels(env: Settings): string[] {
  const listed = allowedList(env);
  if (listed.length) return listed;
  return OPENAI_COMPATIBLE.flatMap((name) => {
    const provider = PROVIDERS.get(name);
    return provider ? [provider.defaultModel] : [];
  });
}

function allowedList(env: Settings): string[] {
  return (env.ALLOWED_MODELS ?? "")
    .split(",")
    .map((model) => model.trim())
    .filter(Boolean);
}

/** Where a provider's OpenAI-compatible API is and the headers that authenticate to it. */
function endpoint(env: Settings, provider: string): { base: string; headers: Record<string, string> } {
  if (provider === "compat") {
    const headers = { authorization: `Bearer ${secret(env, "CF_AIG_TOKEN")}`, "cf-aig-gateway-id": gatewayId(env) };
    return { base: unifiedApiUrl(env), headers };
  }
  if (provider === "workers-ai") {
    // Cloudflare's own provider: the Cloudflare token is its key.
    const headers = { ...gatewayAuthHeaders(env), authorization: `Bearer ${secret(env, "CF_AIG_TOKEN")}` };
    return { base: `${gatewayUrl(env, "workers-ai")}/v1`, headers };
  }
  const key = providerKey(env, "OPENAI_API_KEY");
  const headers = { ...gatewayAuthHeaders(env), ...(key ? { authorization: `Bearer ${key}` } : {}) };
  return { base: gatewayUrl(env, "openai"), headers };
}

const CHAT_FIELDS = new Set([
  "model",
  "messages",
  "stream",
  "stream_options",
  "tools",
  "tool_choice",
  "parallel_tool_calls",
  "response_format",
  "max_tokens",
  "max_completion_tokens",
  "temperature",
  "top_p",
  "stop",
  "seed",
  "presence_penalty",
  "frequency_penalty",
  "logprobs",
  "top_logprobs",
  "user",
]);
const EMBEDDING_FIELDS = new Set(["model", "input", "encoding_format", "dimensions", "user"]);
const MAX_TOKENS_LIMIT = 1_000_000;

type Body = Record<string, unknown>;

/** The body as an object with known fields only, a model, and `required` present. */
function checkedBody(body: unknown, fields: Set<string>, required: string[]): Body & { model: string } {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new Refused("the request body must be a JSON object", null);
  }
  const unknown = Object.keys(body).find((key) => !fields.has(key));
  if (unknown !== undefined) throw new Refused(`unknown field '${unknown}'`, unknown);
  const missing = required.find((key) => !Object.hasOwn(body, key));
  if (missing !== undefined) throw new Refused(`'${missing}' is required`, missing);
  const { model } = body as Body;
  if (typeof model !== "string" || !model) throw new Refused("model: Input should be a valid string", "model");
  return body as Body & { model: string };
}

function checkChat(body: Body): void {
  const { messages, stream, max_tokens: maxTokens, max_completion_tokens: maxCompletion } = body;
  if (!Array.isArray(messages) || !messages.length) {
    throw new Refused("messages: List should have at least 1 item after validation", "messages");
  }
  const bad = messages.findIndex((m) => typeof m !== "object" || m === null || typeof m.role !== "string");
  if (bad >= 0) throw new Refused(`messages.${bad}: each message needs a "role"`, `messages.${bad}`);
  if (stream !== undefined && typeof stream !== "boolean") {
    throw new Refused("stream: Input should be a valid boolean", "stream");
  }
  for (const [name, value] of [
    ["max_tokens", maxTokens],
    ["max_completion_tokens", maxCompletion],
  ] as const) {
    if (
      value !== undefined &&
      (!Number.isInteger(value) || (value as number) < 1 || (value as number) > MAX_TOKENS_LIMIT)
    ) {
      throw new Refused(`${name}: must be an integer from 1 to ${MAX_TOKENS_LIMIT}`, name);
    }
  }
}

/** A checked /v1 request: where it goes and what it sends. */
interface OpenAiCall {
  url: string;
  body: Body;
  headers: Record<string, string>;
  stream: boolean;
}

/**
 * The model (ALLOWED_MODELS, then the caller's own), the caller's event id, the rate (last: a
 * refused request does not use up the rate); the gateway headers naming the caller.
 */
async function withinLimits(
  request: Request,
  env: Env,
  caller: Caller,
  model: string,
): Promise<Record<string, string>> {
  if (!servedModels(env).includes(model))
    throw new Refused(`model "${model}" is not allowed (ALLOWED_MODELS)`, "model");
  try {
    checkModel(caller, model);
  } catch (err) {
    throw err instanceof HttpError ? new Refused(err.message, "model") : err;
  }
  const eventId = request.headers.get("cf-aig-event-id") ?? undefined;
  if (eventId !== undefined && !isHeaderText(eventId)) {
    throw new BadRequestError("header cf-aig-event-id must be 1 to 256 printable ASCII characters");
  }
  const headers = gatewayHeaders({ metadata: identityMetadata(caller), ...(eventId ? { eventId } : {}) });
  await checkRate(env, caller);
  return headers;
}

async function openAiCall(
  request: Request,
  env: Env,
  caller: Caller,
  log: RequestLog,
  deadline: AbortSignal,
  path: "chat/completions" | "embeddings",
): Promise<OpenAiCall> {
  const raw = await readJson(request, limits(env).maxBodyBytes, deadline);
  const chat = path === "chat/completions";
  const body = checkedBody(
    raw,
    chat ? CHAT_FIELDS : EMBEDDING_FIELDS,
    chat ? ["model", "messages"] : ["model", "input"],
  );
  if (chat) checkChat(body);
  const provider = openAiProvider(body.model);
  const stream = body.stream === true;
  log.set({ provider, stream });
  if (!chat && provider === "compat") {
    const message = `embeddings of "${body.model}": the AI REST API documents none; name an `;
    throw new Refused(`${message}OpenAI or @cf/ model`, "model");
  }
  const cf = await withinLimits(request, env, caller, body.model);
  if (chat) capMaxTokens(body, caller);
  log.set({ model: body.model }); // once checked: a refused request logs no model, as /chat
  const { base, headers } = endpoint(env, provider);
  return { url: `${base}/${path}`, body, headers: { ...headers, ...cf, "content-type": "application/json" }, stream };
}

/** The caller's max_tokens cap (callers.toml), applied to whichever of the two names was sent. */
function capMaxTokens(body: Body, caller: Caller): void {
  const name = body.max_completion_tokens !== undefined ? "max_completion_tokens" : "max_tokens";
  let capped: number | undefined;
  try {
    capped = cappedMaxTokens(caller, body[name] as number | undefined);
  } catch (err) {
    throw err instanceof HttpError ? new Refused(err.message, "max_tokens") : err;
  }
  if (capped !== undefined) body[name] = capped;
}

/** `POST /v1/chat/completions` and `POST /v1/embeddings`: the gateway's answer, passed on. */
export async function forward(
  request: Request,
  env: Env,
  caller: Caller,
  log: RequestLog,
  deadline: AbortSignal,
  path: "chat/completions" | "embeddings",
): Promise<Response> {
  const call = await openAiCall(request, env, caller, log, deadline, path);
  const upstream = new Upstream(deadline, limits(env).maxUpstreamBytes);
  let response: Response;
  try {
    const init = { method: "POST", headers: call.headers, body: JSON.stringify(call.body) };
    response = await upstream.fetch(call.url, init);
  } catch (err) {
    throw upstream.error(err);
  } finally {
    const { logId, cacheStatus } = upstream.result;
    log.set({ upstream_ms: upstream.ms, log_id: logId, cache_status: cacheStatus });
  }
  const headers = resultHeaders(upstream.result);
  if (call.stream) return relay(response, upstream, log, headers);
  return wholeAnswer(response, upstream, log, headers);
}

async function wholeAnswer(response: Response, upstream: Upstream, log: RequestLog, headers: Record<string, string>) {
  let answer: unknown;
  try {
    answer = JSON.parse(await response.text());
  } catch (err) {
    throw err instanceof HttpError ? err : upstream.error(err);
  } finally {
    upstream.close();
  }
  if (typeof answer !== "object" || answer === null || Array.isArray(answer)) {
    throw new HttpError(502, "the gateway's answer is not a JSON object");
  }
  noteAnswer(log, answer as Body);
  return json(answer, 200, headers);
}

function noteAnswer(log: RequestLog, answer: Body): void {
  if (typeof answer.model === "string") log.set({ model: answer.model });
  const usage = usageOf(answer.usage);
  if (usage) log.set({ usage });
}

const encoder = new TextEncoder();
const data = (payload: string) => encoder.encode(`data: ${payload}\n\n`);

/**
 * The provider's chunks as they come (each `data:` payload unchanged), then `data: [DONE]`; an
 * error chunk (OpenAI's SDKs raise it) if the gateway fails, a chunk carries an error, or the
 * deadline passes. The caller hanging up closes the upstream. The log line is written at the end.
 */
function relay(response: Response, upstream: Upstream, log: RequestLog, headers: Record<string, string>): Response {
  log.streaming = true;
  const chunks = response.body ? eventData(response.body) : (async function* () {})();
  let ended = false;
  const finish = (status: number, error: HttpError["kind"] | null) => {
    if (ended) return;
    ended = true;
    upstream.close();
    chunks.return(undefined).catch(() => {});
    log.end(status, error);
  };
  const expired = new Promise<never>((_, reject) => {
    upstream.deadline.addEventListener("abort", () => reject(upstream.deadline.reason), { once: true });
  });
  expired.catch(() => {});
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const step = await Promise.race([chunks.next(), expired]);
        if (ended) return;
        if (!step.done) {
          const chunk = step.value;
          if (typeof chunk !== "object" || chunk === null || "error" in chunk) {
            throw new UpstreamError("the gateway's stream carried an error", null, upstream.result.logId);
          }
          noteAnswer(log, chunk as Body);
          return controller.enqueue(data(JSON.stringify(chunk)));
        }
        controller.enqueue(data("[DONE]"));
        controller.close();
        finish(200, null);
      } catch (err) {
        if (ended) return;
        const failure =
          err instanceof SyntaxError
            ? new UpstreamError("the gateway's stream is not JSON chunks", null)
            : upstream.streamError(err);
        controller.enqueue(data(JSON.stringify(openAiErrorBody(failure))));
        controller.close();
        finish(200, failure.kind);
      }
    },
    cancel() {
      finish(200, "client_gone");
    },
  });
  return new Response(body, {
    status: 200,
    headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", ...headers },
  });
}

/** `GET /v1/models`: the models this caller may name, in OpenAI's list shape. */
export function models(env: Env, caller: Caller): Response {
  const listed = servedModels(env)
    .filter((model) => !caller.models.length || caller.models.includes(model))
    .map((id) => ({ id, object: "model", created: 0, owned_by: openAiProvider(id) }));
  return json({ object: "list", data: listed });
}

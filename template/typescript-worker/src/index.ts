import { requireCaller } from "./auth";
import { ANONYMOUS, type Caller, cappedMaxTokens, checkModel, checkRate, identityMetadata } from "./callers";
import { type ChatOutcome, type ChatRequest, chatAnswer, readChatRequest, resultHeaders } from "./chat-request";
import { BadRequestError, errorResponse, HttpError, json, notAllowed, timedOut } from "./errors";
import { postFeedback } from "./feedback";
import { Upstream } from "./gateway";
import { forward, models, openAiErrorResponse } from "./openai-api";
import document from "./openapi.json";
import { PROVIDERS, type Provider } from "./providers";
import { RequestLog, usageOf } from "./request-log";
import { allowedModels, CALLER_AUTH, limits } from "./settings";
import { eventStream } from "./streaming";

/**
 * Routes: `GET /health` and `GET /openapi.json` (open); `POST /chat` (OpenAI) and
 * `POST /chat/<provider>` for each provider in src/providers.ts. Every answer is JSON, or
 * server-sent events with `"stream": true`; errors are `{"error": "..."}` with the status the
 * README lists. Each request writes one log line (src/request-log.ts).
 */
export default {
  async fetch(request, env): Promise<Response> {
    const log = new RequestLog(request, CALLER_AUTH === "none" ? "anonymous" : null);
    try {
      const response = await route(request, env, log);
      if (!log.streaming) log.end(response.status, null);
      return response;
    } catch (err) {
      if (!(err instanceof HttpError)) console.error("unexpected error", err);
      const v1 = new URL(request.url).pathname.startsWith("/v1/");
      const response = v1 ? openAiErrorResponse(err) : errorResponse(err);
      log.end(response.status, err instanceof HttpError ? err.kind : "internal");
      return response;
    }
  },
} satisfies ExportedHandler<Env>;

/** The routes any caller may read with GET, no key needed. */
const OPEN: Record<string, () => Response> = {
  "/health": () => json({ status: "ok", providers: [...PROVIDERS.keys()] }),
  "/openapi.json": () => json(document),
};

async function route(request: Request, env: Env, log: RequestLog): Promise<Response> {
  const { pathname } = new URL(request.url);
  const open = Object.hasOwn(OPEN, pathname) ? OPEN[pathname] : undefined;
  const match = /^\/chat(?:\/([^/]+))?$/.exec(pathname);
  const name = match ? (match[1] ?? "openai") : "";
  const provider = PROVIDERS.get(name);
  if (open) log.set({ route: pathname });
  if (provider) log.set({ route: match?.[1] === undefined ? "/chat" : "/chat/{provider}", provider: name });
  if (open && request.method === "GET") return open();
  let caller = ANONYMOUS;
  if (CALLER_AUTH === "api-key") {
    caller = await requireCaller(request, env);
    log.set({ caller: caller.name });
  }
  if (open) throw notAllowed(request, "GET");
  const other = otherRoute(request, env, pathname, caller, log);
  if (other) return other;
  if (!provider) throw new HttpError(404, `no route for ${request.method} ${pathname}`);
  if (request.method !== "POST") throw notAllowed(request, "POST");
  return chat(request, env, name, provider, caller, log);
}

/** The OpenAI-compatible API (src/openai-api.ts) and /feedback (src/feedback.ts). */
function otherRoute(request: Request, env: Env, pathname: string, caller: Caller, log: RequestLog) {
  const posted = (work: (deadline: AbortSignal) => Promise<Response>) => {
    if (request.method !== "POST") throw notAllowed(request, "POST");
    return withDeadline(limits(env).timeoutSeconds, work);
  };
  if (Object.hasOwn(V1_POSTS, pathname)) {
    log.set({ route: pathname });
    const path = V1_POSTS[pathname] as "chat/completions" | "embeddings";
    return posted((deadline) => forward(request, env, caller, log, deadline, path));
  }
  if (pathname === "/v1/models") {
    log.set({ route: pathname });
    if (request.method !== "GET") throw notAllowed(request, "GET");
    return Promise.resolve(models(env, caller));
  }
  if (pathname !== "/feedback") return null;
  log.set({ route: pathname });
  return posted((deadline) => postFeedback(request, env, deadline));
}

const V1_POSTS: Record<string, string> = {
  "/v1/chat/completions": "chat/completions",
  "/v1/embeddings": "embeddings",
};

async function chat(
  request: Request,
  env: Env,
  name: string,
  provider: Provider,
  caller: Caller,
  log: RequestLog,
): Promise<Response> {
  const { maxBodyBytes, maxUpstreamBytes, timeoutSeconds } = limits(env);
  return withDeadline(timeoutSeconds, async (deadline) => {
    const asked = await readChatRequest(request, maxBodyBytes, deadline);
    if (asked.responseFormat !== undefined && !provider.jsonMode) {
      throw new BadRequestError(`"response_format" is not available on /chat/${name}`);
    }
    const model = asked.model ?? provider.defaultModel;
    if (!allowedModels(env, provider.defaultModel).includes(model)) {
      throw new BadRequestError(`model ${JSON.stringify(model)} is not allowed (ALLOWED_MODELS)`);
    }
    const input = await withinLimits(env, caller, model, asked);
    log.set({ model, stream: input.stream });
    const upstream = new Upstream(deadline, maxUpstreamBytes);
    let outcome: ChatOutcome;
    try {
      outcome = await provider.chat({ input, model, env, upstream });
    } catch (err) {
      throw upstream.error(err);
    } finally {
      const { logId, cacheStatus } = upstream.result;
      log.set({ upstream_ms: upstream.ms, log_id: logId, cache_status: cacheStatus });
    }
    return answer(input, model, outcome, upstream, log);
  });
}

/**
 * The request as it goes upstream, once the caller's limits (callers.toml) allow it: its model,
 * its max_tokens cap, the metadata the service sets, then its rate, last, so that a request
 * refused for another reason does not use up the caller's rate.
 */
async function withinLimits(env: Env, caller: Caller, model: string, input: ChatRequest): Promise<ChatRequest> {
  checkModel(caller, model);
  const maxTokens = cappedMaxTokens(caller, input.maxTokens);
  const metadata = identityMetadata(caller, input.gateway.metadata);
  await checkRate(env, caller);
  return { ...input, maxTokens, gateway: { ...input.gateway, metadata } };
}

/** The one way a provider's outcome becomes the answer: JSON, or the service's own events. */
function answer(input: ChatRequest, model: string, outcome: ChatOutcome, upstream: Upstream, log: RequestLog) {
  const headers = resultHeaders(upstream.result);
  if ("pieces" in outcome) {
    log.streaming = true;
    const end = { model, usage: null, ...upstream.result };
    return eventStream(
      outcome.pieces,
      end,
      upstream,
      (ended, error) => {
        log.set({ usage: usageOf(ended.usage) });
        log.end(200, error);
      },
      headers,
    );
  }
  upstream.close(); // the answer is read: nothing stays open
  log.set({ usage: usageOf(outcome.usage) });
  return json(chatAnswer(input, outcome.reply, outcome.model, outcome.usage, upstream.result), 200, headers);
}

/**
 * One deadline over the whole request (reading the body, the upstream call, its answer, a
 * stream to its end): `work` gets the signal to pass on, whose reason is the 504 to answer;
 * past it the answer is 504 whatever is still pending.
 */
async function withDeadline<T>(seconds: number, work: (deadline: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const deadline = controller.signal;
  setTimeout(() => controller.abort(timedOut(seconds)), seconds * 1000);
  const expired = new Promise<never>((_, reject) => deadline.addEventListener("abort", () => reject(deadline.reason)));
  try {
    return await Promise.race([work(deadline), expired]);
  } catch (err) {
    // A call cut off by the deadline fails in its own words first: answer 504 all the same.
    throw deadline.aborted && !(err instanceof HttpError && err.status < 500) ? deadline.reason : err;
  }
}

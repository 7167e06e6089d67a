import { requireApiKey } from "./caller-auth";
import { readChatRequest } from "./chat-request";
import { CALLER_AUTH } from "./config";
import { BadRequestError, errorResponse, HttpError, json, timedOut } from "./http";
import { PROVIDERS, type Provider } from "./providers";
import { allowedModels, maxBodyBytes, requestTimeoutSeconds } from "./settings";

/**
 * Routes: `GET /health` (open); `POST /chat` (OpenAI) and `POST /chat/<provider>` for each
 * provider in src/providers.ts. Every answer is JSON, or server-sent events with
 * `"stream": true`; errors are `{"error": "..."}` with the status the README lists.
 */
export default {
  async fetch(request, env): Promise<Response> {
    try {
      return await route(request, env);
    } catch (err) {
      return errorResponse(err);
    }
  },
} satisfies ExportedHandler<Env>;

async function route(request: Request, env: Env): Promise<Response> {
  const { pathname } = new URL(request.url);
  if (pathname === "/health" && request.method === "GET") {
    return json({ status: "ok", providers: [...PROVIDERS.keys()] });
  }
  if (CALLER_AUTH === "api-key") await requireApiKey(request, env);
  if (pathname === "/health") throw notAllowed(request, "GET");

  const match = /^\/chat(?:\/([^/]+))?$/.exec(pathname);
  const provider = match ? PROVIDERS.get(match[1] ?? "openai") : undefined;
  if (!provider) throw new HttpError(404, `no route for ${request.method} ${pathname}`);
  if (request.method !== "POST") throw notAllowed(request, "POST");

  const limit = maxBodyBytes(env);
  return withDeadline(requestTimeoutSeconds(env), (deadline) => chat(request, env, provider, limit, deadline));
}

async function chat(request: Request, env: Env, provider: Provider, limit: number, deadline: AbortSignal) {
  const input = await readChatRequest(request, limit, deadline);
  const model = input.model ?? provider.defaultModel;
  if (!allowedModels(env, provider.defaultModel).includes(model)) {
    throw new BadRequestError(`model ${JSON.stringify(model)} is not allowed (ALLOWED_MODELS)`);
  }
  return provider.chat({ input, model, env, deadline });
}

function notAllowed(request: Request, allow: string): HttpError {
  const { pathname } = new URL(request.url);
  return new HttpError(405, `method ${request.method} not allowed on ${pathname}`, {}, { allow });
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

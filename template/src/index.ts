import OpenAI from "openai";
import { DEFAULT_OPENAI_MODEL } from "./config";
import { MissingSettingError, openaiClient } from "./gateway";
import { gatewayHeaders, gatewayResult, parseGatewayOptions, type GatewayOptions } from "./gateway-options";

type ChatMessage = OpenAI.Chat.Completions.ChatCompletionMessageParam;

/** A validated `POST /chat` body. */
export interface ChatRequest {
  messages: ChatMessage[];
  model: string | undefined;
  stream: boolean;
  gateway: GatewayOptions;
}

/** The request cannot be served as sent: answered as 400 with this message. */
export class BadRequestError extends Error {}

export function json(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  return Response.json(body, { status, headers });
}

/** Parses and checks a chat body: `{"prompt": "..."}` or `{"messages": [...]}`. */
export async function readChatRequest(request: Request): Promise<ChatRequest> {
  let body: unknown;
  try {
    body = await request.json();
  } catch {
    throw new BadRequestError("the request body must be JSON");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new BadRequestError('the request body must be a JSON object with "prompt" or "messages"');
  }
  const { prompt, messages, model, stream, gateway } = body as Record<string, unknown>;
  let chat: ChatMessage[];
  if (typeof prompt === "string" && prompt.trim() !== "") {
    chat = [{ role: "user", content: prompt }];
  } else if (Array.isArray(messages) && messages.length > 0 && messages.every(isMessage)) {
    chat = messages as ChatMessage[];
  } else {
    throw new BadRequestError(
      'send "prompt" (a non-empty string) or "messages" (a non-empty list of {role, content})',
    );
  }
  if (model !== undefined && (typeof model !== "string" || model === "")) {
    throw new BadRequestError('"model" must be a non-empty string');
  }
  if (stream !== undefined && typeof stream !== "boolean") {
    throw new BadRequestError('"stream" must be true or false');
  }
  let options: GatewayOptions;
  try {
    options = parseGatewayOptions(gateway);
  } catch (err) {
    throw new BadRequestError(err instanceof Error ? err.message : String(err));
  }
  // A caller's own trace id (request header) wins over the body's.
  const eventId = request.headers.get("cf-aig-event-id");
  if (eventId) options = { ...options, eventId };
  return { messages: chat, model: model as string | undefined, stream: stream === true, gateway: options };
}

function isMessage(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  const { role, content } = value as Record<string, unknown>;
  return typeof role === "string" && (typeof content === "string" || Array.isArray(content));
}

/** The gateway's answer headers, copied onto ours so callers can find the log entry. */
function resultHeaders(response: { headers: Headers }): Record<string, string> {
  const { logId, cacheStatus } = gatewayResult(response);
  return {
    ...(logId ? { "cf-aig-log-id": logId } : {}),
    ...(cacheStatus ? { "cf-aig-cache-status": cacheStatus } : {}),
  };
}

async function chat(request: Request, env: Env): Promise<Response> {
  const input = await readChatRequest(request);
  const client = openaiClient(env);
  const params = { model: input.model ?? DEFAULT_OPENAI_MODEL, messages: input.messages };
  const options = { headers: gatewayHeaders(input.gateway) };

  if (input.stream) {
    // Server-sent events straight through: the body is never buffered in the Worker.
    const upstream = await client.chat.completions.create({ ...params, stream: true }, options).asResponse();
    return new Response(upstream.body, {
      status: 200,
      headers: {
        "content-type": upstream.headers.get("content-type") ?? "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        ...resultHeaders(upstream),
      },
    });
  }

  const { data, response } = await client.chat.completions.create(params, options).withResponse();
  const { logId, cacheStatus } = gatewayResult(response);
  return json(
    {
      reply: data.choices[0]?.message.content ?? "",
      model: data.model,
      usage: data.usage ?? null,
      log_id: logId,
      cache_status: cacheStatus,
      ...(input.gateway.eventId ? { event_id: input.gateway.eventId } : {}),
    },
    200,
    resultHeaders(response),
  );
}

/** Maps an error to the JSON answer: 400 bad request, 500 missing setting, 502 upstream. */
export function errorResponse(err: unknown): Response {
  if (err instanceof BadRequestError) return json({ error: err.message }, 400);
  if (err instanceof MissingSettingError) return json({ error: err.message, missing: err.setting }, 500);
  if (err instanceof OpenAI.APIError) {
    const status = err.status ?? null;
    return json(
      {
        error: status ? `the gateway answered ${status}` : `could not reach the gateway: ${err.message}`,
        status,
        detail: err.error ?? null,
        log_id: err.headers?.get("cf-aig-log-id") ?? null,
      },
      502,
    );
  }
  console.error("unexpected error", err);
  return json({ error: "internal error" }, 500);
}

export default {
  async fetch(request, env): Promise<Response> {
    const { pathname } = new URL(request.url);
    const route = `${request.method} ${pathname}`;
    try {
      switch (route) {
        case "GET /health":
          return json({ status: "ok" });
        case "POST /chat":
          return await chat(request, env);
      }
      if (pathname === "/health" || pathname === "/chat") {
        return json({ error: `method ${request.method} not allowed` }, 405, {
          allow: pathname === "/health" ? "GET" : "POST",
        });
      }
      return json({ error: `no route for ${route}` }, 404);
    } catch (err) {
      return errorResponse(err);
    }
  },
} satisfies ExportedHandler<Env>;

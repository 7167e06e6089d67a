import { type GatewayOptions, gatewayResult, parseGatewayOptions } from "./gateway-options";
import { BadRequestError, readJson } from "./http";

/** One message of a conversation, as OpenAI's chat completions API names its parts. */
export interface ChatMessage {
  role: string;
  content: string | ContentPart[];
}

export type ContentPart = { type: string; text?: string } & Record<string, unknown>;

/** A validated `POST /chat` body. */
export interface ChatRequest {
  messages: ChatMessage[];
  model: string | undefined;
  stream: boolean;
  gateway: GatewayOptions;
}

/** What a provider route gets: the checked request, the model to use, the settings, the deadline. */
export interface ChatCall {
  input: ChatRequest;
  model: string;
  env: Env;
  deadline: AbortSignal;
}

/**
 * Reads and checks a chat body, `{"prompt": "..."}` or `{"messages": [...]}`, of at most
 * `maxBytes`, before `deadline`.
 */
export async function readChatRequest(request: Request, maxBytes: number, deadline: AbortSignal): Promise<ChatRequest> {
  const body = await readJson(request, maxBytes, deadline);
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
    throw new BadRequestError('send "prompt" (a non-empty string) or "messages" (a non-empty list of {role, content})');
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
  const isPart = (part: unknown) =>
    typeof part === "object" && part !== null && typeof (part as ContentPart).type === "string";
  return typeof role === "string" && (typeof content === "string" || (Array.isArray(content) && content.every(isPart)));
}

/** The gateway's answer headers, copied onto ours so callers can find the log entry. */
export function resultHeaders(response: { headers: Headers }): Record<string, string> {
  const { logId, cacheStatus } = gatewayResult(response);
  return {
    ...(logId ? { "cf-aig-log-id": logId } : {}),
    ...(cacheStatus ? { "cf-aig-cache-status": cacheStatus } : {}),
  };
}

/** The text of a message whose content is a string or a list of parts. */
export function textOf(message: ChatMessage): string {
  const { content } = message;
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content.map((part) => (typeof part.text === "string" ? part.text : "")).join("");
}

/** The JSON answer every chat route gives. */
export function chatAnswer(
  input: ChatRequest,
  reply: string,
  model: string,
  usage: unknown,
  result: { logId: string | null; cacheStatus: string | null },
): Record<string, unknown> {
  return {
    reply,
    model,
    usage: usage ?? null,
    log_id: result.logId,
    cache_status: result.cacheStatus,
    ...(input.gateway.eventId ? { event_id: input.gateway.eventId } : {}),
  };
}

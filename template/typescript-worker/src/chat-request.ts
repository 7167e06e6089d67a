// The body of a chat request, read and checked, and the answer a chat route gives.
import { METADATA_TOO_MANY } from "./callers";
import { BadRequestError, HttpError } from "./errors";
import {
  type GatewayOptions,
  type GatewayResult,
  isHeaderText,
  MAX_METADATA_ENTRIES,
  parseGatewayOptions,
  type Upstream,
} from "./gateway";
import { usageOf } from "./request-log";
import type { Settings } from "./settings";
import { type Piece, readBounded } from "./streaming";

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
  /** The most tokens the reply may have (within the caller's cap, callers.toml). */
  maxTokens: number | undefined;
  gateway: GatewayOptions;
  /** OpenAI's sampling temperature, 0 to 2. */
  temperature: number | undefined;
  /** OpenAI's response_format: text, JSON, or JSON that follows a schema. */
  responseFormat: ResponseFormat | undefined;
}

/** OpenAI's `response_format`, checked (`checkResponseFormat`). */
export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | {
      type: "json_schema";
      json_schema: { name: string; description?: string; schema?: Record<string, unknown>; strict?: boolean };
    };

/** The largest `max_tokens` a request may ask for. */
export const MAX_TOKENS_LIMIT = 1_000_000;

/** What a provider route gets: the checked request, the model to use, the settings, the way out. */
export interface ChatCall {
  input: ChatRequest;
  model: string;
  env: Settings;
  /** Every call to the gateway goes through it: its rules, its deadline, its byte cap. */
  upstream: Upstream;
}

/** What a provider answers: the whole reply, or its pieces as they come (`"stream": true`). */
export type ChatOutcome = { reply: string; model: string; usage: unknown } | { pieces: AsyncIterable<Piece> };

/** The deepest nesting of arrays and objects a request body may have. */
export const MAX_DEPTH = 64;

/** Whether `value` nests arrays and objects deeper than `MAX_DEPTH` (checked without recursion). */
export function tooDeep(value: unknown): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const [node, depth] = item;
    if (typeof node !== "object" || node === null) continue;
    if (depth > MAX_DEPTH) return true;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return false;
}

/**
 * The body of a JSON request, read under `maxBytes` and `signal`: 415 unless it is
 * `application/json`, 413 past the limit (by Content-Length, then by the bytes read), 400 unless
 * it parses and nests at most `MAX_DEPTH` levels.
 */
export async function readJson(request: Request, maxBytes: number, signal: AbortSignal): Promise<unknown> {
  const type = (request.headers.get("content-type") ?? "").split(";")[0]?.trim().toLowerCase();
  if (type !== "application/json") {
    throw new HttpError(415, 'send the body as JSON with "content-type: application/json"');
  }
  const tooLarge = () => new HttpError(413, `the request body is larger than ${maxBytes} bytes (MAX_BODY_BYTES)`);
  if (Number(request.headers.get("content-length") ?? "0") > maxBytes) throw tooLarge();
  const bytes = await readBounded(request.body, maxBytes, tooLarge, signal);
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new BadRequestError("the request body must be JSON");
  }
  if (tooDeep(body)) throw new BadRequestError(`the request body is nested deeper than ${MAX_DEPTH} levels`);
  return body;
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
  const fields = body as Record<string, unknown>;
  const { prompt, messages, model, stream, max_tokens: maxTokens, gateway, temperature } = fields;
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
  const wholeTokens = typeof maxTokens === "number" && Number.isInteger(maxTokens);
  if (maxTokens !== undefined && !(wholeTokens && maxTokens >= 1 && maxTokens <= MAX_TOKENS_LIMIT)) {
    throw new BadRequestError(`"max_tokens" must be an integer from 1 to ${MAX_TOKENS_LIMIT}`);
  }
  const checkedOptions = options(request, gateway);
  // null stands for "not given" in both, as OpenAI reads them.
  if (temperature != null && !(typeof temperature === "number" && temperature >= 0 && temperature <= 2)) {
    throw new BadRequestError('"temperature" must be a number from 0 to 2');
  }
  return {
    messages: chat,
    model: model as string | undefined,
    stream: stream === true,
    maxTokens: maxTokens as number | undefined,
    gateway: checkedOptions,
    temperature: (temperature ?? undefined) as number | undefined,
    responseFormat: fields.response_format != null ? checkResponseFormat(fields.response_format) : undefined,
  };
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** A JSON schema's or a function's name, as OpenAI takes it. */
const NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * `response_format` as OpenAI defines it, or a 400 naming the first thing wrong in the same
 * words as the Python service: `{"type": "text"}`, `{"type": "json_object"}`, or
 * `{"type": "json_schema", "json_schema": {"name", "description"?, "schema"?, "strict"?}}`.
 */
export function checkResponseFormat(value: unknown): ResponseFormat {
  const refuse = (where: string, problem: string) => new BadRequestError(`response_format${where}: ${problem}`);
  if (!isObject(value)) throw refuse("", "Input should be a valid dictionary or instance of ResponseFormat");
  const { type, json_schema: jsonSchema } = value;
  if (!("type" in value)) throw refuse(".type", "Field required");
  if (type !== "text" && type !== "json_object" && type !== "json_schema") {
    throw refuse(".type", "Input should be 'text', 'json_object' or 'json_schema'");
  }
  if (jsonSchema !== undefined && jsonSchema !== null) checkJsonSchema(jsonSchema, refuse);
  const extra = Object.keys(value).find((key) => key !== "type" && key !== "json_schema");
  if (extra !== undefined) throw refuse(`.${extra}`, "Extra inputs are not permitted");
  const withSchema = jsonSchema !== undefined && jsonSchema !== null;
  if ((type === "json_schema") !== withSchema) {
    throw refuse("", 'Value error, "json_schema" goes with type "json_schema", and only there');
  }
  if (type !== "json_schema") return { type };
  const { name, description, schema, strict } = jsonSchema as Record<string, unknown>;
  // What was given goes on as it was, but for nulls ("not given").
  return {
    type,
    json_schema: {
      name: name as string,
      ...(description != null ? { description: description as string } : {}),
      ...(schema != null ? { schema: schema as Record<string, unknown> } : {}),
      ...(strict != null ? { strict: strict as boolean } : {}),
    },
  };
}

function checkJsonSchema(value: unknown, refuse: (where: string, problem: string) => BadRequestError): void {
  if (!isObject(value)) {
    throw refuse(".json_schema", "Input should be a valid dictionary or instance of JsonSchemaFormat");
  }
  const { name, description, schema, strict } = value;
  if (!("name" in value)) throw refuse(".json_schema.name", "Field required");
  if (typeof name !== "string") throw refuse(".json_schema.name", "Input should be a valid string");
  if (!NAME_PATTERN.test(name)) {
    throw refuse(".json_schema.name", "String should match pattern '^[A-Za-z0-9_-]{1,64}$'");
  }
  if (description != null && typeof description !== "string") {
    throw refuse(".json_schema.description", "Input should be a valid string");
  }
  if (schema != null && !isObject(schema)) throw refuse(".json_schema.schema", "Input should be a valid dictionary");
  if (strict != null && typeof strict !== "boolean") {
    throw refuse(".json_schema.strict", "Input should be a valid boolean");
  }
  const known = ["name", "description", "schema", "strict"];
  const extra = Object.keys(value).find((key) => !known.includes(key));
  if (extra !== undefined) throw refuse(`.json_schema.${extra}`, "Extra inputs are not permitted");
}

/** The body's gateway options; a caller's own trace id (request header) wins over the body's. */
function options(request: Request, gateway: unknown): GatewayOptions {
  // More than the gateway keeps: the same answer as 4 or 5 keys get once the service adds its own.
  const metadata = (gateway as { metadata?: unknown } | null)?.metadata;
  if (
    typeof metadata === "object" &&
    metadata !== null &&
    !Array.isArray(metadata) &&
    Object.keys(metadata).length > MAX_METADATA_ENTRIES
  ) {
    throw new BadRequestError(METADATA_TOO_MANY);
  }
  let options: GatewayOptions;
  try {
    options = parseGatewayOptions(gateway);
  } catch (err) {
    throw new BadRequestError(err instanceof Error ? err.message : String(err));
  }
  const eventId = request.headers.get("cf-aig-event-id");
  if (eventId === null) return options;
  if (!isHeaderText(eventId))
    throw new BadRequestError("header cf-aig-event-id must be 1 to 256 printable ASCII characters");
  return { ...options, eventId };
}

function isMessage(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  const { role, content } = value as Record<string, unknown>;
  const isPart = (part: unknown) =>
    typeof part === "object" && part !== null && typeof (part as ContentPart).type === "string";
  return typeof role === "string" && (typeof content === "string" || (Array.isArray(content) && content.every(isPart)));
}

/** The gateway's answer headers, copied onto ours so callers can find the log entry. */
export function resultHeaders({ logId, cacheStatus }: GatewayResult): Record<string, string> {
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
  result: GatewayResult,
): Record<string, unknown> {
  return {
    reply,
    model,
    usage: usageOf(usage), // token counts, in one shape whatever the provider
    log_id: result.logId,
    cache_status: result.cacheStatus,
    ...(input.gateway.eventId ? { event_id: input.gateway.eventId } : {}),
  };
}

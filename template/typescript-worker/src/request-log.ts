// One JSON line per request (`console.log`, read by Workers Logs and `wrangler tail`), written
// when the answer or the stream has ended. It names what was asked and what came back, never a
// secret, a prompt, a message or a reply.
import type { ErrorKind } from "./errors";

/** Token counts, in one shape whatever the provider called them. */
export interface Usage {
  prompt_tokens: number | null;
  completion_tokens: number | null;
  total_tokens: number | null;
}

export interface RequestLine {
  event: "request";
  method: string;
  /** The route template (`/chat/{provider}`), or null for a path no route serves. */
  route: string | null;
  provider: string | null;
  model: string | null;
  status: number;
  latency_ms: number;
  /** From the first gateway call until its answer's headers. */
  upstream_ms: number | null;
  log_id: string | null;
  cache_status: string | null;
  usage: Usage | null;
  /** `default` once SERVICE_API_KEY matched, `anonymous` with caller_auth=none, else null. */
  caller: string | null;
  stream: boolean;
  error: ErrorKind | null;
}

type Known = Omit<RequestLine, "event" | "method" | "status" | "latency_ms" | "error">;

function count(...values: unknown[]): number | null {
  const found = values.find((value) => typeof value === "number" && Number.isFinite(value));
  return typeof found === "number" ? found : null;
}

/** OpenAI's, Anthropic's, Gemini's or Workers AI's usage object as prompt/completion/total counts. */
export function usageOf(usage: unknown): Usage | null {
  if (typeof usage !== "object" || usage === null) return null;
  const u = usage as Record<string, unknown>;
  const prompt = count(u.prompt_tokens, u.input_tokens, u.promptTokenCount);
  const completion = count(u.completion_tokens, u.output_tokens, u.candidatesTokenCount);
  const total =
    count(u.total_tokens, u.totalTokenCount) ?? (prompt !== null && completion !== null ? prompt + completion : null);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: total };
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/** The log line of one request, filled in as the request goes; written once by `end()`. */
export class RequestLog {
  readonly known: Known;
  /** Set while a stream is answering: the stream's end writes the line, not the handler. */
  streaming = false;
  readonly #method: string;
  readonly #started = performance.now();
  #written = false;

  constructor(request: Request, caller: string | null) {
    this.#method = request.method;
    this.known = {
      route: null,
      provider: null,
      model: null,
      upstream_ms: null,
      log_id: null,
      cache_status: null,
      usage: null,
      caller,
      stream: false,
    };
  }

  set(fields: Partial<Known>): void {
    Object.assign(this.known, fields);
  }

  end(status: number, error: ErrorKind | null): void {
    if (this.#written) return;
    this.#written = true;
    const { route, provider, model, upstream_ms, log_id, cache_status, usage, caller, stream } = this.known;
    const line: RequestLine = {
      event: "request",
      method: this.#method,
      route,
      provider,
      model,
      status,
      latency_ms: round(performance.now() - this.#started),
      upstream_ms: upstream_ms === null ? null : round(upstream_ms),
      log_id,
      cache_status,
      usage,
      caller,
      stream,
      error,
    };
    console.log(JSON.stringify(line));
  }
}

// HTTP plumbing with the runtime's own fetch and Response: no SDK here.

/** An answer other than 200, as JSON `{"error": message, ...fields}`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly fields: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "HttpError";
  }
}

/** The request cannot be served as sent: 400. */
export class BadRequestError extends HttpError {
  constructor(message: string) {
    super(400, message);
  }
}

/** A setting or secret is missing or malformed: 500 naming it (never its value), nothing sent. */
export class SettingError extends HttpError {
  constructor(
    readonly setting: string,
    message: string,
    missing = true,
  ) {
    super(500, message, missing ? { missing: setting } : { invalid: setting });
  }
}

/**
 * The gateway (or the provider behind it) failed: 502 with its status and log id, never its body.
 * The message names the log id too, so that one line says where to look.
 */
export class UpstreamError extends HttpError {
  constructor(message: string, status: number | null, logId: string | null = null) {
    super(502, logId ? `${message} (gateway log id ${logId})` : message, { status, log_id: logId });
  }
}

export function json(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  return Response.json(body, { status, headers });
}

/** 504: the request's deadline (REQUEST_TIMEOUT_SECONDS) passed. */
export function timedOut(seconds: number): HttpError {
  return new HttpError(504, `no answer within ${seconds} s (REQUEST_TIMEOUT_SECONDS)`);
}

/** What a streamed answer reports in its `done` event, read once the last piece has arrived. */
export interface StreamEnd {
  model: string;
  usage: unknown;
  logId: string | null;
  cacheStatus: string | null;
}

const encoder = new TextEncoder();

function event(name: string, data: unknown): Uint8Array {
  return encoder.encode(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
}

/**
 * The service's own server-sent events, whatever the provider streamed: `delta` with
 * `{"text"}` per piece, then `done` with `{"model", "log_id", "cache_status"}` (and `"usage"`
 * when the provider sent it), or `error` with `{"error", "status"}` (502 adds `"log_id"`) when
 * the gateway fails or the deadline passes mid-stream. No upstream byte is passed through as such.
 */
export function eventStream(
  pieces: AsyncIterable<string>,
  end: () => StreamEnd,
  fail: (err: unknown) => HttpError,
  deadline: AbortSignal,
  headers: Record<string, string> = {},
): Response {
  const iterator = pieces[Symbol.asyncIterator]();
  const expired = new Promise<never>((_, reject) => {
    if (deadline.aborted) reject(deadline.reason);
    deadline.addEventListener("abort", () => reject(deadline.reason), { once: true });
  });
  expired.catch(() => {}); // observed through the race below
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        for (;;) {
          const next = await Promise.race([iterator.next(), expired]);
          if (next.done) break;
          if (next.value) {
            controller.enqueue(event("delta", { text: next.value }));
            return;
          }
        }
        const { model, usage, logId, cacheStatus } = end();
        const done = { model, log_id: logId, cache_status: cacheStatus };
        controller.enqueue(event("done", usage ? { ...done, usage } : done));
      } catch (err) {
        const error = fail(err);
        // 502 carries the gateway's log id (or null), as the JSON answer does; 504 has none.
        const logId = "log_id" in error.fields ? { log_id: error.fields.log_id } : {};
        controller.enqueue(event("error", { error: error.message, status: error.status, ...logId }));
        iterator.return?.().catch(() => {});
      }
      controller.close();
    },
    async cancel() {
      await iterator.return?.();
    },
  });
  return new Response(body, {
    status: 200,
    headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", ...headers },
  });
}

/** The `data:` payloads of a server-sent event stream, parsed as JSON (`[DONE]` ends it). */
export async function* eventData(stream: ReadableStream<Uint8Array>): AsyncGenerator<unknown> {
  const decoder = new TextDecoder();
  const reader = stream.getReader();
  let buffer = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      const lines = buffer.split(/\r?\n/);
      buffer = done ? "" : (lines.pop() ?? "");
      for (const line of lines) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        if (data) yield JSON.parse(data);
      }
      if (done) return;
    }
  } finally {
    reader.releaseLock();
  }
}

/** The JSON answer for an error; anything unexpected is logged and answered as a bare 500. */
export function errorResponse(err: unknown): Response {
  if (err instanceof HttpError) return json({ error: err.message, ...err.fields }, err.status, err.headers);
  console.error("unexpected error", err);
  return json({ error: "internal error" }, 500);
}

/**
 * The body of a JSON request, read under `maxBytes` and `signal`: 415 unless it is
 * `application/json`, 413 past the limit (by Content-Length, then by the bytes read), 400 unless
 * it parses.
 */
export async function readJson(request: Request, maxBytes: number, signal: AbortSignal): Promise<unknown> {
  const type = (request.headers.get("content-type") ?? "").split(";")[0]?.trim().toLowerCase();
  if (type !== "application/json") {
    throw new HttpError(415, 'send the body as JSON with "content-type: application/json"');
  }
  const tooLarge = () => new HttpError(413, `the request body is larger than ${maxBytes} bytes (MAX_BODY_BYTES)`);
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > maxBytes) throw tooLarge();
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body) {
    const reader = request.body.getReader();
    const abort = () => reader.cancel(signal.reason).catch(() => {});
    signal.addEventListener("abort", abort);
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        size += value.byteLength;
        if (size > maxBytes) {
          await reader.cancel();
          throw tooLarge();
        }
        chunks.push(value);
      }
    } finally {
      signal.removeEventListener("abort", abort);
    }
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new BadRequestError("the request body must be JSON");
  }
}

const ANSWER_TYPES = ["application/json", "text/event-stream"];

/**
 * The way out to the gateway, for SDK clients (their `fetch` option) and direct calls alike:
 * never follows a redirect (a 3xx would carry the token to another host), cancels at the
 * request's deadline, and accepts only a 2xx JSON or event-stream answer. Whatever went wrong is
 * kept, so `error()` answers with it whichever SDK wrapped it on the way.
 */
export class Upstream {
  #failure: UpstreamError | undefined;

  constructor(readonly deadline: AbortSignal) {}

  readonly fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const signal = init?.signal ? AbortSignal.any([this.deadline, init.signal]) : this.deadline;
    let response: Response;
    try {
      response = await fetch(input, { ...init, redirect: "manual", signal });
    } catch (err) {
      throw this.#fail(new UpstreamError(`could not reach the gateway: ${describe(err)}`, null));
    }
    const logId = response.headers.get("cf-aig-log-id");
    const type = (response.headers.get("content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
    let failure: UpstreamError | undefined;
    if (response.status >= 300 && response.status < 400) {
      const location = response.headers.get("location") ?? "nowhere";
      const message = `the gateway redirected (${response.status}) to ${location}; redirects are not followed`;
      failure = new UpstreamError(message, response.status, logId);
    } else if (!response.ok) {
      failure = new UpstreamError(`the gateway answered ${response.status}`, response.status, logId);
    } else if (!ANSWER_TYPES.includes(type)) {
      failure = new UpstreamError(
        `the gateway answered ${response.status} with ${type || "no content type"}`,
        response.status,
        logId,
      );
    }
    if (failure) {
      await response.body?.cancel().catch(() => {});
      throw this.#fail(failure);
    }
    return response;
  };

  /**
   * The `error` event of a stream cut off by `err`: the 504 past the deadline, else a 502 that
   * echoes nothing the connection said.
   */
  streamError(logId: string | null): (err: unknown) => HttpError {
    return (err) => {
      if (this.deadline.aborted && this.deadline.reason instanceof HttpError) return this.deadline.reason;
      return (
        this.#failure ??
        (err instanceof HttpError ? err : new UpstreamError("the gateway's answer broke off", null, logId))
      );
    };
  }

  /** The answer for an error thrown while calling through `fetch`. */
  error(err: unknown): HttpError {
    if (this.#failure) return this.#failure;
    if (err instanceof HttpError) return err;
    return new UpstreamError(`the gateway's answer could not be read: ${describe(err)}`, null);
  }

  #fail(failure: UpstreamError): UpstreamError {
    this.#failure = failure;
    return failure;
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

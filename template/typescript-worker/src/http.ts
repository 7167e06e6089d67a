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

/** The gateway (or the provider behind it) failed: 502 with its status and log id, never its body. */
export class UpstreamError extends HttpError {
  constructor(message: string, status: number | null, logId: string | null = null) {
    super(502, message, { status, log_id: logId });
  }
}

export function json(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  return Response.json(body, { status, headers });
}

/** Server-sent events straight through: the body is never buffered in the Worker. */
export function sse(upstream: Response, headers: Record<string, string> = {}): Response {
  return new Response(upstream.body, {
    status: 200,
    headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", ...headers },
  });
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
      failure = new UpstreamError(`the gateway redirected to ${location} (not followed)`, response.status, logId);
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

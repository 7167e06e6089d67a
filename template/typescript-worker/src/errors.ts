// Every answer other than 200, as JSON `{"error": message, ...fields}`, and the class of error
// the request log names for it.

/** The request log's name for what went wrong (`null` on success). */
export type ErrorKind =
  | "bad_request"
  | "unauthorized"
  | "not_found"
  | "method_not_allowed"
  | "too_large"
  | "unsupported_media_type"
  | "rate_limited"
  | "setting"
  | "internal"
  | "upstream"
  | "timeout"
  | "client_gone";

const KINDS: Record<number, ErrorKind> = {
  400: "bad_request",
  401: "unauthorized",
  404: "not_found",
  405: "method_not_allowed",
  413: "too_large",
  415: "unsupported_media_type",
  429: "rate_limited",
  502: "upstream",
  504: "timeout",
};

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

  get kind(): ErrorKind {
    return KINDS[this.status] ?? "internal";
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

  override get kind(): ErrorKind {
    return "setting";
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

/** 502: the gateway's answer (or a stream's bytes) went past MAX_UPSTREAM_BYTES. */
export function answerTooLarge(maxBytes: number, status: number | null, logId: string | null): HttpError {
  const message = `the gateway's answer is larger than ${maxBytes} bytes (MAX_UPSTREAM_BYTES)`;
  return new HttpError(502, message, { status, log_id: logId });
}

/** 504: the request's deadline (REQUEST_TIMEOUT_SECONDS) passed. */
export function timedOut(seconds: number): HttpError {
  return new HttpError(504, `no answer within ${seconds} s (REQUEST_TIMEOUT_SECONDS)`);
}

/** 405 naming the methods the route takes. */
export function notAllowed(request: Request, allow: string): HttpError {
  const { pathname } = new URL(request.url);
  return new HttpError(405, `method ${request.method} not allowed on ${pathname}`, {}, { allow });
}

export function json(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  return Response.json(body, { status, headers });
}

/** The JSON answer for an error; anything unexpected is answered as a bare 500. */
export function errorResponse(err: unknown): Response {
  if (err instanceof HttpError) return json({ error: err.message, ...err.fields }, err.status, err.headers);
  return json({ error: "internal error" }, 500);
}

/** An error's own message, for the few answers that may name it. */
export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

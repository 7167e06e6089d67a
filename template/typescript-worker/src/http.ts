import OpenAI from "openai";
import { MissingSettingError } from "./gateway";

/** The request cannot be served as sent: answered as 400 with this message. */
export class BadRequestError extends Error {}

/** The gateway (or the provider behind it) failed: answered as 502 with its status. */
export class UpstreamError extends Error {
  constructor(
    readonly status: number | null,
    readonly detail: unknown = null,
    readonly logId: string | null = null,
    reason = "",
  ) {
    super(status ? `the gateway answered ${status}` : `could not reach the gateway${reason ? `: ${reason}` : ""}`);
    this.name = "UpstreamError";
  }
}

/** Server-sent events straight through: the body is never buffered in the Worker. */
export function sse(upstream: Response, headers: Record<string, string> = {}): Response {
  return new Response(upstream.body, {
    status: 200,
    headers: {
      "content-type": upstream.headers.get("content-type") ?? "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      ...headers,
    },
  });
}

export function json(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  return Response.json(body, { status, headers });
}

/** Maps an error to the JSON answer: 400 bad request, 500 missing setting, 502 upstream. */
export function errorResponse(err: unknown): Response {
  if (err instanceof BadRequestError) return json({ error: err.message }, 400);
  if (err instanceof MissingSettingError) return json({ error: err.message, missing: err.setting }, 500);
  if (err instanceof OpenAI.APIError) {
    const reason = err.cause instanceof Error ? err.cause.message : err.message;
    err = new UpstreamError(err.status ?? null, err.error ?? null, err.headers?.get("cf-aig-log-id") ?? null, reason);
  }
  if (err instanceof UpstreamError) {
    return json(
      {
        error: err.message,
        status: err.status,
        detail: err.detail,
        log_id: err.logId,
      },
      502,
    );
  }
  console.error("unexpected error", err);
  return json({ error: "internal error" }, 500);
}

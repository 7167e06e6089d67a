import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import worker from "../src/index";
import { captureLog, chatRequest, type IncomingRequest, stubFetch } from "./helpers";

// A stream ends with its caller: when the caller stops reading, the Worker stops reading the
// gateway and cancels its answer; at the deadline at the latest.

afterEach(() => {
  vi.restoreAllMocks();
});

// The Worker's own fetch handler, called directly: the caller's cancel reaches its stream as is.
const call = (request: Request, vars: Record<string, string> = {}) =>
  worker.fetch(request as IncomingRequest, { ...env, ...vars } as Env);

const encoder = new TextEncoder();
const piece = (content: string) =>
  encoder.encode(
    `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { content } }] })}\n\n`,
  );

/** A gateway stream that sends one piece, then nothing more, ever; `cancelled` resolves on cancel. */
function stalled() {
  let resolve = () => {};
  const cancelled = new Promise<void>((done) => {
    resolve = done;
  });
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(piece("Hi"));
    },
    pull() {
      return new Promise(() => {});
    },
    cancel() {
      resolve();
    },
  });
  return { answer: () => new Response(body, { headers: { "content-type": "text/event-stream" } }), cancelled };
}

describe("a caller that hangs up", () => {
  it("cancels the gateway's stream and logs client_gone", async () => {
    const log = captureLog();
    const upstream = stalled();
    const spy = stubFetch(upstream.answer);
    const res = await call(chatRequest({ prompt: "Hello", stream: true }));
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe('event: delta\ndata: {"text":"Hi"}\n\n');
    await reader.cancel();
    await upstream.cancelled; // without the cancel, this test times out
    expect(spy.mock.calls[0]?.[1]?.signal?.aborted).toBe(true);
    expect(log()).toMatchObject([{ status: 200, stream: true, error: "client_gone" }]);
  });

  it("cancels the gateway's stream when the caller hangs up before the first piece", async () => {
    const upstream = stalled();
    stubFetch(upstream.answer);
    const res = await call(chatRequest({ prompt: "Hello", stream: true }));
    await res.body?.cancel();
    await upstream.cancelled;
  });
});

describe("the deadline", () => {
  it("cancels the gateway's stream when it passes mid-stream", async () => {
    const log = captureLog();
    const upstream = stalled();
    stubFetch(upstream.answer);
    const res = await call(chatRequest({ prompt: "Hello", stream: true }), { REQUEST_TIMEOUT_SECONDS: "0.5" });
    expect(await res.text()).toContain(
      'event: error\ndata: {"error":"no answer within 0.5 s (REQUEST_TIMEOUT_SECONDS)","status":504}',
    );
    await upstream.cancelled;
    expect(log()).toMatchObject([{ status: 200, stream: true, error: "timeout" }]);
  });
});

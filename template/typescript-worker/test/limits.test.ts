import { env, exports } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import worker from "../src/index";
import { captureLog, chatRequest, completion, endless, type IncomingRequest, stubFetch } from "./helpers";

// Bounded memory and bounded input: an upstream answer is read up to MAX_UPSTREAM_BYTES and no
// further; a request body nests at most 64 levels.

afterEach(() => {
  vi.restoreAllMocks();
});

const call = (request: Request, vars: Record<string, string> = {}) =>
  worker.fetch(request as IncomingRequest, { ...env, ...vars } as Env);

const TOO_LARGE = (bytes: number) => `the gateway's answer is larger than ${bytes} bytes (MAX_UPSTREAM_BYTES)`;

describe("an upstream answer over MAX_UPSTREAM_BYTES", () => {
  it("answers 502 for an endless JSON answer, after reading about 4 MiB of it (the default)", async () => {
    const log = captureLog();
    const upstream = endless("x".repeat(64 * 1024));
    stubFetch(
      () => new Response(upstream.body, { headers: { "content-type": "application/json", "cf-aig-log-id": "01JBIG" } }),
    );
    const res = await exports.default.fetch(chatRequest({ prompt: "Hello" }));
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({ error: TOO_LARGE(4194304), status: 200, log_id: "01JBIG" });
    await upstream.cancelled; // the rest is never read
    expect(upstream.pulled()).toBeLessThan(4194304 + 4 * 64 * 1024);
    expect(log()).toMatchObject([{ status: 502, error: "upstream", log_id: "01JBIG" }]);
  });

  it("answers 502 without reading a body whose Content-Length is over the bound", async () => {
    const upstream = endless("{}");
    stubFetch(
      () => new Response(upstream.body, { headers: { "content-type": "application/json", "content-length": "5000" } }),
    );
    const res = await call(chatRequest({ prompt: "Hello" }), { MAX_UPSTREAM_BYTES: "4096" });
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({ error: TOO_LARGE(4096), status: 200, log_id: null });
    await upstream.cancelled;
    expect(upstream.pulled()).toBeLessThanOrEqual(2 * 2); // at most what the stream queued up front
  });

  it("ends an endless stream with an error event and cancels it", async () => {
    const piece = `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { content: "x".repeat(1000) } }] })}\n\n`;
    const log = captureLog();
    const upstream = endless(piece);
    stubFetch(
      () => new Response(upstream.body, { headers: { "content-type": "text/event-stream", "cf-aig-log-id": "01JS" } }),
    );
    const res = await call(chatRequest({ prompt: "Hello", stream: true }), { MAX_UPSTREAM_BYTES: "100000" });
    expect(res.status).toBe(200);
    const text = await res.text();
    const events = text.split("\n\n").filter(Boolean);
    expect(events.at(-1)).toBe(
      `event: error\ndata: ${JSON.stringify({ error: TOO_LARGE(100000), status: 502, log_id: "01JS" })}`,
    );
    expect(events.slice(0, -1).every((event) => event.startsWith("event: delta\n"))).toBe(true);
    expect(events.length).toBeLessThan(100000 / 1000 + 2);
    await upstream.cancelled;
    expect(upstream.pulled()).toBeLessThan(100000 + 4 * piece.length);
    expect(log()).toMatchObject([{ status: 200, stream: true, error: "upstream", log_id: "01JS" }]);
  });

  it("takes an answer of exactly MAX_UPSTREAM_BYTES", async () => {
    const bytes = (await (completion("ok") as () => Response)().text()).length; // ASCII: one byte each
    stubFetch(completion("ok"));
    const res = await call(chatRequest({ prompt: "Hello" }), { MAX_UPSTREAM_BYTES: String(bytes) });
    expect(res.status).toBe(200);
    stubFetch(completion("ok"));
    const over = await call(chatRequest({ prompt: "Hello" }), { MAX_UPSTREAM_BYTES: String(bytes - 1) });
    expect(over.status).toBe(502);
  });
});

describe("a deeply nested request body", () => {
  const nested = (levels: number) => `{"prompt": "Hello", "x": ${"[".repeat(levels - 1)}${"]".repeat(levels - 1)}}`;

  it.each([65, 1000, 100_000])("answers 400 for %i levels, sending nothing", async (levels) => {
    const spy = stubFetch();
    const res = await exports.default.fetch(chatRequest(nested(levels)));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: "the request body is nested deeper than 64 levels" });
    expect(spy).not.toHaveBeenCalled();
  });

  it("takes 64 levels", async () => {
    stubFetch(completion("ok"));
    const res = await exports.default.fetch(chatRequest(nested(64)));
    expect(res.status).toBe(200);
  });
});

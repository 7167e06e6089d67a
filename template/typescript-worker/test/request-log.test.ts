import { env, exports } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import worker from "../src/index";
import { PROVIDERS } from "../src/providers";
import { CALLER_AUTH } from "../src/settings";
import { CALLER_HEADERS, captureLog, chatRequest, completion, type IncomingRequest, stubFetch } from "./helpers";

// One JSON log line per request (src/request-log.ts), written when the answer or the stream has
// ended: what was asked and what came back, never a secret, a prompt or a reply.

afterEach(() => {
  vi.restoreAllMocks();
});

const CALLER = CALLER_AUTH === "api-key" ? "default" : "anonymous";
const OPENAI_MODEL = PROVIDERS.get("openai")?.defaultModel;
const number = expect.any(Number);

describe("the request log", () => {
  it("writes one line for a JSON answer, with every field", async () => {
    const log = captureLog();
    stubFetch(completion("Hi!", { "cf-aig-log-id": "01JLOG", "cf-aig-cache-status": "MISS" }));
    const res = await exports.default.fetch(chatRequest({ prompt: "Hello" }));
    expect(res.status).toBe(200);
    await res.text();
    expect(log()).toEqual([
      {
        event: "request",
        method: "POST",
        route: "/chat",
        provider: "openai",
        model: OPENAI_MODEL,
        status: 200,
        latency_ms: number,
        upstream_ms: number,
        log_id: "01JLOG",
        cache_status: "MISS",
        usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
        caller: CALLER,
        stream: false,
        error: null,
      },
    ]);
  });

  it("writes a stream's line when the stream has ended", async () => {
    const log = captureLog();
    const chunk = (data: object) => `data: ${JSON.stringify(data)}\n\n`;
    const base = { id: "c", object: "chat.completion.chunk", created: 1, model: "gpt-4o-mini-2024-07-18" };
    const upstream =
      chunk({ ...base, choices: [{ index: 0, delta: { content: "Hi" } }] }) +
      chunk({ ...base, choices: [], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }) +
      "data: [DONE]\n\n";
    stubFetch(
      () => new Response(upstream, { headers: { "content-type": "text/event-stream", "cf-aig-log-id": "01JS" } }),
    );
    const res = await exports.default.fetch(chatRequest({ prompt: "Hello", stream: true }, {}, "/chat/openai"));
    await res.text();
    expect(log()).toMatchObject([
      {
        route: "/chat/{provider}",
        provider: "openai",
        status: 200,
        log_id: "01JS",
        usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        stream: true,
        error: null,
      },
    ]);
  });

  it.each([
    ["GET", "/health", 200, "/health", null, null],
    ["GET", "/openapi.json", 200, "/openapi.json", null, null],
    ["GET", "/nope", 404, null, null, "not_found"],
    ["POST", "/chat/constructor", 404, null, null, "not_found"],
    ["GET", "/chat", 405, "/chat", "openai", "method_not_allowed"],
  ])("names the route and error class of %s %s", async (method, path, status, route, provider, error) => {
    const log = captureLog();
    const res = await exports.default.fetch(`https://worker.test${path}`, { method, headers: CALLER_HEADERS });
    expect(res.status).toBe(status);
    const open = method === "GET" && (path === "/health" || path === "/openapi.json");
    const caller = open && CALLER_AUTH === "api-key" ? null : CALLER;
    expect(log()).toMatchObject([{ method, route, status, error, caller, provider, model: null }]);
  });

  it.each([
    ["a bad body", chatRequest("{nope"), 400, "bad_request"],
    ["a huge body", chatRequest({ prompt: "x".repeat(2 * 1024 * 1024) }), 413, "too_large"],
    ["text/plain", chatRequest({ prompt: "x" }, { "content-type": "text/plain" }), 415, "unsupported_media_type"],
  ])("names the error class of %s", async (_name, request, status, error) => {
    const log = captureLog();
    stubFetch();
    expect((await exports.default.fetch(request)).status).toBe(status);
    expect(log()).toMatchObject([{ status, error, route: "/chat", caller: CALLER }]);
  });

  if (CALLER_AUTH === "api-key")
    it("logs a refused caller as null", async () => {
      const log = captureLog();
      const res = await exports.default.fetch(chatRequest({ prompt: "x" }, { authorization: "Bearer wrong" }));
      expect(res.status).toBe(401);
      expect(log()).toMatchObject([{ status: 401, error: "unauthorized", caller: null, route: "/chat" }]);
    });

  it("names settings, upstream and timeout errors", async () => {
    const log = captureLog();
    const call = (vars: Record<string, string>) =>
      worker.fetch(chatRequest({ prompt: "Hello" }) as IncomingRequest, { ...env, ...vars } as Env);
    stubFetch(() => Response.json({}, { status: 429, headers: { "cf-aig-log-id": "01JX" } }));
    expect((await call({ AI_GATEWAY_ID: "a--b" })).status).toBe(500);
    expect((await call({})).status).toBe(502);
    vi.spyOn(globalThis, "fetch").mockImplementation(() => new Promise(() => {}));
    expect((await call({ REQUEST_TIMEOUT_SECONDS: "0.05" })).status).toBe(504);
    expect(log()).toMatchObject([
      { status: 500, error: "setting" },
      { status: 502, error: "upstream", log_id: "01JX" },
      { status: 504, error: "timeout" },
    ]);
  });
});

describe("what the log never holds", () => {
  const CANARY = {
    CF_AIG_TOKEN: "canary-gateway-token-3f9a",
    SERVICE_API_KEY: "canary-service-key-77c1",
    OPENAI_API_KEY: "canary-openai-key-d04e",
  };

  it("writes no secret, prompt or reply, whatever the answer", async () => {
    const out = vi.spyOn(console, "log").mockImplementation(() => {});
    const err = vi.spyOn(console, "error").mockImplementation(() => {});
    const headers = CALLER_AUTH === "api-key" ? { authorization: `Bearer ${CANARY.SERVICE_API_KEY}` } : {};
    const call = (body: unknown) =>
      worker.fetch(chatRequest(body, headers) as IncomingRequest, { ...env, ...CANARY } as Env);
    stubFetch(
      completion("canary-reply-json"),
      () =>
        new Response('data: {"choices":[{"delta":{"content":"canary-reply-stream"}}]}\n\ndata: [DONE]\n\n', {
          headers: { "content-type": "text/event-stream" },
        }),
      () => Response.json({ error: `echo ${CANARY.CF_AIG_TOKEN}` }, { status: 500 }),
      new Error(`connection failed with ${CANARY.OPENAI_API_KEY}`),
    );
    expect((await call({ prompt: "canary-prompt-1" })).status).toBe(200);
    expect(await (await call({ prompt: "canary-prompt-2", stream: true })).text()).toContain("canary-reply-stream");
    expect((await call({ messages: [{ role: "user", content: "canary-prompt-3" }] })).status).toBe(502);
    expect((await call({ prompt: "canary-prompt-4" })).status).toBe(502);
    expect(out).toHaveBeenCalledTimes(4);
    const written = JSON.stringify([...out.mock.calls, ...err.mock.calls]);
    for (const canary of [...Object.values(CANARY), "canary-prompt", "canary-reply"]) {
      expect(written).not.toContain(canary);
    }
  });
});

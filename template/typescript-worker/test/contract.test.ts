import { env, exports } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import worker from "../src/index";
import document from "../src/openapi.json";
import { CALLER_AUTH, GATEWAY_AUTHENTICATION } from "../src/settings";
import { CALLER_HEADERS, chatRequest, completion, type IncomingRequest, outbound, stubFetch } from "./helpers";

// The HTTP contract of the README ("Routes"): status codes, caller authentication, limits,
// the deadline and what is never sent or passed on. Nothing here may reach the network.

afterEach(() => {
  vi.restoreAllMocks();
});

const call = (request: Request, vars: Record<string, string> = {}) =>
  worker.fetch(request as IncomingRequest, { ...env, ...vars } as Env);

// Only the tests of this project's caller_auth are registered (no skipped tests).
if (CALLER_AUTH === "api-key")
  describe("caller authentication (caller_auth=api-key)", () => {
    it.each([
      ["no Authorization header", {}],
      ["a wrong key", { authorization: "Bearer wrong-key" }],
      ["a longer wrong key", { authorization: "Bearer test-service-key-and-more" }],
      ["the key without Bearer", { authorization: "test-service-key" }],
      ["the key as Basic", { authorization: "Basic test-service-key" }],
      ["an empty Bearer", { authorization: "Bearer " }],
    ])("answers 401 for %s, sending nothing upstream", async (_name, headers) => {
      const spy = stubFetch();
      const request = new Request("https://worker.test/chat", {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify({ prompt: "Hello" }),
      });
      const res = await exports.default.fetch(request);
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toBe("Bearer");
      expect(await res.json()).toEqual({ error: "send Authorization: Bearer <SERVICE_API_KEY>" });
      expect(spy).not.toHaveBeenCalled();
    });

    it("takes the Bearer scheme in any case", async () => {
      stubFetch(completion("ok"));
      const res = await exports.default.fetch(
        chatRequest({ prompt: "Hello" }, { authorization: "bearer test-service-key" }),
      );
      expect(res.status).toBe(200);
    });

    it("needs the key on every route but GET /health and GET /openapi.json, unknown ones included", async () => {
      const spy = stubFetch();
      expect((await exports.default.fetch("https://worker.test/health")).status).toBe(200);
      expect((await exports.default.fetch("https://worker.test/openapi.json")).status).toBe(200);
      for (const [method, path] of [
        ["GET", "/chat"],
        ["POST", "/health"],
        ["POST", "/openapi.json"],
        ["POST", "/chat/constructor"],
        ["GET", "/nope"],
      ] as const) {
        const res = await exports.default.fetch(`https://worker.test${path}`, { method });
        expect(res.status, `${method} ${path}`).toBe(401);
      }
      expect(spy).not.toHaveBeenCalled();
    });

    it("tells a caller without the key nothing about an invalid setting", async () => {
      const spy = stubFetch();
      const invalid = { CLOUDFLARE_ACCOUNT_ID: "not-an-account" };
      const anonymous = new Request("https://worker.test/chat", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: "Hello" }),
      });
      const refused = await call(anonymous as IncomingRequest, invalid);
      expect(refused.status).toBe(401);
      expect(await refused.text()).not.toContain("CLOUDFLARE_ACCOUNT_ID");
      const res = await call(chatRequest({ prompt: "Hello" }), invalid);
      expect(res.status).toBe(500);
      expect(await res.json()).toMatchObject({ invalid: "CLOUDFLARE_ACCOUNT_ID" });
      expect(spy).not.toHaveBeenCalled();
    });

    it("answers 500 naming SERVICE_API_KEY when it is not set, sending nothing", async () => {
      const spy = stubFetch();
      const res = await call(chatRequest({ prompt: "Hello" }), { SERVICE_API_KEY: "" });
      expect(res.status).toBe(500);
      expect(await res.json()).toMatchObject({ missing: "SERVICE_API_KEY" });
      expect(spy).not.toHaveBeenCalled();
    });
  });

if (CALLER_AUTH === "none")
  describe("no caller authentication (caller_auth=none)", () => {
    it("serves a request without Authorization", async () => {
      stubFetch(completion("ok"));
      const res = await exports.default.fetch(chatRequest({ prompt: "Hello" }));
      expect(res.status).toBe(200);
    });
  });

describe("routes", () => {
  it.each([
    ["POST", "/chat/constructor"],
    ["GET", "/chat/constructor"],
    ["POST", "/chat/__proto__"],
    ["POST", "/chat/toString"],
    ["POST", "/chat/openai/extra"],
    ["GET", "/nope"],
  ])("answers 404 for %s %s", async (method, path) => {
    const spy = stubFetch();
    const res = await exports.default.fetch(`https://worker.test${path}`, { method, headers: CALLER_HEADERS });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: `no route for ${method} ${path}` });
    expect(spy).not.toHaveBeenCalled();
  });

  it.each([
    ["GET", "/chat", "POST"],
    ["PUT", "/chat/openai", "POST"],
    ["POST", "/health", "GET"],
    ["POST", "/openapi.json", "GET"],
    ["DELETE", "/openapi.json", "GET"],
  ])("answers 405 for %s %s", async (method, path, allow) => {
    const res = await exports.default.fetch(`https://worker.test${path}`, { method, headers: CALLER_HEADERS });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe(allow);
    expect(await res.json()).toEqual({ error: `method ${method} not allowed on ${path}` });
  });
});

describe("GET /openapi.json", () => {
  it("serves the HTTP contract as OpenAPI 3.1, with no key and no call out", async () => {
    const spy = stubFetch();
    const res = await exports.default.fetch("https://worker.test/openapi.json");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    const served = (await res.json()) as { openapi: string; paths: Record<string, unknown> };
    expect(served).toEqual(document);
    expect(served.openapi).toBe("3.1.0");
    expect(Object.keys(served.paths)).toEqual(expect.arrayContaining(["/health", "/openapi.json", "/chat"]));
    expect(spy).not.toHaveBeenCalled();
  });
});

describe("request limits", () => {
  it.each([
    ["text/plain", "text/plain"],
    ["form data", "application/x-www-form-urlencoded"],
    ["no content type", ""],
  ])("answers 415 for %s, sending nothing", async (_name, type) => {
    const spy = stubFetch();
    const headers: Record<string, string> = { ...CALLER_HEADERS, ...(type ? { "content-type": type } : {}) };
    const res = await exports.default.fetch(
      new Request("https://worker.test/chat", { method: "POST", headers, body: '{"prompt": "Hello"}' }),
    );
    expect(res.status).toBe(415);
    expect(await res.json()).toEqual({ error: 'send the body as JSON with "content-type: application/json"' });
    expect(spy).not.toHaveBeenCalled();
  });

  it("accepts application/json with a charset", async () => {
    stubFetch(completion("ok"));
    const res = await exports.default.fetch(
      chatRequest({ prompt: "Hello" }, { "content-type": "application/json; charset=utf-8" }),
    );
    expect(res.status).toBe(200);
  });

  it("answers 413 for a body over MAX_BODY_BYTES (1 MiB by default)", async () => {
    const spy = stubFetch();
    const res = await exports.default.fetch(chatRequest({ prompt: "x".repeat(2 * 1024 * 1024) }));
    expect(res.status).toBe(413);
    expect(await res.json()).toEqual({ error: "the request body is larger than 1048576 bytes (MAX_BODY_BYTES)" });
    expect(spy).not.toHaveBeenCalled();
  });

  it("counts the bytes read when no Content-Length says how many", async () => {
    const spy = stubFetch();
    const chunk = new TextEncoder().encode(`{"prompt": "${"x".repeat(600)}`);
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(chunk); // endless: the Worker must stop reading by itself
      },
    });
    const request = new Request("https://worker.test/chat", {
      method: "POST",
      headers: { "content-type": "application/json", ...CALLER_HEADERS },
      body,
    });
    const res = await call(request, { MAX_BODY_BYTES: "4096" });
    expect(res.status).toBe(413);
    expect(await res.json()).toEqual({ error: "the request body is larger than 4096 bytes (MAX_BODY_BYTES)" });
    expect(spy).not.toHaveBeenCalled();
  });

  it("answers 400 for a model outside ALLOWED_MODELS, sending nothing", async () => {
    const spy = stubFetch();
    const res = await exports.default.fetch(chatRequest({ prompt: "Hello", model: "o3-pro" }));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: 'model "o3-pro" is not allowed (ALLOWED_MODELS)' });
    expect(spy).not.toHaveBeenCalled();
  });

  it("allows the route's default model when ALLOWED_MODELS is empty, and only it", async () => {
    stubFetch(completion("ok"));
    expect((await call(chatRequest({ prompt: "Hello" }), { ALLOWED_MODELS: "" })).status).toBe(200);
    stubFetch();
    const res = await call(chatRequest({ prompt: "Hello", model: "gpt-4.1" }), { ALLOWED_MODELS: "" });
    expect(res.status).toBe(400);
  });
});

describe("settings are checked before anything is sent", () => {
  it.each([
    ["AI_GATEWAY_ID", "../../../elsewhere"],
    ["AI_GATEWAY_ID", "a--b"],
    ["AI_GATEWAY_ID", "x".repeat(65)],
    ["CLOUDFLARE_ACCOUNT_ID", "not-an-account"],
    ["CLOUDFLARE_ACCOUNT_ID", "0123456789ABCDEF0123456789ABCDEF"],
    ["AI_GATEWAY_BASE_URL", "http://gateway.example/v1"],
    ["AI_GATEWAY_BASE_URL", "ftp://127.0.0.1/v1"],
    ["MAX_BODY_BYTES", "lots"],
    ["MAX_UPSTREAM_BYTES", "0"],
    ["MAX_UPSTREAM_BYTES", "4 MiB"],
    ["REQUEST_TIMEOUT_SECONDS", "-1"],
    ["REQUEST_TIMEOUT_SECONDS", "soon"],
  ])("answers 500 naming %s for %j", async (name, value) => {
    const spy = stubFetch();
    const res = await call(chatRequest({ prompt: "Hello" }), { [name]: value });
    expect(res.status).toBe(500);
    const body = (await res.json()) as { error: string; invalid: string };
    expect(body.invalid).toBe(name);
    expect(body.error).toContain(name);
    expect(spy).not.toHaveBeenCalled();
  });

  it("accepts the API's gateway id rule (underscores, single hyphens)", async () => {
    const spy = stubFetch(completion("ok"));
    expect((await call(chatRequest({ prompt: "Hello" }), { AI_GATEWAY_ID: "my_gw-2" })).status).toBe(200);
    expect((await outbound(spy)).url).toContain("/my_gw-2/openai/chat/completions");
  });

  // The first secret a chat request reads in this project.
  const firstSecret =
    CALLER_AUTH === "api-key" ? "SERVICE_API_KEY" : GATEWAY_AUTHENTICATION ? "CF_AIG_TOKEN" : "OPENAI_API_KEY";
  it.each(["s3cr3t\n", "s3 cr3t", "s3cr3t\t", "\u0000s3cr3t"])(
    "answers 500 naming a secret with whitespace or control characters (%j), never its value",
    async (value) => {
      const spy = stubFetch();
      const res = await call(chatRequest({ prompt: "Hello" }, { authorization: "Bearer s3cr3t" }), {
        [firstSecret]: value,
      });
      expect(res.status).toBe(500);
      const text = await res.text();
      expect(JSON.parse(text)).toMatchObject({ invalid: firstSecret });
      expect(text).not.toContain("s3");
      expect(spy).not.toHaveBeenCalled();
    },
  );
});

describe("the upstream answer", () => {
  it.each([301, 302, 307, 308])("answers 502 naming the Location of a %i and never follows it", async (status) => {
    const spy = stubFetch(
      () => new Response(null, { status, headers: { location: "https://elsewhere.example/steal" } }),
    );
    const res = await exports.default.fetch(chatRequest({ prompt: "Hello" }));
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({
      error: `the gateway redirected (${status}) to https://elsewhere.example/steal; redirects are not followed`,
      status,
      log_id: null,
    });
    expect(spy).toHaveBeenCalledTimes(1);
    expect(spy.mock.calls[0]?.[1]?.redirect).toBe("manual");
  });

  it.each([false, true])("never passes an HTML page through (stream: %s)", async (stream) => {
    stubFetch(() => new Response("<script>alert(1)</script>", { headers: { "content-type": "text/html" } }));
    const res = await exports.default.fetch(chatRequest({ prompt: "Hello", stream }));
    expect(res.status).toBe(502);
    expect(res.headers.get("content-type")).toContain("application/json");
    const text = await res.text();
    expect(text).not.toContain("<script>");
    expect(JSON.parse(text)).toEqual({ error: "the gateway answered 200 with text/html", status: 200, log_id: null });
  });

  it("answers 504 once REQUEST_TIMEOUT_SECONDS has passed, cancelling the upstream call", async () => {
    const spy = vi.spyOn(globalThis, "fetch").mockImplementation(
      (_input, init) =>
        new Promise((_resolve, reject) => {
          init?.signal?.addEventListener("abort", () => reject(init.signal?.reason));
        }),
    );
    const started = Date.now();
    const res = await call(chatRequest({ prompt: "Hello" }), { REQUEST_TIMEOUT_SECONDS: "0.2" });
    expect(res.status).toBe(504);
    expect(await res.json()).toEqual({ error: "no answer within 0.2 s (REQUEST_TIMEOUT_SECONDS)" });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(spy.mock.calls[0]?.[1]?.signal?.aborted).toBe(true);
  });

  it("answers 504 even when the upstream call ignores the cancellation", async () => {
    vi.spyOn(globalThis, "fetch").mockImplementation(() => new Promise(() => {}));
    const res = await call(chatRequest({ prompt: "Hello" }), { REQUEST_TIMEOUT_SECONDS: "0.1" });
    expect(res.status).toBe(504);
  });
});

describe("a streamed answer", () => {
  const encoder = new TextEncoder();
  const piece = (content: string) =>
    encoder.encode(
      `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { content } }] })}\n\n`,
    );
  /** An event stream that sends `first`, then fails with `error` or never goes on. */
  const halted = (error?: Error) => () =>
    new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(piece("Hi"));
        },
        pull(controller) {
          if (error) controller.error(error);
          return new Promise(() => {}); // otherwise: nothing more, ever
        },
      }),
      { headers: { "content-type": "text/event-stream", "cf-aig-log-id": "01JHALF" } },
    );

  it("ends in an error event (504) when the deadline passes mid-stream", async () => {
    stubFetch(halted());
    const started = Date.now();
    const res = await call(chatRequest({ prompt: "Hello", stream: true }), { REQUEST_TIMEOUT_SECONDS: "0.5" });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(
      'event: delta\ndata: {"text":"Hi"}\n\n' +
        'event: error\ndata: {"error":"no answer within 0.5 s (REQUEST_TIMEOUT_SECONDS)","status":504}\n\n',
    );
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it("ends in an error event (502) when the gateway's stream breaks, echoing none of it", async () => {
    stubFetch(halted(new Error("connection reset by tok-secret")));
    const res = await call(chatRequest({ prompt: "Hello", stream: true }));
    const text = await res.text();
    expect(text.startsWith('event: delta\ndata: {"text":"Hi"}\n\nevent: error\ndata: ')).toBe(true);
    const error = JSON.parse(text.split("event: error\ndata: ")[1] ?? "");
    expect(error).toEqual({
      error: "the gateway's answer broke off (gateway log id 01JHALF)",
      status: 502,
      log_id: "01JHALF",
    });
    expect(text).not.toContain("tok-secret");
    expect(text.endsWith("\n\n")).toBe(true);
  });
});

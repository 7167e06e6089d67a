import { env, exports } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { SERVICE } from "../src/callers";
import worker from "../src/index";
import { PROVIDERS } from "../src/providers";
import { AUTH_MODE, CALLER_AUTH, GATEWAY_AUTHENTICATION } from "../src/settings";
import { chatRequest, completion, gatewaySideHeaders, outbound, stubFetch } from "./helpers";

const DEFAULT_OPENAI_MODEL = PROVIDERS.get("openai")?.defaultModel;

// The fake secrets come from vitest.config.ts; the gateway ids from wrangler.toml [vars].
const GATEWAY = `https://gateway.ai.cloudflare.com/v1/${env.CLOUDFLARE_ACCOUNT_ID}/${env.AI_GATEWAY_ID}/openai`;

/** The exact auth headers this project's auth mode sends, and nothing else. */
const AUTH_HEADERS: Record<string, string> = {
  ...(GATEWAY_AUTHENTICATION ? { "cf-aig-authorization": "Bearer test-gateway-token" } : {}),
  ...(AUTH_MODE === "request-headers" ? { authorization: "Bearer test-openai-key" } : {}),
};

/** Who is calling, set by the service on every request (src/callers.ts), then the caller's own. */
function identity(own: Record<string, unknown> = {}): Record<string, string> {
  const caller = CALLER_AUTH === "api-key" ? "default" : "anonymous";
  return { "cf-aig-metadata": JSON.stringify({ caller, service: SERVICE, ...own }) };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("GET /health", () => {
  it("answers ok without calling out", async () => {
    const spy = stubFetch();
    const res = await exports.default.fetch("https://worker.test/health");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "ok", providers: expect.arrayContaining(["openai"]) });
    expect(spy).not.toHaveBeenCalled();
  });
});

describe("POST /chat", () => {
  it(`sends the exact ${AUTH_MODE} request to the gateway and answers the reply`, async () => {
    const spy = stubFetch(completion("Hi there!", { "cf-aig-log-id": "01JLOG", "cf-aig-cache-status": "MISS" }));
    const res = await exports.default.fetch(chatRequest({ prompt: "Hello" }));

    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      reply: "Hi there!",
      model: "gpt-4o-mini-2024-07-18",
      usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
      log_id: "01JLOG",
      cache_status: "MISS",
    });
    expect(res.headers.get("cf-aig-log-id")).toBe("01JLOG");
    expect(res.headers.get("cf-aig-cache-status")).toBe("MISS");

    expect(spy).toHaveBeenCalledTimes(1);
    const sent = await outbound(spy);
    expect(sent.method).toBe("POST");
    expect(sent.url).toBe(`${GATEWAY}/chat/completions`);
    expect(gatewaySideHeaders(sent.headers)).toEqual({ ...AUTH_HEADERS, ...identity() });
    expect(sent.headers.get("content-type")).toBe("application/json");
    expect(sent.body).toEqual({ model: DEFAULT_OPENAI_MODEL, messages: [{ role: "user", content: "Hello" }] });
  });

  it("never sends a provider key outside request-headers mode", async () => {
    const spy = stubFetch(completion("ok"));
    await exports.default.fetch(chatRequest({ prompt: "Hello" }));
    const sent = await outbound(spy);
    if (AUTH_MODE === "request-headers") {
      expect(sent.headers.get("authorization")).toBe("Bearer test-openai-key");
    } else {
      expect(sent.headers.has("authorization")).toBe(false);
      expect([...sent.headers.values()].join("\n")).not.toContain("no-provider-key");
    }
    // The caller's own Authorization (this service's key) never travels on.
    expect([...sent.headers.values()].join("\n")).not.toContain("test-service-key");
  });

  it("passes messages, model and a caller's cf-aig-event-id through", async () => {
    const spy = stubFetch(completion("4"));
    const messages = [
      { role: "system", content: "Answer with a number." },
      { role: "user", content: "2+2?" },
    ];
    const res = await worker.fetch(
      chatRequest({ messages, model: "gpt-4.1-nano" }, { "cf-aig-event-id": "trace-42" }),
      { ...env, ALLOWED_MODELS: "gpt-4o-mini, gpt-4.1-nano" } as Env,
    );
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ reply: "4", event_id: "trace-42", log_id: null, cache_status: null });
    const sent = await outbound(spy);
    expect(sent.body).toEqual({ model: "gpt-4.1-nano", messages });
    expect(gatewaySideHeaders(sent.headers)).toEqual({ ...AUTH_HEADERS, ...identity(), "cf-aig-event-id": "trace-42" });
  });

  it("sends the per-request gateway controls as cf-aig-* headers", async () => {
    const spy = stubFetch(completion("cached", { "cf-aig-cache-status": "HIT" }));
    const res = await exports.default.fetch(
      chatRequest({
        prompt: "Hello",
        gateway: {
          cacheTtl: 3600,
          skipCache: false,
          cacheKey: "greeting-v1",
          metadata: { user: "u-123", team: "search", beta: true },
          requestTimeoutMs: 5000,
          maxAttempts: 3,
          retryDelayMs: 500,
          backoff: "exponential",
          collectLog: false,
          eventId: "evt-1",
        },
      }),
    );
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ cache_status: "HIT", event_id: "evt-1" });
    const sent = await outbound(spy);
    expect(gatewaySideHeaders(sent.headers)).toEqual({
      ...AUTH_HEADERS,
      "cf-aig-cache-ttl": "3600",
      "cf-aig-skip-cache": "false",
      "cf-aig-cache-key": "greeting-v1",
      ...identity({ user: "u-123", team: "search", beta: true }),
      "cf-aig-request-timeout": "5000",
      "cf-aig-max-attempts": "3",
      "cf-aig-retry-delay": "500",
      "cf-aig-backoff": "exponential",
      "cf-aig-collect-log": "false",
      "cf-aig-event-id": "evt-1",
    });
    // The controls travel as headers, never in the provider's body.
    expect(sent.body).toEqual({ model: DEFAULT_OPENAI_MODEL, messages: [{ role: "user", content: "Hello" }] });
  });

  it("streams the service's own events, made from the provider's chunks", async () => {
    const chunk = (delta: object, extra: object = {}) =>
      `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 1, model: "gpt-4o-mini-2024-07-18", choices: [{ index: 0, delta }], ...extra })}\n\n`;
    const upstream =
      chunk({ role: "assistant", content: "" }) +
      chunk({ content: "Hi" }) +
      chunk({ content: " there" }) +
      `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 1, model: "gpt-4o-mini-2024-07-18", choices: [], usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 } })}\n\n` +
      "data: [DONE]\n\n";
    const spy = stubFetch(
      () =>
        new Response(upstream, {
          headers: { "content-type": "text/event-stream", "cf-aig-log-id": "01JSTREAM", "cf-aig-cache-status": "MISS" },
        }),
    );
    const res = await exports.default.fetch(chatRequest({ prompt: "Hello", stream: true }));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(res.headers.get("cf-aig-log-id")).toBe("01JSTREAM");
    expect(await res.text()).toBe(
      'event: delta\ndata: {"text":"Hi"}\n\n' +
        'event: delta\ndata: {"text":" there"}\n\n' +
        'event: done\ndata: {"model":"gpt-4o-mini-2024-07-18","log_id":"01JSTREAM","cache_status":"MISS",' +
        '"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}\n\n',
    );
    const sent = await outbound(spy);
    expect(sent.url).toBe(`${GATEWAY}/chat/completions`);
    expect(sent.body).toEqual({
      model: DEFAULT_OPENAI_MODEL,
      messages: [{ role: "user", content: "Hello" }],
      stream: true,
    });
    expect(gatewaySideHeaders(sent.headers)).toEqual({ ...AUTH_HEADERS, ...identity() });
  });

  it("uses AI_GATEWAY_BASE_URL when it is set", async () => {
    const spy = stubFetch(completion("ok"));
    const res = await worker.fetch(chatRequest({ prompt: "Hello" }), {
      ...env,
      AI_GATEWAY_BASE_URL: "http://127.0.0.1:8787/v1/",
    } as Env);
    expect(res.status).toBe(200);
    expect((await outbound(spy)).url).toBe(
      `http://127.0.0.1:8787/v1/${env.CLOUDFLARE_ACCOUNT_ID}/${env.AI_GATEWAY_ID}/openai/chat/completions`,
    );
  });

  it("passes max_tokens, temperature and response_format on as OpenAI's fields", async () => {
    const spy = stubFetch(completion('{"answer":"Hi"}'));
    const responseFormat = {
      type: "json_schema",
      json_schema: { name: "answer", schema: { type: "object" }, strict: true },
    };
    const res = await exports.default.fetch(
      chatRequest({ prompt: "Hi", temperature: 0.3, max_tokens: 20, response_format: responseFormat }),
    );
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ reply: '{"answer":"Hi"}' });
    expect((await outbound(spy)).body).toEqual({
      model: DEFAULT_OPENAI_MODEL,
      messages: [{ role: "user", content: "Hi" }],
      max_tokens: 20,
      temperature: 0.3,
      response_format: responseFormat,
    });
  });

  it("sends null temperature and response_format as not given, and drops a schema's nulls", async () => {
    const spy = stubFetch(completion("ok"), completion("ok"));
    const responseFormat = { type: "json_schema", json_schema: { name: "a", schema: null, strict: null } };
    await exports.default.fetch(chatRequest({ prompt: "Hi", temperature: null, response_format: null }));
    await exports.default.fetch(chatRequest({ prompt: "Hi", temperature: 0, response_format: responseFormat }));
    const [first, second] = [await outbound(spy, 0), await outbound(spy, 1)];
    expect(first.body).toEqual({ model: DEFAULT_OPENAI_MODEL, messages: [{ role: "user", content: "Hi" }] });
    expect(second.body).toEqual({
      model: DEFAULT_OPENAI_MODEL,
      messages: [{ role: "user", content: "Hi" }],
      temperature: 0,
      response_format: { type: "json_schema", json_schema: { name: "a" } },
    });
  });

  // The Python service's words for each (its pydantic shapes), so both services answer alike.
  it.each([
    [{ temperature: "0.3" }, '"temperature" must be a number from 0 to 2'],
    [{ temperature: true }, '"temperature" must be a number from 0 to 2'],
    [{ temperature: 2.5 }, '"temperature" must be a number from 0 to 2'],
    [{ temperature: -0.1 }, '"temperature" must be a number from 0 to 2'],
    [{ response_format: "json" }, "response_format: Input should be a valid dictionary or instance of ResponseFormat"],
    [{ response_format: {} }, "response_format.type: Field required"],
    [
      { response_format: { type: "xml" } },
      "response_format.type: Input should be 'text', 'json_object' or 'json_schema'",
    ],
    [{ response_format: { type: "text", extra: 1 } }, "response_format.extra: Extra inputs are not permitted"],
    [
      { response_format: { type: "json_schema" } },
      'response_format: Value error, "json_schema" goes with type "json_schema", and only there',
    ],
    [
      { response_format: { type: "text", json_schema: { name: "a" } } },
      'response_format: Value error, "json_schema" goes with type "json_schema", and only there',
    ],
    [{ response_format: { type: "json_schema", json_schema: {} } }, "response_format.json_schema.name: Field required"],
    [
      { response_format: { type: "json_schema", json_schema: { name: "a b" } } },
      "response_format.json_schema.name: String should match pattern '^[A-Za-z0-9_-]{1,64}$'",
    ],
    [
      { response_format: { type: "json_schema", json_schema: { name: "a", schema: [] } } },
      "response_format.json_schema.schema: Input should be a valid dictionary",
    ],
    [
      { response_format: { type: "json_schema", json_schema: { name: "a", strict: "yes" } } },
      "response_format.json_schema.strict: Input should be a valid boolean",
    ],
    [
      { response_format: { type: "json_schema", json_schema: { name: "a", other: 1 } } },
      "response_format.json_schema.other: Extra inputs are not permitted",
    ],
  ])("refuses %j with 400, nothing sent", async (fields, error) => {
    const spy = stubFetch();
    const res = await exports.default.fetch(chatRequest({ prompt: "Hi", ...fields }));
    expect([res.status, await res.json()]).toEqual([400, { error }]);
    expect(spy).not.toHaveBeenCalled();
  });
});

describe("errors", () => {
  it.each([
    ["bad JSON", "{not json", "the request body must be JSON"],
    ["a JSON list", "[1, 2]", 'the request body must be a JSON object with "prompt" or "messages"'],
    ["no prompt", "{}", 'send "prompt" (a non-empty string) or "messages" (a non-empty list of {role, content})'],
    [
      "an empty prompt",
      '{"prompt": "  "}',
      'send "prompt" (a non-empty string) or "messages" (a non-empty list of {role, content})',
    ],
    [
      "bad messages",
      '{"messages": [{"role": "user"}]}',
      'send "prompt" (a non-empty string) or "messages" (a non-empty list of {role, content})',
    ],
    ["a bad stream flag", '{"prompt": "x", "stream": "yes"}', '"stream" must be true or false'],
    ["an unknown gateway option", '{"prompt": "x", "gateway": {"ttl": 1}}', 'unknown gateway option "ttl"'],
    [
      "too many attempts",
      '{"prompt": "x", "gateway": {"maxAttempts": 9}}',
      "cf-aig-max-attempts must be an integer from 1 to 5 (got 9)",
    ],
  ])("answers 400 for %s, without calling out", async (_name, body, error) => {
    const spy = stubFetch();
    const res = await exports.default.fetch(chatRequest(body));
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(await res.json()).toEqual({ error });
    expect(spy).not.toHaveBeenCalled();
  });

  const secrets = [
    ...(GATEWAY_AUTHENTICATION ? (["CF_AIG_TOKEN"] as const) : []),
    ...(AUTH_MODE === "request-headers" ? (["OPENAI_API_KEY"] as const) : []),
  ];
  it.each(secrets)("answers 500 naming a missing %s, without calling out", async (name) => {
    const spy = stubFetch();
    const res = await worker.fetch(chatRequest({ prompt: "Hello" }), { ...env, [name]: "" } as Env);
    expect(res.status).toBe(500);
    const body = (await res.json()) as { error: string; missing: string };
    expect(body.missing).toBe(name);
    expect(body.error).toContain(`${name} is not set`);
    expect(body.error).toContain(`wrangler secret put ${name}`);
    expect(spy).not.toHaveBeenCalled();
  });

  it("answers 500 naming a missing CLOUDFLARE_ACCOUNT_ID", async () => {
    const spy = stubFetch();
    const res = await worker.fetch(chatRequest({ prompt: "Hello" }), { ...env, CLOUDFLARE_ACCOUNT_ID: "" });
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ missing: "CLOUDFLARE_ACCOUNT_ID" });
    expect(spy).not.toHaveBeenCalled();
  });

  it("answers 502 with the gateway's status and log id, never its body", async () => {
    const spy = stubFetch(() =>
      Response.json(
        { error: { message: "Rate limit exceeded for key sk-echoed-secret", type: "rate_limit" } },
        { status: 429, headers: { "cf-aig-log-id": "01JFAIL" } },
      ),
    );
    const res = await exports.default.fetch(chatRequest({ prompt: "Hello" }));
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({
      error: "the gateway answered 429 (gateway log id 01JFAIL)",
      status: 429,
      log_id: "01JFAIL",
    });
    expect(spy).toHaveBeenCalledTimes(1); // no client-side retries: the gateway retries
  });

  it("answers 502 when the gateway cannot be reached", async () => {
    stubFetch(new TypeError("Network connection lost."));
    const res = await exports.default.fetch(chatRequest({ prompt: "Hello" }));
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({
      error: `could not reach the gateway at ${GATEWAY}/chat/completions`,
      status: null,
      log_id: null,
    });
  });
});

import { env, exports } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { SERVICE } from "../src/callers";
import worker from "../src/index";
import { PROVIDERS } from "../src/providers";
import { AUTH_MODE, CALLER_AUTH, GATEWAY_AUTHENTICATION } from "../src/settings";
import {
  CALLER_HEADERS,
  chatRequest,
  completion,
  gatewaySideHeaders,
  type IncomingRequest,
  outbound,
  stubFetch,
} from "./helpers";

// The gateway ids from the wrangler config's [vars]; the fake secrets from vitest.config.ts.
const GATEWAY = `https://gateway.ai.cloudflare.com/v1/${env.CLOUDFLARE_ACCOUNT_ID}/${env.AI_GATEWAY_ID}/openai`;
const CALLER = CALLER_AUTH === "api-key" ? "default" : "anonymous";
const AUTH_HEADERS: Record<string, string> = {
  ...(GATEWAY_AUTHENTICATION ? { "cf-aig-authorization": "Bearer test-gateway-token" } : {}),
  ...(AUTH_MODE === "request-headers" ? { authorization: "Bearer test-openai-key" } : {}),
  "cf-aig-metadata": JSON.stringify({ caller: CALLER, service: SERVICE }),
};
const WEATHER = {
  type: "function",
  function: { name: "get_weather", parameters: { type: "object", properties: { q: { type: "string" } } } },
};

afterEach(() => {
  vi.restoreAllMocks();
});

function sse(...chunks: unknown[]): () => Response {
  const text = `${chunks.map((chunk) => `data: ${JSON.stringify(chunk)}\n\n`).join("")}data: [DONE]\n\n`;
  return () => new Response(text, { headers: { "content-type": "text/event-stream", "cf-aig-log-id": "01JSTREAM" } });
}

describe("POST /v1/chat/completions", () => {
  it("forwards the body as sent, tools and all, and answers the gateway's JSON", async () => {
    const spy = stubFetch(completion("Hi", { "cf-aig-log-id": "01JLOG", "cf-aig-cache-status": "MISS" }));
    const body = {
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "Hello" }],
      tools: [WEATHER],
      tool_choice: "auto",
      response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object" } } },
      max_tokens: 50,
      temperature: 0.2,
      top_p: 0.9,
      stop: ["END"],
      seed: 7,
    };
    const res = await exports.default.fetch(chatRequest(body, {}, "/v1/chat/completions"));

    expect(res.status).toBe(200);
    expect(res.headers.get("cf-aig-log-id")).toBe("01JLOG");
    expect(res.headers.get("cf-aig-cache-status")).toBe("MISS");
    expect(await res.json()).toMatchObject({ object: "chat.completion", choices: [{ message: { content: "Hi" } }] });
    const sent = await outbound(spy);
    expect(sent.url).toBe(`${GATEWAY}/chat/completions`);
    expect(sent.body).toEqual(body);
    expect(gatewaySideHeaders(sent.headers)).toEqual(AUTH_HEADERS);
  });

  it("passes stream chunks through, tool-call deltas included, then data: [DONE]", async () => {
    const delta = { tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "get_weather" } }] };
    const chunk = { id: "c", object: "chat.completion.chunk", model: "gpt-4o-mini", choices: [{ index: 0, delta }] };
    stubFetch(sse(chunk));
    const body = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hi" }], stream: true };
    const res = await exports.default.fetch(chatRequest(body, {}, "/v1/chat/completions"));

    expect(res.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(res.headers.get("cf-aig-log-id")).toBe("01JSTREAM");
    expect(await res.text()).toBe(`data: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`);
  });

  it("ends a stream whose chunk carries an error with an error chunk in OpenAI's shape", async () => {
    stubFetch(sse({ error: { message: "boom" } }));
    const body = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hi" }], stream: true };
    const res = await exports.default.fetch(chatRequest(body, {}, "/v1/chat/completions"));
    const message = "the gateway's stream carried an error (gateway log id 01JSTREAM)";
    const error = { message, type: "api_error", param: null, code: "upstream" };
    expect(await res.text()).toBe(`data: ${JSON.stringify({ error })}\n\n`);
  });

  it("refuses a model off the allow-list with a 400 naming the param, nothing sent", async () => {
    const spy = stubFetch();
    const body = { model: "gpt-nope", messages: [{ role: "user", content: "Hi" }] };
    const res = await exports.default.fetch(chatRequest(body, {}, "/v1/chat/completions"));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: {
        message: 'model "gpt-nope" is not allowed (ALLOWED_MODELS)',
        type: "invalid_request_error",
        param: "model",
        code: "bad_request",
      },
    });
    expect(spy).not.toHaveBeenCalled();
  });

  it("refuses an unknown field rather than passing it on", async () => {
    stubFetch();
    const body = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hi" }], bogus: 1 };
    const res = await exports.default.fetch(chatRequest(body, {}, "/v1/chat/completions"));
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { message: "unknown field 'bogus'", param: "bogus" } });
  });

  it("answers a gateway failure as a 502 in OpenAI's shape, without its body", async () => {
    stubFetch(() =>
      Response.json({ secret: "upstream body" }, { status: 500, headers: { "cf-aig-log-id": "01JBAD" } }),
    );
    const body = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hi" }] };
    const res = await exports.default.fetch(chatRequest(body, {}, "/v1/chat/completions"));
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({
      error: {
        message: "the gateway answered 500 (gateway log id 01JBAD)",
        type: "api_error",
        param: null,
        code: "upstream",
      },
    });
  });
});

// Only a project with caller keys checks them.
if (CALLER_AUTH === "api-key") {
  describe("/v1 caller auth", () => {
    it("answers a wrong key with a 401 in OpenAI's shape", async () => {
      const res = await exports.default.fetch(
        chatRequest({ model: "gpt-4o-mini" }, { authorization: "Bearer wrong" }, "/v1/chat/completions"),
      );
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({
        error: {
          message: "send Authorization: Bearer <SERVICE_API_KEY>",
          type: "authentication_error",
          param: null,
          code: "unauthorized",
        },
      });
    });
  });
}

describe("POST /v1/embeddings and GET /v1/models", () => {
  it("forwards an embeddings request to the gateway's openai endpoint", async () => {
    const answer = { object: "list", data: [{ object: "embedding", index: 0, embedding: [0.1] }], model: "m" };
    const spy = stubFetch(() => Response.json(answer));
    const body = { model: "gpt-4o-mini", input: "hello" };
    const res = await exports.default.fetch(chatRequest(body, {}, "/v1/embeddings"));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(answer);
    const sent = await outbound(spy);
    expect(sent.url).toBe(`${GATEWAY}/embeddings`);
    expect(sent.body).toEqual(body);
  });

  if (PROVIDERS.has("workers-ai")) {
    it("sends @cf/ models to Workers AI with the Cloudflare token", async () => {
      const spy = stubFetch(() => Response.json({ object: "list", data: [], model: "@cf/meta/llama-3.1-8b-instruct" }));
      const body = { model: "@cf/meta/llama-3.1-8b-instruct", input: "hello" };
      const res = await exports.default.fetch(chatRequest(body, {}, "/v1/embeddings"));
      expect(res.status).toBe(200);
      const sent = await outbound(spy);
      expect(sent.url).toBe(GATEWAY.replace(/openai$/, "workers-ai/v1/embeddings"));
      expect(sent.headers.get("authorization")).toBe("Bearer test-gateway-token");
    });
  }

  it("lists the allow-list in OpenAI's shape", async () => {
    const res = await exports.default.fetch(new Request("https://worker.test/v1/models", { headers: CALLER_HEADERS }));
    const listed = (await res.json()) as { object: string; data: { id: string }[] };
    expect(listed.object).toBe("list");
    expect(listed.data.map((model) => model.id)).toEqual(env.ALLOWED_MODELS.split(","));
  });
});

describe("POST /feedback", () => {
  const withToken = { ...env, CLOUDFLARE_API_TOKEN: "test-api-token" } as Env;
  const feedback = (body: unknown) => chatRequest(body, {}, "/feedback") as IncomingRequest;

  it("sends the documented PATCH of the log and answers its id", async () => {
    const spy = stubFetch(() => Response.json({ success: true, result: {} }));
    const res = await worker.fetch(feedback({ log_id: "01JLOG", score: 90, feedback: 1 }), withToken);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ log_id: "01JLOG" });
    const sent = await outbound(spy);
    const gateway = env.AI_GATEWAY_ID;
    expect(sent.method).toBe("PATCH");
    expect(sent.url).toBe(
      `https://api.cloudflare.com/client/v4/accounts/${env.CLOUDFLARE_ACCOUNT_ID}/ai-gateway/gateways/${gateway}/logs/01JLOG`,
    );
    expect(sent.headers.get("authorization")).toBe("Bearer test-api-token");
    expect(sent.body).toEqual({ score: 90, feedback: 1 });
  });

  it.each([
    [{ log_id: "01J", feedback: 0 }, '"feedback" must be -1 or 1'],
    [{ log_id: "01J", score: 101 }, '"score" must be a number from 0 to 100'],
    [{ log_id: "../x", score: 1 }, '"log_id" must be a gateway log id (cf-aig-log-id)'],
    [{ log_id: "01J" }, 'send "score" (0 to 100), "feedback" (-1 or 1) or both'],
  ])("refuses %j with a 400, nothing sent", async (body, message) => {
    const spy = stubFetch();
    const res = await worker.fetch(feedback(body), withToken);
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: message });
    expect(spy).not.toHaveBeenCalled();
  });

  it("answers the API's refusal as a 502 naming its code", async () => {
    stubFetch(() => Response.json({ success: false, errors: [{ code: 7003, message: "No route" }] }, { status: 404 }));
    const res = await worker.fetch(feedback({ log_id: "01JX", score: 1 }), withToken);
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({
      error: "the Cloudflare API answered 404 to the feedback for log 01JX (code 7003: No route)",
    });
  });
});

import { type MockInstance, vi } from "vitest";
import { CALLER_AUTH } from "../src/settings";

/** One outbound request the Worker made, read back from the stubbed `fetch`. */
export interface Outbound {
  url: string;
  method: string;
  headers: Headers;
  body: unknown;
}

/**
 * An answer of the stubbed network: made when the request happens, because a Response made in
 * one request's context cannot be read from another's (workerd refuses cross-request I/O).
 */
export type Answer = (() => Response) | Error;

/**
 * Replaces `globalThis.fetch` (the network, and nothing else) with answers given in order; a
 * call beyond them fails the test. The Worker under test runs in this same isolate.
 */
export function stubFetch(...answers: Answer[]): MockInstance<typeof fetch> {
  const spy = vi.spyOn(globalThis, "fetch");
  spy.mockImplementation(async (input) => {
    throw new Error(`unexpected outbound request to ${input instanceof Request ? input.url : String(input)}`);
  });
  for (const answer of answers) {
    if (answer instanceof Error) spy.mockRejectedValueOnce(answer);
    else spy.mockImplementationOnce(async () => answer());
  }
  return spy;
}

/** The `index`-th outbound request, with its JSON body parsed. */
export async function outbound(spy: MockInstance<typeof fetch>, index = 0): Promise<Outbound> {
  const call = spy.mock.calls[index];
  if (!call) throw new Error(`no outbound request #${index} (made ${spy.mock.calls.length})`);
  const request = new Request(call[0], call[1]);
  const text = await request.text();
  return { url: request.url, method: request.method, headers: request.headers, body: text ? JSON.parse(text) : null };
}

/** The `cf-aig-*` and auth headers of a request, as a plain object for exact comparison. */
export function gatewaySideHeaders(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  headers.forEach((value, name) => {
    if (name.startsWith("cf-aig-") || ["authorization", "x-api-key", "x-goog-api-key", "api-key"].includes(name)) {
      out[name] = value;
    }
  });
  return out;
}

/** A chat completion as OpenAI (and the gateway) answers it. */
export function completion(content: string, headers: Record<string, string> = {}): Answer {
  return () =>
    Response.json(
      {
        id: "chatcmpl-1",
        object: "chat.completion",
        created: 1_700_000_000,
        model: "gpt-4o-mini-2024-07-18",
        choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
        usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
      },
      { headers },
    );
}

/** A request as the Worker's fetch handler receives it. */
export type IncomingRequest = Request<unknown, IncomingRequestCfProperties>;

/** The caller's credentials this project requires (none with caller_auth=none). */
export const CALLER_HEADERS: Record<string, string> =
  CALLER_AUTH === "api-key" ? { authorization: "Bearer test-service-key" } : {};

/** A chat request as an authorized caller sends it; `headers` add to or replace its headers. */
export function chatRequest(body: unknown, headers: Record<string, string> = {}, path = "/chat"): IncomingRequest {
  return new Request(`https://worker.test${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...CALLER_HEADERS, ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  }) as IncomingRequest;
}

/** The fake secrets of vitest.config.ts, as each auth mode sends them. */
export const FAKE = {
  token: "test-gateway-token",
  service: "test-service-key",
  openai: "test-openai-key",
  anthropic: "test-anthropic-key",
  google: "test-google-key",
} as const;

/**
 * Captures the request log from here on (console.log, kept off the test output): call it in
 * the test itself, then read the lines written so far with the function it returns.
 */
export function captureLog(): () => Record<string, unknown>[] {
  const spy = vi.spyOn(console, "log").mockImplementation(() => {});
  return () => spy.mock.calls.map((args) => JSON.parse(String(args[0])) as Record<string, unknown>);
}

/**
 * An upstream body that never ends: `chunk` again on every read, as fast as it is read.
 * `pulled` counts the bytes handed out; `cancelled` resolves when the reader gives up.
 */
export function endless(chunk: string): {
  body: ReadableStream<Uint8Array>;
  pulled: () => number;
  cancelled: Promise<void>;
} {
  const bytes = new TextEncoder().encode(chunk);
  let pulled = 0;
  let cancel = () => {};
  const cancelled = new Promise<void>((resolve) => {
    cancel = resolve;
  });
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled += bytes.byteLength;
      controller.enqueue(bytes);
    },
    cancel() {
      cancel();
    },
  });
  return { body, pulled: () => pulled, cancelled };
}

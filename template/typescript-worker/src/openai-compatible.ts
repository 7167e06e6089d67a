// The one chat helper of the OpenAI-compatible routes (the gateway's openai endpoint, the
// unified AI REST API): chat completions through the official openai SDK.
import OpenAI from "openai";
import { type ChatCall, chatAnswer, resultHeaders } from "./chat-request";
import { gatewayHeaders, gatewayResult } from "./gateway-options";
import { json, sse, Upstream } from "./http";

/** Where an OpenAI-compatible API lives and how the Worker authenticates to it. */
export interface OpenAiCompatibleApi {
  baseURL: string;
  /** Sent as `Authorization: Bearer …`; undefined sends no Authorization header at all. */
  bearer: string | undefined;
  headers: Record<string, string>;
}

/** `POST {baseURL}/chat/completions`; the JSON answer, or the event stream with `"stream": true`. */
export async function chatCompletions(call: ChatCall, api: OpenAiCompatibleApi): Promise<Response> {
  const upstream = new Upstream(call.deadline);
  const client = new OpenAI({
    baseURL: api.baseURL,
    // The SDK insists on a key; this placeholder is never sent because the header is dropped.
    apiKey: api.bearer ?? "no-provider-key",
    maxRetries: 0, // retries belong to the gateway (cf-aig-max-attempts), not to every caller
    fetch: upstream.fetch, // no redirects, the request's deadline
    defaultHeaders: { ...api.headers, ...(api.bearer === undefined ? { Authorization: null } : {}) },
  });
  // The SDK's message type is narrower than what callers may send; the API checks the rest.
  const messages = call.input.messages as OpenAI.Chat.ChatCompletionMessageParam[];
  const params = { model: call.model, messages };
  const options = { headers: gatewayHeaders(call.input.gateway), signal: call.deadline };
  try {
    if (call.input.stream) {
      const response = await client.chat.completions.create({ ...params, stream: true }, options).asResponse();
      return sse(response, resultHeaders(response));
    }
    const { data, response } = await client.chat.completions.create(params, options).withResponse();
    const reply = data.choices[0]?.message.content ?? "";
    return json(
      chatAnswer(call.input, reply, data.model, data.usage, gatewayResult(response)),
      200,
      resultHeaders(response),
    );
  } catch (err) {
    throw upstream.error(err);
  }
}

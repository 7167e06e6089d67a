// The one chat helper of the OpenAI-compatible routes (the gateway's openai endpoint, the
// unified AI REST API): chat completions through the official openai SDK.
import OpenAI from "openai";
import { type ChatCall, chatAnswer, resultHeaders } from "./chat-request";
import { gatewayHeaders, gatewayResult } from "./gateway-options";
import { eventStream, json, Upstream } from "./http";

/** Where an OpenAI-compatible API lives and how the Worker authenticates to it. */
export interface OpenAiCompatibleApi {
  baseURL: string;
  /** Sent as `Authorization: Bearer …`; undefined sends no Authorization header at all. */
  bearer: string | undefined;
  headers: Record<string, string>;
}

/**
 * `POST {baseURL}/chat/completions`; the JSON answer, or with `"stream": true` the service's own
 * events, made from the SDK's stream of chunks.
 */
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
      const { data: chunks, response } = await client.chat.completions
        .create({ ...params, stream: true }, options)
        .withResponse();
      let model = call.model;
      let usage: unknown = null;
      async function* pieces() {
        for await (const chunk of chunks) {
          model = chunk.model || model;
          usage = chunk.usage ?? usage;
          yield chunk.choices[0]?.delta?.content ?? "";
        }
      }
      const end = () => ({ model, usage, ...gatewayResult(response) });
      return eventStream(
        pieces(),
        end,
        upstream.streamError(gatewayResult(response).logId),
        call.deadline,
        resultHeaders(response),
      );
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

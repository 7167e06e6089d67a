// The one chat helper of the OpenAI-compatible routes (the gateway's openai endpoint, the
// unified AI REST API): chat completions through the official openai SDK.
import OpenAI from "openai";
import type { ChatCall, ChatOutcome } from "./chat-request";
import { gatewayHeaders } from "./gateway";
import type { Piece } from "./streaming";

/** Where an OpenAI-compatible API lives and how the Worker authenticates to it. */
export interface OpenAiCompatibleApi {
  baseURL: string;
  /** Sent as `Authorization: Bearer …`; undefined sends no Authorization header at all. */
  bearer: string | undefined;
  headers: Record<string, string>;
}

/** `POST {baseURL}/chat/completions`: the whole reply, or with `"stream": true` its pieces. */
export async function chatCompletions(call: ChatCall, api: OpenAiCompatibleApi): Promise<ChatOutcome> {
  const client = new OpenAI({
    baseURL: api.baseURL,
    // The SDK insists on a key; this stand-in is never sent because the header is dropped.
    apiKey: api.bearer ?? "no-provider-key",
    maxRetries: 0, // retries belong to the gateway (cf-aig-max-attempts), not to every caller
    fetch: call.upstream.fetch, // no redirects, the request's deadline, the byte cap
    defaultHeaders: { ...api.headers, ...(api.bearer === undefined ? { Authorization: null } : {}) },
  });
  // The SDK's message type is narrower than what callers may send; the API checks the rest.
  const messages = call.input.messages as OpenAI.Chat.ChatCompletionMessageParam[];
  const { maxTokens, temperature, responseFormat } = call.input;
  const params = {
    model: call.model,
    messages,
    ...(maxTokens !== undefined ? { max_tokens: maxTokens } : {}),
    ...(temperature !== undefined ? { temperature } : {}),
    ...(responseFormat !== undefined ? { response_format: responseFormat } : {}),
  };
  const options = { headers: gatewayHeaders(call.input.gateway), signal: call.upstream.signal };
  if (call.input.stream) {
    const chunks = await client.chat.completions.create({ ...params, stream: true }, options);
    async function* pieces(): AsyncGenerator<Piece> {
      for await (const chunk of chunks) {
        yield { text: chunk.choices[0]?.delta?.content ?? "", model: chunk.model, usage: chunk.usage };
      }
    }
    return { pieces: pieces() };
  }
  const data = await client.chat.completions.create(params, options);
  return { reply: data.choices[0]?.message.content ?? "", model: data.model, usage: data.usage };
}

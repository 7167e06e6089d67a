import type { ChatRequest } from "../chat-request";
import { chatAnswer, resultHeaders } from "../chat-request";
import { DEFAULT_OPENAI_MODEL } from "../config";
import { openaiClient } from "../gateway";
import { gatewayHeaders, gatewayResult } from "../gateway-options";
import { json, sse } from "../http";

/** `POST /chat` (and `/chat/openai`): OpenAI chat completions through the gateway's `openai` endpoint. */
export async function openaiChat(input: ChatRequest, env: Env): Promise<Response> {
  const client = openaiClient(env);
  const params = { model: input.model ?? DEFAULT_OPENAI_MODEL, messages: input.messages };
  const options = { headers: gatewayHeaders(input.gateway) };

  if (input.stream) {
    const upstream = await client.chat.completions.create({ ...params, stream: true }, options).asResponse();
    return sse(upstream, resultHeaders(upstream));
  }
  const { data, response } = await client.chat.completions.create(params, options).withResponse();
  const reply = data.choices[0]?.message.content ?? "";
  return json(chatAnswer(input, reply, data.model, data.usage, gatewayResult(response)), 200, resultHeaders(response));
}

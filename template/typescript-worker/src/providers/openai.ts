import type { ChatCall, ChatOutcome } from "../chat-request";
import { gatewayAuthHeaders, gatewayUrl, providerKey } from "../gateway";
import { chatCompletions } from "../openai-compatible";

/**
 * `POST /chat` (and `/chat/openai`): OpenAI chat completions through the gateway's `openai`
 * endpoint. Outside request-headers mode no `Authorization` header is sent, so no provider key
 * ever leaves the Worker: the gateway adds it (BYOK) or bills through Cloudflare (Unified Billing).
 */
export function chat(call: ChatCall): Promise<ChatOutcome> {
  return chatCompletions(call, {
    baseURL: gatewayUrl(call.env, "openai"),
    bearer: providerKey(call.env, "OPENAI_API_KEY"),
    headers: gatewayAuthHeaders(call.env),
  });
}

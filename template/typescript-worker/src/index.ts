import { readChatRequest } from "./chat-request";
import { errorResponse, json } from "./http";
import { PROVIDER_ROUTES } from "./providers";

/**
 * Routes: `GET /health`; `POST /chat` (OpenAI); `POST /chat/<provider>` for each provider in
 * src/providers.ts. Every answer is JSON, or server-sent events with `"stream": true`.
 */
export default {
  async fetch(request, env): Promise<Response> {
    const { pathname } = new URL(request.url);
    const route = `${request.method} ${pathname}`;
    try {
      if (pathname === "/health") {
        if (request.method !== "GET") return json({ error: `method ${request.method} not allowed` }, 405, { allow: "GET" });
        return json({ status: "ok", providers: Object.keys(PROVIDER_ROUTES) });
      }
      const match = /^\/chat(?:\/([a-z-]+))?$/.exec(pathname);
      const provider = match ? (match[1] ?? "openai") : undefined;
      const handler = provider === undefined ? undefined : PROVIDER_ROUTES[provider];
      if (!handler) return json({ error: `no route for ${route}` }, 404);
      if (request.method !== "POST") return json({ error: `method ${request.method} not allowed` }, 405, { allow: "POST" });
      return await handler(await readChatRequest(request), env);
    } catch (err) {
      return errorResponse(err);
    }
  },
} satisfies ExportedHandler<Env>;

// Caller authentication: `Authorization: Bearer <SERVICE_API_KEY>`, compared in constant time.
import { HttpError } from "./errors";
import { type Settings, secret } from "./settings";

const encoder = new TextEncoder();

async function digest(value: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", encoder.encode(value));
}

/**
 * Refuses a request without the service's key with 401. Both sides are hashed first, so the
 * comparison takes the same time whatever the caller sent (length included). The caller's
 * `Authorization` header is never forwarded: outbound requests build their own headers.
 */
export async function requireApiKey(request: Request, env: Settings): Promise<void> {
  const expected = secret(env, "SERVICE_API_KEY");
  // The scheme is case-insensitive (RFC 9110); the key is compared exactly.
  const sent = /^bearer (.+)$/i.exec(request.headers.get("authorization") ?? "")?.[1] ?? "";
  const [a, b] = await Promise.all([digest(sent), digest(expected)]);
  if (!sent || !crypto.subtle.timingSafeEqual(a, b)) {
    throw new HttpError(401, "send Authorization: Bearer <SERVICE_API_KEY>", {}, { "www-authenticate": "Bearer" });
  }
}

// Caller authentication: `Authorization: Bearer <key>`, a caller's own key (callers.toml) or
// SERVICE_API_KEY (the caller `default`), compared in constant time.
import { CALLERS, type Caller, type CompiledCallers, findCaller } from "./callers";
import { HttpError } from "./errors";
import { type Settings, secret } from "./settings";

const encoder = new TextEncoder();

async function digest(value: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", encoder.encode(value));
}

/**
 * The caller whose key the request sends, or 401. Only hashes are compared, each in constant
 * time and all of them every time, so how long it takes says nothing about the key (its length
 * included). The caller's `Authorization` header is never forwarded: outbound requests build
 * their own headers.
 */
export async function requireCaller(
  request: Request,
  env: Settings,
  callers: CompiledCallers = CALLERS,
): Promise<Caller> {
  const expected = secret(env, "SERVICE_API_KEY");
  // The scheme is case-insensitive (RFC 9110); the key is compared exactly.
  const sent = /^bearer (.+)$/i.exec(request.headers.get("authorization") ?? "")?.[1] ?? "";
  const [a, b] = await Promise.all([digest(sent), digest(expected)]);
  const named = findCaller(callers, a);
  const isDefault = crypto.subtle.timingSafeEqual(a, b);
  const caller = isDefault ? callers.default : named;
  if (!sent || !caller) {
    throw new HttpError(401, "send Authorization: Bearer <SERVICE_API_KEY>", {}, { "www-authenticate": "Bearer" });
  }
  return caller;
}

/**
 * `POST /feedback` `{"log_id", "score", "feedback"}`: a score (0 to 100) and thumbs (-1 or 1)
 * on the gateway log of an answer (its `cf-aig-log-id`), through the Cloudflare v4 API:
 * `PATCH {CLOUDFLARE_API_BASE_URL}/accounts/{account}/ai-gateway/gateways/{gateway}/logs/{id}`.
 * The REST API rather than the AI binding's `gateway(id).patchLog`: the binding exists only
 * when Workers AI is a provider and has no local simulator, while the API call is the same in
 * both of the project's services and testable offline. The token is CLOUDFLARE_API_TOKEN
 * (a secret) with the one permission the call needs, "AI Gateway Edit".
 */
import { readJson } from "./chat-request";
import { BadRequestError, HttpError, json } from "./errors";
import {
  accountId,
  baseUrl,
  DEFAULT_CLOUDFLARE_API_BASE_URL,
  gatewayId,
  limits,
  type Settings,
  secret,
} from "./settings";

const LOG_ID = /^[A-Za-z0-9_-]{1,128}$/; // a cf-aig-log-id: never a path of its own
const MESSAGES = {
  score: '"score" must be a number from 0 to 100',
  feedback: '"feedback" must be -1 or 1',
  log_id: '"log_id" must be a gateway log id (cf-aig-log-id)',
};
const NOTHING_TO_SEND = 'send "score" (0 to 100), "feedback" (-1 or 1) or both';
const FIELDS = ["log_id", "score", "feedback"];

interface Feedback {
  log_id: string;
  score?: number;
  feedback?: -1 | 1;
}

/** The body checked as the Python service checks it, with the same messages. */
export function checkedFeedback(body: unknown): Feedback {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new BadRequestError('the request body must be a JSON object with "log_id"');
  }
  const given = body as Record<string, unknown>;
  const unknown = Object.keys(given).find((key) => !FIELDS.includes(key));
  if (unknown !== undefined) throw new BadRequestError(`unknown field '${unknown}'`);
  const { log_id: logId, score, feedback } = given;
  if (typeof logId !== "string" || !LOG_ID.test(logId)) throw new BadRequestError(MESSAGES.log_id);
  const isScore = typeof score === "number" && Number.isFinite(score) && score >= 0 && score <= 100;
  if (score !== undefined && score !== null && !isScore) throw new BadRequestError(MESSAGES.score);
  if (feedback !== undefined && feedback !== null && feedback !== -1 && feedback !== 1) {
    throw new BadRequestError(MESSAGES.feedback);
  }
  if ((score ?? null) === null && (feedback ?? null) === null) throw new BadRequestError(NOTHING_TO_SEND);
  return {
    log_id: logId,
    ...(isScore ? { score: score as number } : {}),
    ...(feedback === -1 || feedback === 1 ? { feedback } : {}),
  };
}

export function logUrl(env: Settings, logId: string): string {
  const api = baseUrl(env, "CLOUDFLARE_API_BASE_URL", DEFAULT_CLOUDFLARE_API_BASE_URL);
  return `${api}/accounts/${accountId(env)}/ai-gateway/gateways/${gatewayId(env)}/logs/${logId}`;
}

/** The API's status and its first error's code and message (never the token). */
async function refusal(response: Response, logId: string): Promise<string> {
  const message = `the Cloudflare API answered ${response.status} to the feedback for log ${logId}`;
  try {
    const first = ((await response.json()) as { errors: { code: number; message: string }[] }).errors[0];
    if (!first || !Number.isInteger(first.code)) return message;
    return `${message} (code ${first.code}: ${String(first.message).slice(0, 200)})`;
  } catch {
    return message;
  }
}

/** `POST /feedback`: 200 `{"log_id"}`; 400 for a bad body, 502 when the API refuses it. */
export async function postFeedback(request: Request, env: Env, deadline: AbortSignal): Promise<Response> {
  const { maxBodyBytes } = limits(env);
  const feedback = checkedFeedback(await readJson(request, maxBodyBytes, deadline));
  const token = secret(env, "CLOUDFLARE_API_TOKEN");
  const url = logUrl(env, feedback.log_id);
  const { log_id: logId, ...patch } = feedback;
  const init = {
    method: "PATCH",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(patch),
  };
  let response: Response;
  try {
    // Never a redirect: it would carry the token to another host.
    response = await fetch(url, { ...init, redirect: "manual", signal: deadline });
  } catch {
    if (deadline.aborted) throw deadline.reason;
    const base = baseUrl(env, "CLOUDFLARE_API_BASE_URL", DEFAULT_CLOUDFLARE_API_BASE_URL);
    throw new HttpError(502, `could not reach the Cloudflare API at ${base}`);
  }
  if (response.status !== 200) throw new HttpError(502, await refusal(response, logId));
  await response.body?.cancel();
  return json({ log_id: logId });
}

import { env, exports } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { requireCaller } from "../src/auth";
import {
  type Caller,
  type CallerTable,
  cappedMaxTokens,
  checkModel,
  checkRate,
  compile,
  METADATA_CLASH,
  METADATA_TOO_MANY,
  SERVICE,
} from "../src/callers";
import { HttpError } from "../src/errors";
import { CALLER_AUTH } from "../src/settings";
import { chatRequest, completion, FAKE, outbound, stubFetch } from "./helpers";

// The callers of callers.toml: keys found by their hash, each caller's limits, the identity
// the service sends upstream. The project's own table is compiled from its callers.toml; these
// tests bring a table of their own.

afterEach(() => {
  vi.restoreAllMocks();
});

async function sha256(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

const caller = (name: string, limits: Partial<Caller> = {}): Caller => ({
  name,
  models: [],
  max_tokens: null,
  requests_per_minute: null,
  rate_limit: null,
  ...limits,
});

const ALICE = caller("alice", { models: ["gpt-4o-mini"], max_tokens: 100 });
const BOB = caller("bob");
const DEFAULT = caller("default", { requests_per_minute: 2, rate_limit: "TEST_RPM_2" });

async function table(): Promise<CallerTable> {
  return {
    default: DEFAULT,
    keys: [
      { sha256: await sha256("alice-old-key"), caller: ALICE },
      { sha256: await sha256("alice-new-key"), caller: ALICE },
      { sha256: await sha256("bob-key"), caller: BOB },
    ],
  };
}

// The binding counts in windows aligned to the clock, a minute each: calls that straddle a
// window's end are counted in two, so a try that did is run again within the next window.
async function withinOneMinute<T>(work: () => Promise<T>): Promise<T> {
  for (;;) {
    const minute = Math.floor(Date.now() / 60_000);
    const result = await work();
    if (Math.floor(Date.now() / 60_000) === minute) return result;
  }
}

const bearer = (key: string) =>
  new Request("https://worker.test/chat", { method: "POST", headers: { authorization: `Bearer ${key}` } });

/** What `work` threw, or null when it settled without an error. */
const outcome = (work: Promise<unknown>): Promise<unknown> =>
  work.then(
    () => null,
    (err: unknown) => err,
  );

function httpError(error: unknown): HttpError {
  if (!(error instanceof HttpError)) throw new Error(`expected an HttpError, got ${String(error)}`);
  return error;
}

const refusal = async (work: Promise<unknown>): Promise<HttpError> => httpError(await outcome(work));

describe("a caller's key", () => {
  it("names its caller, each key of a rotation the same one", async () => {
    const callers = compile(await table());
    expect(await requireCaller(bearer("alice-old-key"), env, callers)).toEqual(ALICE);
    expect(await requireCaller(bearer("alice-new-key"), env, callers)).toEqual(ALICE);
    expect(await requireCaller(bearer("bob-key"), env, callers)).toEqual(BOB);
  });

  it("SERVICE_API_KEY is the caller default, with the limits of [callers.default]", async () => {
    const callers = compile(await table());
    expect(await requireCaller(bearer(FAKE.service), env, callers)).toEqual(DEFAULT);
  });

  it("a key whose hash was removed gets the same 401 as a wrong SERVICE_API_KEY", async () => {
    const { keys, ...rest } = await table();
    const callers = compile({ ...rest, keys: keys.filter((key) => key.caller.name !== "bob") });
    const error = await refusal(requireCaller(bearer("bob-key"), env, callers));
    expect([error.status, error.message]).toEqual([401, "send Authorization: Bearer <SERVICE_API_KEY>"]);
    expect(error.headers).toEqual({ "www-authenticate": "Bearer" });
  });

  it("the key's hash is not a key: sending the hash itself is 401", async () => {
    const callers = compile(await table());
    const error = await refusal(requireCaller(bearer(await sha256("bob-key")), env, callers));
    expect(error.status).toBe(401);
  });
});

describe("a caller's limits", () => {
  it("models: another model is 400 naming the caller", () => {
    expect(() => checkModel(ALICE, "gpt-4o-mini")).not.toThrow();
    expect(() => checkModel(ALICE, "gpt-4.1")).toThrow(
      'model "gpt-4.1" is not allowed for caller "alice" (callers.toml models)',
    );
    expect(() => checkModel(BOB, "gpt-4.1")).not.toThrow(); // no models listed: all of ALLOWED_MODELS
  });

  it("max_tokens: over the cap is 400; none asked sends the cap", () => {
    expect(() => cappedMaxTokens(ALICE, 101)).toThrow(
      `max_tokens 101 is over caller "alice"'s cap of 100 (callers.toml max_tokens)`,
    );
    expect(cappedMaxTokens(ALICE, 100)).toBe(100);
    expect(cappedMaxTokens(ALICE, undefined)).toBe(100);
    expect(cappedMaxTokens(BOB, undefined)).toBeUndefined();
  });

  it("rate: the Workers Rate Limiting binding, keyed by caller; over it 429 with Retry-After", async () => {
    const { limited, outcomes } = await withinOneMinute(async () => {
      const limited = caller(`rated-${crypto.randomUUID().slice(0, 8)}`, {
        requests_per_minute: 2,
        rate_limit: "TEST_RPM_2",
      });
      const outcomes = [];
      for (let call = 0; call < 3; call++) outcomes.push(await outcome(checkRate(env, limited)));
      return { limited, outcomes };
    });
    expect(outcomes.slice(0, 2)).toEqual([null, null]);
    const error = httpError(outcomes[2]);
    expect([error.status, error.message, error.kind]).toEqual([
      429,
      `caller "${limited.name}" is over its limit of 2 requests per minute`,
      "rate_limited",
    ]);
    expect(error.headers).toEqual({ "retry-after": "60" });
    await checkRate(env, { ...limited, name: `${limited.name}-other` }); // another caller: its own count
  });

  it("rate: a binding the wrangler config lacks is a 500 naming it", async () => {
    const error = await refusal(checkRate(env, caller("c", { requests_per_minute: 5, rate_limit: "CALLERS_RPM_5" })));
    expect([error.status, error.message]).toEqual([
      500,
      "the rate limiting binding CALLERS_RPM_5 is missing: run `npm run callers -- bindings`",
    ]);
  });
});

const WHO = CALLER_AUTH === "api-key" ? "default" : "anonymous";

describe("POST /chat for a caller", () => {
  it("sends the caller and the service as cf-aig-metadata, then the caller's own keys", async () => {
    const spy = stubFetch(completion("Hi"));
    const res = await exports.default.fetch(chatRequest({ prompt: "Hello", gateway: { metadata: { team: "a" } } }));
    expect(res.status).toBe(200);
    const sent = await outbound(spy);
    expect(sent.headers.get("cf-aig-metadata")).toBe(JSON.stringify({ caller: WHO, service: SERVICE, team: "a" }));
  });

  it.each([
    [{ caller: "someone-else" }, METADATA_CLASH],
    [{ service: "other" }, METADATA_CLASH],
    [{ a: 1, b: 2, c: 3, d: 4 }, METADATA_TOO_MANY],
    [{ a: 1, b: 2, c: 3, d: 4, e: 5, f: 6 }, METADATA_TOO_MANY],
  ])("refuses gateway.metadata %j with 400, nothing sent", async (metadata, error) => {
    const spy = stubFetch();
    const res = await exports.default.fetch(chatRequest({ prompt: "Hello", gateway: { metadata } }));
    expect([res.status, await res.json()]).toEqual([400, { error }]);
    expect(spy).not.toHaveBeenCalled();
  });

  it("passes max_tokens on to the provider", async () => {
    const spy = stubFetch(completion("Hi"));
    const res = await exports.default.fetch(chatRequest({ prompt: "Hello", max_tokens: 7 }));
    expect(res.status).toBe(200);
    expect((await outbound(spy)).body).toMatchObject({ max_tokens: 7 });
  });

  it.each([0, 1.5, "7", 1_000_001])("refuses max_tokens %j with 400, nothing sent", async (maxTokens) => {
    const spy = stubFetch();
    const res = await exports.default.fetch(chatRequest({ prompt: "Hello", max_tokens: maxTokens }));
    expect([res.status, await res.json()]).toEqual([
      400,
      { error: '"max_tokens" must be an integer from 1 to 1000000' },
    ]);
    expect(spy).not.toHaveBeenCalled();
  });
});

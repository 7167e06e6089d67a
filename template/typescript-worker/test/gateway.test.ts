import { exports } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { gatewayHeaders, gatewayResult, parseGatewayOptions } from "../src/gateway";
import { chatRequest, completion, outbound, stubFetch } from "./helpers";

const BYOK_ALIAS = 'gateway option "byokAlias" must be 1 to 256 printable ASCII characters';
const EVENT_ID = 'gateway option "eventId" must be 1 to 256 printable ASCII characters';
const METADATA = 'gateway option "metadata" must have keys and values of 1 to 256 printable ASCII characters';

afterEach(() => {
  vi.restoreAllMocks();
});

describe("gatewayHeaders", () => {
  it("sends nothing when no option is given", () => {
    expect(gatewayHeaders()).toEqual({});
  });

  it("maps each option to its cf-aig-* header", () => {
    expect(
      gatewayHeaders({
        cacheTtl: 3600,
        skipCache: true,
        cacheKey: "faq:pricing",
        metadata: { user: "u-42", tier: 2, beta: true },
        requestTimeoutMs: 5000,
        maxAttempts: 3,
        retryDelayMs: 200,
        backoff: "exponential",
        collectLog: true,
        collectLogPayload: false,
        zdr: true,
        byokAlias: "production",
        eventId: "order-1234",
      }),
    ).toEqual({
      "cf-aig-cache-ttl": "3600",
      "cf-aig-skip-cache": "true",
      "cf-aig-cache-key": "faq:pricing",
      "cf-aig-metadata": '{"user":"u-42","tier":2,"beta":true}',
      "cf-aig-request-timeout": "5000",
      "cf-aig-max-attempts": "3",
      "cf-aig-retry-delay": "200",
      "cf-aig-backoff": "exponential",
      "cf-aig-collect-log": "true",
      "cf-aig-collect-log-payload": "false",
      "cf-aig-zdr": "true",
      "cf-aig-byok-alias": "production",
      "cf-aig-event-id": "order-1234",
    });
  });

  it("accepts the edges of each documented range (the same as the Python app's)", () => {
    expect(gatewayHeaders({ cacheTtl: 60, requestTimeoutMs: 1, maxAttempts: 1, retryDelayMs: 5000 })).toEqual({
      "cf-aig-cache-ttl": "60",
      "cf-aig-request-timeout": "1",
      "cf-aig-max-attempts": "1",
      "cf-aig-retry-delay": "5000",
    });
    expect(gatewayHeaders({ cacheTtl: 2592000, maxAttempts: 5, retryDelayMs: 0 })).toEqual({
      "cf-aig-cache-ttl": "2592000",
      "cf-aig-max-attempts": "5",
      "cf-aig-retry-delay": "0",
    });
    expect(gatewayHeaders({ metadata: { a: 1, b: 2, c: 3, d: 4, e: 5 } })["cf-aig-metadata"]).toBe(
      '{"a":1,"b":2,"c":3,"d":4,"e":5}',
    );
  });

  it.each([
    [{ cacheTtl: 59 }, "cf-aig-cache-ttl must be an integer from 60 to 2592000 (got 59)"],
    [{ cacheTtl: 2592001 }, "cf-aig-cache-ttl must be an integer from 60 to 2592000 (got 2592001)"],
    [{ cacheTtl: 3600.5 }, "cf-aig-cache-ttl must be an integer from 60 to 2592000 (got 3600.5)"],
    [{ requestTimeoutMs: 0 }, "cf-aig-request-timeout must be an integer >= 1 (got 0)"],
    [{ maxAttempts: 0 }, "cf-aig-max-attempts must be an integer from 1 to 5 (got 0)"],
    [{ maxAttempts: 6 }, "cf-aig-max-attempts must be an integer from 1 to 5 (got 6)"],
    [{ retryDelayMs: 5001 }, "cf-aig-retry-delay must be an integer from 0 to 5000 (got 5001)"],
    [{ retryDelayMs: -1 }, "cf-aig-retry-delay must be an integer from 0 to 5000 (got -1)"],
    [{ backoff: "random" }, "cf-aig-backoff must be one of constant, linear, exponential"],
    [{ metadata: { a: 1, b: 2, c: 3, d: 4, e: 5, f: 6 } }, "cf-aig-metadata keeps at most 5 entries"],
    [{ metadata: { nested: { no: 1 } } }, "cf-aig-metadata values must be strings, numbers or booleans (nested)"],
    [{ metadata: { list: [1] } }, "cf-aig-metadata values must be strings, numbers or booleans (list)"],
    [{ metadata: { none: null } }, "cf-aig-metadata values must be strings, numbers or booleans (none)"],
    [{ metadata: { nan: Number.NaN } }, "cf-aig-metadata values must be strings, numbers or booleans (nan)"],
    [{ zdr: "yes" }, "cf-aig-zdr must be true or false (got yes)"],
    [{ byokAlias: "" }, BYOK_ALIAS],
    [{ byokAlias: "a\r\nx-evil: 1" }, BYOK_ALIAS],
    [{ eventId: "a\nb" }, EVENT_ID],
    [{ eventId: "tab\there" }, EVENT_ID],
    [{ eventId: "x".repeat(257) }, EVENT_ID],
    [{ cacheKey: "clé" }, 'gateway option "cacheKey" must be 1 to 256 printable ASCII characters'],
    [{ cacheKey: "k\u0000" }, 'gateway option "cacheKey" must be 1 to 256 printable ASCII characters'],
    [{ metadata: { ünï: 1 } }, METADATA],
    [{ metadata: { user: "" } }, METADATA],
    [{ metadata: { user: "x".repeat(257) } }, METADATA],
    [{ metadata: { "": 1 } }, METADATA],
    [
      { metadata: { a: "x".repeat(250), b: "x".repeat(250), c: "x".repeat(250), d: "x".repeat(250), e: "x" } },
      METADATA,
    ],
  ])("refuses %j", (options, message) => {
    expect(() => gatewayHeaders(options as never)).toThrow(message);
  });
});

describe("parseGatewayOptions", () => {
  it("checks types field by field", () => {
    expect(parseGatewayOptions(undefined)).toEqual({});
    expect(parseGatewayOptions({ cacheTtl: 60, eventId: "e" })).toEqual({ cacheTtl: 60, eventId: "e" });
    expect(parseGatewayOptions({ byokAlias: "prod", zdr: true, collectLogPayload: false })).toEqual({
      byokAlias: "prod",
      zdr: true,
      collectLogPayload: false,
    });
    expect(() => parseGatewayOptions({ cacheTtl: "60" })).toThrow('gateway option "cacheTtl" must be a number');
    expect(() => parseGatewayOptions({ zdr: "true" })).toThrow('gateway option "zdr" must be a boolean');
    expect(() => parseGatewayOptions({ metadata: [1] })).toThrow('gateway option "metadata" must be an object');
    expect(() => parseGatewayOptions({ metadata: { nested: { no: 1 } } })).toThrow(TypeError);
    expect(() => parseGatewayOptions({ backoff: "random" })).toThrow("cf-aig-backoff must be one of");
    expect(() => parseGatewayOptions({ cacheTtl: 30 })).toThrow("cf-aig-cache-ttl must be an integer from 60");
    expect(() => parseGatewayOptions([])).toThrow('"gateway" must be an object');
  });
});

describe("on the wire", () => {
  it("sends the BYOK alias, ZDR and log-payload controls as headers through POST /chat", async () => {
    const spy = stubFetch(completion("ok"));
    const res = await exports.default.fetch(
      chatRequest({
        prompt: "Hello",
        gateway: { byokAlias: "production", zdr: true, collectLogPayload: false, retryDelayMs: 5000, cacheTtl: 60 },
      }),
    );
    expect(res.status).toBe(200);
    const sent = await outbound(spy);
    expect(sent.headers.get("cf-aig-byok-alias")).toBe("production");
    expect(sent.headers.get("cf-aig-zdr")).toBe("true");
    expect(sent.headers.get("cf-aig-collect-log-payload")).toBe("false");
    expect(sent.headers.get("cf-aig-retry-delay")).toBe("5000");
    expect(sent.headers.get("cf-aig-cache-ttl")).toBe("60");
  });

  it.each([
    [
      "a retry delay over 5 s",
      { retryDelayMs: 5001 },
      "cf-aig-retry-delay must be an integer from 0 to 5000 (got 5001)",
    ],
    ["a cache TTL under 60 s", { cacheTtl: 59 }, "cf-aig-cache-ttl must be an integer from 60 to 2592000 (got 59)"],
    ["an empty BYOK alias", { byokAlias: "" }, BYOK_ALIAS],
    ["a non-ASCII event id", { eventId: "évènement" }, EVENT_ID],
    [
      "a non-ASCII cache key",
      { cacheKey: "clé-1" },
      'gateway option "cacheKey" must be 1 to 256 printable ASCII characters',
    ],
    [
      "a 900 KB cache key",
      { cacheKey: "x".repeat(900 * 1024) },
      'gateway option "cacheKey" must be 1 to 256 printable ASCII characters',
    ],
    ["a metadata value with a tab", { metadata: { user: "a\tb" } }, METADATA],
  ])("answers 400 for %s without calling out", async (_name, gateway, error) => {
    const spy = stubFetch();
    const res = await exports.default.fetch(chatRequest({ prompt: "Hello", gateway }));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error });
    expect(spy).not.toHaveBeenCalled();
  });

  it.each([
    ["a tab", "trace\t42"],
    ["a control character", "trace\u007f42"],
    ["257 characters", "x".repeat(257)],
    ["an empty value", ""],
  ])("answers 400 for a cf-aig-event-id header with %s, without calling out", async (_name, value) => {
    const spy = stubFetch();
    const res = await exports.default.fetch(chatRequest({ prompt: "Hello" }, { "cf-aig-event-id": value }));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: "header cf-aig-event-id must be 1 to 256 printable ASCII characters" });
    expect(spy).not.toHaveBeenCalled();
  });

  it("sends 256 printable ASCII characters as they are", async () => {
    const spy = stubFetch(completion("ok"));
    const printable = Array.from({ length: 95 }, (_, i) => String.fromCharCode(0x20 + i)).join("");
    const value = `x${printable}`.padEnd(256, "y");
    const res = await exports.default.fetch(chatRequest({ prompt: "Hello", gateway: { cacheKey: value } }));
    expect(res.status).toBe(200);
    expect((await outbound(spy)).headers.get("cf-aig-cache-key")).toBe(value);
  });
});

describe("gatewayResult", () => {
  it("reads the log id and cache status", () => {
    const res = new Response(null, { headers: { "cf-aig-log-id": "01J", "cf-aig-cache-status": "HIT" } });
    expect(gatewayResult(res)).toEqual({ logId: "01J", cacheStatus: "HIT" });
    expect(gatewayResult(new Response(null))).toEqual({ logId: null, cacheStatus: null });
  });
});

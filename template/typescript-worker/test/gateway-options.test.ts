import { describe, expect, it } from "vitest";
import { gatewayHeaders, gatewayResult, parseGatewayOptions } from "../src/gateway-options";

describe("gatewayHeaders", () => {
  it("sends nothing when no option is given", () => {
    expect(gatewayHeaders()).toEqual({});
  });

  it("maps each option to its cf-aig-* header", () => {
    expect(gatewayHeaders({ cacheTtl: 0, skipCache: true, collectLog: true })).toEqual({
      "cf-aig-cache-ttl": "0",
      "cf-aig-skip-cache": "true",
      "cf-aig-collect-log": "true",
    });
    expect(gatewayHeaders({ metadata: { user: "u1" }, backoff: "linear", retryDelayMs: 0 })).toEqual({
      "cf-aig-metadata": '{"user":"u1"}',
      "cf-aig-backoff": "linear",
      "cf-aig-retry-delay": "0",
    });
  });

  it("refuses values the gateway would not take", () => {
    expect(() => gatewayHeaders({ cacheTtl: -1 })).toThrow("cf-aig-cache-ttl must be an integer from 0");
    expect(() => gatewayHeaders({ requestTimeoutMs: 1.5 })).toThrow(RangeError);
    expect(() => gatewayHeaders({ maxAttempts: 6 })).toThrow("from 1 to 5");
    expect(() => gatewayHeaders({ metadata: { a: 1, b: 2, c: 3, d: 4, e: 5, f: 6 } })).toThrow("at most 5");
  });
});

describe("parseGatewayOptions", () => {
  it("checks types field by field", () => {
    expect(parseGatewayOptions(undefined)).toEqual({});
    expect(parseGatewayOptions({ cacheTtl: 60, eventId: "e" })).toEqual({ cacheTtl: 60, eventId: "e" });
    expect(() => parseGatewayOptions({ cacheTtl: "60" })).toThrow('gateway option "cacheTtl" must be a number');
    expect(() => parseGatewayOptions({ metadata: [1] })).toThrow('gateway option "metadata" must be an object');
    expect(() => parseGatewayOptions({ metadata: { nested: { no: 1 } } })).toThrow(TypeError);
    expect(() => parseGatewayOptions({ backoff: "random" })).toThrow("cf-aig-backoff must be one of");
    expect(() => parseGatewayOptions([])).toThrow('"gateway" must be an object');
  });
});

describe("gatewayResult", () => {
  it("reads the log id and cache status", () => {
    const res = new Response(null, { headers: { "cf-aig-log-id": "01J", "cf-aig-cache-status": "HIT" } });
    expect(gatewayResult(res)).toEqual({ logId: "01J", cacheStatus: "HIT" });
    expect(gatewayResult(new Response(null))).toEqual({ logId: null, cacheStatus: null });
  });
});

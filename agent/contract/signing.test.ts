import { describe, expect, it } from "vitest";
import { HEADERS, NonceCache, OPERATOR_ID, REPLAY_WINDOW_MS, deriveHostSecret, deriveKey, deriveOperatorKey, signRequest, signResponse, verifyRequest, verifyResponse } from "./signing";

const master = Buffer.alloc(32, 7);
const secret = deriveHostSecret(master, "corp.east.a");
const req = { hostId: "corp.east.a", method: "POST", path: "/v1/poll", body: '{"a":1}' };
const now = 1_800_000_000_000;

function verify(headers: Record<string, string>, overrides: Partial<typeof req> = {}, at = now, nonces = new NonceCache(REPLAY_WINDOW_MS, 0)) {
  return verifyRequest(secret, { ...req, ...overrides, headers }, nonces, at);
}

describe("request signing", () => {
  it("derives a distinct, stable secret per host", () => {
    expect(secret).toBe(deriveHostSecret(master, "corp.east.a"));
    expect(secret).not.toBe(deriveHostSecret(master, "corp.east.b"));
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it("accepts a correctly signed request", () => {
    expect(verify({ ...signRequest(secret, req, now) })).toEqual({ ok: true });
  });

  it("refuses a changed method, path or body, and another host's secret", () => {
    const headers = { ...signRequest(secret, req, now) };
    expect(verify(headers, { body: '{"a":2}' })).toEqual({ ok: false, reason: "bad-signature" });
    expect(verify(headers, { path: "/v1/offline" })).toEqual({ ok: false, reason: "bad-signature" });
    expect(verify(headers, { method: "PUT" })).toEqual({ ok: false, reason: "bad-signature" });
    const other = { ...signRequest(deriveHostSecret(master, "corp.east.b"), req, now) };
    expect(verify(other)).toEqual({ ok: false, reason: "bad-signature" });
  });

  it("refuses stale and future timestamps outside the window", () => {
    expect(verify({ ...signRequest(secret, req, now - REPLAY_WINDOW_MS - 1) })).toEqual({ ok: false, reason: "stale-timestamp" });
    expect(verify({ ...signRequest(secret, req, now + REPLAY_WINDOW_MS + 1) })).toEqual({ ok: false, reason: "stale-timestamp" });
    expect(verify({ ...signRequest(secret, req, now - REPLAY_WINDOW_MS + 1) })).toEqual({ ok: true });
  });

  it("refuses a request signed before the nonce cache began: it cannot know whether it is a replay", () => {
    const nonces = new NonceCache(REPLAY_WINDOW_MS, now);
    expect(verify({ ...signRequest(secret, req, now - 1) }, {}, now, nonces)).toEqual({ ok: false, reason: "stale-timestamp" });
    expect(verify({ ...signRequest(secret, req, now) }, {}, now, nonces)).toEqual({ ok: true });
  });

  it("refuses a reused nonce, but a forged request does not burn it", () => {
    const nonces = new NonceCache(REPLAY_WINDOW_MS, 0);
    const headers = { ...signRequest(secret, req, now) };
    expect(verify({ ...headers, [HEADERS.signature]: "0".repeat(64) }, {}, now, nonces).ok).toBe(false);
    expect(verify(headers, {}, now, nonces)).toEqual({ ok: true });
    expect(verify(headers, {}, now + 1, nonces)).toEqual({ ok: false, reason: "replayed-nonce" });
  });

  it("keeps a nonce for two windows (a replay's timestamp can still be fresh then), then forgets it", () => {
    const nonces = new NonceCache(1000);
    const a = "a".repeat(32);
    expect(nonces.remember(a, 999)).toBe(true);
    expect(nonces.remember(a, 999 + 2000)).toBe(false);
    expect(nonces.remember(a, 999 + 2999)).toBe(false);
    expect(nonces.remember("b".repeat(32), 999 + 3000)).toBe(true);
    expect(nonces.size).toBe(1);
    expect(nonces.remember(a, 999 + 3001)).toBe(true);
  });

  it("keeps its nonces when the wall clock steps back", () => {
    const nonces = new NonceCache(1000);
    const a = "a".repeat(32);
    expect(nonces.remember(a, 5000)).toBe(true);
    expect(nonces.remember(a, 100)).toBe(false);
    expect(nonces.remember(a, 6500)).toBe(false);
  });

  it("refuses missing or malformed headers", () => {
    const headers = { ...signRequest(secret, req, now) };
    expect(verify({})).toEqual({ ok: false, reason: "missing-headers" });
    expect(verify({ ...headers, [HEADERS.nonce]: "short" })).toEqual({ ok: false, reason: "missing-headers" });
    expect(verify({ ...headers, [HEADERS.timestamp]: "soon" })).toEqual({ ok: false, reason: "missing-headers" });
  });

  it("binds a response to the request nonce, status and body", () => {
    const nonce = "c".repeat(32);
    const sig = signResponse(secret, nonce, 200, "{}");
    expect(verifyResponse(secret, nonce, 200, "{}", sig)).toBe(true);
    expect(verifyResponse(secret, "d".repeat(32), 200, "{}", sig)).toBe(false);
    expect(verifyResponse(secret, nonce, 400, "{}", sig)).toBe(false);
    expect(verifyResponse(secret, nonce, 200, "{ }", sig)).toBe(false);
    expect(verifyResponse(secret, nonce, 200, "{}", undefined)).toBe(false);
  });
});

describe("operator key", () => {
  it("derives the operator key apart from every host secret, even of a host named \"operator\"", () => {
    const key = deriveOperatorKey(master);
    expect(key).toBe(deriveKey(master, "operator"));
    expect(key).not.toBe(deriveHostSecret(master, OPERATOR_ID));
    expect(key).not.toBe(deriveHostSecret(master, "sitelink.operator"));
    expect(Buffer.from(key, "base64url")).toHaveLength(32);
    expect(deriveOperatorKey(Buffer.alloc(32, 8))).not.toBe(key);
  });
});

// Request and response signatures between agents and the state service.
// HMAC-SHA256 over method, path, timestamp, nonce and body hash, keyed with the host secret.
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";

export const HEADERS = {
  host: "x-sitelink-host",
  timestamp: "x-sitelink-timestamp",
  nonce: "x-sitelink-nonce",
  signature: "x-sitelink-signature",
} as const;

/** How far a request's timestamp may be from the service clock; nonces are remembered this long. */
export const REPLAY_WINDOW_MS = 30_000;

const NONCE_PATTERN = /^[0-9a-f]{32}$/;
const SIGNATURE_PATTERN = /^[0-9a-f]{64}$/;

/** Bytes of a master key. */
export const MASTER_KEY_BYTES = 32;

/**
 * The master key from its text form, the base64 of 32 random bytes (as `sitelink state init` and
 * the Pulumi components write it); undefined for anything else. Node's decoder skips what is not
 * base64, so only a text that encodes back to itself is taken.
 */
export function decodeMasterKey(text: string): Buffer | undefined {
  const trimmed = text.trim();
  const key = Buffer.from(trimmed, "base64");
  return key.length === MASTER_KEY_BYTES && key.toString("base64") === trimmed ? key : undefined;
}

/** The host's secret: HMAC(masterKey, hostId), base64url. The topology document never carries it. */
export function deriveHostSecret(masterKey: Buffer, hostId: string): string {
  return createHmac("sha256", masterKey).update(hostId).digest("base64url");
}

/** A link-wide key derived from the master key for a named purpose (e.g. the host-check key). */
export function deriveKey(masterKey: Buffer, purpose: string): string {
  return createHmac("sha256", masterKey).update(`sitelink:${purpose}`).digest("base64url");
}

/** The identity the operator signs requests with (`x-sitelink-host`); its key is deriveOperatorKey. */
export const OPERATOR_ID = "operator";

/**
 * The operator's key: read-only access to the state service's status (`sitelink state status`, the
 * Link's readiness check). It can never be a host secret, even of a host named "operator": host
 * secrets are HMAC(masterKey, hostId) and host ids hold only a-z 0-9 . _ -, while this key is
 * HMAC(masterKey, "sitelink:operator"), whose ":" no host id has. Nor can a host secret open the
 * operator endpoint, which checks signatures with this key only.
 */
export function deriveOperatorKey(masterKey: Buffer): string {
  return deriveKey(masterKey, OPERATOR_ID);
}

export function sha256Hex(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

function mac(secret: string, parts: string[]): string {
  return createHmac("sha256", secret).update(parts.join("\n")).digest("hex");
}

function sameHex(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a, "hex"), Buffer.from(b, "hex"));
}

export interface SignedHeaders {
  [HEADERS.host]: string;
  [HEADERS.timestamp]: string;
  [HEADERS.nonce]: string;
  [HEADERS.signature]: string;
}

/** Headers that sign a request. */
export function signRequest(
  secret: string,
  req: { hostId: string; method: string; path: string; body: string | Buffer },
  now: number = Date.now(),
  nonce: string = randomBytes(16).toString("hex"),
): SignedHeaders {
  const timestamp = String(now);
  return {
    [HEADERS.host]: req.hostId,
    [HEADERS.timestamp]: timestamp,
    [HEADERS.nonce]: nonce,
    [HEADERS.signature]: mac(secret, [req.method.toUpperCase(), req.path, timestamp, nonce, sha256Hex(req.body)]),
  };
}

export type VerifyFailure = "missing-headers" | "bad-signature" | "stale-timestamp" | "replayed-nonce";

/**
 * How many spans of one replay window the nonce cache keeps. A request is accepted while its
 * timestamp is within the window of the service clock, so a replay can come up to two windows after
 * the original: every nonce must be kept at least that long. With three spans, a nonce is dropped
 * between two and three windows after it was seen.
 */
const NONCE_SPANS = 3;

/**
 * Remembers nonces for twice the replay window. Nonces go into spans of one window each, and whole
 * spans are dropped: constant cost per request at any rate (deleting single entries from the front
 * of a Map leaves holes that every later scan walks again).
 */
export class NonceCache {
  /** Newest span first. */
  private spans: Set<string>[] = [new Set()];
  /** When the newest span began; undefined until the first nonce. */
  private spanStart: number | undefined;
  /**
   * @param since wall-clock ms the cache began: it cannot know nonces used before, so requests
   * signed earlier are refused (a request captured before a restart is not replayed after it).
   */
  constructor(
    private readonly windowMs: number = REPLAY_WINDOW_MS,
    readonly since: number = Date.now(),
  ) {}

  /** Records the nonce; returns false when it was already used within the window. */
  remember(nonce: string, now: number): boolean {
    this.advance(now);
    if (this.spans.some((span) => span.has(nonce))) return false;
    this.spans[0]!.add(nonce);
    return true;
  }

  get size(): number {
    return this.spans.reduce((n, span) => n + span.size, 0);
  }

  /** Opens a new span for every window that passed (none when the wall clock stepped back). */
  private advance(now: number) {
    this.spanStart ??= now;
    const passed = Math.floor((now - this.spanStart) / this.windowMs);
    if (passed <= 0) return;
    const fresh = Array.from({ length: Math.min(passed, NONCE_SPANS) }, () => new Set<string>());
    this.spans = [...fresh, ...this.spans].slice(0, NONCE_SPANS);
    this.spanStart += passed * this.windowMs;
  }
}

/**
 * Checks a signed request. `headers` are the lower-case request headers. The nonce is recorded only
 * when everything else is valid, so a forged request cannot burn a legitimate nonce.
 */
export function verifyRequest(
  secret: string,
  req: { method: string; path: string; body: string | Buffer; headers: Record<string, string | string[] | undefined> },
  nonces: NonceCache,
  now: number = Date.now(),
  windowMs: number = REPLAY_WINDOW_MS,
): { ok: true } | { ok: false; reason: VerifyFailure } {
  const timestamp = single(req.headers[HEADERS.timestamp]);
  const nonce = single(req.headers[HEADERS.nonce]);
  const signature = single(req.headers[HEADERS.signature]);
  if (!timestamp || !/^\d{1,15}$/.test(timestamp) || !nonce || !NONCE_PATTERN.test(nonce) || !signature || !SIGNATURE_PATTERN.test(signature)) {
    return { ok: false, reason: "missing-headers" };
  }
  const expected = mac(secret, [req.method.toUpperCase(), req.path, timestamp, nonce, sha256Hex(req.body)]);
  if (!sameHex(expected, signature)) return { ok: false, reason: "bad-signature" };
  const signedAt = Number(timestamp);
  if (Math.abs(now - signedAt) > windowMs || signedAt < nonces.since) return { ok: false, reason: "stale-timestamp" };
  if (!nonces.remember(nonce, now)) return { ok: false, reason: "replayed-nonce" };
  return { ok: true };
}

/** Signature of a response, bound to the request's nonce so an old answer cannot be replayed. */
export function signResponse(secret: string, requestNonce: string, status: number, body: string | Buffer): string {
  return mac(secret, ["response", requestNonce, String(status), sha256Hex(body)]);
}

export function verifyResponse(secret: string, requestNonce: string, status: number, body: string | Buffer, signature: string | undefined): boolean {
  if (!signature || !SIGNATURE_PATTERN.test(signature)) return false;
  return sameHex(signResponse(secret, requestNonce, status, body), signature);
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? undefined : value;
}

// What every signed route of the state service shares: reading a bounded body, checking the
// signature with the key of the identity the request names, and how a refusal or a failure ends.
import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { MAX_BODY_BYTES, type ErrorResponse } from "../contract/protocol";
import { HEADERS, signResponse, verifyRequest, type NonceCache, type VerifyFailure } from "../contract/signing";
import type { Logger } from "./log";
import type { RequestOutcome, ServiceMetrics } from "./metrics";

export const AUTH_ERRORS: Record<VerifyFailure, string> = {
  "missing-headers": `missing or malformed ${HEADERS.timestamp}, ${HEADERS.nonce} or ${HEADERS.signature} header`,
  // The same for an unknown identity: host ids cannot be probed for.
  "bad-signature": "unknown host or bad signature",
  "stale-timestamp": "timestamp outside the replay window or before the service started (check the host clock)",
  "replayed-nonce": "nonce already used",
};

/** A request refused before it changed anything: its status, metric outcome and body. */
export class Refusal {
  constructor(
    readonly status: number,
    readonly outcome: RequestOutcome,
    readonly error: ErrorResponse,
    /** The rest of a too-large body was never read: the connection cannot carry another request. */
    readonly close = false,
  ) {}
}

/** A request whose signature checked out: who signed it, and the key and nonce its answer is signed with. */
export interface SignedRequest extends Signer {
  id: string;
  body: Buffer;
}

/**
 * Reads and checks signed requests against one nonce cache. `keyOf` gives the key of the identity a
 * request names, or undefined: an unknown identity gets the same work (an HMAC with a key of its
 * own that never matches) and the same answer as a bad signature.
 */
export function createAuthenticator(nonces: NonceCache) {
  const dummyKey = randomBytes(32).toString("base64url");
  return async (req: IncomingMessage, keyOf: (id: string) => string | undefined): Promise<SignedRequest> => {
    const tooLarge = new Refusal(413, "too-large", { error: `body larger than ${MAX_BODY_BYTES} bytes` }, true);
    if (Number(req.headers["content-length"] ?? 0) > MAX_BODY_BYTES) throw tooLarge;
    const id = req.headers[HEADERS.host];
    if (typeof id !== "string") throw new Refusal(401, "missing-headers", { error: `missing ${HEADERS.host} header` });
    const key = keyOf(id);
    const body = await readBody(req);
    if (body === undefined) throw tooLarge;
    // Wall-clock time: agents sign with theirs.
    const verified = verifyRequest(key ?? dummyKey, { method: req.method!, path: req.url!, body, headers: req.headers }, nonces, Date.now());
    if (key === undefined || !verified.ok) {
      const reason = verified.ok ? "bad-signature" : verified.reason;
      throw new Refusal(401, reason, { error: AUTH_ERRORS[reason] });
    }
    return { id, key, nonce: req.headers[HEADERS.nonce] as string, body };
  };
}

export type Authenticate = ReturnType<typeof createAuthenticator>;

/** The key and nonce an answer to an authenticated request is signed with. */
export interface Signer {
  key: string;
  nonce: string;
}

/** Writes a JSON answer, signed when the request was authenticated; `close` ends the connection with it. */
export function sendJson(res: ServerResponse, status: number, body: string, signer?: Signer, close = false): void {
  const headers: Record<string, string | number> = { "content-type": "application/json", "content-length": Buffer.byteLength(body) };
  if (close) headers.connection = "close";
  if (signer) headers[HEADERS.signature] = signResponse(signer.key, signer.nonce, status, body);
  res.writeHead(status, headers);
  res.end(body);
}

/**
 * Ends a request whose handler threw something other than a Refusal. A client that hung up
 * mid-request is its own outcome (nothing to answer, nothing broken); anything else is a bug that
 * must not take the service down: answered 500 (unsigned, nothing to vouch for) and logged with the
 * message and stack only, no request content (it may carry a report).
 */
export function failRequest(req: IncomingMessage, res: ServerResponse, endpoint: string, error: unknown, metrics: ServiceMetrics, logger: Logger, answer: () => void): void {
  if (!req.complete && (req.destroyed || res.destroyed)) return metrics.request(endpoint, "aborted");
  logger.event("internal-error", { endpoint, message: (error as Error).message, stack: (error as Error).stack?.split("\n").slice(1, 6).map((l) => l.trim()) });
  if (!res.headersSent) answer();
  else res.destroy(error as Error);
}

/** The request body, or undefined once it grows past MAX_BODY_BYTES (reading stops there). */
export function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        req.off("data", onData);
        req.pause();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    };
    req.on("data", onData);
    req.once("end", () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.once("error", reject);
  });
}

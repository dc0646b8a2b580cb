// Test and benchmark support: a signed HTTPS client that speaks to the state service exactly as an
// agent does (keep-alive, pinned certificate, signed request, verified answer), and fixtures.
import { randomBytes } from "node:crypto";
import https from "node:https";
import type { TLSSocket } from "node:tls";
import type { HostReport } from "../../agent/contract/protocol";
import { HEADERS, signRequest, verifyResponse } from "../../agent/contract/signing";
import { peerFingerprint } from "../../agent/contract/uri";

export interface SignedCall {
  hostId: string;
  secret: string;
  method?: string;
  path: string;
  body: string | Buffer;
  /** Overrides for negative tests. */
  now?: number;
  nonce?: string;
  headers?: Record<string, string>;
  /** Abort (reject) when no answer came within this time. */
  timeoutMs?: number;
}

export interface CallResult {
  status: number;
  body: string;
  /** The answer's signature checked with the host secret against the request nonce. */
  signed: boolean;
  nonce: string;
}

/** A keep-alive agent that accepts only the certificate with this fingerprint. */
export class PinnedTestAgent extends https.Agent {
  constructor(
    private readonly fingerprint: string,
    opts: https.AgentOptions = {},
  ) {
    // No session cache: a resumed TLS 1.3 session shows no certificate to check.
    super({ keepAlive: true, rejectUnauthorized: false, maxCachedSessions: 0, ...opts });
  }

  override createConnection(options: https.RequestOptions, callback?: unknown): TLSSocket {
    const socket = (https.Agent.prototype.createConnection as (o: https.RequestOptions, cb?: unknown) => TLSSocket).call(this, options, callback);
    socket.once("secureConnect", () => {
      if (peerFingerprint(socket) !== this.fingerprint) socket.destroy(new Error("certificate does not match the pinned fingerprint"));
    });
    return socket;
  }
}

export function signedCall(baseUrl: string, agent: https.Agent, call: SignedCall): Promise<CallResult> {
  const method = call.method ?? "POST";
  const nonce = call.nonce ?? randomBytes(16).toString("hex");
  const signed = signRequest(call.secret, { hostId: call.hostId, method, path: call.path, body: call.body }, call.now ?? Date.now(), nonce);
  const url = new URL(call.path, baseUrl);
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      { method, agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(call.body), ...signed, ...call.headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const body = Buffer.concat(chunks);
          const signature = res.headers[HEADERS.signature];
          resolve({
            status: res.statusCode ?? 0,
            body: body.toString("utf8"),
            signed: verifyResponse(call.secret, nonce, res.statusCode ?? 0, body, typeof signature === "string" ? signature : undefined),
            nonce,
          });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    if (call.timeoutMs !== undefined) req.setTimeout(call.timeoutMs, () => req.destroy(new Error(`no answer within ${call.timeoutMs} ms`)));
    req.end(call.body);
  });
}

/** A minimal, valid report of a host that has applied `appliedGeneration`. */
export function report(overrides: Partial<HostReport> = {}): HostReport {
  return {
    agentVersion: "test",
    role: "standby",
    appliedGeneration: 0,
    tunnels: [],
    hostChecks: [],
    routes: { provider: "none", applied: [] },
    ...overrides,
  };
}

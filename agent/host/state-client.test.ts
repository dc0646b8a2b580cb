import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import https from "node:https";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { API, PROTOCOL_VERSION, type DesiredState, type HostReport } from "../protocol";
import { HEADERS, NonceCache, signResponse, verifyRequest } from "../signing";
import type { HostUri } from "../uri";
import { selfSignedCertificate } from "../state/tls";
import { StateClient, StateClientError } from "./state-client";

const SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0";
const HOST = "a1";

const report: HostReport = {
  agentVersion: "1.0.0",
  role: "standby",
  appliedGeneration: 0,
  tunnels: [],
  hostChecks: [],
  routes: { provider: "none", applied: [] },
};

function desired(generation: number): DesiredState {
  return {
    protocol: PROTOCOL_VERSION,
    generation,
    hostId: HOST,
    link: "corp",
    location: "east",
    role: "standby",
    activeHost: "a2",
    peers: [],
    firewall: { allow: [] },
    hostCheck: { key: "k".repeat(44), targets: [] },
    routes: { pointHere: [] },
    timing: { heartbeat: 1, probeInterval: 0.25, probeTimeout: 0.4 },
    serverTime: 1,
  };
}

/** How the test server answers the next request. */
type Behaviour = "ok" | "reset-reused" | "unsigned" | "wrong-key" | "wrong-nonce" | "unknown-field" | "other-host" | "hold" | "error-401";

interface Seen {
  path: string;
  body: any;
  verified: boolean;
}

let cert: { key: string; cert: string; fingerprint: string };
let otherCert: typeof cert;
let server: https.Server;
let port: number;
let tlsHandshakes = 0;
let resets = 0;
const servedSockets = new WeakSet<object>();
let behaviour: Behaviour = "ok";
const seen: Seen[] = [];
const nonces = new NonceCache();
// A TCP listener that resets every connection: a state service endpoint that is down.
let deadServer: net.Server;
let deadPort: number;
let deadConnections = 0;

beforeAll(async () => {
  const make = (commonName: string) => {
    const c = selfSignedCertificate({ commonName });
    return { key: c.keyPem, cert: c.certPem, fingerprint: c.fingerprint };
  };
  cert = make("sitelink-state");
  otherCert = make("impostor");
  server = https.createServer({ key: cert.key, cert: cert.cert }, (req, res) => {
    // "reset-reused": a kept-alive connection dies under the next request (server restarted, NAT timeout).
    if (behaviour === "reset-reused" && servedSockets.has(req.socket)) {
      resets++;
      req.socket.destroy();
      return;
    }
    servedSockets.add(req.socket);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      const check = verifyRequest(SECRET, { method: req.method!, path: req.url!, body: raw, headers: req.headers }, nonces);
      seen.push({ path: req.url!, body: JSON.parse(raw.toString()), verified: check.ok });
      const nonce = req.headers[HEADERS.nonce] as string;
      const send = (status: number, value: unknown, sign: (body: string) => string | undefined) => {
        const body = JSON.stringify(value);
        const signature = sign(body);
        res.writeHead(status, { "content-type": "application/json", ...(signature && { [HEADERS.signature]: signature }) });
        res.end(body);
      };
      const generation = 7;
      const answer = req.url === API.offline ? { protocol: PROTOCOL_VERSION, generation } : desired(generation);
      switch (behaviour) {
        case "ok":
        case "reset-reused":
          return send(200, answer, (b) => signResponse(SECRET, nonce, 200, b));
        case "unsigned":
          return send(200, answer, () => undefined);
        case "wrong-key":
          return send(200, answer, (b) => signResponse("another-secret-another-secret", nonce, 200, b));
        case "wrong-nonce":
          return send(200, answer, (b) => signResponse(SECRET, "0".repeat(32), 200, b));
        case "unknown-field":
          return send(200, { ...answer, extra: true }, (b) => signResponse(SECRET, nonce, 200, b));
        case "other-host":
          return send(200, { ...answer, hostId: "b1" }, (b) => signResponse(SECRET, nonce, 200, b));
        case "error-401":
          return send(401, { error: "unknown host" }, (b) => signResponse(SECRET, nonce, 401, b));
        case "hold":
          return; // never answers: a held long-poll
      }
    });
  });
  server.on("secureConnection", () => tlsHandshakes++);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as AddressInfo).port;
  deadServer = net.createServer((s) => {
    deadConnections++;
    s.resetAndDestroy();
  });
  await new Promise<void>((r) => deadServer.listen(0, "127.0.0.1", r));
  deadPort = (deadServer.address() as AddressInfo).port;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await new Promise((r) => deadServer.close(r));
});

beforeEach(() => {
  behaviour = "ok";
  seen.length = 0;
});

const clients: StateClient[] = [];
function client(over: Partial<HostUri> = {}): StateClient {
  const c = new StateClient({ hostId: HOST, secret: SECRET, endpoints: [{ host: "127.0.0.1", port }], fingerprints: [cert.fingerprint], ...over });
  clients.push(c);
  return c;
}
afterAll(() => clients.forEach((c) => c.close()));

async function failure(p: Promise<unknown>): Promise<StateClientError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StateClientError);
  return err as StateClientError;
}

describe("state client", () => {
  it("signed round trip: the service verifies the request, the client verifies and parses the answer", async () => {
    const c = client();
    const answer = await c.poll({ generation: 3, wait: false, report }, { timeoutMs: 5000 });
    expect(answer).toEqual(desired(7));
    expect(seen).toEqual([{ path: API.poll, verified: true, body: { protocol: 1, hostId: HOST, generation: 3, wait: false, report } }]);
    const off = await c.offline("SIGTERM", { timeoutMs: 5000 });
    expect(off).toEqual({ protocol: 1, generation: 7 });
    expect(seen[1]).toEqual({ path: API.offline, verified: true, body: { protocol: 1, hostId: HOST, reason: "SIGTERM" } });
  });

  it("keeps the connection alive between polls", async () => {
    const c = client();
    await c.poll({ generation: 0, wait: false, report }, { timeoutMs: 5000 });
    const before = tlsHandshakes;
    await c.poll({ generation: 7, wait: false, report }, { timeoutMs: 5000 });
    await c.poll({ generation: 7, wait: false, report }, { timeoutMs: 5000 });
    expect(tlsHandshakes).toBe(before);
  });

  it("retries once on a fresh connection when the kept-alive one was reset", async () => {
    const c = client();
    await c.poll({ generation: 0, wait: false, report }, { timeoutMs: 5000 });
    behaviour = "reset-reused";
    const before = resets;
    await expect(c.poll({ generation: 7, wait: false, report }, { timeoutMs: 5000 })).resolves.toMatchObject({ generation: 7 });
    expect(resets).toBe(before + 1);
  });

  it("refuses a server whose certificate does not match the pin, before sending anything", async () => {
    const c = client({ fingerprints: [otherCert.fingerprint] });
    const err = await failure(c.poll({ generation: 0, wait: false, report }, { timeoutMs: 5000 }));
    expect(err.kind).toBe("unreachable");
    expect(err.message).toContain("does not match the pinned fingerprint");
    expect(seen).toEqual([]);
  });

  it("accepts the certificate when any of several pins matches (rotation)", async () => {
    const c = client({ fingerprints: [otherCert.fingerprint, cert.fingerprint] });
    await expect(c.poll({ generation: 0, wait: false, report }, { timeoutMs: 5000 })).resolves.toMatchObject({ generation: 7 });
  });

  it("uses the second endpoint when the first is down, and remembers it", async () => {
    const c = client({ endpoints: [{ host: "127.0.0.1", port: deadPort }, { host: "127.0.0.1", port }] });
    const before = deadConnections;
    await c.poll({ generation: 0, wait: false, report }, { timeoutMs: 5000 });
    expect(deadConnections).toBe(before + 1);
    expect(c.endpoint).toBe(`127.0.0.1:${port}`);
    await c.poll({ generation: 7, wait: false, report }, { timeoutMs: 5000 });
    expect(deadConnections).toBe(before + 1);
    expect(seen).toHaveLength(2);
  });

  it("names every endpoint when none answers", async () => {
    const c = client({ endpoints: [{ host: "127.0.0.1", port: deadPort }] });
    const err = await failure(c.poll({ generation: 0, wait: false, report }, { timeoutMs: 5000 }));
    expect(err.kind).toBe("unreachable");
    expect(err.message).toContain(`127.0.0.1:${deadPort}: ECONNRESET`);
  });

  it.each([
    ["unsigned", "bad-signature", "unsigned answer (HTTP 200)"],
    ["wrong-key", "bad-signature", "mis-signed answer (HTTP 200)"],
    ["wrong-nonce", "bad-signature", "mis-signed answer (HTTP 200)"],
    ["unknown-field", "malformed", "invalid answer"],
    ["other-host", "malformed", 'answer is for host "b1"'],
    ["error-401", "rejected", "HTTP 401: unknown host"],
  ] as const)("a %s answer is refused as %s", async (b, kind, text) => {
    behaviour = b;
    const err = await failure(client().poll({ generation: 0, wait: false, report }, { timeoutMs: 5000 }));
    expect(err.kind).toBe(kind);
    expect(err.message).toContain(text);
    expect(err.message).not.toContain(SECRET);
  });

  it("an abort of a held long-poll is reported as aborted", async () => {
    behaviour = "hold";
    const controller = new AbortController();
    const pending = client().poll({ generation: 7, wait: true, report }, { timeoutMs: 30_000, signal: controller.signal });
    while (seen.length === 0) await new Promise((r) => setTimeout(r, 5));
    controller.abort();
    expect((await failure(pending)).kind).toBe("aborted");
  });

  it("a held poll past its timeout fails as unreachable (timed out)", async () => {
    behaviour = "hold";
    const err = await failure(client().poll({ generation: 7, wait: true, report }, { timeoutMs: 200 }));
    expect(err).toMatchObject({ kind: "unreachable", message: `127.0.0.1:${port}: timed out` });
  });
});

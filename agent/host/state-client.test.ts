import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import https from "node:https";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { API, PROTOCOL_VERSION, type DesiredState, type HostReport } from "../contract/protocol";
import { HEADERS, NonceCache, signResponse, verifyRequest } from "../contract/signing";
import type { HostUri } from "../contract/uri";
import { selfSignedCertificate } from "../state/tls";
import { createLogger } from "./log";
import { ReconcileLoop } from "./reconcile";
import { CONNECT_TIMEOUT_MS, StateClient, StateClientError } from "./state-client";
import type { Firewall, HostChecker, IpsecDriver, MssClamp, RouteProvider } from "./types";

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
    etag: `${generation}`.padStart(64, "e"),
    serverTime: 1,
  };
}

/** How the test server answers the next request. */
type Behaviour = "ok" | "unchanged" | "reset-reused" | "unsigned" | "wrong-key" | "wrong-nonce" | "unknown-field" | "other-host" | "hold" | "error-401";

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
/** Replaces fields of the (correctly signed) poll answer: content the schema must refuse. */
let content: Record<string, unknown> | undefined;
const seen: Seen[] = [];
const nonces = new NonceCache();
// A TCP listener that resets every connection: a state service endpoint that is down.
let deadServer: net.Server;
let deadPort: number;
let deadConnections = 0;
// A TCP listener that accepts and never says a word (TLS never starts): a hung endpoint.
let silentServer: net.Server;
let silentPort: number;
let silentConnections = 0;
const silentSockets = new Set<net.Socket>();
let synDropPort: number;
let backlogHolder: ChildProcess | undefined;
const backlogFillers: net.Socket[] = [];

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
      const answer = req.url === API.offline ? { protocol: PROTOCOL_VERSION, generation } : { ...desired(generation), ...content };
      switch (behaviour) {
        case "ok":
        case "reset-reused":
          return send(200, answer, (b) => signResponse(SECRET, nonce, 200, b));
        case "unchanged": {
          const etag = (content?.etag as string | undefined) ?? JSON.parse(raw.toString()).etag ?? "f".repeat(64);
          return send(200, { protocol: PROTOCOL_VERSION, generation: 8, hostId: HOST, unchanged: true, etag, serverTime: 2 }, (b) => signResponse(SECRET, nonce, 200, b));
        }
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
  silentServer = net.createServer((s) => {
    silentConnections++;
    silentSockets.add(s);
    s.on("close", () => silentSockets.delete(s));
  });
  await new Promise<void>((r) => silentServer.listen(0, "127.0.0.1", r));
  silentPort = (silentServer.address() as AddressInfo).port;
  synDropPort = await synDroppingPort();
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await new Promise((r) => deadServer.close(r));
  for (const s of silentSockets) s.destroy();
  await new Promise((r) => silentServer.close(r));
  for (const s of backlogFillers) s.destroy();
  backlogHolder?.kill("SIGKILL");
});

/**
 * A loopback port whose listener never accepts and whose accept queue is full, so the kernel drops
 * every further SYN: an endpoint on a crashed or cut-off machine. The listener is a child node
 * process blocked right after listen() (Atomics.wait: no CPU); this process fills its queue.
 */
async function synDroppingPort(): Promise<number> {
  const script = `const s = require("net").createServer();
s.listen({ port: 0, host: "127.0.0.1", backlog: 1 }, () => {
  console.log(s.address().port);
  setTimeout(() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0), 50);
});`;
  backlogHolder = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  const port = Number(await new Promise<string>((resolve) => backlogHolder!.stdout!.once("data", (d: Buffer) => resolve(String(d).trim()))));
  await new Promise((resolve) => setTimeout(resolve, 200)); // blocked by now
  for (;;) {
    const socket = net.connect(port, "127.0.0.1");
    socket.on("error", () => {});
    backlogFillers.push(socket);
    const connected = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 300);
      socket.once("connect", () => (clearTimeout(timer), resolve(true)));
    });
    if (!connected) return port; // the queue is full: this SYN, and every later one, is dropped
  }
}

beforeEach(() => {
  behaviour = "ok";
  content = undefined;
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

  it("sends the etag of the state it holds: an unchanged answer stands for that state, at the answer's generation", async () => {
    const c = client();
    behaviour = "unchanged";
    const early = await failure(c.poll({ generation: 3, wait: true, report }, { timeoutMs: 5000 }));
    expect(early.kind).toBe("malformed"); // it holds nothing an unchanged answer could stand for
    expect(seen[0]!.body).not.toHaveProperty("etag");

    behaviour = "ok";
    const first = await c.poll({ generation: 0, wait: false, report }, { timeoutMs: 5000 });
    behaviour = "unchanged";
    const second = await c.poll({ generation: 7, wait: true, report }, { timeoutMs: 5000 });
    expect(seen.at(-1)!.body.etag).toBe(first.etag);
    expect(second).toEqual({ ...first, generation: 8, serverTime: 2 });

    content = { etag: "0".repeat(64) }; // unchanged, but of a state this agent never got
    const other = await failure(c.poll({ generation: 8, wait: true, report }, { timeoutMs: 5000 }));
    expect(other.kind).toBe("malformed");
    expect(other.message).toContain("not of the state this agent holds");
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

  it.each([
    ["accepts TCP and never starts TLS", () => silentPort],
    ["drops the SYN (full accept queue)", () => synDropPort],
  ])("tries the next endpoint when the first %s, and remembers the one that works", async (_, blackHole) => {
    const hole = { host: "127.0.0.1", port: blackHole() };
    const c = client({ endpoints: [hole, { host: "127.0.0.1", port }] });
    const started = performance.now();
    await expect(c.poll({ generation: 0, wait: false, report }, { timeoutMs: 5000 })).resolves.toMatchObject({ generation: 7 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_MS - 50); // it did wait for the first, its budget only
    expect(c.endpoint).toBe(`127.0.0.1:${port}`);
    const silentBefore = silentConnections;
    await c.poll({ generation: 7, wait: false, report }, { timeoutMs: 5000 });
    expect(silentConnections).toBe(silentBefore);
    expect(seen).toHaveLength(2);

    // The SIGTERM offline message too: a fresh client starts with the black hole again.
    const stopping = client({ endpoints: [hole, { host: "127.0.0.1", port }] });
    await expect(stopping.offline("SIGTERM", { timeoutMs: 700 })).resolves.toEqual({ protocol: 1, generation: 7 });
    expect(seen.at(-1)).toMatchObject({ path: API.offline, verified: true });
  });

  it("names every black-holed endpoint when none answers", async () => {
    const c = client({ endpoints: [{ host: "127.0.0.1", port: silentPort }, { host: "127.0.0.1", port: synDropPort }] });
    const err = await failure(c.poll({ generation: 0, wait: false, report }, { timeoutMs: 1500 }));
    expect(err.kind).toBe("unreachable");
    // The last one tried has no other to make room for: its whole budget.
    expect(err.message).toBe(`127.0.0.1:${silentPort}: no TLS connection within ${CONNECT_TIMEOUT_MS} ms; 127.0.0.1:${synDropPort}: timed out`);
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

  it.each([
    ["a route with host bits set", { routes: { pointHere: ["10.2.0.1/16"] } }, "routes.pointHere.0"],
    ["a firewall source that is a network", { firewall: { allow: ["10.0.0.0/8"] } }, "firewall.allow.0"],
    ["a heartbeat of 50 days (past any timer)", { timing: { heartbeat: 4.3e6, probeInterval: 0.25, probeTimeout: 0.4 } }, "timing.heartbeat"],
    ["a probe interval past any timer", { timing: { heartbeat: 1, probeInterval: 3e6, probeTimeout: 0.4 } }, "timing.probeInterval"],
  ])("a correctly signed answer with %s is refused as malformed, naming the field", async (_, bad, field) => {
    content = bad;
    const err = await failure(client().poll({ generation: 0, wait: false, report }, { timeoutMs: 5000 }));
    expect(err.kind).toBe("malformed");
    expect(err.message).toContain(`invalid answer: ${field}:`);
  });

  it("the loop refuses such an answer whole: nothing changes on the host, polling goes on, the next good one applies", async () => {
    const changes: string[] = [];
    const record = (what: string) => async () => void changes.push(what);
    const ipsec: IpsecDriver = { validate: () => {}, apply: record("ipsec"), tunnels: () => [], onChange: () => {}, close: async () => {} };
    const routes: RouteProvider = { name: "kernel", table: "own", apply: record("routes"), applied: () => [] };
    const firewall: Firewall = { apply: record("firewall"), inPlace: async () => true, remove: record("firewall") };
    const mss: MssClamp = { apply: record("mss"), inPlace: async () => true, remove: record("mss") };
    const checker: HostChecker = { setTargets: () => void changes.push("hostCheck"), results: () => [], onChange: () => {}, close: async () => {} };
    const lines: string[] = [];
    const loop = new ReconcileLoop({
      state: client(),
      ipsec,
      routes,
      firewall,
      mss,
      checker,
      self: { hostId: HOST },
      options: { firewall: true, removeRoutes: false, hostCheck: true, mtu: 1400 },
      agentVersion: "1.0.0",
      log: createLogger("debug", (line) => lines.push(line)),
      retryInitialMs: 5,
    });
    content = { routes: { pointHere: ["10.2.0.1/16"] }, timing: { heartbeat: 4.3e6, probeInterval: 0.25, probeTimeout: 0.4 } };
    const done = loop.start();
    try {
      await vi.waitFor(() => expect(seen.length).toBeGreaterThanOrEqual(4), { timeout: 5_000, interval: 5 });
      expect(changes).toEqual([]);
      content = undefined;
      await vi.waitFor(() => expect(loop.status().appliedGeneration).toBe(7), { timeout: 5_000, interval: 5 });
      expect(changes).toEqual(expect.arrayContaining(["ipsec", "firewall", "mss", "hostCheck", "routes"]));
      // One warning, however many refused answers (the rest at debug level).
      const refusals = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === "state service answer refused: nothing changed on this host");
      expect(refusals.length).toBeGreaterThanOrEqual(3);
      expect(refusals.filter((l) => l.level === "warn")).toEqual([expect.objectContaining({ kind: "malformed", error: expect.stringContaining("routes.pointHere.0") })]);
    } finally {
      await loop.stop("test over");
      await done;
    }
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

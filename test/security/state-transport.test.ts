// Attacks on the state service's transport and authentication (issue 15: S3, S5, S6, S7, S10):
// a real service on loopback, real sockets, a real SQLite store kept across a restart.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { API } from "../../agent/contract/protocol";
import { deriveHostSecret, signRequest } from "../../agent/contract/signing";
import type { TopologyInput } from "../../agent/contract/topology";
import { memoryLogger } from "../../agent/state/log";
import { startStateService, type StateService, type StateServiceOptions } from "../../agent/state/service";
import { selfSignedCertificate } from "../../agent/state/tls";
import { PinnedTestAgent, report, signedCall } from "../support/state-testkit";

const cert = selfSignedCertificate({ names: ["127.0.0.1"] });
const masterKey = randomBytes(32);
const secret = (hostId: string) => deriveHostSecret(masterKey, hostId);
const host = (id: string, name: string, priority = 1) => ({ id, name, priority, timeout: 120, backoff: 0 });
const topology = (heartbeat = 30): TopologyInput => ({
  version: 1,
  links: [
    {
      name: "corp",
      locations: [
        { name: "aws", routes: ["10.1.0.0/16"], hosts: [{ ...host("aws-a", "a", 2), publicAddress: "198.18.1.1" }, { ...host("aws-b", "b"), publicAddress: "198.18.1.2" }] },
        { name: "office", routes: ["10.2.0.0/16"], hosts: [host("off-a", "a")] },
      ],
      timing: { heartbeat },
    },
  ],
});

const dirs: string[] = [];
const running: StateService[] = [];
let agent: PinnedTestAgent;

function setup(heartbeat?: number) {
  const dir = mkdtempSync(join(tmpdir(), "sl-sec-transport-"));
  dirs.push(dir);
  writeFileSync(join(dir, "topology.json"), JSON.stringify(topology(heartbeat)));
  const logger = memoryLogger();
  const start = async (extra: Partial<StateServiceOptions> = {}) => {
    const service = await startStateService({
      topologyFile: join(dir, "topology.json"),
      dataDir: join(dir, "data"),
      tls: { cert: cert.certPem, key: cert.keyPem },
      masterKey,
      listen: { host: "127.0.0.1", port: 0 },
      logger,
      watchTopology: false,
      ...extra,
    });
    running.push(service);
    return service;
  };
  return { logger, start };
}

const pollBody = (hostId: string, wait = false) => JSON.stringify({ protocol: 1, hostId, generation: 0, wait, report: report() });
const offlineBody = (hostId: string) => JSON.stringify({ protocol: 1, hostId, reason: "stop" });
const port = (service: StateService) => Number(new URL(service.url).port);

async function outcomes(service: StateService): Promise<string> {
  return new Promise((resolve, reject) => {
    https.get(`${service.url}/metrics`, { agent }, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c.toString()));
      res.on("end", () => resolve(text));
    }).on("error", reject);
  });
}

/** Resolves when the server closes the socket (true), or false if it is still open after `ms`. */
function closedWithin(socket: net.Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

function rawSocket(service: StateService, localAddress = "127.0.0.1"): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port: port(service), localAddress }, () => resolve(socket));
    socket.on("error", reject);
  });
}

beforeAll(() => {
  agent = new PinnedTestAgent(cert.fingerprint);
});
afterEach(async () => {
  while (running.length > 0) await running.pop()!.close();
});
afterAll(() => {
  agent.destroy();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("replay across a restart (S3)", () => {
  it("refuses a signed offline request captured before the service restarted", async () => {
    const { start } = setup();
    let service = await start();
    for (const id of ["aws-a", "aws-b", "off-a"]) expect((await signedCall(service.url, agent, { hostId: id, secret: secret(id), path: API.poll, body: pollBody(id) })).status).toBe(200);
    // Captured on the wire (its headers and body), never sent to this service.
    const body = offlineBody("aws-a");
    const captured = signRequest(secret("aws-a"), { hostId: "aws-a", method: "POST", path: API.offline, body });
    await service.close();
    running.pop();
    await new Promise((resolve) => setTimeout(resolve, 5)); // a later start than the capture, on this clock
    service = await start();
    const replay = await signedCall(service.url, agent, { hostId: "aws-a", secret: secret("aws-a"), path: API.offline, body, now: Number(captured["x-sitelink-timestamp"]), nonce: captured["x-sitelink-nonce"] });
    expect(replay.status, replay.body).toBe(401);
    expect(JSON.parse(replay.body).error).toMatch(/before the service started/);
    expect(service.core.hosts().find((h) => h.hostId === "aws-a")).toMatchObject({ role: "active" });
    // The agent signs every try afresh: its next request is taken.
    expect((await signedCall(service.url, agent, { hostId: "aws-a", secret: secret("aws-a"), path: API.poll, body: pollBody("aws-a") })).status).toBe(200);
  });
});

describe("unknown host and bad signature (S6)", () => {
  it("answers both with the same status and body", async () => {
    const service = await setup().start();
    const unknown = await signedCall(service.url, agent, { hostId: "nobody", secret: secret("nobody"), path: API.poll, body: pollBody("nobody") });
    const forged = await signedCall(service.url, agent, { hostId: "aws-a", secret: secret("aws-b"), path: API.poll, body: pollBody("aws-a") });
    expect(unknown.status).toBe(401);
    expect([forged.status, forged.body, forged.signed]).toEqual([unknown.status, unknown.body, unknown.signed]);
  });
});

describe("errors and hang-ups (S7)", () => {
  it("counts a client that hangs up mid-body as aborted, not as an internal error, and logs nothing", async () => {
    const { start, logger } = setup();
    const service = await start();
    const body = pollBody("aws-a");
    const headers = signRequest(secret("aws-a"), { hostId: "aws-a", method: "POST", path: API.poll, body });
    const socket = tls.connect({ host: "127.0.0.1", port: port(service), rejectUnauthorized: false });
    await new Promise((resolve) => socket.once("secureConnect", resolve));
    const head = Object.entries({ ...headers, "content-type": "application/json", "content-length": String(body.length + 100) }).map(([k, v]) => `${k}: ${v}\r\n`).join("");
    socket.write(`POST ${API.poll} HTTP/1.1\r\nhost: x\r\n${head}\r\n${body.slice(0, 10)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.destroy();
    let text = "";
    for (let i = 0; i < 50 && !text.includes('outcome="aborted"'); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      text = await outcomes(service);
    }
    expect(text).toMatch(/sitelink_requests_total\{endpoint="poll",outcome="aborted"\} 1/);
    expect(text).not.toMatch(/outcome="error"/);
    expect(logger.lines.filter((l) => l.includes("internal-error"))).toEqual([]);
  });

  it("logs a real internal error (without secrets) and answers 500", async () => {
    const { start, logger } = setup();
    const service = await start();
    service.core.heartbeat = () => {
      throw new Error("a bug in heartbeat");
    };
    const answer = await signedCall(service.url, agent, { hostId: "aws-a", secret: secret("aws-a"), path: API.poll, body: pollBody("aws-a") });
    expect(answer.status).toBe(500);
    const logged = logger.lines.map((l) => JSON.parse(l)).filter((e) => e.event === "internal-error");
    expect(logged).toEqual([expect.objectContaining({ endpoint: "poll", message: "a bug in heartbeat" })]);
    for (const line of logger.lines) expect(line).not.toContain(secret("aws-a"));
    expect(await outcomes(service)).toMatch(/outcome="error"\} 1/);
  });
});

describe("TLS versions (S10)", () => {
  it("refuses a TLS 1.2 client and serves a TLS 1.3 one", async () => {
    const service = await setup().start();
    const handshake = (maxVersion: tls.SecureVersion) =>
      new Promise<string>((resolve) => {
        const socket = tls.connect({ host: "127.0.0.1", port: port(service), rejectUnauthorized: false, maxVersion }, () => {
          resolve(socket.getProtocol() ?? "none");
          socket.destroy();
        });
        socket.on("error", (error) => resolve(`refused: ${(error as NodeJS.ErrnoException).code}`));
      });
    expect(await handshake("TLSv1.2")).toMatch(/^refused/);
    expect(await handshake("TLSv1.3")).toBe("TLSv1.3");
  });
});

describe("connection limits and timeouts (S5)", () => {
  it("closes a socket that never sends a ClientHello within the handshake timeout", async () => {
    const service = await setup().start({ connections: { handshakeTimeoutMs: 300 } });
    const socket = await rawSocket(service);
    expect(await closedWithin(socket, 3000)).toBe(true);
  });

  it("cuts a request whose headers drip in", async () => {
    const service = await setup().start({ connections: { headersTimeoutMs: 500, requestTimeoutMs: 1000 } });
    const socket = tls.connect({ host: "127.0.0.1", port: port(service), rejectUnauthorized: false });
    await new Promise((resolve) => socket.once("secureConnect", resolve));
    socket.on("error", () => {});
    socket.write(`POST ${API.poll} HTTP/1.1\r\n`);
    const drip = setInterval(() => socket.writable && socket.write("x-drip: 1\r\n"), 100);
    try {
      expect(await closedWithin(socket, 5000)).toBe(true);
    } finally {
      clearInterval(drip);
      socket.destroy();
    }
  });

  it("holds a long-poll past the request timeout: it runs only until the request is read", async () => {
    const { start } = setup(1.5);
    const service = await start({ connections: { headersTimeoutMs: 300, requestTimeoutMs: 500 } });
    const first = await signedCall(service.url, agent, { hostId: "aws-a", secret: secret("aws-a"), path: API.poll, body: pollBody("aws-a") });
    const generation = JSON.parse(first.body).generation as number;
    const body = JSON.stringify({ protocol: 1, hostId: "aws-a", generation, wait: true, report: report() });
    const held = signedCall(service.url, agent, { hostId: "aws-a", secret: secret("aws-a"), path: API.poll, body });
    // Twice the request timeout later, the poll is still held (the heartbeat is 1.5 s), then answered.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(service.core.heldPolls()).toBe(1);
    const answer = await held;
    expect(answer.status, answer.body).toBe(200);
  });

  it("refuses connections over the per-address cap while another address still polls", async () => {
    const service = await setup().start({ connections: { perAddress: 2 } });
    const held = [await rawSocket(service), await rawSocket(service)];
    const third = await rawSocket(service);
    expect(await closedWithin(third, 3000)).toBe(true);
    expect(held.every((s) => !s.destroyed)).toBe(true);
    const other = new PinnedTestAgent(cert.fingerprint, { localAddress: "127.0.0.2" });
    try {
      const answer = await signedCall(service.url, other, { hostId: "aws-a", secret: secret("aws-a"), path: API.poll, body: pollBody("aws-a") });
      expect(answer.status).toBe(200);
    } finally {
      other.destroy();
      for (const s of held) s.destroy();
    }
  });
});

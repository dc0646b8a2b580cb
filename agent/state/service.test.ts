// The state service for real: HTTPS on loopback with a real certificate, a real SQLite file.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { get, request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { TopologyInput } from "../contract/topology";
import { API, MAX_BODY_BYTES, desiredStateSchema, errorResponseSchema, offlineResponseSchema, unchangedStateSchema, type DesiredState } from "../contract/protocol";
import { deriveHostSecret, deriveKey } from "../contract/signing";
import { runStateCli } from "./cli";
import { memoryLogger } from "./log";
import { startStateService, type StateService } from "./service";
import { SqliteStore } from "./sqlite-store";
import { PinnedTestAgent, report, signedCall, type CallResult } from "../../test/support/state-testkit";
import { selfSignedCertificate } from "./tls";

const tls = selfSignedCertificate({ names: ["127.0.0.1"] });
const masterKey = randomBytes(32);
const secret = (hostId: string) => deriveHostSecret(masterKey, hostId);

/** aws: aws-a (priority 2) and aws-b; office: off-a. Long timeouts: only the test's events decide. */
function topology(extra: { heartbeat?: number; officeHosts?: { id: string; name: string }[] } = {}): TopologyInput {
  const host = (id: string, name: string, priority = 1) => ({ id, name, priority, timeout: 120, backoff: 0 });
  return {
    version: 1,
    links: [
      {
        name: "corp",
        locations: [
          {
            name: "aws",
            routes: ["10.1.0.0/16"],
            hosts: [
              { ...host("aws-a", "a", 2), publicAddress: "198.18.1.1", privateAddress: "10.1.0.10" },
              { ...host("aws-b", "b"), publicAddress: "198.18.1.2", privateAddress: "10.1.0.11" },
            ],
          },
          { name: "office", routes: ["10.2.0.0/16"], hosts: (extra.officeHosts ?? [{ id: "off-a", name: "a" }]).map((h) => host(h.id, h.name)) },
        ],
        timing: { heartbeat: extra.heartbeat ?? 30 },
      },
    ],
  };
}

/** A store whose decision writes fail while `failing` is set. */
class FlakyStore extends SqliteStore {
  failing = false;
  override async appendDecisions(...args: Parameters<SqliteStore["appendDecisions"]>): Promise<void> {
    if (this.failing) throw new Error("disk I/O error");
    return super.appendDecisions(...args);
  }
}

const dirs: string[] = [];
const services: StateService[] = [];
let agent: PinnedTestAgent;

function env() {
  const dir = mkdtempSync(join(tmpdir(), "sitelink-state-"));
  dirs.push(dir);
  const topologyFile = join(dir, "topology.json");
  const logger = memoryLogger();
  const writeTopology = (doc: unknown) => writeFileSync(topologyFile, JSON.stringify(doc));
  writeTopology(topology());
  const start = async (opts: { watchTopology?: boolean; storePollMs?: number; store?: SqliteStore } = {}) => {
    const service = await startStateService({
      topologyFile,
      dataDir: join(dir, "data"),
      store: opts.store,
      tls: { cert: tls.certPem, key: tls.keyPem },
      masterKey,
      listen: { host: "127.0.0.1", port: 0 },
      logger,
      watchTopology: opts.watchTopology ?? false,
      storePollMs: opts.storePollMs ?? 50,
    });
    services.push(service);
    return service;
  };
  return { dir, dataDir: join(dir, "data"), topologyFile, logger, writeTopology, start };
}

/** A poll as an agent that holds the state named `etag` sends it; the answer's body, checked to be signed. */
async function pollAnswer(service: StateService, hostId: string, generation: number, wait: boolean, etag?: string): Promise<string> {
  const body = JSON.stringify({ protocol: 1, hostId, generation, wait, ...(etag && { etag }), report: report() });
  const answer = await signedCall(service.url, agent, { hostId, secret: secret(hostId), path: API.poll, body });
  expect(answer.status, answer.body).toBe(200);
  expect(answer.signed).toBe(true);
  return answer.body;
}

async function poll(service: StateService, hostId: string, generation: number, wait: boolean, overrides = {}): Promise<DesiredState> {
  const body = JSON.stringify({ protocol: 1, hostId, generation, wait, report: report(overrides) });
  const answer = await signedCall(service.url, agent, { hostId, secret: secret(hostId), path: API.poll, body });
  expect(answer.status, answer.body).toBe(200);
  expect(answer.signed).toBe(true);
  return desiredStateSchema.parse(JSON.parse(answer.body));
}

async function offline(service: StateService, hostId: string): Promise<CallResult> {
  const body = JSON.stringify({ protocol: 1, hostId, reason: "shutdown" });
  return signedCall(service.url, agent, { hostId, secret: secret(hostId), path: API.offline, body });
}

/** Brings every host online; aws-a and off-a end up active. Returns the generation all have seen. */
async function allOnline(service: StateService): Promise<number> {
  let generation = 0;
  for (const id of ["aws-a", "aws-b", "off-a"]) generation = (await poll(service, id, 0, false)).generation;
  expect(service.core.hosts().map((h) => [h.hostId, h.status])).toEqual([
    ["aws-a", "active"],
    ["aws-b", "available"],
    ["off-a", "active"],
  ]);
  return generation;
}

beforeAll(() => {
  agent = new PinnedTestAgent(tls.fingerprint);
});

afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.close()));
});

afterAll(() => {
  agent.destroy();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("state service", () => {
  it("answers a signed poll with the host's signed desired state", async () => {
    const e = env();
    const service = await e.start();
    expect(service.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(service.fingerprint).toBe(tls.fingerprint);
    await allOnline(service);
    const state = await poll(service, "aws-a", 0, false, { publicAddress: "198.18.1.1" });
    expect(state).toMatchObject({
      hostId: "aws-a",
      link: "corp",
      location: "aws",
      role: "active",
      activeHost: "aws-a",
      routes: { pointHere: ["10.2.0.0/16"] },
      hostCheck: { key: deriveKey(masterKey, "hostcheck:corp") },
      timing: { heartbeat: 30, probeInterval: 0.25, probeTimeout: 0.4 },
    });
    expect(state.peers).toHaveLength(1);
    expect(state.peers[0]).toMatchObject({ location: "office", activeHost: { id: "off-a" }, initiator: true, localSubnets: ["10.1.0.0/16"] });
    expect(Buffer.from(state.peers[0]!.psk, "base64")).toHaveLength(32);
    // The office end gets the same PSK, and is the responder.
    const office = await poll(service, "off-a", 0, false);
    expect(office.peers[0]).toMatchObject({ location: "aws", activeHost: { id: "aws-a", publicAddress: "198.18.1.1" }, initiator: false, psk: state.peers[0]!.psk });
    const standby = await poll(service, "aws-b", 0, false);
    expect(standby).toMatchObject({ role: "standby", activeHost: "aws-a", peers: [], routes: { pointHere: [] } });
  });

  it("refuses every bad request with a clear 4xx, changes nothing, and keeps serving", async () => {
    const e = env();
    const service = await e.start();
    await poll(service, "aws-a", 0, false);
    const generation = service.core.generation;
    const hostsBefore = JSON.stringify(service.core.hosts());
    const good = (hostId = "off-a") => JSON.stringify({ protocol: 1, hostId, generation: 0, wait: false, report: report() });
    const send = (call: Partial<Parameters<typeof signedCall>[2]>) =>
      signedCall(service.url, agent, { hostId: "off-a", secret: secret("off-a"), path: API.poll, body: good(), ...call });
    const expectError = (answer: CallResult, status: number, error: RegExp, fields?: string[]) => {
      expect(answer.status, answer.body).toBe(status);
      const body = errorResponseSchema.parse(JSON.parse(answer.body));
      expect(body.error).toMatch(error);
      if (fields) expect(body.fields).toEqual(fields);
    };

    expectError(await send({ secret: secret("aws-a") }), 401, /unknown host or bad signature/);
    expectError(await send({ now: Date.now() - 60_000 }), 401, /timestamp outside the replay window/);
    expectError(await send({ hostId: "nobody", secret: secret("nobody"), body: good("nobody") }), 401, /unknown host/);
    expectError(await send({ headers: { [`x-sitelink-nonce`]: "not-hex" } }), 401, /missing or malformed/);
    expectError(await send({ body: "{not json" }), 400, /not JSON/);
    const invalid = await send({ body: JSON.stringify({ protocol: 1, hostId: "off-a", generation: -1, wait: "yes", report: { ...report(), role: "boss" } }) });
    expectError(invalid, 400, /invalid poll request/, ["generation", "wait", "report.role"]);
    expect(invalid.signed).toBe(true);
    expectError(await send({ body: good("aws-a") }), 400, /does not match/, ["hostId"]);
    expectError(await send({ body: "x".repeat(MAX_BODY_BYTES + 1) }), 413, /larger than/);
    expectError(await send({ method: "GET" }), 405, /use POST/);
    expectError(await send({ path: "/v1/other" }), 404, /no such path/);
    expectError(await send({ path: API.offline, body: JSON.stringify({ protocol: 1, hostId: "off-a" }) }), 400, /invalid offline/, ["reason"]);
    // A chunked body (no content-length) is cut off once it passes the limit.
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = request(new URL(API.poll, service.url), { method: "POST", agent, headers: { "x-sitelink-host": "off-a" } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      for (let i = 0; i < 5; i++) req.write(chunk);
      req.end();
    });
    expect(chunked).toBe(413);
    // A replayed request: the first copy is served, the second refused.
    const nonce = randomBytes(16).toString("hex");
    const now = Date.now();
    const replayBody = JSON.stringify({ protocol: 1, hostId: "aws-a", generation: 0, wait: false, report: report() });
    const replay = { hostId: "aws-a", secret: secret("aws-a"), body: replayBody, nonce, now };
    expect((await send(replay)).status).toBe(200);
    expectError(await send(replay), 401, /nonce already used/);

    expect(service.core.generation).toBe(generation);
    expect(JSON.stringify(service.core.hosts().filter((h) => h.hostId !== "aws-a"))).toBe(
      JSON.stringify(JSON.parse(hostsBefore).filter((h: { hostId: string }) => h.hostId !== "aws-a")),
    );
    expect(service.core.hosts().find((h) => h.hostId === "off-a")).toMatchObject({ status: "offline", lastSeen: null });
    // Still serving, on the same kind of keep-alive connection.
    expect((await poll(service, "off-a", 0, false)).role).toBe("active");
  });

  it("holds a long-poll until a decision in another location changes the host's state", async () => {
    const e = env();
    const service = await e.start();
    const seen = await allOnline(service);
    // Nothing changed for aws-a since `seen`: the poll is held (heartbeat is 30 s, longer than the test).
    const held = poll(service, "aws-a", seen, true);
    await vi.waitFor(() => expect(service.core.heldPolls()).toBe(1));
    const bye = await offline(service, "off-a");
    expect(bye.status).toBe(200);
    expect(bye.signed).toBe(true);
    expect(offlineResponseSchema.parse(JSON.parse(bye.body)).generation).toBeGreaterThan(seen);
    const state = await held;
    expect(state.generation).toBeGreaterThan(seen);
    expect(state.peers[0]!.activeHost).toBeNull();
    expect(e.logger.lines.some((l) => /"event":"decision".*"location":"office","from":"off-a","to":null/.test(l))).toBe(true);
  });

  it("demotes a host that goes offline gracefully and releases the standby's held poll as active", async () => {
    const e = env();
    const service = await e.start();
    const seen = await allOnline(service);
    const held = poll(service, "aws-b", seen, true);
    await vi.waitFor(() => expect(service.core.heldPolls()).toBe(1));
    expect((await offline(service, "aws-a")).status).toBe(200);
    const state = await held;
    expect(state).toMatchObject({ role: "active", activeHost: "aws-b", routes: { pointHere: ["10.2.0.0/16"] } });
    expect(state.peers[0]!.activeHost).toEqual({ id: "off-a" });
  });

  it("answers a held poll at the end of the heartbeat with the last stored state while a decision cannot be stored", async () => {
    const e = env();
    e.writeTopology(topology({ heartbeat: 1 }));
    const store = new FlakyStore(e.dataDir);
    const service = await e.start({ store });
    const seen = await allOnline(service);
    const stored = await poll(service, "aws-b", seen, false);
    const held = poll(service, "aws-b", seen, true);
    await vi.waitFor(() => expect(service.core.heldPolls()).toBe(1));
    store.failing = true;
    const bye = offline(service, "aws-a");
    // aws-b is active in the engine, but that is not stored: after the 1 s hold it is told what is.
    expect(await held).toMatchObject({ role: "standby", activeHost: "aws-a", generation: stored.generation, etag: stored.etag });
    store.failing = false;
    expect((await bye).status).toBe(200);
    expect(await poll(service, "aws-b", seen, true)).toMatchObject({ role: "active", activeHost: "aws-b" });
  });

  it("answers an agent that holds the current state with an unchanged state, and with the whole state once it changed", async () => {
    const e = env();
    const service = await e.start();
    const seen = await allOnline(service);
    const whole = await poll(service, "aws-b", 0, false);
    const unchanged = unchangedStateSchema.parse(JSON.parse(await pollAnswer(service, "aws-b", seen, false, whole.etag)));
    expect(unchanged).toEqual({ protocol: 1, generation: whole.generation, hostId: "aws-b", unchanged: true, etag: whole.etag, serverTime: expect.any(Number) });

    // A held long-poll with that etag is answered with the whole new state when the host's role changes.
    const held = pollAnswer(service, "aws-b", seen, true, whole.etag);
    await vi.waitFor(() => expect(service.core.heldPolls()).toBe(1));
    expect((await offline(service, "aws-a")).status).toBe(200);
    const changed = desiredStateSchema.parse(JSON.parse(await held));
    expect(changed).toMatchObject({ role: "active", peers: [{ location: "office" }] });
    expect(changed.etag).not.toBe(whole.etag);
    // The etag of the state before names nothing now.
    expect(desiredStateSchema.parse(JSON.parse(await pollAnswer(service, "aws-b", changed.generation, false, whole.etag))).etag).toBe(changed.etag);
    // A change of the link's allowlist alone changes every host's etag too.
    const office = await poll(service, "off-a", 0, false);
    await poll(service, "off-a", office.generation, false, { publicAddress: "198.18.2.9" });
    expect(desiredStateSchema.parse(JSON.parse(await pollAnswer(service, "aws-b", changed.generation, false, changed.etag))).firewall.allow).toContain("198.18.2.9");
  });

  it("restarts from the same data directory with the same generation, PSKs and roles, and no decision", async () => {
    const e = env();
    const first = await e.start();
    const seen = await allOnline(first);
    const psk = (await poll(first, "aws-a", 0, false)).peers[0]!.psk;
    await first.close();
    const decisionsBefore = e.logger.lines.filter((l) => l.includes('"event":"decision"')).length;

    const second = await e.start();
    expect(second.core.generation).toBe(seen);
    expect(second.core.hosts().map((h) => [h.hostId, h.status])).toEqual([
      ["aws-a", "active"],
      ["aws-b", "available"],
      ["off-a", "active"],
    ]);
    // An agent that saw `seen` has nothing new: its long-poll is held.
    const held = poll(second, "aws-b", seen, true);
    await vi.waitFor(() => expect(second.core.heldPolls()).toBe(1));
    const state = await poll(second, "aws-a", 0, false);
    expect(state).toMatchObject({ role: "active", generation: seen });
    expect(state.peers[0]!.psk).toBe(psk);
    expect(e.logger.lines.filter((l) => l.includes('"event":"decision"')).length).toBe(decisionsBefore);
    await second.close();
    await expect(held).rejects.toThrow(); // closing the service hangs up on held polls
  });

  it("keeps serving the old topology when a new one is invalid, and takes a valid one from the watched file", async () => {
    const e = env();
    const service = await e.start({ watchTopology: true });
    await allOnline(service);
    e.writeTopology({ ...topology(), links: [{ ...topology().links[0], locations: [] }] });
    expect(await service.reloadTopology()).toBe(false);
    const rejected = e.logger.lines.filter((l) => l.includes('"event":"topology-rejected"'));
    expect(rejected.length).toBeGreaterThan(0);
    expect(rejected[0]).toContain("links[0].locations: a link needs at least two locations");
    expect(service.core.host("off-a")).toBeDefined();
    expect((await poll(service, "off-a", 0, false)).role).toBe("active");

    // A valid document written to the file is picked up by the watcher: a second office host appears.
    e.writeTopology(topology({ officeHosts: [{ id: "off-a", name: "a" }, { id: "off-b", name: "b" }] }));
    await vi.waitFor(() => expect(service.core.host("off-b")).toBeDefined(), { timeout: 10_000 });
    expect(service.core.hosts().find((h) => h.hostId === "off-a")?.status).toBe("active");
    // Peers accept IKE from it once it is in service: when it reports.
    expect((await poll(service, "aws-a", 0, false)).peers[0]!.hosts.map((h) => h.id)).toEqual(["off-a"]);
    await poll(service, "off-b", 0, false);
    expect((await poll(service, "aws-a", 0, false)).peers[0]!.hosts.map((h) => h.id)).toEqual(["off-a", "off-b"]);
  });

  it("hands out a PSK rotated by the CLI to both ends at once", async () => {
    const e = env();
    const service = await e.start({ storePollMs: 50 });
    const seen = await allOnline(service);
    const old = (await poll(service, "aws-a", 0, false)).peers[0]!.psk;
    const heldA = poll(service, "aws-a", seen, true);
    const heldO = poll(service, "off-a", seen, true);
    const heldStandby = poll(service, "aws-b", seen, true);
    await vi.waitFor(() => expect(service.core.heldPolls()).toBe(3));
    const out: string[] = [];
    const io = { out: (t: string) => out.push(t), err: (t: string) => out.push(t) };
    expect(await runStateCli(["rotate-psk", "--data", e.dataDir, "--link", "corp", "--pair", "office,aws"], io)).toBe(0);
    const [a, o] = await Promise.all([heldA, heldO]);
    expect(a.peers[0]!.psk).not.toBe(old);
    expect(o.peers[0]!.psk).toBe(a.peers[0]!.psk);
    expect(out.join("")).not.toContain(a.peers[0]!.psk);
    // The standby's state holds no PSK: it is not woken.
    expect(service.core.heldPolls()).toBe(1);
    await service.close();
    await expect(heldStandby).rejects.toThrow();
  });

  it("exposes Prometheus metrics and a health check", async () => {
    const e = env();
    const service = await e.start();
    await allOnline(service);
    await offline(service, "aws-a");
    await signedCall(service.url, agent, { hostId: "aws-b", secret: secret("off-a"), path: API.poll, body: "{}" });
    const text = await fetchText(`${service.url}/metrics`);
    expect(text).toMatch(/sitelink_requests_total\{endpoint="poll",outcome="ok"\} 3/);
    expect(text).toMatch(/sitelink_requests_total\{endpoint="poll",outcome="bad-signature"\} 1/);
    expect(text).toMatch(/sitelink_requests_total\{endpoint="offline",outcome="ok"\} 1/);
    expect(text).toMatch(/sitelink_hosts\{status="active"\} 2/);
    expect(text).toMatch(/sitelink_hosts\{status="offline"\} 1/);
    expect(text).toMatch(/sitelink_failovers_total 1/);
    expect(text).toMatch(/sitelink_decisions_total 3/);
    expect(text).toMatch(/sitelink_decision_latency_seconds_count 3/);
    expect(text).toMatch(/sitelink_held_polls 0/);
    expect(JSON.parse(await fetchText(`${service.url}/healthz`))).toEqual({ status: "ok", generation: service.core.durable });
  });

  it("never logs PSKs, host secrets, the host-check key or the master key", async () => {
    const e = env();
    const service = await e.start();
    await allOnline(service);
    const psk = (await poll(service, "aws-a", 0, false)).peers[0]!.psk;
    await runStateCli(["rotate-psk", "--data", e.dataDir, "--link", "corp", "--pair", "aws,office"], { out: () => {}, err: () => {} });
    await vi.waitFor(async () => expect((await poll(service, "aws-a", 0, false)).peers[0]!.psk).not.toBe(psk));
    const rotated = (await poll(service, "aws-a", 0, false)).peers[0]!.psk;
    await offline(service, "aws-a");
    await service.close();
    const log = e.logger.lines.join("");
    expect(log).toContain('"event":"psk-changed"');
    for (const secretText of [psk, rotated, secret("aws-a"), secret("off-a"), deriveKey(masterKey, "hostcheck:corp"), masterKey.toString("base64")]) {
      expect(log).not.toContain(secretText);
    }
    const stored = new SqliteStore(e.dataDir);
    expect((await stored.psks()).map((p) => p.psk)).toEqual([rotated]);
    await stored.close();
  });
});

function fetchText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, { agent }, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c.toString()));
      res.on("end", () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`${res.statusCode}`))));
    }).on("error", reject);
  });
}

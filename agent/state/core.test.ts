// StateCore against a real SQLite file: what survives a crash between snapshots, what is stored
// before it is told, which hosts an event re-renders, and which clock goes where.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseTopology, type TopologyInput } from "../contract/topology";
import { desiredStateSchema, type DesiredState } from "../contract/protocol";
import { StateCore, replayDecisions, type Clock, type CoreOptions } from "./core";
import type { Decision } from "./engine";
import { memoryLogger } from "./log";
import { ServiceMetrics } from "./metrics";
import { SqliteStore } from "./sqlite-store";
import { report } from "../../test/support/state-testkit";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "sitelink-core-"));
  dirs.push(dir);
  return dir;
};

const host = (id: string, priority = 1) => ({ id, name: id, priority, timeout: 60 });
const topology = parseTopology({
  version: 1,
  links: [{ name: "l", locations: [{ name: "a", routes: ["10.1.0.0/16"], hosts: [host("a1", 2), host("a2")] }, { name: "b", routes: ["10.2.0.0/16"], hosts: [host("b1")] }] }],
});

/** A hub and `spokes` spokes of two hosts each, every spoke connected to the hub only. */
function hubAndSpokes(spokes: number) {
  const locations: TopologyInput["links"][number]["locations"] = [{ name: "hub", routes: ["10.255.0.0/16"], hosts: [host("hub-1", 2), host("hub-2")] }];
  for (let s = 0; s < spokes; s++) locations.push({ name: `s${s}`, routes: [`10.${s}.0.0/16`], hosts: [host(`s${s}-1`, 2), host(`s${s}-2`)] });
  return parseTopology({ version: 1, links: [{ name: "l", locations, connections: locations.slice(1).map((l) => ["hub", l.name] as [string, string]) }] });
}

/** A store whose decision writes fail while `failing` is set. */
class FlakyStore extends SqliteStore {
  failing = false;
  saved = 0;
  override async appendDecisions(decisions: Decision[], generation: number): Promise<void> {
    if (this.failing) throw new Error("disk I/O error");
    return super.appendDecisions(decisions, generation);
  }
  override async saveTopology(document: unknown): Promise<void> {
    this.saved++;
    return super.saveTopology(document);
  }
}

/** Monotonic and wall clocks the test moves by hand. */
function fakeClock(mono: number, wall: number): Clock & { mono: number; wall: number } {
  const clock = { mono, wall, now: () => clock.mono, wallNow: () => clock.wall };
  return clock;
}

async function open(t = topology, extra: Partial<CoreOptions> = {}) {
  const store = (extra.store as FlakyStore | undefined) ?? new FlakyStore(tempDir());
  const logger = memoryLogger();
  const metrics = new ServiceMetrics({ hosts: () => [], heldPolls: () => 0 });
  const core = await StateCore.open(t, { store, masterKey: randomBytes(32), logger, metrics, ...extra });
  return { core, store, logger, metrics };
}

const state = (core: StateCore, hostId: string): DesiredState => desiredStateSchema.parse(JSON.parse(core.answerJson(hostId)!));
const renders = async (metrics: ServiceMetrics) => (await metrics.renders.get()).values[0]!.value;
/** Lets the batch of this event-loop turn be written. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 5));

describe("StateCore", () => {
  it("restores roles from decisions stored after the last snapshot (a crash, no clean close)", async () => {
    const dir = tempDir();
    const masterKey = randomBytes(32);
    const opts = (store: SqliteStore) => ({ store, masterKey, logger: memoryLogger() });
    const store = new SqliteStore(dir);
    const first = await StateCore.open(topology, opts(store));
    for (const id of ["a1", "a2", "b1"]) first.heartbeat(id, report());
    await first.offline("a1", "stop"); // a2 takes over; only decisions are stored so far
    const generation = first.generation;
    expect(first.hosts().map((h) => [h.hostId, h.status])).toEqual([
      ["a1", "offline"],
      ["a2", "active"],
      ["b1", "active"],
    ]);
    // No close(), no flush: the stored snapshot is the one from start, with nobody online.

    const second = await StateCore.open(topology, opts(new SqliteStore(dir)));
    expect(second.generation).toBe(generation);
    expect(second.hosts().map((h) => [h.hostId, h.status])).toEqual([
      ["a1", "offline"],
      ["a2", "active"],
      ["b1", "active"],
    ]);
    await second.close();
    await first.close();
    await store.close();
  });

  it("replays decisions onto a snapshot", () => {
    const snapshot = {
      version: 1 as const,
      generation: 2,
      hosts: [
        { id: "a1", online: true, lastSeen: 100, offlineSince: null },
        { id: "a2", online: true, lastSeen: 100, offlineSince: null },
      ],
      locations: [{ link: "l", location: "a", active: "a1", hadActive: true }],
    };
    expect(replayDecisions(snapshot, [])).toBe(snapshot);
    expect(
      replayDecisions(snapshot, [
        { generation: 3, at: 200, link: "l", location: "a", from: "a1", to: "a2", reason: "timeout" },
        { generation: 4, at: 300, link: "l", location: "b", from: null, to: "b1", reason: "initial" },
      ]),
    ).toEqual({
      version: 1,
      generation: 4,
      hosts: [
        { id: "a1", online: false, lastSeen: 100, offlineSince: 200 },
        { id: "a2", online: true, lastSeen: 200, offlineSince: null },
        { id: "b1", online: true, lastSeen: 300, offlineSince: null },
      ],
      locations: [
        { link: "l", location: "a", active: "a2", hadActive: true },
        { link: "l", location: "b", active: "b1", hadActive: true },
      ],
    });
  });

  it("re-renders only the hosts an event concerns: the location, the ones connected to it, and the link's allowlist once", async () => {
    const { core, metrics } = await open(hubAndSpokes(3));
    const ids = ["hub-1", "hub-2", "s0-1", "s0-2", "s1-1", "s1-2", "s2-1", "s2-2"];
    for (const id of ids) core.heartbeat(id, report());
    await settle();
    let before = await renders(metrics);
    const s1 = state(core, "s1-1");
    // A decision in spoke s0: s0's hosts and the hub's; s1 and s2 are not connected to s0.
    await core.offline("s0-1", "stop");
    expect((await renders(metrics)) - before).toBe(4);
    expect(state(core, "hub-1").peers.find((p) => p.location === "s0")!.activeHost).toEqual({ id: "s0-2" });
    expect(state(core, "hub-1").generation).toBe(core.durable);
    // The others keep their state's generation: they have nothing to apply again, nothing new to report.
    expect(core.durable).toBeGreaterThan(s1.generation);
    expect(state(core, "s1-1")).toMatchObject({ generation: s1.generation, etag: s1.etag });
    // A new address of s1-2: probers and peers in s1 and the hub; every host's allowlist, rendered once.
    const seen = core.durable;
    before = await renders(metrics);
    core.heartbeat("s1-2", report({ publicAddress: "198.18.1.2" }));
    expect((await renders(metrics)) - before).toBe(4);
    await settle();
    for (const id of ids) expect([id, core.ready(id, seen, true)]).toEqual([id, true]);
    expect(state(core, "s2-1").firewall.allow).toEqual(["198.18.1.2"]);
    expect(state(core, "hub-2").hostCheck.targets.find((t) => t.hostId === "s1-2")).toEqual({ hostId: "s1-2", address: "198.18.1.2", port: 9790, scope: "peer" });
    // The same report again concerns nobody.
    before = await renders(metrics);
    core.heartbeat("s1-2", report({ publicAddress: "198.18.1.2" }));
    expect((await renders(metrics)) - before).toBe(0);
    await core.close();
  });

  it("tells peers at once when a host leaves service or comes back, with no decision: they accept IKE from hosts in service only", async () => {
    const { core } = await open();
    core.heartbeat("a1", report({ publicAddress: "198.18.0.1" }));
    core.heartbeat("a2", report({ publicAddress: "198.18.0.2" }));
    core.heartbeat("b1", report({ publicAddress: "198.18.0.3" }));
    await settle();
    const peerHosts = () => state(core, "b1").peers[0]!.hosts.map((h) => h.id);
    expect(peerHosts()).toEqual(["a1", "a2"]);
    const before = state(core, "b1").generation;
    // a2 is a standby: its stop changes no role, but b1 must stop accepting it.
    await core.offline("a2", "stop");
    expect(core.operatorStatus().links[0]!.locations[0]!.activeHost).toBe("a1");
    expect(peerHosts()).toEqual(["a1"]);
    expect(state(core, "b1").generation).toBeGreaterThan(before);
    expect(core.ready("b1", before, true)).toBe(true);
    core.heartbeat("a2", report({ publicAddress: "198.18.0.2" }));
    await settle();
    expect(peerHosts()).toEqual(["a1", "a2"]);
    await core.close();
  });

  it("tells probers the host-check port a host reports", async () => {
    const { core } = await open();
    core.heartbeat("a1", report({ privateAddress: "10.1.0.11", hostCheckPort: 19790 }));
    core.heartbeat("a2", report());
    await settle();
    expect(state(core, "a2").hostCheck.targets).toEqual([{ hostId: "a1", address: "10.1.0.11", port: 19790, scope: "location" }]);
    await core.close();
  });

  it("hands out no decision before it is stored, serves the last stored state while the store fails, and retries", async () => {
    const { core, store, logger } = await open();
    for (const id of ["a1", "a2", "b1"]) core.heartbeat(id, report());
    await settle();
    const seen = core.durable;
    // A host's state carries the generation it last changed at, at most the newest stored.
    const before = state(core, "a2");
    expect(before).toMatchObject({ role: "standby" });
    expect(before.generation).toBeLessThanOrEqual(seen);
    store.failing = true;
    const stored = core.offline("a1", "stop");
    await settle();
    // Decided, not stored: a2 is not told, not even by a held poll's timer (it gets the stored state).
    expect(core.hosts().find((h) => h.hostId === "a2")!.status).toBe("active");
    expect(core.ready("a2", seen, false)).toBe(false);
    expect(core.answerable("a2")).toBe(true);
    expect(state(core, "a2")).toEqual({ ...before, serverTime: expect.any(Number) });
    expect(state(core, "b1").peers[0]!.activeHost).toEqual({ id: "a1" });
    expect(logger.lines.some((l) => /"event":"store-error","during":"decisions","message":"disk I\/O error".*"retryMs":500/.test(l))).toBe(true);
    store.failing = false;
    await stored;
    expect(core.durable).toBeGreaterThan(seen);
    expect(core.ready("a2", seen, true)).toBe(true);
    expect(state(core, "a2")).toMatchObject({ role: "active", generation: core.durable });
    await core.close();
  });

  it("drops a batch the store still refuses at close: it was never handed out", async () => {
    const { core, store, logger } = await open();
    core.heartbeat("a1", report());
    await settle();
    store.failing = true;
    const pending = core.offline("a1", "stop");
    await settle();
    await core.close();
    await pending;
    expect(logger.lines.some((l) => /"event":"store-error","during":"decisions".*"dropped":true/.test(l))).toBe(true);
  });

  it("stores and reloads nothing for the same topology document again", async () => {
    const { core, store, logger } = await open();
    const saved = store.saved;
    const loaded = () => logger.lines.filter((l) => l.includes('"event":"topology-loaded"')).length;
    await core.setTopology(parseTopology(JSON.parse(JSON.stringify(topology))));
    expect([store.saved, loaded()]).toEqual([saved, 0]);
    await core.setTopology(parseTopology({ ...topology, links: [{ ...topology.links[0]!, cipher: { ...topology.links[0]!.cipher, force: true } }] }));
    expect([store.saved, loaded()]).toEqual([saved + 1, 1]);
    await core.close();
  });

  it("runs the engine on the monotonic clock and stores wall-clock times", async () => {
    const dir = tempDir();
    const wall0 = Date.UTC(2026, 0, 1);
    const clock = fakeClock(5_000_000, wall0);
    const { core } = await open(topology, { store: new FlakyStore(dir), clock });
    core.heartbeat("a1", report());
    // The wall clock steps 6 s ahead (NTP, a resumed VM); the monotonic one moves 1 s.
    clock.wall += 6000 + 1000;
    clock.mono += 1000;
    core.heartbeat("a1", report());
    expect(core.hosts().find((h) => h.hostId === "a1")!.lastSeen).toBe(5_001_000);
    await core.offline("a1", "stop");
    await core.close();

    const stored = new SqliteStore(dir, { readonly: true });
    const loaded = await stored.load();
    await stored.close();
    expect(loaded.state!.hosts.find((h) => h.hostId === "a1")).toMatchObject({ lastSeen: wall0 + 7000, offlineSince: wall0 + 7000 });
    expect(loaded.state!.snapshot.hosts.find((h) => h.id === "a1")).toMatchObject({ lastSeen: wall0 + 7000 });
    expect(loaded.reports.find((r) => r.hostId === "a1")!.at).toBe(wall0 + 7000);
  });

  it("restores across a restart onto another monotonic clock without a decision", async () => {
    const dir = tempDir();
    const masterKey = randomBytes(32);
    const wall0 = Date.UTC(2026, 0, 1);
    const first = await StateCore.open(topology, { store: new SqliteStore(dir), masterKey, logger: memoryLogger(), clock: fakeClock(1000, wall0) });
    for (const id of ["a1", "a2", "b1"]) first.heartbeat(id, report());
    await first.close();
    // The new process's monotonic clock starts elsewhere; 2 s of wall-clock time have passed.
    const logger = memoryLogger();
    const clock = fakeClock(9_000_000, wall0 + 2000);
    const second = await StateCore.open(topology, { store: new SqliteStore(dir), masterKey, logger, clock });
    expect(second.hosts().map((h) => [h.hostId, h.status, h.lastSeen])).toEqual([
      ["a1", "active", 9_000_000 - 2000],
      ["a2", "available", 9_000_000 - 2000],
      ["b1", "active", 9_000_000 - 2000],
    ]);
    await second.close();
    expect(logger.lines.filter((l) => l.includes('"event":"decision"'))).toEqual([]);
  });

  it("gives hosts time to report after the event loop stalled", async () => {
    const { core, logger } = await open();
    for (const id of ["a1", "a2", "b1"]) core.heartbeat(id, report());
    // Block the event loop longer than a heartbeat: the next poll read finds the pulse missing.
    const until = performance.now() + 1300;
    while (performance.now() < until);
    core.heartbeat("b1", report());
    expect(logger.lines.some((l) => /"event":"stalled","ms":1[3-9]\d\d,"hosts":3/.test(l))).toBe(true);
    await core.close();
  });
});

// Property tests of the failover engine: random topologies, random event sequences (heartbeats with
// honest or arbitrary host-check reports, graceful stops, crashes, time passing), invariants checked
// after every step against the test's own record of what happened. Time is a plain number; the
// engine's timers are run the way the service runs them.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Topology } from "../../contract/topology";
import type { HostCheckResult } from "../../contract/protocol";
import { FailoverEngine, type Decision, type HostView } from ".";
import { report, topologyOf, type HostSpec } from "../../../test/support/engine-fixtures";
import { linkTiming } from "./model";

const T0 = 1_700_000_000_000;
const FIXTURE_LINK = topologyOf({ a: [{ id: "a" }], b: [{ id: "b" }] }).links[0]!;
const CRASH_CONFIRM_MS = FIXTURE_LINK.timing.crashConfirm * 1000;
/** How long the engine may rely on a host-check result (it clamps reported ages to this, too). */
const FRESH_MS = linkTiming(FIXTURE_LINK).freshMs;
const REASONS = ["initial", "higher-priority", "offline", "timeout", "crash-confirmed", "partitioned", "peers-lost", "silent", "backoff-ended", "online", "host-checks"];

interface World {
  topology: Topology;
  specs: Map<string, Required<HostSpec> & { location: string }>;
  ids: string[];
}

const worldArb: fc.Arbitrary<World> = fc
  .array(
    fc.array(
      fc.record({
        priority: fc.integer({ min: 1, max: 3 }),
        timeout: fc.constantFrom(2, 5),
        backoff: fc.constantFrom(0, 3, 10),
      }),
      { minLength: 1, maxLength: 3 },
    ),
    { minLength: 2, maxLength: 3 },
  )
  .map((locations) => {
    const specs = new Map<string, Required<HostSpec> & { location: string }>();
    const doc: Record<string, HostSpec[]> = {};
    locations.forEach((hosts, l) => {
      doc[`l${l}`] = hosts.map((h, i) => {
        const spec = { id: `l${l}h${i}`, ...h };
        specs.set(spec.id, { ...spec, location: `l${l}` });
        return spec;
      });
    });
    return { topology: topologyOf(doc), specs, ids: [...specs.keys()] };
  });

type Event =
  | { kind: "heartbeat"; host: number; honest: boolean; checks: { target: number; reachable: boolean; failures: number; ageMs: number }[] }
  | { kind: "offline"; host: number }
  | { kind: "crash"; host: number }
  | { kind: "revive"; host: number }
  | { kind: "cut"; host: number }
  | { kind: "heal"; host: number }
  | { kind: "reload" }
  | { kind: "stall" }
  | { kind: "wait" };

const eventArb: fc.Arbitrary<{ dt: number; event: Event }> = fc.record({
  dt: fc.oneof(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 0, max: 3000 })),
  event: fc.oneof(
    { weight: 6, arbitrary: fc.record({
      kind: fc.constant("heartbeat" as const),
      host: fc.nat(),
      honest: fc.boolean(),
      checks: fc.array(
        fc.record({ target: fc.nat(), reachable: fc.boolean(), failures: fc.integer({ min: 0, max: 3 }), ageMs: fc.integer({ min: 0, max: 3000 }) }),
        { maxLength: 6 },
      ),
    }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("offline" as const), host: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("crash" as const), host: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("revive" as const), host: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("cut" as const), host: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("heal" as const), host: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("wait" as const) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("reload" as const) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("stall" as const) }) },
  ),
});

/** The lab as the agents see it: crashed hosts answer nobody; cut hosts reach no other location. */
interface Faults {
  crashed: Set<string>;
  cut: Set<string>;
}

const noFaults = (): Faults => ({ crashed: new Set(), cut: new Set() });

/** What a host's agent would report: every other host of the link, reachable unless crashed or cut off. */
function honestChecks(world: World, self: string, faults: Faults): HostCheckResult[] {
  const home = world.specs.get(self)!.location;
  return world.ids
    .filter((id) => id !== self)
    .map((id) => {
      const across = world.specs.get(id)!.location !== home;
      const reachable = !faults.crashed.has(id) && !(across && (faults.cut.has(id) || faults.cut.has(self)));
      return { target: id, reachable, failures: reachable ? 0 : 3, ageMs: 100 };
    });
}

/** Drives an engine and checks every invariant after every step. */
class Harness {
  readonly engine: FailoverEngine;
  readonly decisions: Decision[] = [];
  now = T0;
  /** The test's own record: last heartbeat, last graceful stop and last going offline of each host. */
  private readonly lastHeartbeat = new Map<string, number>();
  private readonly lastStop = new Map<string, number>();
  private readonly wentOffline = new Map<string, number>();
  /** Hosts whose latest message was a graceful stop (a stop and a heartbeat may share an instant). */
  private readonly stopped = new Set<string>();
  /** Until when a stall of the service protects each host from timing out (max(timeout, 3 heartbeats) after it). */
  private readonly graceUntil = new Map<string, number>();
  /** The latest result each host reported about each other host, as the engine should have taken it. */
  private readonly results = new Map<string, Map<string, { reachable: boolean; observedAt: number }>>();

  constructor(readonly world: World) {
    this.engine = new FailoverEngine(world.topology);
  }

  /** Advances the clock, running the engine's timers the way the service's one timer does. */
  advance(to: number): void {
    for (let at = this.engine.nextDeadline(); at !== undefined && at <= to; at = this.engine.nextDeadline()) {
      expect(at).toBeGreaterThanOrEqual(this.now);
      this.now = at;
      this.call(() => this.engine.evaluate(at));
    }
    this.now = to;
  }

  heartbeat(id: string, checks: HostCheckResult[]): void {
    const r = report(checks);
    this.call(() => this.engine.heartbeat(id, r, this.now));
    this.lastHeartbeat.set(id, this.now);
    this.stopped.delete(id);
    const mine = this.results.get(id) ?? new Map();
    this.results.set(id, mine);
    for (const c of checks) if (c.target !== id) mine.set(c.target, { reachable: c.reachable, observedAt: this.now - Math.min(c.ageMs, FRESH_MS) });
    // The same report again, at the same instant, is no cause for anything.
    expect(this.engine.heartbeat(id, r, this.now)).toEqual([]);
  }

  offline(id: string): void {
    const wasOnline = this.engine.hostView(id)!.online;
    this.call(() => this.engine.offline(id, this.now));
    // A stop of a host already offline changes nothing, its backoff included.
    if (wasOnline) this.lastStop.set(id, this.now);
    this.stopped.add(id);
    expect(this.engine.hostView(id)!.online).toBe(false);
  }

  /** The service stalls for `gapMs`: nothing calls the engine, then the overdue timers run at once. */
  stall(gapMs: number): void {
    this.now += gapMs;
    this.engine.resume(this.now, gapMs);
    if (gapMs > 1000) {
      for (const v of this.engine.hosts()) {
        const graceMs = Math.max(this.world.specs.get(v.hostId)!.timeout * 1000, 3000);
        if (v.online) this.graceUntil.set(v.hostId, Math.max(this.graceUntil.get(v.hostId) ?? 0, this.now + graceMs));
      }
    }
    this.call(() => this.engine.evaluate(this.now));
  }

  /** One engine call: its decisions are checked against what the views said before and after it. */
  private call(step: () => Decision[]): void {
    const before = new Map(this.engine.hosts().map((v) => [v.hostId, v]));
    const decisions = step();
    const after = this.engine.hosts();
    for (const v of after) {
      // Back while it kept the role: its time offline counts for no backoff.
      if (!before.get(v.hostId)!.online && v.online && v.role === "active") this.wentOffline.delete(v.hostId);
      if (!before.get(v.hostId)!.online || v.online) continue;
      // Every host goes offline at the instant of the call that takes it offline.
      expect(v.offlineSince).toBe(this.now);
      this.wentOffline.set(v.hostId, this.now);
    }
    for (const d of decisions) {
      expect(d.generation).toBe(this.decisions.length + 1);
      expect(d.at).toBe(this.now);
      expect(REASONS).toContain(d.reason);
      // A location loses its active host only when it stops gracefully or leaves the topology.
      if (d.to === null) expect(["offline", "topology"]).toContain(d.reason);
      if (d.to !== null) {
        // A host in backoff (by the test's own record) takes the role only when nobody else of its location is eligible.
        const backoffMs = this.world.specs.get(d.to)!.backoff * 1000;
        const off = Math.max(this.lastStop.get(d.to) ?? -Infinity, this.wentOffline.get(d.to) ?? -Infinity);
        if (d.at < off + backoffMs) {
          expect(after.filter((v) => v.location === d.location && v.eligible && v.hostId !== d.to)).toEqual([]);
        }
        // Having the role ends a backoff.
        this.lastStop.delete(d.to);
        this.wentOffline.delete(d.to);
      }
      if (d.reason === "higher-priority") {
        expect(this.world.specs.get(d.to!)!.priority).toBeGreaterThan(this.world.specs.get(d.from!)!.priority);
      }
      if (["offline", "timeout", "crash-confirmed"].includes(d.reason)) expect(this.engine.hostView(d.from!)!.online).toBe(false);
      if (d.reason === "silent") {
        // A silent active host hands over only to a host heard without a break for its timeout.
        expect(this.engine.hostView(d.from!)).toMatchObject({ online: true, silent: true });
        expect(this.now - this.lastHeartbeat.get(d.from!)!).toBeGreaterThanOrEqual(this.world.specs.get(d.from!)!.timeout * 1000);
        expect(this.engine.hostView(d.to!)).toMatchObject({ online: true, silent: false });
      }
      this.decisions.push(d);
    }
  }

  /** Whether another online host reported `id` reachable after `since`, in a result still fresh now. */
  private reached(id: string, since: number): boolean {
    for (const [reporter, mine] of this.results) {
      const r = mine.get(id);
      if (reporter !== id && this.engine.hostView(reporter)!.online && r?.reachable && r.observedAt > since && this.now < r.observedAt + FRESH_MS) return true;
    }
    return false;
  }

  checkInvariants(): void {
    const engine = this.engine;
    expect(engine.generation).toBe(this.decisions.length);
    expect(engine.evaluate(this.now)).toEqual([]);
    const views = engine.hosts();
    for (const location of new Set(views.map((v) => v.location))) {
      const here = views.filter((v) => v.location === location);
      const actives = here.filter((v) => v.role === "active");
      expect(actives.length).toBeLessThanOrEqual(1);
      const active = engine.activeHost("corp", location);
      expect(actives.map((v) => v.hostId)).toEqual(active === null ? [] : [active]);
      // Never dark while a host of the location is online and heard (a silent one could not be told).
      if (here.some((v) => v.online && !v.silent)) expect(actives[0]).toMatchObject({ online: true });
      const eligible = here.filter((v) => v.eligible);
      if (eligible.length === 0) continue;
      expect(actives[0]).toMatchObject({ eligible: true, online: true, status: "active" });
      const best = Math.max(...eligible.map((v) => this.world.specs.get(v.hostId)!.priority));
      expect(this.world.specs.get(active!)!.priority).toBe(best);
    }
    for (const v of views) {
      expect(v.eligible).toBe(v.status === "active" || v.status === "available");
      const beat = this.lastHeartbeat.get(v.hostId);
      if (beat === undefined) continue;
      if (this.stopped.has(v.hostId)) {
        expect(v.online).toBe(false);
        continue;
      }
      const timeoutMs = this.world.specs.get(v.hostId)!.timeout * 1000;
      // Silent past its timeout, a host stays online only while others still reach it (or a stall's grace lasts).
      if (this.now >= beat + timeoutMs && v.online && this.now >= (this.graceUntil.get(v.hostId) ?? 0)) {
        expect(v.silent).toBe(true);
        expect(this.reached(v.hostId, beat)).toBe(true);
      }
      // Without a graceful stop, a host is never declared down while it heartbeats within crashConfirm.
      if (!v.online) expect(v.offlineSince! - beat).toBeGreaterThanOrEqual(CRASH_CONFIRM_MS);
      else expect(v.lastSeen).toBe(beat);
    }
  }
}

function run(world: World, steps: { dt: number; event: Event }[], faults: Faults, h: Harness): void {
  for (const { dt, event } of steps) {
    h.advance(h.now + dt);
    // Reloading the same document is no cause for anything either.
    if (event.kind === "reload") expect(h.engine.setTopology(world.topology, h.now)).toEqual([]);
    else if (event.kind === "stall") h.stall(dt);
    else if (event.kind !== "wait") {
      const id = world.ids[event.host % world.ids.length]!;
      if (event.kind === "crash") faults.crashed.add(id);
      else if (event.kind === "revive") faults.crashed.delete(id);
      else if (event.kind === "cut") faults.cut.add(id);
      else if (event.kind === "heal") faults.cut.delete(id);
      else if (!faults.crashed.has(id)) {
        if (event.kind === "offline") h.offline(id);
        else {
          const checks = event.honest
            ? honestChecks(world, id, faults)
            : event.checks.map((c) => ({ ...c, target: world.ids[c.target % world.ids.length]!, failures: c.reachable ? 0 : c.failures }));
          h.heartbeat(id, checks);
        }
      }
    }
    h.checkInvariants();
  }
}

/** Every live host heartbeats once a second with honest reports, for `ms`. */
function steady(world: World, h: Harness, faults: Faults, ms: number): void {
  const end = h.now + ms;
  while (h.now + 1000 <= end) {
    h.advance(h.now + 1000);
    for (const id of world.ids) if (!faults.crashed.has(id)) h.heartbeat(id, honestChecks(world, id, faults));
    h.checkInvariants();
  }
}

describe("failover engine properties", () => {
  it("keeps every invariant under random events", () => {
    fc.assert(
      fc.property(worldArb, fc.array(eventArb, { minLength: 1, maxLength: 120 }), (world, steps) => {
        run(world, steps, noFaults(), new Harness(world));
      }),
      { numRuns: 300 },
    );
  });

  it("settles under steady input and then makes no decision at all", () => {
    fc.assert(
      fc.property(worldArb, fc.array(eventArb, { maxLength: 60 }), (world, steps) => {
        const h = new Harness(world);
        const faults = noFaults();
        run(world, steps, faults, h);
        const healed = noFaults();
        // Longer than the largest backoff plus timeout, so every host is back and eligible.
        steady(world, h, healed, 20_000);
        const settled = h.decisions.length;
        steady(world, h, healed, 30_000);
        expect(h.decisions.slice(settled)).toEqual([]);
        expect(h.engine.hosts().every((v) => v.eligible)).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  it("restores a snapshot taken at any point without changing a role", () => {
    fc.assert(
      fc.property(worldArb, fc.array(eventArb, { maxLength: 80 }), (world, steps) => {
        const h = new Harness(world);
        run(world, steps, noFaults(), h);
        const snapshot = JSON.parse(JSON.stringify(h.engine.snapshot()));
        const restored = FailoverEngine.restore(world.topology, snapshot, h.now);
        expect(restored.evaluate(h.now)).toEqual([]);
        expect(restored.generation).toBe(h.engine.generation);
        // Host checks and silence are not persisted: a partitioned host shows as unjudged, a silent one as
        // heard again. That is available, or in backoff when it handed its role over for its silence
        // within its backoff (heard again, it would be in backoff too).
        const inBackoff = (v: HostView) => v.role !== "active" && v.offlineSince !== null && h.now < v.offlineSince + world.specs.get(v.hostId)!.backoff * 1000;
        const unjudged = (views: HostView[]) =>
          views.map((v) => ({
            ...v,
            silent: false,
            ...(v.status === "partitioned" || v.status === "silent" ? (inBackoff(v) ? { status: "backoff", eligible: false } : { status: "available", eligible: true }) : {}),
          }));
        expect(unjudged(restored.hosts())).toEqual(unjudged(h.engine.hosts()));
      }),
      { numRuns: 150 },
    );
  });

  it("confirms the crash of an active host with a live standby at crashConfirm or at the first report after it", () => {
    fc.assert(
      fc.property(
        worldArb.filter((w) => w.topology.links[0]!.locations.some((l) => l.hosts.length >= 2)),
        fc.integer({ min: 0, max: 999 }),
        (world, offset) => {
          const h = new Harness(world);
          const faults = noFaults();
          steady(world, h, faults, 20_000);
          const location = world.topology.links[0]!.locations.find((l) => l.hosts.length >= 2)!.name;
          const victim = h.engine.activeHost("corp", location)!;
          const lastBeat = h.engine.hostView(victim)!.lastSeen!;
          faults.crashed.add(victim);
          h.advance(h.now + offset);
          steady(world, h, faults, 3000);
          // The first honest reports after the crash come one report period after the offset; the
          // standby's failed probe confirms the crash then, or at crashConfirm if that is later.
          const confirmedAt = lastBeat + Math.max(CRASH_CONFIRM_MS, offset + 1000);
          expect(h.engine.hostView(victim)).toMatchObject({ online: false, offlineSince: confirmedAt });
          // Peers may have lost it first (every peer host reports it down): the role moves no later.
          const handover = h.decisions.find((d) => d.from === victim)!;
          expect(["crash-confirmed", "peers-lost"]).toContain(handover.reason);
          expect(handover.to).not.toBeNull();
          expect(handover.at).toBeLessThanOrEqual(confirmedAt);
        },
      ),
      { numRuns: 100 },
    );
  });

  it("changes no role while a location cannot reach the state service, however long, in whatever order its hosts return within a timeout", () => {
    // Cut for longer than any timeout (every host of the location silent), back within less than the
    // shortest timeout (2 s) of each other: a host heard for a whole timeout while the active host
    // is silent takes its role (engine.test.ts, the silent handover).
    fc.assert(
      fc.property(
        worldArb,
        fc.nat(),
        fc.integer({ min: 6000, max: 40_000 }),
        fc.array(fc.integer({ min: 0, max: 1900 }), { minLength: 3, maxLength: 3 }),
        (world, pick, cutMs, returnDelays) => {
          const h = new Harness(world);
          const faults = noFaults();
          steady(world, h, faults, 20_000);
          const settled = h.decisions.length;
          const locations = world.topology.links[0]!.locations;
          const cut = locations[pick % locations.length]!.hosts.map((x) => x.id);
          // The cut location's polls do not arrive; its tunnels and host checks work.
          const end = h.now + cutMs;
          while (h.now + 1000 <= end) {
            h.advance(h.now + 1000);
            for (const id of world.ids) if (!cut.includes(id)) h.heartbeat(id, honestChecks(world, id, faults));
            h.checkInvariants();
          }
          // Its hosts come back one by one, in random order and spacing, while the others keep reporting.
          const from = h.now;
          const returns = new Map(cut.map((id, i) => [id, from + returnDelays[i % returnDelays.length]!]));
          const beats: { id: string; at: number }[] = [];
          for (const id of world.ids) {
            for (let at = returns.get(id) ?? from + 1000; at < from + 5000; at += 1000) beats.push({ id, at });
          }
          for (const { id, at } of beats.sort((a, b) => a.at - b.at)) {
            h.advance(at);
            h.heartbeat(id, honestChecks(world, id, faults));
            h.checkInvariants();
          }
          steady(world, h, faults, 15_000);
          expect(h.decisions.slice(settled)).toEqual([]);
        },
      ),
      { numRuns: 150 },
    );
  });

  it("hands the role of an active host cut from the state service alone to a heard host at its timeout, never earlier", () => {
    fc.assert(
      fc.property(worldArb, fc.nat(), fc.integer({ min: 1000, max: 30_000 }), (world, pick, cutMs) => {
        const h = new Harness(world);
        const faults = noFaults();
        steady(world, h, faults, 20_000);
        const settled = h.decisions.length;
        const locations = world.topology.links[0]!.locations.filter((l) => l.hosts.length > 1);
        fc.pre(locations.length > 0);
        const location = locations[pick % locations.length]!;
        const active = h.engine.activeHost("corp", location.name)!;
        const lastBeat = h.now;
        // Only the active host's polls are lost; everybody still reaches it, it reaches everybody.
        const end = h.now + cutMs;
        while (h.now + 1000 <= end) {
          h.advance(h.now + 1000);
          for (const id of world.ids) if (id !== active) h.heartbeat(id, honestChecks(world, id, faults));
          h.checkInvariants();
        }
        const moved = h.decisions.slice(settled);
        const timeoutMs = world.specs.get(active)!.timeout * 1000;
        if (cutMs < timeoutMs) expect(moved).toEqual([]);
        else {
          // Once, at its timeout, to the best host of its location; nothing elsewhere.
          const best = location.hosts.filter((x) => x.id !== active).sort((a, b) => b.priority - a.priority || (a.id < b.id ? -1 : 1))[0]!;
          expect(moved).toEqual([expect.objectContaining({ location: location.name, from: active, to: best.id, reason: "silent", at: lastBeat + timeoutMs })]);
        }
      }),
      { numRuns: 150 },
    );
  });

  it("changes no role after the service itself stalls, once the waiting heartbeats are read", () => {
    fc.assert(
      fc.property(worldArb, fc.integer({ min: 1001, max: 60_000 }), fc.array(fc.nat(), { maxLength: 9 }), (world, stallMs, order) => {
        const h = new Harness(world);
        const faults = noFaults();
        steady(world, h, faults, 20_000);
        const settled = h.decisions.length;
        // Nothing runs for stallMs; then the timers fire first, and the queued heartbeats follow in any order.
        h.stall(stallMs);
        const ids = [...world.ids].sort((a, b) => (order[world.ids.indexOf(a)] ?? 0) - (order[world.ids.indexOf(b)] ?? 0));
        for (const id of ids) h.heartbeat(id, honestChecks(world, id, faults));
        h.checkInvariants();
        steady(world, h, faults, 15_000);
        expect(h.decisions.slice(settled)).toEqual([]);
      }),
      { numRuns: 150 },
    );
  });
});

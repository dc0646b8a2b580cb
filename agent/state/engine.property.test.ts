// Property tests of the failover engine: random topologies, random event sequences (heartbeats with
// honest or arbitrary host-check reports, graceful stops, crashes, time passing), invariants checked
// after every step. Time is a plain number; the engine's timers are run the way the service runs them.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DEFAULTS, type Topology } from "../../lib/topology";
import type { HostCheckResult } from "../protocol";
import { FailoverEngine, type Decision, type HostView } from "./engine";
import { report, topologyOf, type HostSpec } from "./engine/fixtures";

const T0 = 1_700_000_000_000;
const CRASH_CONFIRM_MS = DEFAULTS.timing.crashConfirm * 1000;
const REASONS = ["initial", "higher-priority", "offline", "timeout", "crash-confirmed", "partitioned", "peers-lost", "backoff-ended", "online", "host-checks"];

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
  /** The test's own record of the last heartbeat and the last graceful stop of each host. */
  private readonly lastHeartbeat = new Map<string, number>();
  private readonly lastStop = new Map<string, number>();
  /** Hosts whose latest message was a graceful stop (a stop and a heartbeat may share an instant). */
  private readonly stopped = new Set<string>();

  constructor(readonly world: World) {
    this.engine = new FailoverEngine(world.topology, T0);
  }

  /** Advances the clock, running the engine's timers the way the service's one timer does. */
  advance(to: number): void {
    for (let at = this.engine.nextDeadline(); at !== undefined && at <= to; at = this.engine.nextDeadline()) {
      expect(at).toBeGreaterThanOrEqual(this.now);
      this.now = at;
      this.take(this.engine.evaluate(at));
    }
    this.now = to;
  }

  heartbeat(id: string, checks: HostCheckResult[]): void {
    const r = report(checks);
    this.take(this.engine.heartbeat(id, r, this.now));
    this.lastHeartbeat.set(id, this.now);
    this.stopped.delete(id);
    // The same report again, at the same instant, is no cause for anything.
    expect(this.engine.heartbeat(id, r, this.now)).toEqual([]);
  }

  offline(id: string): void {
    const wasOnline = this.engine.hostView(id)!.online;
    this.take(this.engine.offline(id, this.now));
    // A stop of a host already offline changes nothing, its backoff included.
    if (wasOnline) this.lastStop.set(id, this.now);
    this.stopped.add(id);
    expect(this.engine.hostView(id)!.online).toBe(false);
  }

  private take(decisions: Decision[]): void {
    for (const d of decisions) {
      expect(d.generation).toBe(this.decisions.length + 1);
      expect(d.at).toBe(this.now);
      expect(REASONS).toContain(d.reason);
      if (d.to !== null) {
        // A host in backoff never becomes active.
        const backoffMs = this.world.specs.get(d.to)!.backoff * 1000;
        const stop = this.lastStop.get(d.to);
        if (stop !== undefined) expect(d.at).toBeGreaterThanOrEqual(stop + backoffMs);
        const since = this.engine.hostView(d.to)!.offlineSince;
        if (since !== null) expect(d.at).toBeGreaterThanOrEqual(since + backoffMs);
      }
      if (d.reason === "higher-priority") {
        expect(this.world.specs.get(d.to!)!.priority).toBeGreaterThan(this.world.specs.get(d.from!)!.priority);
      }
      if (["offline", "timeout", "crash-confirmed"].includes(d.reason)) expect(this.engine.hostView(d.from!)!.online).toBe(false);
      this.decisions.push(d);
    }
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
      const eligible = here.filter((v) => v.eligible);
      if (eligible.length === 0) {
        expect(active).toBeNull();
        continue;
      }
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
      if (this.now >= beat + timeoutMs) expect(v.online).toBe(false);
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
        // Host checks are not persisted: a partitioned host shows as available until judged again.
        const unjudged = (views: HostView[]) => views.map((v) => (v.status === "partitioned" ? { ...v, status: "available", eligible: true } : v));
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
});

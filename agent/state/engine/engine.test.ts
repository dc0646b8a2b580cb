import { describe, expect, it } from "vitest";
import { FailoverEngine, SnapshotError, UnknownHostError, type Decision } from ".";
import { check, report, topologyOf } from "../../../test/support/engine-fixtures";
import type { HostCheckResult } from "../../contract/protocol";

const T0 = 1_700_000_000_000;

/** east: a (priority 2) and b; west: c and d. Defaults: timeout 5 s, backoff 10 s, crashConfirm 1.5 s. */
const twoSites = () =>
  topologyOf({ east: [{ id: "a", priority: 2 }, { id: "b" }], west: [{ id: "c" }, { id: "d" }] });

/** Runs the engine's timers up to `until` the way the service does: evaluate at each nextDeadline. */
function drive(engine: FailoverEngine, until: number): Decision[] {
  const decisions: Decision[] = [];
  for (let at = engine.nextDeadline(); at !== undefined && at <= until; at = engine.nextDeadline()) {
    decisions.push(...engine.evaluate(at));
  }
  return decisions;
}

/** Heartbeats of `ids` at `now` (each with the checks given for it), timers run first. */
function beat(engine: FailoverEngine, now: number, ids: string[], checks: Record<string, HostCheckResult[]> = {}): Decision[] {
  const decisions = drive(engine, now);
  for (const id of ids) decisions.push(...engine.heartbeat(id, report(checks[id] ?? []), now));
  return decisions;
}

/** Every host heartbeats once a second from `from` to `to` (exclusive), timers running in between. */
function steady(engine: FailoverEngine, from: number, to: number, ids: string[], checks: Record<string, HostCheckResult[]> = {}): Decision[] {
  const decisions: Decision[] = [];
  for (let t = from; t < to; t += 1000) decisions.push(...beat(engine, t, ids, checks));
  return decisions.concat(drive(engine, to - 1));
}

const east = (decisions: Decision[]) => decisions.filter((d) => d.location === "east");

/**
 * An engine whose `ids` have been online and heartbeating since T0 - 2 s, so that by T0 they are
 * settled (LinkTiming.settleMs = 1.9 s): reports from them and about them count as evidence.
 */
function onlineBefore(ids: string[], topology = twoSites()): FailoverEngine {
  const engine = new FailoverEngine(topology);
  steady(engine, T0 - 2000, T0, ids);
  return engine;
}

const decision = (at: number, from: string | null, to: string | null, reason: string, location = "east") =>
  expect.objectContaining({ at, link: "corp", location, from, to, reason });

describe("failover engine: liveness and election", () => {
  it("makes the first host active, then hands over to a higher priority host", () => {
    const engine = new FailoverEngine(twoSites());
    expect(engine.heartbeat("b", report(), T0)).toEqual([{ generation: 1, at: T0, link: "corp", location: "east", from: null, to: "b", reason: "initial" }]);
    expect(engine.heartbeat("a", report(), T0 + 10)).toEqual([{ generation: 2, at: T0 + 10, link: "corp", location: "east", from: "b", to: "a", reason: "higher-priority" }]);
    expect(engine.activeHost("corp", "east")).toBe("a");
    expect(engine.hostView("a")).toEqual({
      hostId: "a", link: "corp", location: "east", status: "active", online: true, silent: false, eligible: true, lastSeen: T0 + 10, offlineSince: null, role: "active",
    });
    expect(engine.hostView("b")).toMatchObject({ status: "available", role: "standby", eligible: true });
    expect(engine.hostView("c")).toMatchObject({ status: "offline", online: false, lastSeen: null });
    expect(engine.generation).toBe(2);
  });

  it("says which hosts are in service (online, or offline but still active) and which came or went", () => {
    const engine = new FailoverEngine(twoSites());
    expect(engine.inService("a")).toBe(false);
    beat(engine, T0, ["a", "b", "c"]);
    expect(engine.takeServiceChanges()).toEqual(["a", "b", "c"]);
    expect(engine.takeServiceChanges()).toEqual([]);
    engine.offline("b", T0 + 100);
    expect(engine.inService("b")).toBe(false);
    expect(engine.takeServiceChanges()).toEqual(["b"]);
    // b is back; a heartbeat of a host already online is no change.
    expect(steady(engine, T0 + 1000, T0 + 6000, ["a", "b"])).toEqual([]);
    // c, west's only host, timed out: offline, but it keeps the role, so it stays in service.
    expect(engine.takeServiceChanges()).toEqual(["b", "c"]);
    expect(engine.hostView("c")).toMatchObject({ online: false, role: "active" });
    expect([engine.inService("a"), engine.inService("b"), engine.inService("c"), engine.inService("d"), engine.inService("unknown")]).toEqual([
      true, true, true, false, false,
    ]);
  });

  it("takes a silent host offline after its timeout, not before", () => {
    const engine = new FailoverEngine(twoSites());
    beat(engine, T0, ["a", "b"]);
    expect(steady(engine, T0 + 1000, T0 + 5000, ["b"])).toEqual([]);
    expect(engine.hostView("a")).toMatchObject({ online: true, status: "active" });
    expect(engine.nextDeadline()).toBe(T0 + 5000);
    expect(drive(engine, T0 + 5000)).toEqual([decision(T0 + 5000, "a", "b", "timeout")]);
    expect(engine.hostView("a")).toMatchObject({ online: false, status: "offline", offlineSince: T0 + 5000 });
  });

  it("takes a host offline at once on a graceful stop and holds it in backoff when it returns", () => {
    const engine = new FailoverEngine(twoSites());
    beat(engine, T0, ["a", "b"]);
    expect(engine.offline("a", T0 + 100)).toEqual([decision(T0 + 100, "a", "b", "offline")]);
    expect(engine.offline("a", T0 + 150)).toEqual([]);
    expect(engine.heartbeat("a", report(), T0 + 200)).toEqual([]);
    expect(engine.hostView("a")).toMatchObject({ online: true, status: "backoff", eligible: false, offlineSince: T0 + 100 });
    // a's backoff is 10 s from going offline; it may take the role back then, not earlier.
    expect(steady(engine, T0 + 1200, T0 + 10_100, ["a", "b"])).toEqual([]);
    expect(drive(engine, T0 + 10_100)).toEqual([decision(T0 + 10_100, "b", "a", "higher-priority")]);
  });

  it("makes a returning host active at once despite its backoff when no host is eligible", () => {
    const engine = new FailoverEngine(topologyOf({ east: [{ id: "a", backoff: 3 }], west: [{ id: "c" }] }));
    beat(engine, T0, ["a"]);
    expect(engine.offline("a", T0 + 500)).toEqual([decision(T0 + 500, "a", null, "offline")]);
    // Backoff keeps a returning host from taking the role from an eligible one, never a location dark.
    expect(beat(engine, T0 + 1000, ["a"])).toEqual([decision(T0 + 1000, null, "a", "online")]);
    expect(engine.hostView("a")).toMatchObject({ status: "active", eligible: true });
    expect(steady(engine, T0 + 2000, T0 + 6000, ["a"])).toEqual([]);
  });

  it("gives the role to the best returning host in backoff, and takes it back for priority when backoff ends", () => {
    const engine = new FailoverEngine(twoSites());
    beat(engine, T0, ["a", "b"]);
    engine.offline("b", T0 + 100);
    expect(engine.offline("a", T0 + 200)).toEqual([decision(T0 + 200, "a", null, "offline")]);
    // b is back first, in backoff: it gets the role, and with it the end of its backoff.
    expect(beat(engine, T0 + 1000, ["b", "a"])).toEqual([decision(T0 + 1000, null, "b", "online")]);
    expect(engine.hostView("b")!.status).toBe("active");
    // a (priority 2), back in backoff too, may not take the role from an eligible host before its backoff ends.
    expect(engine.hostView("a")!.status).toBe("backoff");
    expect(steady(engine, T0 + 2000, T0 + 10_201, ["a", "b"])).toEqual([decision(T0 + 10_200, "b", "a", "higher-priority")]);
  });

  it("keeps the current active host among equals and otherwise picks by host id", () => {
    const engine = new FailoverEngine(topologyOf({ east: [{ id: "x3" }, { id: "x1" }, { id: "x2" }], west: [{ id: "w" }] }));
    expect(beat(engine, T0, ["x2"])).toEqual([decision(T0, null, "x2", "initial")]);
    expect(beat(engine, T0 + 10, ["x3", "x1"])).toEqual([]);
    expect(engine.offline("x2", T0 + 20)).toEqual([decision(T0 + 20, "x2", "x1", "offline")]);
    // x2 returns and leaves backoff: equal priority, so x1 keeps the role.
    expect(steady(engine, T0 + 1000, T0 + 15_000, ["x1", "x2", "x3"])).toEqual([]);
    expect(engine.activeHost("corp", "east")).toBe("x1");
  });

  it("leaves a location without an active host only when its last host stops gracefully", () => {
    const engine = new FailoverEngine(twoSites());
    beat(engine, T0, ["a", "b"]);
    engine.offline("a", T0 + 1);
    expect(engine.offline("b", T0 + 2)).toEqual([decision(T0 + 2, "b", null, "offline")]);
    expect(engine.activeHost("corp", "east")).toBeNull();
    expect(engine.hosts().filter((h) => h.role === "active").map((h) => h.hostId)).toEqual([]);
  });

  it("keeps a timed-out active host's role while no host of its location is online", () => {
    const engine = new FailoverEngine(twoSites());
    beat(engine, T0, ["a", "b", "c", "d"]);
    // East goes silent and nobody reports host checks: nothing shows east alive, nothing could do better.
    expect(steady(engine, T0 + 1000, T0 + 5000, ["c", "d"])).toEqual([]);
    expect(east(drive(engine, T0 + 5000))).toEqual([]);
    expect(engine.activeHost("corp", "east")).toBe("a");
    expect(engine.hostView("a")).toMatchObject({ online: false, status: "offline", role: "active", offlineSince: T0 + 5000 });
    // a comes back first: it kept the role, so it has no backoff to wait out.
    expect(beat(engine, T0 + 6000, ["a"])).toEqual([]);
    expect(engine.hostView("a")).toMatchObject({ online: true, status: "active", offlineSince: null });
    expect(east(steady(engine, T0 + 7000, T0 + 20_000, ["a", "b", "c", "d"]))).toEqual([]);
  });

  it("hands a timed-out active host's role to the first host of its location back online", () => {
    const engine = new FailoverEngine(twoSites());
    beat(engine, T0, ["a", "b", "c", "d"]);
    steady(engine, T0 + 1000, T0 + 5000, ["c", "d"]);
    drive(engine, T0 + 5000);
    // b is back first, in backoff: a location is never left dark while a host of it is online.
    expect(beat(engine, T0 + 6000, ["b"])).toEqual([decision(T0 + 6000, "a", "b", "timeout")]);
    expect(beat(engine, T0 + 6500, ["a"])).toEqual([]);
    expect(engine.hostView("a")!.status).toBe("backoff");
    // a (priority 2) takes the role back once its backoff, counted from going offline, is over.
    expect(east(steady(engine, T0 + 7000, T0 + 15_001, ["a", "b"]))).toEqual([decision(T0 + 15_000, "b", "a", "higher-priority")]);
  });

  it("refuses unknown hosts with an error naming them", () => {
    const engine = new FailoverEngine(twoSites());
    expect(() => engine.heartbeat("nope", report(), T0)).toThrow(UnknownHostError);
    expect(() => engine.offline("nope", T0)).toThrow('unknown host "nope"');
    expect(engine.hostView("nope")).toBeUndefined();
  });

  it("needs no timer while no host is online", () => {
    const engine = new FailoverEngine(twoSites());
    expect(engine.nextDeadline()).toBeUndefined();
    expect(engine.evaluate(T0 + 60_000)).toEqual([]);
  });
});

describe("failover engine: crash confirmation", () => {
  /** Everyone up at T0, reaching everyone; a is active. */
  function upAtT0() {
    const engine = onlineBefore(["a", "b", "c", "d"]);
    beat(engine, T0, ["a", "b", "c", "d"], {
      b: [check("a", true), check("c", true), check("d", true)],
      c: [check("a", true), check("b", true)],
      d: [check("a", true), check("b", true)],
    });
    expect(engine.activeHost("corp", "east")).toBe("a");
    return engine;
  }

  it("confirms a crash crashConfirm after the last heartbeat when the standby's probe fails", () => {
    const engine = upAtT0();
    // b's urgent report: its second probe of a in a row failed 100 ms ago, while it still reaches the peers.
    expect(engine.heartbeat("b", report([check("a", false, 100, 2), check("c", true), check("d", true)]), T0 + 900)).toEqual([]);
    expect(engine.nextDeadline()).toBe(T0 + 1500);
    expect(drive(engine, T0 + 1499)).toEqual([]);
    expect(drive(engine, T0 + 1500)).toEqual([decision(T0 + 1500, "a", "b", "crash-confirmed")]);
    expect(engine.hostView("a")).toMatchObject({ online: false, offlineSince: T0 + 1500 });
  });

  it("does not take one lost probe and a late poll for a crash", () => {
    const engine = upAtT0();
    // One failed probe only (a lost packet), and a's next poll comes 300 ms late (a far-away service, a busy agent).
    expect(engine.heartbeat("b", report([check("a", false, 50, 1), check("c", true), check("d", true)]), T0 + 1200)).toEqual([]);
    expect(drive(engine, T0 + 1800)).toEqual([]);
    expect(engine.heartbeat("a", report([check("b", true), check("c", true), check("d", true)]), T0 + 1300)).toEqual([]);
    expect(engine.hostView("a")).toMatchObject({ online: true, status: "active" });
  });

  it("confirms a crash from a peer location's report, at once when the host is already quiet long enough", () => {
    const engine = upAtT0();
    expect(engine.heartbeat("c", report([check("a", false, 50), check("b", true)]), T0 + 1600)).toEqual([
      decision(T0 + 1600, "a", "b", "crash-confirmed"),
    ]);
  });

  it("ignores a failure observed before the host's last heartbeat", () => {
    const engine = upAtT0();
    // Observed at T0 - 100: before a's heartbeat at T0, so it says nothing about a now.
    engine.heartbeat("b", report([check("a", false, 1600), check("c", true)]), T0 + 1500);
    expect(steady(engine, T0 + 2000, T0 + 5000, ["b", "c", "d"])).toEqual([]);
    expect(drive(engine, T0 + 5000)).toEqual([decision(T0 + 5000, "a", "b", "timeout")]);
  });

  it("does not believe a witness that reaches nobody: it may be the one cut off", () => {
    const engine = upAtT0();
    engine.heartbeat("b", report([check("a", false), check("c", false), check("d", false)]), T0 + 1300);
    expect(drive(engine, T0 + 4999)).toEqual([]);
    expect(east(drive(engine, T0 + 5000))).toEqual([decision(T0 + 5000, "a", "b", "timeout")]);
  });

  it("does not believe a witness that has gone offline since", () => {
    const engine = upAtT0();
    engine.heartbeat("b", report([check("a", false, 0, 1), check("c", true)]), T0 + 600);
    engine.offline("b", T0 + 700);
    expect(drive(engine, T0 + 4999)).toEqual([]);
    expect(engine.hostView("a")!.online).toBe(true);
  });

  it("never declares a host crashed while it keeps heartbeating", () => {
    const engine = upAtT0();
    const failing = { b: [check("a", false), check("c", true)], c: [check("a", false), check("b", true)] };
    expect(steady(engine, T0 + 1000, T0 + 20_000, ["a", "b", "c", "d"], failing)).toEqual([]);
    expect(engine.hostView("a")).toMatchObject({ online: true, status: "active" });
  });
});

describe("failover engine: partitions", () => {
  const reachAll = [check("c", true), check("d", true)];
  const reachNone = [check("c", false), check("d", false)];

  it("demotes an active host that reaches fewer peers, once that has lasted, and takes it back when healed", () => {
    const engine = onlineBefore(["c", "d"]);
    expect(east(beat(engine, T0, ["a", "b", "c", "d"], { a: reachNone, b: reachAll }))).toEqual([decision(T0, null, "a", "initial")]);
    expect(engine.hostView("a")!.status).toBe("active");
    // a has been behind since b's report at T0; the partition is confirmed 1.65 s later.
    expect(drive(engine, T0 + 999)).toEqual([]);
    expect(beat(engine, T0 + 1000, ["a", "b", "c", "d"], { a: reachNone, b: reachAll })).toEqual([]);
    expect(drive(engine, T0 + 1650)).toEqual([decision(T0 + 1650, "a", "b", "partitioned")]);
    expect(engine.hostView("a")).toMatchObject({ status: "partitioned", eligible: false, online: true });
    expect(steady(engine, T0 + 2000, T0 + 8000, ["a", "b", "c", "d"], { a: reachNone, b: reachAll })).toEqual([]);
    expect(beat(engine, T0 + 8000, ["a"], { a: reachAll })).toEqual([decision(T0 + 8000, "b", "a", "higher-priority")]);
  });

  it("does not count one lost probe as a partition", () => {
    const engine = onlineBefore(["c", "d"]);
    const oneLost = [check("c", false, 0, 1), check("d", true)];
    expect(east(steady(engine, T0, T0 + 10_000, ["a", "b", "c", "d"], { a: oneLost, b: reachAll })).map((d) => d.reason)).toEqual(["initial"]);
    expect(engine.activeHost("corp", "east")).toBe("a");
  });

  it("ignores stale results: a host whose reports stopped mentioning peers is not judged on old ones", () => {
    const engine = new FailoverEngine(twoSites());
    beat(engine, T0, ["a", "b"], { a: [check("c", false, 3000), check("d", false, 3000)], b: reachAll });
    expect(steady(engine, T0 + 1000, T0 + 10_000, ["a", "b"]).map((d) => d.reason)).toEqual([]);
    expect(engine.activeHost("corp", "east")).toBe("a");
  });

  it("demotes an active host that every peer host has lost and that reaches no peer either, even while it heartbeats", () => {
    const engine = onlineBefore(["a", "b", "c", "d"]);
    beat(engine, T0, ["a", "b", "c", "d"]);
    const lostA = [check("a", false, 0, 2), check("b", true)];
    engine.heartbeat("a", report(reachNone), T0 + 200);
    expect(engine.heartbeat("c", report(lostA), T0 + 300)).toEqual([]);
    expect(engine.heartbeat("d", report(lostA), T0 + 310)).toEqual([decision(T0 + 310, "a", "b", "peers-lost")]);
    expect(engine.hostView("a")).toMatchObject({ status: "partitioned", online: true });
    expect(beat(engine, T0 + 1000, ["a", "b"])).toEqual([]);
    expect(engine.heartbeat("c", report([check("a", true), check("b", true)]), T0 + 1300)).toEqual([
      decision(T0 + 1300, "b", "a", "higher-priority"),
    ]);
  });

  it("stops relying on the peers' verdict when it goes stale, at that instant", () => {
    const engine = onlineBefore(["a", "b", "c", "d"]);
    beat(engine, T0, ["a", "b", "c", "d"]);
    const lostA = [check("a", false, 0, 2), check("b", true)];
    engine.heartbeat("a", report(reachNone), T0 + 300);
    engine.heartbeat("c", report(lostA), T0 + 300);
    expect(engine.heartbeat("d", report(lostA), T0 + 310)).toEqual([decision(T0 + 310, "a", "b", "peers-lost")]);
    // a's and c's results (observed at T0 + 300) are fresh for heartbeat + probeTimeout + 3 probeIntervals = 2.15 s.
    expect(steady(engine, T0 + 1000, T0 + 2450, ["a", "b", "c", "d"])).toEqual([]);
    expect(engine.nextDeadline()).toBe(T0 + 2450);
    expect(drive(engine, T0 + 2450)).toEqual([decision(T0 + 2450, "b", "a", "higher-priority")]);
  });

  it("does not demote an active host on its peers' failed probes alone while it reaches its peers and its neighbour reaches it (a flooded listener)", () => {
    const engine = onlineBefore(["a", "b", "c", "d"]);
    const lostA = [check("a", false, 0, 5), check("b", true)];
    const flooded = { a: [...reachAll, check("b", true)], b: [...reachAll, check("a", true)], c: lostA, d: lostA };
    expect(steady(engine, T0, T0 + 10_000, ["a", "b", "c", "d"], flooded)).toEqual([]);
    expect(engine.hostView("a")).toMatchObject({ status: "active", eligible: true });
  });

  it("demotes a host its peers lost when its own neighbour cannot reach it either (cables cut), before the crash is confirmed", () => {
    const engine = onlineBefore(["a", "b", "c", "d"]);
    beat(engine, T0, ["a", "b", "c", "d"], { a: reachAll });
    const lostA = [check("a", false, 0, 2), check("b", true)];
    // a's last report still says it reaches c and d; b, c and d no longer reach it.
    engine.heartbeat("b", report([check("a", false, 0, 2), check("c", true)]), T0 + 300);
    engine.heartbeat("c", report(lostA), T0 + 300);
    expect(engine.heartbeat("d", report(lostA), T0 + 310)).toEqual([decision(T0 + 310, "a", "b", "peers-lost")]);
  });

  it("does not demote for lost peers when no other host is reached by them", () => {
    const engine = new FailoverEngine(twoSites());
    beat(engine, T0, ["a", "b", "c", "d"]);
    const lostBoth = [check("a", false, 0, 2), check("b", false, 0, 2)];
    expect(steady(engine, T0 + 1000, T0 + 6000, ["a", "b", "c", "d"], { c: lostBoth, d: lostBoth })).toEqual([]);
    expect(engine.activeHost("corp", "east")).toBe("a");
  });

  it("never demotes a lone host", () => {
    const engine = new FailoverEngine(topologyOf({ solo: [{ id: "s" }], west: [{ id: "c" }, { id: "d" }] }));
    beat(engine, T0, ["s", "c", "d"]);
    const lostS = [check("s", false, 0, 5)];
    expect(steady(engine, T0 + 1000, T0 + 8000, ["s", "c", "d"], { s: reachNone, c: lostS, d: lostS })).toEqual([]);
    expect(engine.hostView("s")).toMatchObject({ status: "active", eligible: true });
  });

  it("keeps the only candidate when the other host is in backoff", () => {
    const engine = new FailoverEngine(twoSites());
    beat(engine, T0, ["a", "b", "c", "d"]);
    engine.offline("b", T0 + 100);
    const lostA = [check("a", false, 0, 3), check("b", true)];
    expect(steady(engine, T0 + 1000, T0 + 6000, ["a", "b", "c", "d"], { a: reachNone, b: reachAll, c: lostA, d: lostA })).toEqual([]);
    expect(engine.activeHost("corp", "east")).toBe("a");
  });
});

describe("failover engine: restart and reload", () => {
  it("restores a snapshot without changing any role, and gives hosts a grace period", () => {
    const engine = new FailoverEngine(twoSites());
    steady(engine, T0, T0 + 3000, ["a", "b", "c", "d"]);
    const snapshot = JSON.parse(JSON.stringify(engine.snapshot()));
    const restoredAt = T0 + 6000; // the service was down for about 4 s: longer than nothing, shorter than the timeout
    const restored = FailoverEngine.restore(twoSites(), snapshot, restoredAt);
    expect(restored.generation).toBe(engine.generation);
    expect(restored.hosts()).toEqual(engine.hosts());
    expect(restored.evaluate(restoredAt)).toEqual([]);
    // The hosts come back; a (active) never does. A standby witnesses it, but no host may go
    // offline before the grace period, max(timeout 5 s, 3 heartbeats) = 5 s, is over.
    const witness = { b: [check("a", false), check("c", true)] };
    expect(steady(restored, restoredAt + 700, restoredAt + 5000, ["b", "c", "d"], witness)).toEqual([]);
    expect(restored.hostView("a")!.online).toBe(true);
    expect(drive(restored, restoredAt + 5000)).toEqual([decision(restoredAt + 5000, "a", "b", "crash-confirmed")]);
  });

  it("times out a restored host that never reports again when nobody witnesses it", () => {
    const engine = new FailoverEngine(twoSites());
    steady(engine, T0, T0 + 3000, ["a", "b"]);
    const restoredAt = T0 + 60_000;
    const restored = FailoverEngine.restore(twoSites(), engine.snapshot(), restoredAt, 1500);
    expect(steady(restored, restoredAt, restoredAt + 1500, ["b"])).toEqual([]);
    expect(drive(restored, restoredAt + 1500)).toEqual([decision(restoredAt + 1500, "a", "b", "timeout")]);
  });

  it("does not preempt during the grace period, and does when it ends", () => {
    const engine = new FailoverEngine(twoSites());
    beat(engine, T0, ["a", "b"]);
    engine.offline("a", T0 + 100);
    beat(engine, T0 + 200, ["a", "b"]); // a is back, in backoff until T0 + 10_100
    const restoredAt = T0 + 20_000;
    const restored = FailoverEngine.restore(twoSites(), engine.snapshot(), restoredAt, 2000);
    expect(restored.activeHost("corp", "east")).toBe("b");
    expect(beat(restored, restoredAt + 500, ["a", "b"])).toEqual([]);
    expect(beat(restored, restoredAt + 1500, ["a", "b"])).toEqual([]);
    expect(drive(restored, restoredAt + 2000)).toEqual([decision(restoredAt + 2000, "b", "a", "higher-priority")]);
  });

  it("refuses a malformed snapshot with the fields at fault", () => {
    const bad = { version: 1, generation: -1, hosts: [{ id: "a", online: "yes", lastSeen: null, offlineSince: null }], locations: [] };
    let error: unknown;
    try {
      FailoverEngine.restore(twoSites(), bad as never, T0);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SnapshotError);
    expect((error as SnapshotError).fields).toEqual(["generation", "hosts[0].online"]);
    expect((error as Error).message).toContain("hosts[0].online");
  });

  it("ignores snapshot entries the topology no longer has", () => {
    const engine = new FailoverEngine(twoSites());
    beat(engine, T0, ["a", "c"]);
    const smaller = topologyOf({ east: [{ id: "b" }], west: [{ id: "c" }] });
    const restored = FailoverEngine.restore(smaller, engine.snapshot(), T0 + 100);
    expect(restored.activeHost("corp", "east")).toBeNull();
    expect(restored.activeHost("corp", "west")).toBe("c");
    expect(restored.hostView("a")).toBeUndefined();
  });

  it("reloads a topology: kept hosts keep their state, removed ones hand over, added ones start offline", () => {
    const threeSites = (east: { id: string; priority?: number }[], withNorth: boolean) =>
      topologyOf({ east, west: [{ id: "c" }], ...(withNorth ? { north: [{ id: "n" }] } : {}) });
    const engine = new FailoverEngine(threeSites([{ id: "a", priority: 2 }, { id: "b" }], true));
    beat(engine, T0, ["a", "b", "c", "n"]);
    const decisions = engine.setTopology(threeSites([{ id: "b" }, { id: "e", priority: 9 }], false), T0 + 500);
    expect(decisions).toEqual([
      decision(T0 + 500, "n", null, "topology", "north"),
      decision(T0 + 500, "a", "b", "topology"),
    ]);
    expect(decisions.map((d) => d.generation)).toEqual([4, 5]);
    expect(engine.hostView("b")).toMatchObject({ lastSeen: T0, status: "active" });
    expect(engine.hostView("e")).toMatchObject({ online: false, lastSeen: null });
    expect(engine.hostView("a")).toBeUndefined();
    expect(engine.activeHost("corp", "north")).toBeNull();
    // A raised priority preempts; c's timers survived the reload (c times out, keeping west's role: nobody else is there).
    expect(engine.setTopology(threeSites([{ id: "b" }, { id: "e", priority: 9 }], false), T0 + 600)).toEqual([]);
    expect(engine.heartbeat("e", report(), T0 + 700)).toEqual([decision(T0 + 700, "b", "e", "higher-priority")]);
    expect(drive(engine, T0 + 5000)).toEqual([]);
    expect(engine.hostView("c")).toMatchObject({ online: false, offlineSince: T0 + 5000, role: "active" });
  });
});

describe("failover engine: evidence from hosts that just came online", () => {
  it("does not demote a host its peers report down before it had time to get its key and listen", () => {
    // a and b come online at T0: peers probing them before their first state answer get refusals.
    const engine = onlineBefore(["c", "d"]);
    expect(east(beat(engine, T0, ["a", "b"]))).toEqual([decision(T0, null, "a", "initial")]);
    const lostA = [check("a", false, 0, 2), check("b", true)];
    const cut = { a: [check("c", false, 0, 2), check("d", false, 0, 2)], c: lostA, d: lostA };
    expect(steady(engine, T0 + 300, T0 + 1900, ["a", "b", "c", "d"], cut)).toEqual([]);
    // Once a had its time (settleMs = 1.9 s) the same reports demote it.
    expect(east(beat(engine, T0 + 1900, ["c", "d"], { c: lostA, d: lostA }))).toEqual([decision(T0 + 1900, "a", "b", "peers-lost")]);
  });

  it("does not take a witness that just came back at its word", () => {
    const engine = onlineBefore(["a", "c", "d"]);
    // b was away (a flapping host) and returns reporting a unreachable, while it reaches a peer.
    beat(engine, T0, ["b"], { b: [check("a", false, 0, 5), check("c", true)] });
    // a goes quiet: only b's word says it crashed, and b is not settled yet, so only the timeout counts.
    expect(east(drive(engine, T0 + 1500))).toEqual([]);
    expect(engine.hostView("a")!.online).toBe(true);
  });
});

describe("failover engine: the control plane lost, the data plane kept", () => {
  const others = (self: string) => ["a", "b", "c", "d"].filter((id) => id !== self).map((id) => check(id, true));
  const honest = Object.fromEntries(["a", "b", "c", "d"].map((id) => [id, others(id)]));

  it("keeps a location's hosts online and its roles while it cannot reach the state service but its peers reach it", () => {
    const engine = onlineBefore(["a", "b", "c", "d"]);
    steady(engine, T0, T0 + 10_000, ["a", "b", "c", "d"], honest);
    // 10.5 s to 30.5 s: east's polls do not arrive; west still reaches east's hosts.
    expect(steady(engine, T0 + 11_000, T0 + 31_000, ["c", "d"], honest)).toEqual([]);
    expect(engine.hostView("a")).toMatchObject({ online: true, silent: true, status: "active", lastSeen: T0 + 9000 });
    // b cannot be handed the role while silent: it would not hear of it.
    expect(engine.hostView("b")).toMatchObject({ online: true, silent: true, status: "silent", eligible: false });
    // Back, in either order: nothing to decide.
    expect(beat(engine, T0 + 31_000, ["b", "a"], honest)).toEqual([]);
    expect(steady(engine, T0 + 32_000, T0 + 50_000, ["a", "b", "c", "d"], honest)).toEqual([]);
    expect(engine.hostView("a")).toMatchObject({ silent: false, status: "active" });
  });

  it("keeps the roles when a cut location's hosts come back one after the other", () => {
    const engine = onlineBefore(["a", "b", "c", "d"]);
    steady(engine, T0, T0 + 10_000, ["a", "b", "c", "d"], honest);
    expect(steady(engine, T0 + 10_000, T0 + 30_000, ["c", "d"], honest)).toEqual([]);
    // b is heard 2 s before a: less than a's timeout, so b is no reason to move the role.
    expect(steady(engine, T0 + 30_000, T0 + 32_000, ["b", "c", "d"], honest)).toEqual([]);
    expect(steady(engine, T0 + 32_000, T0 + 50_000, ["a", "b", "c", "d"], honest)).toEqual([]);
    expect(engine.hostView("a")).toMatchObject({ silent: false, status: "active" });
  });

  it("hands the role of an active host that lost the state service to a standby heard all along, at its timeout", () => {
    const engine = onlineBefore(["a", "b", "c", "d"]);
    steady(engine, T0, T0 + 10_000, ["a", "b", "c", "d"], honest);
    // From T0 + 10 s only a's polls are lost (a's last one: T0 + 9 s); everybody still reaches a.
    expect(east(steady(engine, T0 + 10_000, T0 + 14_000, ["b", "c", "d"], honest))).toEqual([]);
    expect(east(drive(engine, T0 + 14_000))).toEqual([decision(T0 + 14_000, "a", "b", "silent")]);
    expect(engine.hostView("a")).toMatchObject({ online: true, silent: true, status: "silent", eligible: false, role: "standby" });
    // It does not know it lost the role: peers must no longer accept its tunnel.
    expect(engine.inService("a")).toBe(false);
    engine.takeServiceChanges();
    expect(east(steady(engine, T0 + 14_000, T0 + 20_000, ["b", "c", "d"], honest))).toEqual([]);
    // a is heard again: back as after a timeout, it waits out its backoff before it takes the role back.
    expect(east(steady(engine, T0 + 20_000, T0 + 24_000, ["a", "b", "c", "d"], honest))).toEqual([]);
    expect([engine.inService("a"), engine.takeServiceChanges()]).toEqual([true, ["a"]]);
    expect(engine.hostView("a")).toMatchObject({ silent: false, status: "backoff" });
    expect(east(steady(engine, T0 + 24_000, T0 + 25_000, ["a", "b", "c", "d"], honest))).toEqual([decision(T0 + 24_000, "b", "a", "higher-priority")]);
  });

  it("hands the role over once a standby of a cut location is heard for the active host's timeout", () => {
    const engine = onlineBefore(["a", "b", "c", "d"]);
    steady(engine, T0, T0 + 10_000, ["a", "b", "c", "d"], honest);
    expect(steady(engine, T0 + 10_000, T0 + 30_000, ["c", "d"], honest)).toEqual([]);
    // Only b's path comes back; a stays cut off.
    expect(east(steady(engine, T0 + 30_000, T0 + 35_000, ["b", "c", "d"], honest))).toEqual([]);
    expect(east(drive(engine, T0 + 35_000))).toEqual([decision(T0 + 35_000, "a", "b", "silent")]);
  });

  it("takes a silent host offline once nobody reaches it any more", () => {
    const engine = onlineBefore(["a", "b", "c", "d"]);
    steady(engine, T0, T0 + 10_000, ["a", "b", "c", "d"], honest);
    // Nobody is heard from T0 + 9 s to T0 + 11 s (a break); then b is, and once b was heard for a's
    // timeout, a's role goes to b. a stays online, silent, while it is reached.
    expect(east(steady(engine, T0 + 11_000, T0 + 20_000, ["b", "c", "d"], honest))).toEqual([decision(T0 + 16_000, "a", "b", "silent")]);
    expect(engine.hostView("a")).toMatchObject({ online: true, silent: true });
    // From T0 + 20 s the peers stop mentioning a: its last results (observed at T0 + 19 s) go stale 2.15 s later.
    const withoutA = Object.fromEntries(["b", "c", "d"].map((id) => [id, others(id).filter((c) => c.target !== "a")]));
    steady(engine, T0 + 20_000, T0 + 21_150, ["b", "c", "d"], withoutA);
    expect(engine.hostView("a")).toMatchObject({ online: true, silent: true });
    drive(engine, T0 + 21_150);
    expect(engine.hostView("a")).toMatchObject({ online: false, offlineSince: T0 + 21_150 });
  });

  it("takes a silent host offline as soon as the last host that reached it does not", () => {
    const engine = onlineBefore(["a", "b", "c", "d"]);
    steady(engine, T0, T0 + 10_000, ["a", "b", "c", "d"], honest);
    steady(engine, T0 + 10_000, T0 + 16_000, ["b", "c", "d"], honest);
    expect(engine.hostView("a")).toMatchObject({ online: true, silent: true });
    // One lost probe each: no crash, but then nobody reaches a any more.
    const lostOnce = Object.fromEntries(["b", "c", "d"].map((id) => [id, others(id).map((c) => (c.target === "a" ? check("a", false, 0, 1) : c))]));
    beat(engine, T0 + 16_000, ["b", "c", "d"], lostOnce);
    expect(engine.hostView("a")).toMatchObject({ online: false, offlineSince: T0 + 16_000 });
  });

  it("does not hand the role to a silent host, which would not hear of it, until it is heard again", () => {
    const engine = onlineBefore(["a", "b", "c", "d"]);
    steady(engine, T0, T0 + 10_000, ["a", "b", "c", "d"], honest);
    // b loses the state service (the peers still reach it); then a crashes.
    steady(engine, T0 + 10_000, T0 + 16_000, ["a", "c", "d"], honest);
    expect(engine.hostView("b")).toMatchObject({ silent: true, status: "silent" });
    const aDown = Object.fromEntries(["b", "c", "d"].map((id) => [id, others(id).map((c) => (c.target === "a" ? check("a", false, 0, 3) : c))]));
    const crash = east(steady(engine, T0 + 16_000, T0 + 18_000, ["c", "d"], aDown));
    expect(crash).toEqual([]);
    expect(engine.hostView("a")).toMatchObject({ online: false, status: "offline", role: "active" });
    // b is heard again: now it can be told, so it takes over.
    expect(east(beat(engine, T0 + 18_000, ["b"], aDown))).toEqual([decision(T0 + 18_000, "a", "b", "crash-confirmed")]);
  });

  it("times nobody out after the service itself stalled: heartbeats were only waiting to be read", () => {
    const engine = onlineBefore(["a", "b", "c", "d"]);
    steady(engine, T0, T0 + 10_000, ["a", "b", "c", "d"], honest);
    // No call at all from T0 + 9 s to T0 + 16 s (event loop blocked, VM paused); then the timers run first.
    engine.resume(T0 + 16_000, 7000);
    expect(engine.evaluate(T0 + 16_000)).toEqual([]);
    expect(beat(engine, T0 + 16_000, ["b", "d", "c", "a"], honest)).toEqual([]);
    expect(steady(engine, T0 + 17_000, T0 + 40_000, ["a", "b", "c", "d"], honest)).toEqual([]);
  });

  it("still takes a host offline after a stall once the grace is over", () => {
    const engine = onlineBefore(["a", "b", "c", "d"]);
    steady(engine, T0, T0 + 10_000, ["a", "b", "c", "d"]);
    engine.resume(T0 + 16_000, 7000);
    // a never reports again and nobody reports host checks: timed out when the grace, max(timeout, 3 heartbeats) = 5 s, ends.
    expect(east(steady(engine, T0 + 16_000, T0 + 21_000, ["b", "c", "d"]))).toEqual([]);
    expect(east(drive(engine, T0 + 21_000))).toEqual([decision(T0 + 21_000, "a", "b", "timeout")]);
  });

  it("ignores a gap no longer than a heartbeat", () => {
    const engine = onlineBefore(["a", "b", "c", "d"]);
    steady(engine, T0, T0 + 10_000, ["a", "b", "c", "d"]);
    steady(engine, T0 + 10_000, T0 + 14_000, ["b", "c", "d"]);
    engine.resume(T0 + 14_000, 1000);
    expect(east(drive(engine, T0 + 14_000))).toEqual([decision(T0 + 14_000, "a", "b", "timeout")]);
  });
});

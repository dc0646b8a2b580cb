// The failover engine of the state service: who is active in every location, and why.
// Pure and synchronous: every time is passed in by the caller and nothing reads a clock, so the
// service drives it with one timer (nextDeadline) and tests drive it with plain numbers. Times are
// ms on a monotonic clock (the service uses performance.timeOrigin + performance.now()): a step of the
// wall clock must not look like silence. Wall-clock time is the caller's business (logs, status).
//
// The data plane must not depend on the control plane, so losing the state service changes no role:
// - a host whose heartbeats stop while other hosts still reach it (host checks after its last
//   heartbeat) stays online, "silent": it lost the state service, not its tunnels. It keeps the
//   active role if it has it while no other host could take it and hear of it (then it hands over,
//   with a backoff as after a timeout), and is not handed it (it would not hear of it);
// - a location never loses its active host while it has one (judge.ts chooseActive): with no host
//   online and heard, the active host keeps the role even offline; only a graceful stop gives it up;
// - after the service itself stalled (resume) or restarted (restore), hosts get a grace period to
//   report before they can time out.
import { formatPath, type Topology } from "../../contract/topology";
import type { HostCheckResult, HostReport } from "../../contract/protocol";
import { DeadlineQueue } from "./deadlines";
import { chooseActive, crashConfirmed, failedSettled, isDown, isEligible, judgePartitions, reachedUntil, settled, silentHandover } from "./judge";
import { buildModel, carryOver, locationKey, type CheckResult, type HostState, type LocationState, type Model } from "./model";
import {
  SnapshotError,
  UnknownHostError,
  engineSnapshotSchema,
  type Decision,
  type EngineSnapshot,
  type HostView,
  type OfflineReason,
} from "./types";

export { SnapshotError, UnknownHostError, engineSnapshotSchema };
export type { Decision, EngineSnapshot, HostStatus, HostView, Role } from "./types";

type Timer =
  | { kind: "timeout" | "crash" | "backoff"; host: HostState }
  | { kind: "recheck"; location: LocationState };

/** Locations to re-decide after an event, each with the cause to name if a new active host is picked. */
type Touched = Map<LocationState, string>;

export class FailoverEngine {
  private model: Model;
  private readonly timers = new DeadlineQueue<Timer>();
  private counter = 0;
  /** Hosts whose inService() may have changed since takeServiceChanges() last ran. */
  private readonly serviceChanged = new Set<string>();

  /** Every host starts offline and out of backoff; no location has an active host yet, so nothing is timed. */
  constructor(topology: Topology) {
    this.model = buildModel(topology);
  }

  /** The generation of the latest decision; 0 before any. */
  get generation(): number {
    return this.counter;
  }

  /**
   * Loads a new topology document. Hosts that stay in the same location keep their state (role, last
   * seen, host checks), removed hosts and locations disappear (an active one with a "topology" decision),
   * added hosts start offline.
   */
  setTopology(topology: Topology, now: number): Decision[] {
    const old = this.model;
    const next = buildModel(topology);
    const decisions: Decision[] = [];

    carryOver(old, next);
    for (const before of old.locations.values()) {
      if (!next.locations.has(before.key) && before.active) {
        decisions.push(this.record(before, now, before.active, null, "topology"));
      }
    }

    this.model = next;
    this.rearmTimers(now);
    for (const location of next.locations.values()) this.decide(location, now, "topology", decisions);
    return decisions;
  }

  /** A poll from a host: it is alive, and here is what it sees. Throws UnknownHostError for a host not in the topology. */
  heartbeat(hostId: string, report: HostReport, now: number): Decision[] {
    const host = this.host(hostId);
    const home = host.location;
    const touched: Touched = new Map([[home, "online"]]);
    const wasOnline = host.online;
    const wasSilent = host.silent;
    // A break in its heartbeats (a gap that would make it a crash suspect) starts its record anew.
    const unbroken = wasOnline && !wasSilent && host.lastSeen !== null && now - host.lastSeen <= home.timing.crashConfirmMs;
    host.lastSeen = now;
    host.silent = false;
    if (!unbroken) host.heardSince = now;
    if (wasSilent && host.handsOver) {
      // It lost the role for lack of contact: back like a host back from a timeout.
      host.handsOver = false;
      this.serviceChanged.add(host.id);
      this.startBackoff(host, now);
    }
    if (!wasOnline) {
      this.comeOnline(host, now);
      // A new reporter changes what "every peer host" says about the peer locations.
      for (const peer of home.peers) touched.set(peer, "host-checks");
    }
    this.armTimeout(host);

    for (const suspect of this.recordChecks(host, report, now, touched)) {
      if (!suspect.online) continue;
      if (crashConfirmed(suspect, now)) {
        this.goOffline(suspect, now, "crash-confirmed", touched);
        continue;
      }
      // Silent and no longer reached: its timeout is long past.
      if (suspect.silent) {
        if (reachedUntil(suspect, now) === undefined) this.goOffline(suspect, now, "timeout", touched);
        continue;
      }
      const confirmAt = Math.max(suspect.lastSeen! + suspect.location.timing.crashConfirmMs, suspect.graceUntil);
      if (confirmAt > now) this.timers.push(confirmAt, { kind: "crash", host: suspect });
    }
    return this.decideAll(touched, now);
  }

  /** A graceful stop: the host is offline (and loses its role) at once. */
  offline(hostId: string, now: number): Decision[] {
    const host = this.host(hostId);
    if (!host.online) return [];
    const touched: Touched = new Map();
    this.goOffline(host, now, "offline", touched);
    return this.decideAll(touched, now);
  }

  /** Runs every timer due at `now`: timeouts, crash confirmations, backoff ends, partition re-checks. */
  evaluate(now: number): Decision[] {
    const touched: Touched = new Map();
    for (let due = this.timers.popDue(now); due; due = this.timers.popDue(now)) {
      const timer = due.item;
      if (timer.kind === "recheck") {
        if (timer.location.recheckAt === due.at) timer.location.recheckAt = null;
        if (!touched.has(timer.location)) touched.set(timer.location, "host-checks");
        continue;
      }
      const host = timer.host;
      if (timer.kind === "timeout") {
        host.timeoutQueued = false;
        if (!host.online) continue;
        if (now < timeoutAt(host)) {
          this.armTimeout(host);
          continue;
        }
        // Same instant as a due crash confirmation: name the stronger evidence, whichever timer popped first.
        if (crashConfirmed(host, now)) {
          this.goOffline(host, now, "crash-confirmed", touched);
          continue;
        }
        const reached = reachedUntil(host, now);
        if (reached === undefined) {
          this.goOffline(host, now, "timeout", touched);
          continue;
        }
        // Silent but reached by others: still online, judged again when that evidence runs out; an
        // active host may have to hand over now (silentHandover).
        host.silent = true;
        host.timeoutQueued = true;
        this.timers.push(reached, { kind: "timeout", host });
        if (host.location.active === host && !touched.has(host.location)) touched.set(host.location, "silent");
      } else if (timer.kind === "crash") {
        if (crashConfirmed(host, now)) this.goOffline(host, now, "crash-confirmed", touched);
      } else if (host.online && host.inBackoff && now >= host.offlineSince! + host.backoffMs) {
        if (!touched.has(host.location)) touched.set(host.location, "backoff-ended");
      }
    }
    return this.decideAll(touched, now);
  }

  /** When evaluate() must run next (ms since epoch); undefined when no timer is pending. May be early, never late. */
  nextDeadline(): number | undefined {
    return this.timers.peek();
  }

  /**
   * Whether the host may carry its location's tunnels now: the active host (even offline: no other
   * could take the role), or one online that did not hand its role over for lack of contact. Peers
   * accept IKE from these hosts only, so a host that left (graceful stop, crash, timeout) or lost the
   * service and with it the role cannot pull a tunnel back to itself: its charon would initiate again
   * as soon as the peer closes their IKE_SA.
   */
  inService(hostId: string): boolean {
    const host = this.model.hosts.get(hostId);
    return host !== undefined && (host.location.active === host || (host.online && !host.handsOver));
  }

  /** The ids of the hosts whose inService() may have changed since the last call (came online, went offline, heard again after handing over). */
  takeServiceChanges(): readonly string[] {
    if (this.serviceChanged.size === 0) return NONE;
    const ids = [...this.serviceChanged];
    this.serviceChanged.clear();
    return ids;
  }

  activeHost(link: string, location: string): string | null {
    return this.model.locations.get(locationKey(link, location))?.active?.id ?? null;
  }

  hostView(hostId: string): HostView | undefined {
    const host = this.model.hosts.get(hostId);
    return host && view(host);
  }

  hosts(): HostView[] {
    return [...this.model.hosts.values()].map(view);
  }

  /**
   * The caller was not running for `gapMs` up to `now` (an event-loop stall, a paused VM): heartbeats
   * may be waiting to be read, so hosts of links whose heartbeat is shorter than the gap get the
   * restart grace before they can time out or be confirmed crashed. Returns how many hosts got it.
   */
  resume(now: number, gapMs: number): number {
    let graced = 0;
    for (const host of this.model.hosts.values()) {
      if (!host.online || gapMs <= host.location.timing.heartbeatMs) continue;
      host.graceUntil = Math.max(host.graceUntil, now + graceFor(host));
      graced++;
    }
    return graced;
  }

  snapshot(): EngineSnapshot {
    return {
      version: 1,
      generation: this.counter,
      hosts: [...this.model.hosts.values()].map((h) => ({
        id: h.id,
        online: h.online,
        lastSeen: h.lastSeen,
        offlineSince: h.offlineSince,
      })),
      locations: [...this.model.locations.values()].map((l) => ({
        link: l.link,
        location: l.name,
        active: l.active?.id ?? null,
        hadActive: l.hadActive,
      })),
    };
  }

  /**
   * Rebuilds an engine after a restart of the service. Online hosts get `graceMs` (default
   * max(timeout, 3 × heartbeat)) to report again before they can go offline, and no active host is
   * preempted during that time: restoring never changes a role by itself. Entries for hosts or
   * locations the topology no longer has are ignored. Throws SnapshotError naming malformed fields.
   */
  static restore(topology: Topology, snapshot: EngineSnapshot, now: number, graceMs?: number): FailoverEngine {
    const parsed = engineSnapshotSchema.safeParse(snapshot);
    if (!parsed.success) {
      const fields = parsed.error.issues.map((i) => formatPath(i.path) || "(snapshot)");
      throw new SnapshotError(fields, parsed.error.issues.map((i, n) => `${fields[n]}: ${i.message}`).join("; "));
    }
    const engine = new FailoverEngine(topology);
    engine.counter = parsed.data.generation;
    // First the roles (an active host is never in backoff), then the hosts.
    const locations: LocationState[] = [];
    for (const saved of parsed.data.locations) {
      const location = engine.model.locations.get(locationKey(saved.link, saved.location));
      if (!location) continue;
      location.hadActive = saved.hadActive;
      // Kept even when offline: no host was online to take the role (chooseActive).
      location.active = location.hosts.find((h) => h.id === saved.active) ?? null;
      locations.push(location);
    }
    for (const saved of parsed.data.hosts) {
      const host = engine.model.hosts.get(saved.id);
      if (!host) continue;
      // Times from a clock that was stepped back since must not lie in the future.
      host.lastSeen = saved.lastSeen === null ? null : Math.min(saved.lastSeen, now);
      host.offlineSince = saved.offlineSince === null ? null : Math.min(saved.offlineSince, now);
      host.online = saved.online && host.lastSeen !== null;
      if (!host.online) continue;
      host.graceUntil = now + (graceMs ?? graceFor(host));
      // It was online before the restart: its own key and listener are long settled.
      host.onlineSince = -Infinity;
      host.heardSince = now;
      engine.startBackoff(host, now);
      engine.armTimeout(host);
    }
    for (const location of locations) {
      location.graceUntil = Math.max(now, ...location.hosts.map((h) => h.graceUntil));
      // A preemption held back by the grace period happens when it ends, not at some later report.
      engine.timers.push(location.graceUntil, { kind: "recheck", location });
    }
    return engine;
  }

  private host(hostId: string): HostState {
    const host = this.model.hosts.get(hostId);
    if (!host) throw new UnknownHostError(hostId);
    return host;
  }

  /**
   * Marks a host online; a host back within `backoff` of going offline waits before it may be active,
   * unless it kept the role while offline: then its time offline is forgotten (it has no role to take).
   */
  private comeOnline(host: HostState, now: number): void {
    host.online = true;
    this.serviceChanged.add(host.id);
    host.onlineSince = now;
    host.offlineReason = null;
    if (host.location.active === host) host.offlineSince = null;
    this.startBackoff(host, now);
  }

  /** In backoff while within `backoff` of going offline; an active host never is. */
  private startBackoff(host: HostState, now: number): void {
    host.inBackoff = host.location.active !== host && host.offlineSince !== null && now < host.offlineSince + host.backoffMs;
    if (host.inBackoff) this.timers.push(host.offlineSince! + host.backoffMs, { kind: "backoff", host });
  }

  private goOffline(host: HostState, now: number, reason: OfflineReason, touched: Touched): void {
    host.online = false;
    this.serviceChanged.add(host.id);
    host.silent = false;
    host.handsOver = false;
    host.offlineSince = now;
    host.offlineReason = reason;
    host.inBackoff = false;
    host.partition = null;
    host.behindSince = null;
    if (!touched.has(host.location)) touched.set(host.location, reason);
    // Its reports no longer count, which can change what peers are judged to reach.
    for (const peer of host.location.peers) if (!touched.has(peer)) touched.set(peer, "host-checks");
    // ...and silent hosts it alone still reached are silent no more, but gone.
    for (const location of [host.location, ...host.location.peers]) {
      for (const other of location.hosts) {
        if (!other.online || !other.silent || reachedUntil(other, now) !== undefined) continue;
        this.goOffline(other, now, crashConfirmed(other, now) ? "crash-confirmed" : "timeout", touched);
      }
    }
  }

  /** After a reload: every timer of the new model, from its carried-over state. */
  private rearmTimers(now: number): void {
    this.timers.clear();
    for (const host of this.model.hosts.values()) {
      if (!host.online) continue;
      this.armTimeout(host);
      if (host.inBackoff) this.timers.push(host.offlineSince! + host.backoffMs, { kind: "backoff", host });
      this.timers.push(host.lastSeen! + host.location.timing.crashConfirmMs, { kind: "crash", host });
    }
    for (const location of this.model.locations.values()) {
      if (location.graceUntil > now) this.timers.push(location.graceUntil, { kind: "recheck", location });
    }
  }

  /**
   * Stores a report's host checks (targets outside the host's link are ignored), marks the peer
   * locations whose verdicts they may change, and returns the hosts they show failing after their
   * last heartbeat (crash suspects) and the silent hosts they are about.
   */
  private recordChecks(host: HostState, report: HostReport, now: number, touched: Touched): HostState[] {
    const home = host.location;
    const suspects: HostState[] = [];
    for (const check of report.hostChecks) {
      const target = this.model.hosts.get(check.target);
      if (!target || target === host || target.location.link !== home.link) continue;
      // An age beyond the freshness window says no more than "stale"; clamped, it cannot reach far back.
      const observedAt = now - Math.min(check.ageMs, home.timing.freshMs);
      const result = host.results.get(target.id);
      if (target.location !== home && !touched.has(target.location) && changes(host, result, check, now)) {
        touched.set(target.location, "host-checks");
      }
      // Updated in place: results live for seconds, and replacing them at 1 Hz per host feeds the old-generation GC.
      if (result) {
        result.reachable = check.reachable;
        result.failures = check.failures;
        result.observedAt = observedAt;
      } else {
        host.results.set(target.id, { target, reachable: check.reachable, failures: check.failures, observedAt });
      }
      // A silent host lives on others' results: any new one may be the end of it.
      if (target.online && (target.silent || (!check.reachable && target.lastSeen !== null && observedAt > target.lastSeen))) suspects.push(target);
    }
    return suspects;
  }

  /** One queued timeout per host is enough: when it fires early it re-arms at the real deadline. */
  private armTimeout(host: HostState): void {
    if (host.timeoutQueued) return;
    host.timeoutQueued = true;
    this.timers.push(timeoutAt(host), { kind: "timeout", host });
  }

  private decideAll(touched: Touched, now: number): Decision[] {
    const decisions: Decision[] = [];
    for (const [location, cause] of touched) this.decide(location, now, cause, decisions);
    return decisions;
  }

  private decide(location: LocationState, now: number, cause: string, out: Decision[]): void {
    for (const host of location.hosts) {
      if (host.inBackoff && now >= host.offlineSince! + host.backoffMs) host.inBackoff = false;
    }
    const partitionRecheck = judgePartitions(location, now);
    const from = location.active;
    const handover = silentHandover(location, now);
    if (from) from.handsOver = handover.handsOver;
    const recheckAt = Math.min(partitionRecheck ?? Infinity, handover.recheckAt ?? Infinity);
    if (Number.isFinite(recheckAt) && (location.recheckAt === null || recheckAt < location.recheckAt)) {
      location.recheckAt = recheckAt;
      this.timers.push(recheckAt, { kind: "recheck", location });
    }
    const to = chooseActive(location, now);
    if (to === from) return;
    if (from?.handsOver) {
      // Offline for backoff purposes from now: it may not take the role straight back when heard again.
      from.offlineSince = now;
    }
    out.push(this.record(location, now, from, to, reasonFor(location, from, to, cause)));
    location.active = to;
    if (!to) return;
    location.hadActive = true;
    // Backoff only keeps a host from taking the role; once it has it, it is over (for good: a restart
    // must not find it again in offlineSince).
    to.inBackoff = false;
    to.offlineSince = null;
  }

  private record(location: LocationState, now: number, from: HostState | null, to: HostState | null, reason: string): Decision {
    return { generation: ++this.counter, at: now, link: location.link, location: location.name, from: from?.id ?? null, to: to?.id ?? null, reason };
  }
}

const NONE: readonly string[] = [];

/** How long hosts have to report again after the service did not listen: max(timeout, 3 × heartbeat). */
function graceFor(host: HostState): number {
  return Math.max(host.timeoutMs, 3 * host.location.timing.heartbeatMs);
}

function timeoutAt(host: HostState): number {
  return Math.max(host.lastSeen! + host.timeoutMs, host.graceUntil);
}

/**
 * Whether a new result can change a peer location's verdicts: a flip, nothing usable before, or a
 * failure that did not count yet because its target or its reporter was still settling.
 */
function changes(reporter: HostState, before: CheckResult | undefined, after: HostCheckResult, now: number): boolean {
  if (!before || now >= before.observedAt + before.target.location.timing.freshMs) return true;
  if (before.reachable !== after.reachable || isDown(before) !== isDown(after)) return true;
  return !after.reachable && !(failedSettled(before) && settled(reporter, before.observedAt));
}

/** The reason of a decision: why the old active host lost the role, else what made the new one possible. */
function reasonFor(location: LocationState, from: HostState | null, to: HostState | null, cause: string): string {
  if (from) {
    if (!location.hosts.includes(from)) return "topology";
    // A host restored offline has no reason on record; it was not a graceful stop (that gives the role up).
    if (!from.online) return from.offlineReason ?? "timeout";
    if (from.partition) return from.partition;
    if (from.handsOver) return "silent";
    if (to && to.priority > from.priority) return "higher-priority";
    return cause;
  }
  return location.hadActive ? cause : "initial";
}

function view(host: HostState): HostView {
  const location = host.location;
  const active = location.active === host;
  const eligible = isEligible(host);
  return {
    hostId: host.id,
    link: location.link,
    location: location.name,
    status: !host.online ? "offline" : host.inBackoff ? "backoff" : host.partition ? "partitioned" : active ? "active" : host.silent ? "silent" : "available",
    online: host.online,
    silent: host.silent,
    eligible,
    lastSeen: host.lastSeen,
    offlineSince: host.offlineSince,
    role: active ? "active" : "standby",
  };
}

// The state of the service in memory: the failover engine, the topology, every host's rendered
// desired state and the generation at which it last changed. Every change is stored before the
// affected hosts are told (the "durable" generation), and only hosts whose rendered state really
// changed are woken.
import { randomBytes } from "node:crypto";
import { connectedPairs, type Link, type Topology } from "../../lib/topology";
import type { HostReport } from "../protocol";
import { deriveHostSecret, deriveKey } from "../signing";
import { FailoverEngine, type Decision, type EngineSnapshot, type HostView } from "./engine";
import type { Logger } from "./log";
import type { ServiceMetrics } from "./metrics";
import { renderDesiredState, type HostAddresses, type RenderedState } from "./render";
import { sortedPair, type LoadedState, type StateStore, type StoredReport } from "./store";

export interface HostEntry {
  hostId: string;
  link: Link;
  location: string;
  /** HMAC(masterKey, hostId). Secret: never log. */
  secret: string;
}

interface Batch {
  decisions: Decision[];
  hosts: Set<string>;
  generation: number;
  /** performance.now() of the events that caused decisions (decision latency). */
  starts: number[];
  done: Promise<void>;
}

interface Rendered {
  /** The rendered state (RenderedState) as JSON: compared to spot changes, and answered. */
  json: string;
  /** Generation at which this host's rendered state last changed. */
  changedAt: number;
}

export interface CoreOptions {
  store: StateStore;
  masterKey: Buffer;
  logger: Logger;
  metrics?: ServiceMetrics;
  /** Passed to FailoverEngine.restore: how long restored hosts have to report again. */
  restartGraceMs?: number;
  /**
   * Least time between snapshots taken only to refresh liveness (last seen) in the store; decisions
   * store one at once. A snapshot of 10,000 hosts costs tens of ms of event loop. @default 10000
   */
  snapshotIntervalMs?: number;
}

const pskKey = (link: string, pair: [string, string]) => `${link}\u0000${pair[0]}\u0000${pair[1]}`;

export class StateCore {
  private engine!: FailoverEngine;
  private topology!: Topology;
  private readonly hostIndex = new Map<string, HostEntry>();
  private readonly linkHosts = new Map<string, HostEntry[]>();
  private readonly rendered = new Map<string, Rendered>();
  private readonly reports = new Map<string, StoredReport>();
  /** The report fields worth storing, per host: unchanged reports are not rewritten. */
  private readonly reportKeys = new Map<string, string>();
  private readonly dirtyReports = new Set<string>();
  private readonly psks = new Map<string, string>();
  private readonly hostCheckKeys = new Map<string, string>();
  private readonly listeners = new Map<string, Set<() => void>>();
  private generationValue = 0;
  private durableValue = 0;
  private heartbeatsSinceSave = false;
  private decisionsSinceSave = false;
  private savedAt = 0;
  private commits: Promise<void> = Promise.resolve();
  private batch: Batch | undefined;
  private evaluateTimer: NodeJS.Timeout | undefined;
  private evaluateAt = Infinity;
  private closed = false;

  private constructor(private readonly opts: CoreOptions) {}

  /** Builds the state from the store and the topology; a stored engine snapshot is restored (no failover). */
  static async open(topology: Topology, opts: CoreOptions, now: number = Date.now()): Promise<StateCore> {
    const core = new StateCore(opts);
    const loaded: LoadedState = await opts.store.load();
    for (const p of loaded.psks) core.psks.set(pskKey(p.link, p.pair), p.psk);
    for (const r of loaded.reports) {
      core.reports.set(r.hostId, r);
      core.reportKeys.set(r.hostId, reportKey(r.report));
    }
    await core.ensurePsks(topology);
    await opts.store.saveTopology(topology);
    core.topology = topology;
    const snapshot = loaded.state ? replayDecisions(loaded.state.snapshot, loaded.laterDecisions) : undefined;
    core.engine = snapshot ? FailoverEngine.restore(topology, snapshot, now, opts.restartGraceMs) : new FailoverEngine(topology, now);
    // Generation 0 is what an agent sends on start: the service starts at 1 or above.
    core.generationValue = Math.max(1, loaded.generation, core.engine.generation);
    core.durableValue = core.generationValue;
    core.indexHosts();
    for (const host of core.hostIndex.values()) {
      core.rendered.set(host.hostId, { json: JSON.stringify(core.render(host)), changedAt: core.generationValue });
    }
    await core.persistState(now);
    core.scheduleEvaluate();
    opts.metrics?.generation.set(core.generationValue);
    return core;
  }

  get generation(): number {
    return this.generationValue;
  }

  /** The newest generation that is stored; answers never run ahead of it. */
  get durable(): number {
    return this.durableValue;
  }

  host(hostId: string): HostEntry | undefined {
    return this.hostIndex.get(hostId);
  }

  hosts(): HostView[] {
    return this.engine.hosts();
  }

  /** Records a heartbeat; the host's report updates liveness, addresses and partition evidence. */
  heartbeat(hostId: string, report: HostReport, now: number): void {
    const started = performance.now();
    const previous = this.reports.get(hostId)?.report;
    this.reports.set(hostId, { hostId, at: now, report });
    const key = reportKey(report);
    if (this.reportKeys.get(hostId) !== key) {
      this.reportKeys.set(hostId, key);
      this.dirtyReports.add(hostId);
    }
    this.heartbeatsSinceSave = true;
    const decisions = this.engine.heartbeat(hostId, report, now);
    const addressChanged = previous?.publicAddress !== report.publicAddress || previous?.privateAddress !== report.privateAddress;
    const host = this.hostIndex.get(hostId)!;
    if (decisions.length > 0 || addressChanged) {
      const links = new Set(decisions.map((d) => d.link));
      if (addressChanged) links.add(host.link.name);
      this.commitChanges(links, decisions, started);
    }
    this.scheduleEvaluate();
  }

  /** Graceful stop: the host is offline (and demoted) at once. Resolves when the decision is stored. */
  async offline(hostId: string, reason: string, now: number): Promise<void> {
    const started = performance.now();
    const decisions = this.engine.offline(hostId, now);
    const host = this.hostIndex.get(hostId)!;
    this.event("host-offline", { host: hostId, link: host.link.name, location: host.location, reason }, now);
    await this.commitChanges(new Set(decisions.map((d) => d.link)), decisions, started);
    this.scheduleEvaluate();
  }

  /**
   * True when a poll from `hostId` that saw generation `seen` is answered now: the host's state is
   * stored and (for a long-poll) newer than what the agent saw, or the agent saw a generation this
   * service never issued (its store was replaced).
   */
  ready(hostId: string, seen: number, wait: boolean): boolean {
    const entry = this.rendered.get(hostId);
    if (!entry) return true;
    if (entry.changedAt > this.durableValue) return false;
    return !wait || entry.changedAt > seen || seen > this.durableValue;
  }

  /** Calls `listener` whenever the host's state changed (and was stored); returns the unsubscribe. */
  subscribe(hostId: string, listener: () => void): () => void {
    let set = this.listeners.get(hostId);
    if (!set) {
      set = new Set();
      this.listeners.set(hostId, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(hostId) === set) this.listeners.delete(hostId);
    };
  }

  heldPolls(): number {
    let n = 0;
    for (const set of this.listeners.values()) n += set.size;
    return n;
  }

  /** The host's desired state as JSON, or undefined when the host left the topology. */
  desiredJson(hostId: string, now: number): string | undefined {
    const entry = this.rendered.get(hostId);
    if (!entry) return undefined;
    // The cached render plus the two per-answer fields, without serializing the state again.
    return `${entry.json.slice(0, -1)},"generation":${this.durableValue},"serverTime":${now}}`;
  }

  /** Swaps in a validated topology: new pairs get PSKs first, then roles and states follow. */
  async setTopology(topology: Topology, now: number = Date.now()): Promise<void> {
    await this.ensurePsks(topology);
    await this.opts.store.saveTopology(topology);
    const started = performance.now();
    this.topology = topology;
    const decisions = this.engine.setTopology(topology, now);
    const before = new Set(this.hostIndex.keys());
    this.indexHosts();
    for (const hostId of before) {
      if (this.hostIndex.has(hostId)) continue;
      this.rendered.delete(hostId);
      this.reports.delete(hostId);
      this.reportKeys.delete(hostId);
      this.notify(hostId); // a held poll of a removed host is answered (with an error) now
    }
    this.event("topology-loaded", { links: topology.links.map((l) => l.name), hosts: this.hostIndex.size }, now);
    await this.commitChanges(new Set(topology.links.map((l) => l.name)), decisions, started);
    this.scheduleEvaluate();
  }

  /** Picks up PSKs another process stored (`sitelink state rotate-psk`); affected hosts get new states. */
  async reloadPsks(now: number = Date.now()): Promise<void> {
    const links = new Set<string>();
    for (const p of await this.opts.store.psks()) {
      const key = pskKey(p.link, p.pair);
      if (this.psks.get(key) === p.psk) continue;
      this.psks.set(key, p.psk);
      links.add(p.link);
      this.event("psk-changed", { link: p.link, pair: p.pair }, now);
    }
    if (links.size > 0) await this.commitChanges(links, [], performance.now());
  }

  /**
   * Stores reports that changed, and a snapshot when decisions were made since the last one, or
   * heartbeats came in and it is older than snapshotIntervalMs (or `force`, at close).
   */
  async flush(now: number = Date.now(), force = false): Promise<void> {
    if (this.dirtyReports.size > 0) {
      const reports = [...this.dirtyReports].flatMap((id) => this.reports.get(id) ?? []);
      this.dirtyReports.clear();
      await this.opts.store.saveReports(reports);
    }
    const due = force || now - this.savedAt >= (this.opts.snapshotIntervalMs ?? 10_000);
    if (this.decisionsSinceSave || (this.heartbeatsSinceSave && due)) await this.persistState(now);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.evaluateTimer);
    await this.batch?.done;
    await this.commits;
    await this.flush(Date.now(), true);
  }

  // --- internals ---

  private indexHosts() {
    this.hostIndex.clear();
    this.linkHosts.clear();
    for (const link of this.topology.links) {
      const entries: HostEntry[] = [];
      for (const location of link.locations) {
        for (const host of location.hosts) {
          entries.push({ hostId: host.id, link, location: location.name, secret: deriveHostSecret(this.opts.masterKey, host.id) });
        }
      }
      this.linkHosts.set(link.name, entries);
      for (const entry of entries) this.hostIndex.set(entry.hostId, entry);
    }
  }

  private render(host: HostEntry): RenderedState {
    return renderDesiredState({
      link: host.link,
      hostId: host.hostId,
      role: this.engine.hostView(host.hostId)?.role ?? "standby",
      activeHost: (location) => this.engine.activeHost(host.link.name, location),
      reported: (id): HostAddresses | undefined => this.reports.get(id)?.report,
      psk: (a, b) => {
        const psk = this.psks.get(pskKey(host.link.name, sortedPair(a, b)));
        if (psk === undefined) throw new Error(`no PSK for ${host.link.name} ${a},${b}`);
        return psk;
      },
      hostCheckKey: this.hostCheckKey(host.link.name),
    });
  }

  /**
   * Re-renders the hosts of `links`; hosts whose state changed get a new generation. Decisions and
   * the snapshot are stored before those hosts are woken.
   */
  private commitChanges(links: Set<string>, decisions: Decision[], started: number): Promise<void> {
    const changed: { hostId: string; json: string }[] = [];
    for (const link of links) {
      for (const host of this.linkHosts.get(link) ?? []) {
        const json = JSON.stringify(this.render(host));
        if (this.rendered.get(host.hostId)?.json !== json) changed.push({ hostId: host.hostId, json });
      }
    }
    if (changed.length === 0 && decisions.length === 0) return this.batch?.done ?? this.commits;
    // Everything changed in one step shares the step's generation.
    const generation = Math.max(this.generationValue + 1, this.engine.generation);
    for (const c of changed) this.rendered.set(c.hostId, { json: c.json, changedAt: generation });
    this.generationValue = generation;
    for (const d of decisions) {
      this.opts.logger.event("decision", { link: d.link, location: d.location, from: d.from, to: d.to, reason: d.reason, generation: d.generation });
      this.opts.metrics?.decisions.inc();
      if (d.from !== null) this.opts.metrics?.failovers.inc();
    }
    const batch = this.openBatch();
    batch.decisions.push(...decisions);
    for (const c of changed) batch.hosts.add(c.hostId);
    batch.generation = generation;
    if (decisions.length > 0) batch.starts.push(started);
    return batch.done;
  }

  /**
   * Changes of one event-loop turn are stored together (a decision storm costs one snapshot write,
   * not one per decision), in order, and only then handed out.
   */
  private openBatch(): Batch {
    if (this.batch) return this.batch;
    const batch: Batch = { decisions: [], hosts: new Set(), generation: this.generationValue, starts: [], done: Promise.resolve() };
    batch.done = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      this.batch = undefined;
      this.commits = this.commits.then(() => this.writeBatch(batch));
      return this.commits;
    });
    this.batch = batch;
    return batch;
  }

  private async writeBatch(batch: Batch): Promise<void> {
    try {
      // Decisions alone are stored now: cheap, and enough to restore roles (replayDecisions). The
      // snapshot, which grows with the number of hosts, follows on the next flush.
      await this.opts.store.appendDecisions(batch.decisions, batch.generation);
      if (batch.decisions.length > 0) this.decisionsSinceSave = true;
    } catch (error) {
      // The data plane must not wait on a broken disk: log, and still hand out the decision.
      this.opts.logger.event("store-error", { message: (error as Error).message });
    }
    this.durableValue = Math.max(this.durableValue, batch.generation);
    this.opts.metrics?.generation.set(this.durableValue);
    for (const hostId of batch.hosts) this.notify(hostId);
    const end = performance.now();
    for (const started of batch.starts) this.opts.metrics?.decisionLatency.observe((end - started) / 1000);
  }

  private hostCheckKey(link: string): string {
    let key = this.hostCheckKeys.get(link);
    if (key === undefined) {
      key = deriveKey(this.opts.masterKey, `hostcheck:${link}`);
      this.hostCheckKeys.set(link, key);
    }
    return key;
  }

  private async persistState(now: number) {
    this.heartbeatsSinceSave = false;
    this.decisionsSinceSave = false;
    this.savedAt = now;
    await this.opts.store.saveState({ generation: this.generationValue, snapshot: this.engine.snapshot(), hosts: this.engine.hosts(), at: now });
  }

  private notify(hostId: string) {
    for (const listener of [...(this.listeners.get(hostId) ?? [])]) listener();
  }

  private async ensurePsks(topology: Topology) {
    for (const link of topology.links) {
      for (const [a, b] of connectedPairs(link)) {
        const pair = sortedPair(a, b);
        const key = pskKey(link.name, pair);
        if (this.psks.has(key)) continue;
        this.psks.set(key, await this.opts.store.createPsk(link.name, pair, randomBytes(32).toString("base64")));
        this.event("psk-created", { link: link.name, pair }, Date.now());
      }
    }
  }

  private event(kind: string, detail: Record<string, string | number | string[]>, now: number) {
    this.opts.logger.event(kind, detail);
    this.opts.store.appendEvent({ at: now, kind, detail }).catch((error: unknown) => {
      this.opts.logger.event("store-error", { message: (error as Error).message });
    });
  }

  /** One timer for the engine's deadlines (timeouts, backoff ends, crash confirmation). */
  private scheduleEvaluate() {
    if (this.closed) return;
    const deadline = this.engine.nextDeadline();
    if (deadline === undefined || deadline >= this.evaluateAt) return;
    clearTimeout(this.evaluateTimer);
    this.evaluateAt = deadline;
    this.evaluateTimer = setTimeout(() => this.runEvaluate(), Math.max(0, deadline - Date.now()));
    this.evaluateTimer.unref();
  }

  private runEvaluate() {
    this.evaluateAt = Infinity;
    this.evaluateTimer = undefined;
    const now = Date.now();
    const started = performance.now();
    const decisions = this.engine.evaluate(now);
    if (decisions.length > 0) this.commitChanges(new Set(decisions.map((d) => d.link)), decisions, started);
    this.scheduleEvaluate();
  }
}

/** The parts of a report worth storing; probe ages and round-trip times change on every report. */
function reportKey(report: HostReport): string {
  const tunnels = report.tunnels.map((t) => `${t.location}:${t.state}:${t.peerHost ?? ""}`).join(",");
  return [report.publicAddress, report.privateAddress, report.role, report.appliedGeneration, tunnels, report.routes.applied.join(","), report.routes.error].join("|");
}

const WENT_OFFLINE = new Set(["offline", "timeout", "crash-confirmed"]);

/**
 * Applies decisions stored after a snapshot to it, so roles survive a crash between snapshots:
 * the new active host was online then; a host that lost the role by going offline is offline.
 */
export function replayDecisions(snapshot: EngineSnapshot, decisions: Decision[]): EngineSnapshot {
  if (decisions.length === 0) return snapshot;
  const hosts = new Map(snapshot.hosts.map((h) => [h.id, { ...h }]));
  const locations = new Map(snapshot.locations.map((l) => [`${l.link}/${l.location}`, { ...l }]));
  const host = (id: string) => hosts.get(id) ?? { id, online: false, lastSeen: null, offlineSince: null };
  let generation = snapshot.generation;
  for (const d of decisions) {
    const key = `${d.link}/${d.location}`;
    const location = locations.get(key) ?? { link: d.link, location: d.location, active: null, hadActive: false };
    locations.set(key, { ...location, active: d.to, hadActive: location.hadActive || d.to !== null });
    if (d.from !== null && WENT_OFFLINE.has(d.reason)) hosts.set(d.from, { ...host(d.from), online: false, offlineSince: d.at });
    if (d.to !== null) {
      const to = host(d.to);
      hosts.set(d.to, { ...to, online: true, lastSeen: Math.max(to.lastSeen ?? 0, d.at), offlineSince: null });
    }
    generation = Math.max(generation, d.generation);
  }
  return { ...snapshot, generation, hosts: [...hosts.values()], locations: [...locations.values()] };
}

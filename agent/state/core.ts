// The state of the service in memory: the failover engine, the topology, every host's rendered
// desired state and the generation at which it last changed.
// - Stored before told: a change is handed out only once the generation it belongs to is stored
//   (Durable); until then, and for as long as the store keeps failing, hosts get the last stored state.
// - Scoped renders: an event in a location re-renders the hosts of that location and of the
//   locations connected to it; the allowlist is kept once per link. Only hosts whose rendered state
//   really changed are woken.
// - Two clocks: the engine runs on a monotonic clock (a wall-clock step is no silence); what is
//   stored and shown (decisions, events, reports, snapshot, status) is wall-clock time.
import { connectedPairs, type Link, type Topology } from "../contract/topology";
import type { HostReport, InstallProblem, OperatorStatus } from "../contract/protocol";
import { deriveHostSecret, deriveKey, deriveOperatorKey } from "../contract/signing";
import { Durable } from "./durable";
import { FailoverEngine, type Decision, type EngineSnapshot, type HostView } from "./engine";
import type { Logger } from "./log";
import type { ServiceMetrics } from "./metrics";
import { screenReport } from "./address-claims";
import { renderOperatorStatus, type PostedProblem } from "./operator-status";
import { Allowlist, LinkIndex, allowedAddresses, desiredStateJson, probeTarget, renderHost, unchangedStateJson, type ReportedHost } from "./render";
import { newPsk, sortedPair, type LoadedState, type StateStore, type StoredReport } from "./store";

export interface HostEntry {
  hostId: string;
  link: Link;
  location: string;
  /** HMAC(masterKey, hostId). Secret: never log. */
  secret: string;
}

export interface Clock {
  /** Monotonic ms: the engine's time, which never steps. */
  now(): number;
  /** Wall-clock ms since epoch: what is stored and shown. */
  wallNow(): number;
}

/** performance.timeOrigin + performance.now(): monotonic, and close to the wall clock when the process starts. */
export const systemClock: Clock = { now: () => performance.timeOrigin + performance.now(), wallNow: () => Date.now() };

/** What one link needs for rendering: its index, its allowlist, its host-check key. */
interface LinkState {
  index: LinkIndex;
  allow: Allowlist;
  /** The allowlist as handed out (JSON array); undefined for a link a reload added, until first stored. */
  allowJson: Durable | undefined;
  /** Secret: never log. */
  hostCheckKey: string;
}

interface Batch {
  /** With wall-clock times, as stored. */
  decisions: Decision[];
  hosts: Set<string>;
  /** Links whose allowlist may have changed. */
  links: Set<LinkState>;
  generation: number;
  /** performance.now() of the events that caused decisions (decision latency). */
  starts: number[];
  done: Promise<void>;
}

export interface CoreOptions {
  store: StateStore;
  masterKey: Buffer;
  logger: Logger;
  metrics?: ServiceMetrics;
  /** @default systemClock */
  clock?: Clock;
  /** Passed to FailoverEngine.restore: how long restored hosts have to report again. */
  restartGraceMs?: number;
  /**
   * Least time between snapshots taken only to refresh liveness (last seen) in the store; decisions
   * store one at once. A snapshot of 10,000 hosts costs tens of ms of event loop. @default 10000
   */
  snapshotIntervalMs?: number;
}

/** The event loop's own pulse: a gap much longer than this means the service did not run. */
const PULSE_MS = 100;
/** A failed store write of decisions is retried after this, doubling up to STORE_RETRY_MAX_MS. */
const STORE_RETRY_MS = 500;
const STORE_RETRY_MAX_MS = 10_000;

const pskKey = (link: string, pair: [string, string]) => `${link}\u0000${pair[0]}\u0000${pair[1]}`;

export class StateCore {
  private engine!: FailoverEngine;
  private topology!: Topology;
  private topologyJson = "";
  private readonly clock: Clock;
  private readonly hostIndex = new Map<string, HostEntry>();
  private links = new Map<string, LinkState>();
  private readonly rendered = new Map<string, Durable>();
  private readonly reports = new Map<string, StoredReport>();
  /** The report fields worth storing, per host: unchanged reports are not rewritten. */
  private readonly reportKeys = new Map<string, string>();
  private readonly dirtyReports = new Set<string>();
  /** What was last logged as ignored of each host's reported addresses: logged again only when it changes. */
  private readonly ignoredKeys = new Map<string, string>();
  /** The last problem each host posted (/v1/problem); kept in memory only, until its next poll without one. */
  private readonly problems = new Map<string, PostedProblem>();
  private readonly psks = new Map<string, string>();
  private readonly hostCheckKeys = new Map<string, string>();
  private readonly listeners = new Map<string, Set<() => void>>();
  private generationValue = 0;
  private durableValue = 0;
  private heartbeatsSinceSave = false;
  private decisionsSinceSave = false;
  private savedAt = -Infinity;
  private commits: Promise<void> = Promise.resolve();
  private batch: Batch | undefined;
  private evaluateTimer: NodeJS.Timeout | undefined;
  private evaluateAt = Infinity;
  private pulseTimer: NodeJS.Timeout | undefined;
  /** performance.now() of the last pulse (or call) the event loop ran. */
  private lastPulse = performance.now();
  /** Ends a store retry's wait early (at close). */
  private wakeRetry: (() => void) | undefined;
  private closed = false;

  /** The key operator requests are signed with (deriveOperatorKey). Secret: never log. */
  readonly operatorKey: string;

  private constructor(private readonly opts: CoreOptions) {
    this.clock = opts.clock ?? systemClock;
    this.operatorKey = deriveOperatorKey(opts.masterKey);
  }

  /** Builds the state from the store and the topology; a stored engine snapshot is restored (no failover). */
  static async open(topology: Topology, opts: CoreOptions): Promise<StateCore> {
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
    core.topologyJson = JSON.stringify(topology);
    const now = core.clock.now();
    const saved = loaded.state ? replayDecisions(loaded.state.snapshot, loaded.laterDecisions) : undefined;
    // Stored times are wall-clock; the engine's are monotonic.
    const shift = now - core.clock.wallNow();
    core.engine = saved ? FailoverEngine.restore(topology, shiftSnapshot(saved, shift), now, opts.restartGraceMs) : new FailoverEngine(topology);
    // Generation 0 is what an agent sends on start: the service starts at 1 or above.
    core.generationValue = Math.max(1, loaded.generation, core.engine.generation);
    core.durableValue = core.generationValue;
    core.indexHosts(new Map());
    for (const host of core.hostIndex.values()) core.rendered.set(host.hostId, Durable.stored(JSON.stringify(core.render(host)), core.generationValue));
    for (const link of core.links.values()) link.allowJson = Durable.stored(JSON.stringify(link.allow.addresses()), core.generationValue);
    await core.persistState();
    core.scheduleEvaluate();
    core.pulseTimer = setInterval(() => (core.lastPulse = performance.now()), PULSE_MS);
    core.pulseTimer.unref();
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

  /** Every host as the engine sees it (times on the engine's monotonic clock). */
  hosts(): HostView[] {
    return this.engine.hosts();
  }

  /**
   * Records a heartbeat; the host's report updates liveness, addresses and partition evidence. Of
   * the report, only addresses the host may claim (screenReport) and results about targets it was
   * told to probe (probeTarget) are taken.
   */
  heartbeat(hostId: string, sent: HostReport): void {
    const now = this.clock.now();
    this.noticeStall(now);
    const started = performance.now();
    const previous = this.reports.get(hostId)?.report;
    const link = this.linkOf(hostId);
    const report = this.screen(link, hostId, sent);
    this.reports.set(hostId, { hostId, at: this.clock.wallNow(), report });
    if (!report.installProblem) this.problems.delete(hostId);
    const key = reportKey(report);
    if (this.reportKeys.get(hostId) !== key) {
      this.reportKeys.set(hostId, key);
      this.dirtyReports.add(hostId);
    }
    this.heartbeatsSinceSave = true;
    const decisions = this.engine.heartbeat(hostId, report, now);
    const hosts: string[] = [];
    const links = new Set<LinkState>();
    if (previous === undefined || addressKey(previous) !== addressKey(report)) {
      // What peers and probers are told about this host changed: its location and the connected ones.
      if (link.allow.set(hostId, allowedAddresses(link.index.hosts.get(hostId)!.host, report))) links.add(link);
      hosts.push(...link.index.neighbourhood(this.hostIndex.get(hostId)!.location));
    }
    hosts.push(...this.inServiceChanges());
    if (decisions.length > 0 || hosts.length > 0) this.commit(decisions, hosts, links, started);
    this.scheduleEvaluate();
  }

  /** Graceful stop: the host is offline (and demoted) at once. Resolves when the decision is stored. */
  async offline(hostId: string, reason: string): Promise<void> {
    const started = performance.now();
    const decisions = this.engine.offline(hostId, this.clock.now());
    const host = this.hostIndex.get(hostId)!;
    this.event("host-offline", { host: hostId, link: host.link.name, location: host.location, reason });
    await this.commit(decisions, this.inServiceChanges(), new Set(), started);
    this.scheduleEvaluate();
  }

  /** Keeps the problem a host posted without a working agent (a failed boot, a refused agent). */
  recordProblem(hostId: string, problem: InstallProblem): void {
    this.problems.set(hostId, { kind: problem.kind, message: problem.message, at: this.clock.wallNow() });
    const host = this.hostIndex.get(hostId)!;
    this.event("host-problem", { host: hostId, link: host.link.name, location: host.location, kind: problem.kind, message: problem.message });
  }

  /** Every link, location and host as the operator endpoint shows them. */
  operatorStatus(): OperatorStatus {
    return renderOperatorStatus({
      topology: this.topology,
      views: new Map(this.engine.hosts().map((h) => [h.hostId, h])),
      reports: this.reports,
      problems: this.problems,
      activeHost: (link, location) => this.engine.activeHost(link, location),
      now: this.clock.now(),
      wallNow: this.clock.wallNow(),
      generation: this.durableValue,
    });
  }

  /**
   * True when a poll from `hostId` that saw generation `seen` is answered now: nothing of the host's
   * state waits to be stored, and (for a long-poll) it changed after what the agent saw, or the agent
   * saw a generation this service never issued (its store was replaced). True for a removed host.
   */
  ready(hostId: string, seen: number, wait: boolean): boolean {
    const cell = this.rendered.get(hostId);
    if (!cell) return true;
    const allow = this.linkOf(hostId).allowJson;
    if (cell.pending || !allow || allow.pending) return false;
    return !wait || stateGeneration(cell, allow) > seen || seen > this.durableValue;
  }

  /** True when the host has a stored state to answer with (a host a reload just added may not yet), or was removed. */
  answerable(hostId: string): boolean {
    const cell = this.rendered.get(hostId);
    return !cell || (cell.value !== undefined && this.linkOf(hostId).allowJson?.value !== undefined);
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

  /**
   * The answer to a poll: the host's last stored desired state as JSON, or an unchanged state when
   * `etag` (what the agent holds) still names it. Undefined when the host left the topology or has
   * nothing stored yet (answerable()).
   */
  answerJson(hostId: string, etag?: string): string | undefined {
    const cell = this.rendered.get(hostId);
    const allow = cell && this.linkOf(hostId).allowJson;
    if (cell?.value === undefined || allow?.value === undefined) return undefined;
    const current = cell.tag! + allow.tag!;
    const now = this.clock.wallNow();
    const generation = stateGeneration(cell, allow);
    if (etag === current) return unchangedStateJson(hostId, generation, now, current);
    return desiredStateJson(cell.value, allow.value, generation, now, current);
  }

  /**
   * Swaps in a validated topology: new pairs get PSKs first, then roles and states follow. The same
   * document again (a touched file, a second SIGHUP) changes nothing and stores nothing.
   */
  async setTopology(topology: Topology): Promise<void> {
    const json = JSON.stringify(topology);
    if (json === this.topologyJson) return;
    await this.ensurePsks(topology);
    await this.opts.store.saveTopology(topology);
    const started = performance.now();
    this.topology = topology;
    this.topologyJson = json;
    const decisions = this.engine.setTopology(topology, this.clock.now());
    const before = new Set(this.hostIndex.keys());
    this.indexHosts(this.links);
    for (const hostId of before) {
      if (this.hostIndex.has(hostId)) continue;
      this.rendered.delete(hostId);
      this.reports.delete(hostId);
      this.reportKeys.delete(hostId);
      this.ignoredKeys.delete(hostId);
      this.problems.delete(hostId);
      this.notify(hostId); // a held poll of a removed host is answered (with an error) now
    }
    this.event("topology-loaded", { links: topology.links.map((l) => l.name), hosts: this.hostIndex.size });
    await this.commit(decisions, this.hostIndex.keys(), new Set(this.links.values()), started);
    this.scheduleEvaluate();
  }

  /** Picks up PSKs another process stored (`sitelink state rotate-psk`); the two locations' hosts get new states. */
  async reloadPsks(): Promise<void> {
    const hosts: string[] = [];
    for (const p of await this.opts.store.psks()) {
      const key = pskKey(p.link, p.pair);
      if (this.psks.get(key) === p.psk) continue;
      this.psks.set(key, p.psk);
      const index = this.links.get(p.link)?.index;
      for (const name of p.pair) hosts.push(...(index?.locations.get(name)?.location.hosts.map((h) => h.id) ?? []));
      this.event("psk-changed", { link: p.link, pair: p.pair });
    }
    if (hosts.length > 0) await this.commit([], hosts, new Set(), performance.now());
  }

  /**
   * Stores reports that changed, and a snapshot when decisions were made since the last one, or
   * heartbeats came in and it is older than snapshotIntervalMs (or `force`, at close).
   */
  async flush(force = false): Promise<void> {
    if (this.dirtyReports.size > 0) {
      const reports = [...this.dirtyReports].flatMap((id) => this.reports.get(id) ?? []);
      this.dirtyReports.clear();
      await this.opts.store.saveReports(reports);
    }
    const due = force || this.clock.now() - this.savedAt >= (this.opts.snapshotIntervalMs ?? 10_000);
    if (this.decisionsSinceSave || (this.heartbeatsSinceSave && due)) await this.persistState();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.evaluateTimer);
    clearInterval(this.pulseTimer);
    this.wakeRetry?.();
    await this.batch?.done;
    await this.commits;
    await this.flush(true);
  }

  // --- internals ---

  /** Indexes the topology's links and hosts; links that stay keep their handed-out allowlist. */
  private indexHosts(previous: Map<string, LinkState>) {
    this.hostIndex.clear();
    this.links = new Map();
    for (const link of this.topology.links) {
      const index = new LinkIndex(link);
      const state: LinkState = { index, allow: new Allowlist(), allowJson: previous.get(link.name)?.allowJson, hostCheckKey: this.hostCheckKey(link.name) };
      // The topology's addresses first: a stored report cannot claim them.
      for (const [hostId, { host, location }] of index.hosts) {
        this.hostIndex.set(hostId, { hostId, link, location: location.location.name, secret: deriveHostSecret(this.opts.masterKey, hostId) });
        state.allow.set(hostId, allowedAddresses(host, undefined));
      }
      for (const [hostId, { host }] of index.hosts) {
        const stored = this.reports.get(hostId);
        if (!stored) continue;
        const report = this.screenAddresses(state, hostId, stored.report);
        if (report !== stored.report) this.reports.set(hostId, { ...stored, report });
        state.allow.set(hostId, allowedAddresses(host, report));
      }
      this.links.set(link.name, state);
    }
  }

  /** The report as the service takes it: claimable addresses (screenAddresses), results about given targets only. */
  private screen(link: LinkState, hostId: string, sent: HostReport): HostReport {
    const report = this.screenAddresses(link, hostId, sent);
    const checks = report.hostChecks.filter((c) => probeTarget(link.index, hostId, c.target, this.reported(c.target)) !== undefined);
    return checks.length === report.hostChecks.length ? report : { ...report, hostChecks: checks };
  }

  /** The report without the addresses the host may not claim; what is ignored is logged when it changes. */
  private screenAddresses(link: LinkState, hostId: string, sent: HostReport): HostReport {
    const { report, ignored } = screenReport(link.index, link.allow, hostId, sent, (id) => this.reported(id));
    const key = ignored.map((i) => `${i.field}=${i.address}`).join(",");
    if ((this.ignoredKeys.get(hostId) ?? "") !== key) {
      if (key === "") this.ignoredKeys.delete(hostId);
      else this.ignoredKeys.set(hostId, key);
      for (const i of ignored) this.opts.logger.event("address-ignored", { host: hostId, field: `report.${i.field}`, address: i.address, reason: i.reason });
    }
    return report;
  }

  /** The hosts whose desired state names a host that came into service or left it: peers accept IKE from hosts in service only. */
  private inServiceChanges(): string[] {
    const hosts: string[] = [];
    for (const id of this.engine.takeServiceChanges()) {
      const entry = this.hostIndex.get(id);
      if (entry) hosts.push(...this.linkOf(id).index.neighbourhood(entry.location));
    }
    return hosts;
  }

  private linkOf(hostId: string): LinkState {
    return this.links.get(this.hostIndex.get(hostId)!.link.name)!;
  }

  private reported(hostId: string): ReportedHost | undefined {
    return this.reports.get(hostId)?.report;
  }

  private render(host: HostEntry) {
    const link = this.linkOf(host.hostId);
    return renderHost({
      index: link.index,
      hostId: host.hostId,
      role: this.engine.hostView(host.hostId)?.role ?? "standby",
      activeHost: (location) => this.engine.activeHost(host.link.name, location),
      inService: (id) => this.engine.inService(id),
      reported: (id) => this.reported(id),
      psk: (a, b) => {
        const psk = this.psks.get(pskKey(host.link.name, sortedPair(a, b)));
        if (psk === undefined) throw new Error(`no PSK for ${host.link.name} ${a},${b}`);
        return psk;
      },
      hostCheckKey: link.hostCheckKey,
    });
  }

  /**
   * Re-renders `hosts` and the neighbourhoods of the decisions' locations; those whose state changed,
   * and the allowlists of `links`, get a new generation. Decisions and the generation are stored
   * before those hosts are woken.
   */
  private commit(decisions: Decision[], hosts: Iterable<string>, links: Set<LinkState>, started: number): Promise<void> {
    const toRender = new Set(hosts);
    for (const d of decisions) for (const id of this.links.get(d.link)?.index.neighbourhood(d.location) ?? []) toRender.add(id);
    const changed: { hostId: string; json: string }[] = [];
    for (const hostId of toRender) {
      const entry = this.hostIndex.get(hostId);
      if (!entry) continue;
      this.opts.metrics?.renders.inc();
      const json = JSON.stringify(this.render(entry));
      if (this.rendered.get(hostId)?.latest !== json) changed.push({ hostId, json });
    }
    if (changed.length === 0 && decisions.length === 0 && links.size === 0) return this.batch?.done ?? this.commits;
    // Everything changed in one step shares the step's generation.
    const generation = Math.max(this.generationValue + 1, this.engine.generation);
    for (const c of changed) {
      const cell = this.rendered.get(c.hostId);
      if (cell) cell.set(c.json, generation);
      else this.rendered.set(c.hostId, Durable.unstored(c.json, generation));
    }
    this.generationValue = generation;
    const shift = this.clock.wallNow() - this.clock.now();
    for (const d of decisions) {
      this.opts.logger.event("decision", { link: d.link, location: d.location, from: d.from, to: d.to, reason: d.reason, generation: d.generation });
      this.opts.metrics?.decisions.inc();
      if (d.from !== null) this.opts.metrics?.failovers.inc();
    }
    const batch = this.openBatch();
    batch.decisions.push(...decisions.map((d) => ({ ...d, at: Math.round(d.at + shift) })));
    for (const c of changed) batch.hosts.add(c.hostId);
    for (const link of links) batch.links.add(link);
    batch.generation = generation;
    if (decisions.length > 0) batch.starts.push(started);
    return batch.done;
  }

  /**
   * Changes of one event-loop turn are stored together (a decision storm costs one write, not one
   * per decision), in order, and only then handed out. The allowlists are rendered then, once per batch.
   */
  private openBatch(): Batch {
    if (this.batch) return this.batch;
    const batch: Batch = { decisions: [], hosts: new Set(), links: new Set(), generation: this.generationValue, starts: [], done: Promise.resolve() };
    batch.done = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      this.batch = undefined;
      for (const link of batch.links) {
        const json = JSON.stringify(link.allow.addresses());
        if (!link.allowJson) link.allowJson = Durable.unstored(json, batch.generation);
        else if (link.allowJson.latest !== json) link.allowJson.set(json, batch.generation);
        else batch.links.delete(link);
      }
      this.commits = this.commits.then(() => this.writeBatch(batch));
      return this.commits;
    });
    this.batch = batch;
    return batch;
  }

  /**
   * Stores a batch, retrying while the store fails: nothing undurable is handed out, and meanwhile
   * hosts keep getting the last stored state. At close, a batch that still cannot be stored is
   * dropped (it was never handed out).
   */
  private async writeBatch(batch: Batch): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        // Decisions alone are stored now: cheap, and enough to restore roles (replayDecisions). The
        // snapshot, which grows with the number of hosts, follows on the next flush.
        await this.opts.store.appendDecisions(batch.decisions, batch.generation);
        break;
      } catch (error) {
        const retryMs = Math.min(STORE_RETRY_MS * 2 ** attempt, STORE_RETRY_MAX_MS);
        this.opts.logger.event("store-error", {
          during: "decisions",
          message: (error as Error).message,
          generation: batch.generation,
          ...(this.closed ? { dropped: true } : { retryMs }),
        });
        if (this.closed) return;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, retryMs);
          this.wakeRetry = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    }
    if (batch.decisions.length > 0) this.decisionsSinceSave = true;
    this.durableValue = Math.max(this.durableValue, batch.generation);
    this.opts.metrics?.generation.set(this.durableValue);
    for (const hostId of batch.hosts) this.rendered.get(hostId)?.settle(this.durableValue);
    for (const link of batch.links) link.allowJson?.settle(this.durableValue);
    for (const hostId of batch.hosts) this.notify(hostId);
    for (const link of batch.links) for (const hostId of link.index.hosts.keys()) if (!batch.hosts.has(hostId)) this.notify(hostId);
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

  private async persistState() {
    this.heartbeatsSinceSave = false;
    this.decisionsSinceSave = false;
    this.savedAt = this.clock.now();
    const shift = this.clock.wallNow() - this.savedAt;
    const wall = (t: number | null) => (t === null ? null : Math.round(t + shift));
    await this.opts.store.saveState({
      generation: this.generationValue,
      snapshot: shiftSnapshot(this.engine.snapshot(), shift),
      hosts: this.engine.hosts().map((h) => ({ ...h, lastSeen: wall(h.lastSeen), offlineSince: wall(h.offlineSince) })),
      at: this.clock.wallNow(),
    });
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
        this.psks.set(key, await this.opts.store.createPsk(link.name, pair, newPsk()));
        this.event("psk-created", { link: link.name, pair });
      }
    }
  }

  private event(kind: string, detail: Record<string, string | number | string[]>) {
    this.opts.logger.event(kind, detail);
    this.opts.store.appendEvent({ at: this.clock.wallNow(), kind, detail }).catch((error: unknown) => {
      this.opts.logger.event("store-error", { during: "event", message: (error as Error).message });
    });
  }

  /**
   * A gap in the event loop's pulse means the service did not run (a blocked loop, a paused VM):
   * heartbeats may be waiting to be read, so the engine gives hosts time before timing them out.
   */
  private noticeStall(now: number) {
    const gap = performance.now() - this.lastPulse;
    this.lastPulse = performance.now();
    if (gap <= 3 * PULSE_MS) return;
    const graced = this.engine.resume(now, gap);
    if (graced > 0) this.opts.logger.event("stalled", { ms: Math.round(gap), hosts: graced });
  }

  /** One timer for the engine's deadlines (timeouts, backoff ends, crash confirmation). */
  private scheduleEvaluate() {
    if (this.closed) return;
    const deadline = this.engine.nextDeadline();
    if (deadline === undefined || deadline >= this.evaluateAt) return;
    clearTimeout(this.evaluateTimer);
    this.evaluateAt = deadline;
    this.evaluateTimer = setTimeout(() => this.runEvaluate(), Math.max(0, deadline - this.clock.now()));
    this.evaluateTimer.unref();
  }

  private runEvaluate() {
    this.evaluateAt = Infinity;
    this.evaluateTimer = undefined;
    const now = this.clock.now();
    this.noticeStall(now);
    const started = performance.now();
    const decisions = this.engine.evaluate(now);
    const hosts = this.inServiceChanges();
    if (decisions.length > 0 || hosts.length > 0) this.commit(decisions, hosts, new Set(), started);
    this.scheduleEvaluate();
  }
}

/**
 * The generation of a host's state: when it or its link's allowlist last changed, not the newest
 * of all. Answers carry it and long-polls wake on it, so a decision elsewhere does not have every
 * agent apply again, report a new applied generation and have its report stored.
 */
function stateGeneration(cell: Durable, allow: Durable): number {
  return Math.max(cell.changedAt, allow.changedAt);
}

/** The parts of a report worth storing; probe ages and round-trip times change on every report. */
function reportKey(report: HostReport): string {
  const tunnels = report.tunnels.map((t) => `${t.location}:${t.state}:${t.peerHost ?? ""}`).join(",");
  const problem = report.installProblem && `${report.installProblem.kind}:${report.installProblem.message}`;
  return [addressKey(report), report.role, report.appliedGeneration, tunnels, report.routes.applied.join(","), report.routes.error, problem].join("|");
}

/** The parts of a report that other hosts' desired states show. */
function addressKey(report: HostReport): string {
  return `${report.publicAddress ?? ""}|${report.privateAddress ?? ""}|${report.hostCheckPort ?? ""}`;
}

/** The snapshot with every time moved by `shift` ms (wall clock ↔ the engine's monotonic clock). */
function shiftSnapshot(snapshot: EngineSnapshot, shift: number): EngineSnapshot {
  const move = (t: number | null) => (t === null ? null : Math.max(0, Math.round(t + shift)));
  return { ...snapshot, hosts: snapshot.hosts.map((h) => ({ ...h, lastSeen: move(h.lastSeen), offlineSince: move(h.offlineSince) })) };
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

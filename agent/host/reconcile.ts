// The reconcile loop: poll the state service (long-poll) and report, forever; apply each answer.
// The poll is the heartbeat, so it never waits for an apply: applies run one at a time beside it,
// the newest answer next (older ones are superseded), and a finished apply is reported at once.
// Apply diffs the desired state against what was last applied successfully and touches only what
// differs, so a re-run (next round, or after a crash with nothing remembered) is harmless; every
// VERIFY_MS it also checks that what it applied is still in place (someone flushed the firewall
// chain, deleted a route) and restores it. A part that fails is retried with a growing delay.
import type { InstallProblem } from "../contract/install-status";
import type { DesiredState, HostReport } from "../contract/protocol";
import { DEFAULTS } from "../contract/topology";
import { backoffDelay, FailureBackoff, MAX_TIMER_MS } from "./backoff";
import type { Firewall, HostChecker, IpsecDriver, MssClamp, RouteProvider } from "./types";
import type { StateApi } from "./state-client";
import { StateClientError } from "./state-client";
import type { AgentStatus } from "./status";
import { errorMessage, type Logger } from "./log";

export interface ReconcileOptions {
  firewall: boolean;
  removeRoutes: boolean;
  hostCheck: boolean;
  /** `set-mtu`: clamp TCP MSS to and from the remote subnets to fit this MTU; undefined = no clamp. */
  mtu?: number | undefined;
}

export interface SelfInfo {
  hostId: string;
  publicAddress?: string;
  privateAddress?: string;
  /** The port this host answers host checks on: reported, so peers probe the right one. */
  hostCheckPort?: number;
}

export interface ReconcileDeps {
  state: StateApi;
  ipsec: IpsecDriver;
  routes: RouteProvider;
  firewall: Firewall;
  mss: MssClamp;
  checker: HostChecker;
  self: SelfInfo;
  options: ReconcileOptions;
  agentVersion: string;
  /** What the installer last refused (read each round; the installer writes it between rounds). */
  installProblem?: () => InstallProblem | undefined;
  log: Logger;
  /** Called after every answer and every apply with a fresh snapshot; the agent writes the status file. */
  onStatus?: (status: AgentStatus) => void;
  /** Retry delays while the service is unreachable: first delay, doubled up to the heartbeat. */
  retryInitialMs?: number;
  /** Added to the heartbeat for a request's timeout (the service holds a long-poll up to one heartbeat). */
  timeoutSlackMs?: number;
  /** Delays before a failed part is attempted again for the same desired state. @default { initial: 1000, max: 30000 } */
  applyRetryMs?: { initial: number; max: number };
  /** How often what was applied is checked for drift. @default VERIFY_MS */
  verifyMs?: number;
  /** Extra drift checks after this host becomes active, ms after the promotion. @default PROMOTION_CHECKS_MS */
  promotionChecksMs?: number[];
}

/**
 * Drift checks of the firewall and MSS chains (one `iptables -S` per table and family) and of kernel
 * routes and the routes file: every 10 s, a few short processes. charon's connections are checked by
 * the IPsec driver itself, more often (a lost tunnel is an outage). The active host also reads a
 * shared route table (cloud, lab: one DescribeRouteTables or routes list per check) and, when it no
 * longer points here, has it written back on a fresh answer.
 */
export const VERIFY_MS = 10_000;
/**
 * A host just made active checks again 1 s and 3 s later: the host that held the role for an
 * instant before it (two decisions in quick succession, as when a location's hosts start together)
 * may have written the shared route table after it did, its apply still running when it was demoted.
 */
export const PROMOTION_CHECKS_MS = [1_000, 3_000];
const APPLY_RETRY_MS = { initial: 1_000, max: 30_000 };
/** How long the other parts of an apply wait for the tunnel part to be done, at most. */
export const TUNNELS_HEAD_START_MS = 100;
const MAX_ERROR_LENGTH = 1024;
const STOP_SETTLE_MS = 250;
/** On stop, how long an apply in progress may still run before the loop exits anyway. */
const STOP_APPLY_WAIT_MS = 2_000;

type PartName = "ipsec" | "firewall" | "mss" | "hostCheck" | "routes";

/** One part of an apply, for one desired state. */
interface PartPlan {
  /** What is wanted, as a stable string: an equal key that was applied needs nothing. */
  key: string;
  /** For log lines: "<what> failed". */
  what: string;
  attempt(): Promise<void>;
  /** Drift check (verify passes only): whether what `key` stands for is still in place on the host. */
  inPlace?: () => Promise<boolean>;
  /**
   * A shared route table that someone else changed is written back only on the strength of a fresh
   * answer, never by the verify pass itself: this host may have been demoted a moment ago.
   */
  restoreOnFreshAnswer?: boolean;
  /** Logs the success. */
  done(): void;
}

export class ReconcileLoop {
  private options: ReconcileOptions;
  private timing: DesiredState["timing"] = { ...DEFAULTS.timing };
  private role: "active" | "standby" = "standby";
  private seenGeneration = 0;
  private appliedGeneration = 0;
  private desired: DesiredState | undefined;
  /** Per part: the key last applied successfully (undefined: not applied), and its failures. */
  private readonly parts: Record<PartName, { applied?: string; backoff: FailureBackoff }>;
  private appliedRoutes: string[] = [];
  /** Whether this run loaded firewall / MSS rules that firewall-off / mtu off must remove (else removal is a best-effort leftover check). */
  private loadedRules = { firewall: false, mss: false };
  /** The error of the last refused desired state (logged once). */
  private refusal: string | undefined;
  private contact: { reachable: boolean; lastContact?: number; lastError?: string; kind?: string; failures: number; lostAt?: number } = {
    reachable: false,
    failures: 0,
  };
  private inflight: { controller: AbortController; wait: boolean } | undefined;
  private urgentPending = false;
  private wake: (() => void) | undefined;
  private stopping = false;
  private running: Promise<void> | undefined;
  /** The answer to apply next (only the newest waits), and the apply in progress. */
  private next: { desired: DesiredState; verify: boolean } | undefined;
  private applying: Promise<void> | undefined;
  private verifyTimer: NodeJS.Timeout | undefined;
  private promotionTimers: NodeJS.Timeout[] = [];

  constructor(private readonly deps: ReconcileDeps) {
    this.options = { ...deps.options };
    const delays = deps.applyRetryMs ?? APPLY_RETRY_MS;
    const part = () => ({ backoff: new FailureBackoff(delays) });
    this.parts = { ipsec: part(), firewall: part(), mss: part(), hostCheck: part(), routes: part() };
    deps.ipsec.onChange(() => this.urgent("tunnel changed"));
    deps.checker.onChange(() => this.urgent("host check changed"));
  }

  /** Runs until stop(); resolves when the loop has exited. */
  start(): Promise<void> {
    if (!this.running) {
      this.verifyTimer = setInterval(() => this.verifyTick(), this.deps.verifyMs ?? VERIFY_MS);
      this.verifyTimer.unref();
      this.running = this.loop();
    }
    return this.running;
  }

  /**
   * Graceful stop: abort the poll, tell the service this host goes offline (so a standby takes over at
   * once), and leave tunnels, routes and firewall as they are for the new active host.
   */
  async stop(reason = "shutdown", offlineTimeoutMs = 700): Promise<void> {
    if (this.stopping) return this.running;
    this.stopping = true;
    this.inflight?.controller.abort();
    this.wake?.();
    // Let the aborted poll settle first, so the offline message is the last word the service hears
    // from this host; but never wait long for an apply in progress. Each endpoint tried gets
    // offlineTimeoutMs: with a hung apply on top (STOP_APPLY_WAIT_MS) the exit stays within the
    // unit's TimeoutStopSec=5.
    await Promise.race([this.running, delay(STOP_SETTLE_MS)]);
    try {
      await this.deps.state.offline(reason, { timeoutMs: offlineTimeoutMs });
      this.deps.log.info("told the state service this host goes offline", { reason });
    } catch (err) {
      this.deps.log.warn("could not tell the state service this host goes offline", { error: errorMessage(err) });
    }
    await this.running;
  }

  /** New CLI flags (SIGHUP reload): applied on the next answer, which is asked for at once. */
  updateOptions(options: ReconcileOptions): void {
    this.options = { ...options };
    // The operator may have fixed what failed: no waiting out a backoff.
    for (const part of Object.values(this.parts)) part.backoff.retryNow();
    this.urgent("config reloaded");
  }

  /** Report at once: abort a held long-poll (or a retry wait) and poll with wait=false. */
  urgent(why: string): void {
    if (this.stopping) return;
    this.urgentPending = true;
    this.deps.log.debug("urgent report", { why });
    if (this.inflight?.wait) this.inflight.controller.abort();
    this.wake?.();
  }

  status(): AgentStatus {
    const d = this.desired;
    return {
      pid: process.pid,
      hostId: this.deps.self.hostId,
      agentVersion: this.deps.agentVersion,
      updatedAt: Date.now(),
      stateService: {
        endpoint: this.deps.state.endpoint,
        reachable: this.contact.reachable,
        ...(this.contact.lastContact !== undefined && { lastContact: this.contact.lastContact }),
        ...(this.contact.lastError !== undefined && { lastError: this.contact.lastError }),
      },
      ...(d && { link: d.link, location: d.location, activeHost: d.activeHost }),
      role: this.role,
      generation: this.seenGeneration,
      appliedGeneration: this.appliedGeneration,
      peers: (d?.peers ?? []).map((p) => ({ location: p.location, activeHost: p.activeHost?.id ?? null })),
      tunnels: this.deps.ipsec.tunnels(),
      hostChecks: this.deps.checker.results(),
      routes: this.routeReport(),
      ...this.installProblem(),
    };
  }

  private installProblem(): { installProblem?: InstallProblem } {
    const problem = this.deps.installProblem?.();
    return problem ? { installProblem: problem } : {};
  }

  report(): HostReport {
    const { publicAddress, privateAddress, hostCheckPort } = this.deps.self;
    return {
      agentVersion: this.deps.agentVersion,
      ...(publicAddress && { publicAddress }),
      ...(privateAddress && { privateAddress }),
      ...(hostCheckPort !== undefined && { hostCheckPort }),
      role: this.role,
      appliedGeneration: this.appliedGeneration,
      tunnels: this.deps.ipsec.tunnels(),
      hostChecks: this.deps.checker.results(),
      routes: this.routeReport(),
      ...this.installProblem(),
    };
  }

  private routeReport(): HostReport["routes"] {
    const { routes } = this.deps;
    const error = this.parts.routes.backoff.message;
    return {
      provider: routes.name,
      // A standby points nothing at itself: cloud routes it wrote as active are the new active host's now.
      applied: this.role === "standby" && routes.table === "shared" ? [] : routes.applied(),
      ...(error !== undefined && { error: error.slice(0, MAX_ERROR_LENGTH) }),
    };
  }

  private async loop(): Promise<void> {
    let wait = false; // the first poll is answered at once
    while (!this.stopping) {
      const controller = new AbortController();
      wait = wait && !this.urgentPending;
      this.urgentPending = false;
      this.inflight = { controller, wait };
      const timeoutMs = this.timing.heartbeat * 1000 + (this.deps.timeoutSlackMs ?? 2000);
      let desired: DesiredState;
      try {
        desired = await this.deps.state.poll({ generation: this.seenGeneration, wait, report: this.report() }, { timeoutMs, signal: controller.signal });
      } catch (err) {
        this.inflight = undefined;
        if (this.stopping) break;
        if (err instanceof StateClientError && err.kind === "aborted") {
          wait = false; // aborted for an urgent report
          continue;
        }
        this.contactFailed(err);
        await this.sleep(this.retryDelay());
        wait = false; // answer at once when the service is back: recovery must be fast
        continue;
      }
      this.inflight = undefined;
      this.contactOk();
      // The answer is fresh even when a stop arrived meanwhile: applying it is what the service expects.
      this.desired = desired;
      this.timing = desired.timing;
      this.seenGeneration = desired.generation;
      this.schedule(desired, false);
      this.deps.onStatus?.(this.status());
      wait = true;
    }
    this.inflight = undefined;
    clearInterval(this.verifyTimer);
    this.promotionTimers.forEach(clearTimeout);
    await Promise.race([this.applying, delay(STOP_APPLY_WAIT_MS)]);
  }

  /** Applies run one at a time; while one runs, only the newest desired state waits for its turn. */
  private schedule(desired: DesiredState, verify: boolean): void {
    // A pending answer is not downgraded to a verify pass (which attempts nothing new).
    this.next = { desired, verify: verify && (this.next?.verify ?? true) };
    this.applying ??= this.drain();
  }

  private async drain(): Promise<void> {
    while (this.next) {
      const { desired, verify } = this.next;
      this.next = undefined;
      const before = this.reportKey();
      try {
        await this.apply(desired, verify);
      } catch (err) {
        this.deps.log.error("apply failed unexpectedly", { generation: desired.generation, error: errorMessage(err) });
      }
      this.deps.onStatus?.(this.status());
      // The held long-poll carries the report from before: send the new one now.
      if (this.reportKey() !== before) this.urgent("apply finished");
    }
    this.applying = undefined;
  }

  /** What of the report an apply changes. */
  private reportKey(): string {
    return JSON.stringify([this.role, this.appliedGeneration, this.routeReport()]);
  }

  private verifyTick(): void {
    if (this.stopping || !this.desired || this.applying) return;
    this.schedule(this.desired, true);
  }

  /**
   * An answer: each part that differs from what was applied (and is not waiting out a backoff) is
   * applied. A verify pass attempts nothing new: it checks the parts that were applied and restores
   * those that someone changed.
   */
  private async apply(desired: DesiredState, verify: boolean): Promise<void> {
    if (!this.acceptable(desired)) return;
    if (desired.role !== this.role) {
      this.deps.log.info("role changed", { from: this.role, to: desired.role, generation: desired.generation });
      this.promotionTimers.forEach(clearTimeout);
      this.promotionTimers = desired.role === "active" ? (this.deps.promotionChecksMs ?? PROMOTION_CHECKS_MS).map((ms) => setTimeout(() => this.verifyTick(), ms).unref()) : [];
    }
    this.role = desired.role;
    // The parts are independent: applied side by side (a failover needs tunnels AND routes, and
    // cloud route calls take a while); one failing does not undo or hold up the others. Tunnels get
    // a head start: an IKE initiation waits on their few VICI round trips, which the other parts'
    // processes (`ip`, `iptables`: each a fork of the agent) would hold up; the others start once
    // the tunnel part is done, or after TUNNELS_HEAD_START_MS when charon is slow.
    const ipsec = this.run("ipsec", this.ipsecPlan(desired), verify);
    await Promise.race([ipsec, delay(TUNNELS_HEAD_START_MS)]);
    const results = await Promise.all([
      ipsec,
      this.run("firewall", this.firewallPlan(desired), verify),
      this.run("mss", this.mssPlan(desired), verify),
      this.run("hostCheck", this.hostCheckPlan(desired), verify),
      this.run("routes", this.routesPlan(desired), verify),
    ]);
    if (!verify && results.every(Boolean)) this.appliedGeneration = desired.generation;
  }

  /** A signed answer whose content cannot be applied is refused whole: none of it changes the host. */
  private acceptable(desired: DesiredState): boolean {
    try {
      this.deps.ipsec.validate(desired.peers, this.deps.self);
      this.refusal = undefined;
      return true;
    } catch (err) {
      const message = errorMessage(err);
      if (message !== this.refusal) this.deps.log.error("desired state refused: nothing changed on this host", { generation: desired.generation, error: message });
      this.refusal = message;
      return false;
    }
  }

  /** Runs one part: true when what it wants is in place. */
  private async run(name: PartName, plan: PartPlan, verify: boolean): Promise<boolean> {
    const part = this.parts[name];
    const { log } = this.deps;
    if (plan.key === part.applied) {
      if (!verify || !plan.inPlace) return true;
      let inPlace: boolean;
      try {
        inPlace = await plan.inPlace();
      } catch (err) {
        // A shared table that cannot be read (a cloud API error) is no reason to write it.
        if (plan.restoreOnFreshAnswer) {
          log.debug(`checking ${name} failed`, { error: errorMessage(err).slice(0, MAX_ERROR_LENGTH) });
          return true;
        }
        inPlace = false;
      }
      if (inPlace) return true;
      if (plan.restoreOnFreshAnswer) {
        log.warn("changed by someone else: restoring it once a fresh answer says this host is still active", { part: name });
        part.applied = undefined;
        this.urgent(`${name} changed by someone else`);
        return false;
      }
      log.warn("changed on this host by someone else: restoring it", { part: name });
    } else if (verify || !part.backoff.due(plan.key)) {
      return false; // retried with the next answer, once its backoff is over
    }
    try {
      await plan.attempt();
      part.applied = plan.key;
      part.backoff.succeeded();
      plan.done();
      return true;
    } catch (err) {
      part.applied = undefined;
      const error = errorMessage(err).slice(0, MAX_ERROR_LENGTH);
      const { retryInMs, fresh } = part.backoff.failed(plan.key, error);
      // One line per change of error, not one per attempt.
      (fresh ? log.error : log.debug)(`${plan.what} failed`, { error, retryInMs });
      return false;
    }
  }

  /** IPsec: a standby gets no peers, so its tunnels are torn down here. */
  private ipsecPlan(desired: DesiredState): PartPlan {
    return {
      key: JSON.stringify(desired.peers),
      what: "applying tunnels",
      attempt: () => this.deps.ipsec.apply(desired.peers, this.deps.self),
      done: () => this.deps.log.info("tunnels applied", { generation: desired.generation, peers: desired.peers.map((p) => p.location) }),
    };
  }

  private firewallPlan(desired: DesiredState): PartPlan {
    const { firewall, log } = this.deps;
    if (this.options.firewall) {
      const allow = [...new Set(desired.firewall.allow)].sort();
      return {
        key: JSON.stringify(allow),
        what: "firewall change",
        attempt: () => {
          this.loadedRules.firewall = true;
          return firewall.apply(allow);
        },
        inPlace: () => firewall.inPlace(allow),
        done: () => log.info("firewall applied", { allowed: allow.length }),
      };
    }
    return this.removalPlan("firewall", "firewall change", () => firewall.remove(), "firewall rules removed (firewall-off)");
  }

  /**
   * MSS clamp (`set-mtu`) for the subnets the tunnels carry: those of the peers, which a standby has
   * none of, so a standby keeps only the empty chain and its jumps.
   */
  private mssPlan(desired: DesiredState): PartPlan {
    const { mss, log } = this.deps;
    const mtu = this.options.mtu;
    if (mtu !== undefined) {
      const subnets = [...new Set(desired.peers.flatMap((p) => p.remoteSubnets))].sort();
      return {
        key: JSON.stringify([mtu, subnets]),
        what: "tcp mss clamp change",
        attempt: () => {
          this.loadedRules.mss = true;
          return mss.apply(mtu, subnets);
        },
        inPlace: () => mss.inPlace(mtu, subnets),
        done: () => log.info("tcp mss clamp applied", { mtu, subnets }),
      };
    }
    return this.removalPlan("mss", "tcp mss clamp change", () => mss.remove(), "tcp mss clamp removed (mtu off)");
  }

  /**
   * A chain switched off (firewall-off, mtu off): rules this run loaded are removed. The switch may
   * also have been flipped while the agent was stopped, so rules of an earlier run are removed once,
   * best effort (a host without iptables must not fail every round).
   */
  private removalPlan(chain: "firewall" | "mss", what: string, remove: () => Promise<void>, removed: string): PartPlan {
    const { log } = this.deps;
    const own = this.loadedRules[chain];
    return {
      key: "off",
      what,
      attempt: async () => {
        if (own) await remove();
        else await remove().catch((err: unknown) => log.debug("no leftover rules removed", { part: chain, error: errorMessage(err) }));
        this.loadedRules[chain] = false;
      },
      done: () => {
        if (own) log.info(removed);
      },
    };
  }

  private hostCheckPlan(desired: DesiredState): PartPlan {
    const targets = this.options.hostCheck ? desired.hostCheck.targets : [];
    return {
      key: JSON.stringify([targets, desired.hostCheck.key, desired.timing, desired.firewall.allow]),
      what: "setting host check targets",
      // The listener admits the link's hosts alone, whether or not the firewall is on.
      attempt: async () => this.deps.checker.setTargets(targets, desired.hostCheck.key, desired.timing, desired.firewall.allow),
      done: () => this.deps.log.info("host check targets set", { targets: targets.map((t) => t.hostId) }),
    };
  }

  /**
   * Routes are written only here: a shared table (cloud, lab) only on the strength of a fresh
   * answer, never by a standby (the new active host points them at itself); when the drift check
   * finds it changed (a host that was active a moment earlier wrote last), the active host asks for a
   * fresh answer and writes it back only if that still says active. The host's own (kernel routes,
   * routes file) are withdrawn by a standby and restored by the drift check itself.
   */
  private routesPlan(desired: DesiredState): PartPlan {
    const { routes, log } = this.deps;
    const previous = () => [...new Set([...this.appliedRoutes, ...routes.applied()])];
    if (desired.role === "active") {
      const pointHere = [...new Set(desired.routes.pointHere)].sort();
      const removeRoutes = this.options.removeRoutes;
      return {
        key: JSON.stringify(["active", pointHere, removeRoutes]),
        what: "applying routes",
        attempt: async () => {
          await routes.apply(pointHere, { previous: previous(), removeRoutes, linkHosts: desired.firewall.allow });
          this.appliedRoutes = pointHere;
        },
        inPlace: routes.inPlace ? () => routes.inPlace!(pointHere) : undefined,
        restoreOnFreshAnswer: routes.table === "shared",
        done: () => log.info("routes applied", { provider: routes.name, routes: pointHere }),
      };
    }
    if (routes.table === "own") {
      return {
        key: JSON.stringify(["standby"]),
        what: "withdrawing routes",
        attempt: async () => {
          await routes.apply([], { previous: previous(), removeRoutes: true });
          this.appliedRoutes = [];
        },
        inPlace: routes.inPlace ? () => routes.inPlace!([]) : undefined,
        done: () => log.info("routes withdrawn (standby)", { provider: routes.name }),
      };
    }
    return {
      key: JSON.stringify(["standby"]),
      what: "standing by",
      attempt: async () => {
        this.appliedRoutes = [];
      },
      done: () => {},
    };
  }

  private contactOk(): void {
    if (this.contact.lastContact === undefined && this.contact.failures === 0) {
      this.deps.log.info("state service contacted", { endpoint: this.deps.state.endpoint });
    } else if (!this.contact.reachable) {
      this.deps.log.info("state service reachable again", {
        endpoint: this.deps.state.endpoint,
        failures: this.contact.failures,
        downMs: this.contact.lostAt === undefined ? undefined : Date.now() - this.contact.lostAt,
      });
    }
    this.contact = { reachable: true, lastContact: Date.now(), failures: 0 };
  }

  private contactFailed(err: unknown): void {
    const message = errorMessage(err);
    const kind = err instanceof StateClientError ? err.kind : "error";
    // One line per change of state (reachable → failing, or a different kind of failure), not per retry.
    const log = this.contact.failures === 0 || this.contact.kind !== kind ? this.deps.log.warn : this.deps.log.debug;
    log(kind === "unreachable" ? "state service unreachable: keeping tunnels and routes as they are" : "state service answer refused: nothing changed on this host", {
      kind,
      error: message,
    });
    this.contact = {
      ...this.contact,
      reachable: false,
      lastError: message,
      kind,
      failures: this.contact.failures + 1,
      lostAt: this.contact.lostAt ?? Date.now(),
    };
    this.deps.onStatus?.(this.status());
  }

  private retryDelay(): number {
    const initial = this.deps.retryInitialMs ?? 100;
    return backoffDelay(this.contact.failures, initial, Math.max(initial, this.timing.heartbeat * 1000));
  }

  private sleep(ms: number): Promise<void> {
    if (this.urgentPending) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.min(ms, MAX_TIMER_MS));
      const self = this;
      function done() {
        clearTimeout(timer);
        self.wake = undefined;
        resolve();
      }
      this.wake = done;
    });
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

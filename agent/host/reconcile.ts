// The reconcile loop: poll the state service (long-poll) → apply the desired state → report, forever.
// Apply diffs the desired state against what was last applied successfully and touches only what
// differs, so a re-run (next round, or after a crash with nothing remembered) is harmless.
import type { DesiredState, HostReport } from "../protocol";
import { DEFAULTS } from "../../lib/topology";
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
  log: Logger;
  /** Called after every round (and on urgent changes) with a fresh snapshot; the agent writes the status file. */
  onStatus?: (status: AgentStatus) => void;
  /** Retry delays while the service is unreachable: first delay, doubled up to the heartbeat. */
  retryInitialMs?: number;
  /** Added to the heartbeat for a request's timeout (the service holds a long-poll up to one heartbeat). */
  timeoutSlackMs?: number;
}

const MAX_ERROR_LENGTH = 1024;
const STOP_SETTLE_MS = 250;

export class ReconcileLoop {
  private options: ReconcileOptions;
  private timing: DesiredState["timing"] = { ...DEFAULTS.timing };
  private role: "active" | "standby" = "standby";
  private seenGeneration = 0;
  private appliedGeneration = 0;
  private desired: DesiredState | undefined;
  /** Keys of what was last applied successfully, per part; undefined = not applied (or no longer ours). */
  private applied: { ipsec?: string; firewall?: string; mss?: string; hostCheck?: string; routes?: string } = {};
  private appliedRoutes: string[] = [];
  private routeError: string | undefined;
  /** Whether rules of an earlier run may still be in place (checked once, on the first answer). */
  private firewallLeftovers = true;
  /** Same for the MSS clamp chain (mtu unset while the agent was stopped). */
  private mssLeftovers = true;
  private contact: { reachable: boolean; lastContact?: number; lastError?: string; kind?: string; failures: number; lostAt?: number } = {
    reachable: false,
    failures: 0,
  };
  private inflight: { controller: AbortController; wait: boolean } | undefined;
  private urgentPending = false;
  private wake: (() => void) | undefined;
  private stopping = false;
  private running: Promise<void> | undefined;

  constructor(private readonly deps: ReconcileDeps) {
    this.options = { ...deps.options };
    deps.ipsec.onChange(() => this.urgent("tunnel changed"));
    deps.checker.onChange(() => this.urgent("host check changed"));
  }

  /** Runs until stop(); resolves when the loop has exited. */
  start(): Promise<void> {
    this.running ??= this.loop();
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
    // from this host; but never wait long for an apply in progress (exit within ~1 s).
    await Promise.race([this.running, new Promise((resolve) => setTimeout(resolve, STOP_SETTLE_MS).unref())]);
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
    };
  }

  report(): HostReport {
    const { publicAddress, privateAddress } = this.deps.self;
    return {
      agentVersion: this.deps.agentVersion,
      ...(publicAddress && { publicAddress }),
      ...(privateAddress && { privateAddress }),
      role: this.role,
      appliedGeneration: this.appliedGeneration,
      tunnels: this.deps.ipsec.tunnels(),
      hostChecks: this.deps.checker.results(),
      routes: this.routeReport(),
    };
  }

  private routeReport(): HostReport["routes"] {
    return {
      provider: this.deps.routes.name,
      applied: this.deps.routes.applied(),
      ...(this.routeError !== undefined && { error: this.routeError.slice(0, MAX_ERROR_LENGTH) }),
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
      await this.apply(desired);
      this.deps.onStatus?.(this.status());
      wait = true;
    }
    this.inflight = undefined;
  }

  private async apply(desired: DesiredState): Promise<void> {
    this.desired = desired;
    this.timing = desired.timing;
    this.seenGeneration = desired.generation;
    // The parts are independent: applied side by side (a failover needs tunnels AND routes, and
    // cloud route calls take a while); one failing does not undo or hold up the others.
    const results = await Promise.all([
      this.applyIpsec(desired),
      this.applyFirewall(desired),
      this.applyMss(desired),
      this.applyHostCheck(desired),
      this.applyRoutes(desired),
    ]);
    if (desired.role !== this.role) this.deps.log.info("role changed", { from: this.role, to: desired.role, generation: desired.generation });
    this.role = desired.role;
    if (results.every(Boolean)) this.appliedGeneration = desired.generation;
  }

  /** IPsec: a standby gets no peers, so its tunnels are torn down here. */
  private async applyIpsec(desired: DesiredState): Promise<boolean> {
    const key = JSON.stringify(desired.peers);
    if (key === this.applied.ipsec) return true;
    try {
      await this.deps.ipsec.apply(desired.peers, this.deps.self);
      this.applied.ipsec = key;
      this.deps.log.info("tunnels applied", { generation: desired.generation, peers: desired.peers.map((p) => p.location) });
      return true;
    } catch (err) {
      this.deps.log.error("applying tunnels failed", { generation: desired.generation, error: errorMessage(err) });
      return false;
    }
  }

  private async applyFirewall(desired: DesiredState): Promise<boolean> {
    const { firewall, log } = this.deps;
    try {
      if (this.options.firewall || this.applied.firewall !== undefined) this.firewallLeftovers = false;
      if (this.options.firewall) {
        const allow = [...new Set(desired.firewall.allow)].sort();
        const key = JSON.stringify(allow);
        if (key === this.applied.firewall) return true;
        await firewall.apply(allow);
        this.applied.firewall = key;
        log.info("firewall applied", { allowed: allow.length });
      } else if (this.applied.firewall !== undefined) {
        await firewall.remove();
        this.applied.firewall = undefined;
        log.info("firewall rules removed (firewall-off)");
      } else if (this.firewallLeftovers) {
        // firewall-off may have been set while the agent was stopped: remove leftover rules once.
        // Best effort: a host without iptables (firewall never used) must not fail every round.
        this.firewallLeftovers = false;
        await firewall.remove().catch((err: unknown) => log.debug("no leftover firewall rules removed", { error: errorMessage(err) }));
      }
      return true;
    } catch (err) {
      log.error("firewall change failed", { error: errorMessage(err) });
      return false;
    }
  }

  /**
   * MSS clamp (`set-mtu`) for the subnets the tunnels carry: those of the peers, which a standby has
   * none of, so a standby keeps only the empty chain and its jumps.
   */
  private async applyMss(desired: DesiredState): Promise<boolean> {
    const { mss, log } = this.deps;
    const mtu = this.options.mtu;
    try {
      if (mtu !== undefined || this.applied.mss !== undefined) this.mssLeftovers = false;
      if (mtu !== undefined) {
        const subnets = [...new Set(desired.peers.flatMap((p) => p.remoteSubnets))].sort();
        const key = JSON.stringify([mtu, subnets]);
        if (key === this.applied.mss) return true;
        await mss.apply(mtu, subnets);
        this.applied.mss = key;
        log.info("tcp mss clamp applied", { mtu, subnets });
      } else if (this.applied.mss !== undefined) {
        await mss.remove();
        this.applied.mss = undefined;
        log.info("tcp mss clamp removed (mtu off)");
      } else if (this.mssLeftovers) {
        // mtu may have been unset while the agent was stopped: remove a leftover chain once, best
        // effort (a host without iptables must not fail every round).
        this.mssLeftovers = false;
        await mss.remove().catch((err: unknown) => log.debug("no leftover tcp mss clamp removed", { error: errorMessage(err) }));
      }
      return true;
    } catch (err) {
      log.error("tcp mss clamp change failed", { error: errorMessage(err) });
      return false;
    }
  }

  private async applyHostCheck(desired: DesiredState): Promise<boolean> {
    const targets = this.options.hostCheck ? desired.hostCheck.targets : [];
    const key = JSON.stringify([targets, desired.hostCheck.key, desired.timing]);
    if (key === this.applied.hostCheck) return true;
    try {
      this.deps.checker.setTargets(targets, desired.hostCheck.key, desired.timing);
      this.applied.hostCheck = key;
      this.deps.log.info("host check targets set", { targets: targets.map((t) => t.hostId) });
      return true;
    } catch (err) {
      this.deps.log.error("setting host check targets failed", { error: errorMessage(err) });
      return false;
    }
  }

  /** Routes are written only here, i.e. only on the strength of a fresh answer, and only when active. */
  private async applyRoutes(desired: DesiredState): Promise<boolean> {
    const { routes, log } = this.deps;
    if (desired.role !== "active") {
      // Standby never writes routes: the new active host points them at itself. Forget ours so that
      // a later promotion writes them again.
      this.applied.routes = undefined;
      this.appliedRoutes = [];
      this.routeError = undefined;
      return true;
    }
    const pointHere = [...new Set(desired.routes.pointHere)].sort();
    const key = JSON.stringify(pointHere);
    // A failed apply is retried with every answer until it succeeds.
    if (key === this.applied.routes && this.routeError === undefined) return true;
    const previous = [...new Set([...this.appliedRoutes, ...routes.applied()])];
    try {
      await routes.apply(pointHere, { previous, removeRoutes: this.options.removeRoutes });
      this.applied.routes = key;
      this.appliedRoutes = pointHere;
      this.routeError = undefined;
      log.info("routes applied", { provider: routes.name, routes: pointHere });
      return true;
    } catch (err) {
      this.routeError = errorMessage(err);
      log.error("applying routes failed", { provider: routes.name, error: this.routeError.slice(0, MAX_ERROR_LENGTH) });
      return false;
    }
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
    const cap = Math.max(initial, this.timing.heartbeat * 1000);
    const delay = Math.min(cap, initial * 2 ** Math.min(this.contact.failures - 1, 20));
    return delay * (0.8 + Math.random() * 0.4); // jitter: many hosts must not retry in lockstep
  }

  private sleep(ms: number): Promise<void> {
    if (this.urgentPending) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
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

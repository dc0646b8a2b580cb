// The IpsecDriver over strongSwan's VICI: renders the desired connections and PSKs, loads only
// what changed (by digest), unloads only its own (`sitelink-` prefixed) names, hands the tunnel to
// a peer location's new active host, reports tunnel state from charon's events, and puts its own
// connections and secrets back when someone else removed them (checked every 2 s).
import { networkInterfaces } from "node:os";
import type { PeerLocation, TunnelReport } from "../../contract/protocol";
import { errorMessage, type Logger } from "../log";
import type { IpsecDriver } from "../types";
import { ViciCommandError } from "../vici/connection";
import { ViciSubscription } from "../vici/events";
import type { ViciSection } from "../vici/message";
import { ViciSession } from "../vici/session";
import { NAME_PREFIX, renderIpsec, type RenderedConfig, type RenderedConn, type SelfAddresses } from "./render";
import { TunnelTracker } from "./tunnels";

export const TUNNEL_EVENTS = ["ike-updown", "child-updown", "ike-rekey", "child-rekey"] as const;

export interface StrongswanDriverOptions {
  viciSocket: string;
  log: Logger;
  /** Whether this host has `address` on an interface; default: os.networkInterfaces(). */
  isLocalAddress?: (address: string) => boolean;
  /** The command session (tests pass one that counts calls); default: a new one on viciSocket. */
  session?: ViciSession;
  now?: () => number;
  /**
   * How often the driver checks charon: that its connections and secrets are still loaded (an
   * operator's `swanctl --load-all` unloads them; two VICI name listings, cheap), and that each
   * initiator's tunnel is up (charon gives up on a peer that refused it). @default 2000
   */
  checkMs?: number;
}

const DEFAULT_CHECK_MS = 2_000;
/**
 * An initiator's first retry after it initiated: a peer host that refused (its agent had not loaded
 * the connection yet, which happens whenever both ends apply a new state at once) is tried again
 * after 0.2 s, then 0.4, 0.8, 1.6 s, then at every check. charon itself never retries a refusal.
 */
const FIRST_RETRY_MS = 200;

export function hasLocalAddress(address: string): boolean {
  return Object.values(networkInterfaces()).some((list) => list?.some((info) => info.address === address));
}

export class StrongswanDriver implements IpsecDriver {
  private readonly session: ViciSession;
  private readonly tracker: TunnelTracker;
  private readonly listeners = new Set<() => void>();
  private readonly subscription: ViciSubscription;
  private readonly isLocalAddress: (address: string) => boolean;
  /** Digest of what we loaded, per connection / secret name ("" = loaded before us, unknown). */
  private conns = new Map<string, string>();
  private secrets = new Map<string, string>();
  private applying: Promise<void> = Promise.resolve();
  /** The last desired state, re-applied when charon comes back (a restarted charon has nothing loaded). */
  private last: { peers: PeerLocation[]; self: SelfAddresses } | undefined;
  private charonLost = false;
  /** Whether an apply has read back what charon holds (connections of an earlier run are found then). */
  private readBackOnce = false;
  /** The last error of the periodic check (logged once, not every round). */
  private checkError: string | undefined;
  /** What the last successful apply loaded. */
  private desired: RenderedConfig = { conns: [], secrets: [], skipped: [] };
  private readonly checkTimer: NodeJS.Timeout;
  /** Initiations in a row per initiator connection still down, for the quick retries. */
  private readonly attempts = new Map<string, number>();
  private retryTimer: NodeJS.Timeout | undefined;

  private constructor(private readonly opts: StrongswanDriverOptions) {
    this.session = opts.session ?? new ViciSession(opts.viciSocket);
    this.tracker = new TunnelTracker(opts.now);
    this.isLocalAddress = opts.isLocalAddress ?? hasLocalAddress;
    this.subscription = ViciSubscription.start(opts.viciSocket, [...TUNNEL_EVENTS], (event, message) => this.onEvent(event, message), {
      onConnect: () => void this.reconnected(),
      onDisconnect: (error) => {
        // One line per outage, not one per retry.
        if (this.charonLost) return;
        this.charonLost = true;
        opts.log.warn("ipsec: lost charon's event connection", { error: error.message });
        // Without charon there are no tunnels (and if it is only the socket, the resync on
        // reconnect tells otherwise): never report up what cannot be seen.
        this.notifyIf(this.tracker.resync([]));
      },
    });
    this.checkTimer = setInterval(() => void this.check(), opts.checkMs ?? DEFAULT_CHECK_MS);
    this.checkTimer.unref();
  }

  /** Starts the driver; it keeps retrying in the background when charon is not up yet. */
  static start(opts: StrongswanDriverOptions): StrongswanDriver {
    return new StrongswanDriver(opts);
  }

  validate(peers: PeerLocation[], self: SelfAddresses): void {
    renderIpsec(peers, self, { isLocalAddress: this.isLocalAddress });
  }

  apply(peers: PeerLocation[], self: SelfAddresses): Promise<void> {
    this.last = { peers, self };
    const run = this.applying.then(() => this.applyNow(peers, self));
    this.applying = run.catch(() => undefined);
    return run;
  }

  tunnels(): TunnelReport[] {
    return this.tracker.reports();
  }

  onChange(listener: () => void): void {
    this.listeners.add(listener);
  }

  /** Stops watching charon. Tunnels stay as they are: the data plane never depends on the agent. */
  async close(): Promise<void> {
    clearInterval(this.checkTimer);
    clearTimeout(this.retryTimer);
    await this.applying;
    this.subscription.close();
    this.session.close();
  }

  private async applyNow(peers: PeerLocation[], self: SelfAddresses): Promise<void> {
    const desired = renderIpsec(peers, self, { isLocalAddress: this.isLocalAddress });
    for (const skip of desired.skipped) this.opts.log.warn("ipsec: no tunnel for peer location", skip);
    // What charon holds is the truth: after our own restart it has connections from before (an
    // unknown digest reloads each once; charon keeps the SAs of an unchanged connection), and an
    // operator's `swanctl --load-all` unloads every connection and secret not in its files. Asking
    // costs two round trips, and matters only on the first apply and for what we would keep as
    // loaded; a standby taking over loads everything anew, without waiting for them.
    const keeps = desired.conns.some((c) => this.conns.get(c.name) === c.digest) || desired.secrets.some((s) => this.secrets.get(s.id) === s.digest);
    if (!this.readBackOnce || keeps) {
      this.conns = readBack(this.conns, await this.session.getConns());
      this.secrets = readBack(this.secrets, await this.session.getShared());
      this.readBackOnce = true;
    }

    // Secrets before connections: a connection that starts must find its PSK.
    for (const secret of desired.secrets) {
      if (this.secrets.get(secret.id) === secret.digest) continue;
      await this.session.loadShared({ id: secret.id, type: "IKE", data: secret.data, owners: secret.owners });
      this.secrets.set(secret.id, secret.digest);
    }
    const wanted = new Set(desired.conns.map((c) => c.name));
    for (const name of [...this.conns.keys()].filter((n) => !wanted.has(n))) {
      await this.unloadConn(name);
    }
    const started = new Set<string>();
    for (const conn of desired.conns) {
      const previous = this.conns.get(conn.name);
      if (previous === conn.digest) continue;
      // A new or changed connection: charon closes the old one's SAs and, for the initiator,
      // initiates to the first remote address (the active host). An adopted one ("") that is
      // unchanged is kept as it is, SAs and all.
      await this.session.loadConn(conn.name, conn.config);
      if (previous !== "") started.add(conn.name);
      this.conns.set(conn.name, conn.digest);
      this.opts.log.info("ipsec: connection loaded", { conn: conn.name, active: conn.activeAddress });
    }
    const wantedSecrets = new Set(desired.secrets.map((s) => s.id));
    for (const id of [...this.secrets.keys()].filter((i) => !wantedSecrets.has(i))) {
      await this.session.unloadShared(id);
      this.secrets.delete(id);
    }

    this.notifyIf(this.tracker.watch(desired.conns));
    this.desired = desired;
    for (const conn of desired.conns) {
      // A connection charon just started initiates by itself: watch it like one we initiated.
      if (conn.initiator && started.has(conn.name)) this.attempts.set(conn.name, 0);
      await this.followActiveHost(conn, started.has(conn.name));
    }
    this.scheduleRetry();
  }

  /** The next quick check, while an initiator we (or charon) just initiated is still down. */
  private scheduleRetry(): void {
    for (const name of this.attempts.keys()) if (!this.tracker.isDown(name) || !this.desired.conns.some((c) => c.name === name)) this.attempts.delete(name);
    const delays = [...this.attempts.values()].map((n) => FIRST_RETRY_MS * 2 ** n).filter((ms) => ms < (this.opts.checkMs ?? DEFAULT_CHECK_MS));
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (delays.length === 0) return;
    this.retryTimer = setTimeout(() => void this.check(), Math.min(...delays));
    this.retryTimer.unref();
  }

  /**
   * The periodic check. Someone else may have unloaded our connections or secrets (`swanctl
   * --load-all` unloads everything not in its files): load them again, without waiting for a new
   * desired state. And charon retries a peer that does not answer (keyingtries = 0), but not one
   * that refused us, e.g. a new active host whose own agent had not loaded the connection yet:
   * initiate again.
   */
  private check(): Promise<void> {
    const run = this.applying.then(async () => {
      if (this.charonLost || !this.last) return; // it re-applies everything when charon comes back
      const conns = new Set(await this.session.getConns());
      const secrets = new Set(await this.session.getShared());
      const missing = [...this.desired.conns.map((c) => c.name).filter((n) => !conns.has(n)), ...this.desired.secrets.map((s) => s.id).filter((i) => !secrets.has(i))];
      if (missing.length > 0) {
        this.opts.log.warn("ipsec: charon lost sitelink connections or secrets (unloaded by someone else?): loading them again", { missing });
        await this.applyNow(this.last.peers, this.last.self);
        return;
      }
      for (const conn of this.desired.conns) {
        if (!conn.initiator || !this.tracker.isDown(conn.name)) continue;
        this.opts.log.debug("ipsec: tunnel down, initiating again", { conn: conn.name });
        // Counted whether it initiates or one is under way: the quick checks thin out either way.
        this.attempts.set(conn.name, (this.attempts.get(conn.name) ?? 0) + 1);
        await this.initiateUnlessUnderWay(conn.name, []);
      }
      this.scheduleRetry();
    });
    this.applying = run.then(
      () => {
        this.checkError = undefined;
      },
      (error) => {
        const message = errorMessage(error);
        (message === this.checkError ? this.opts.log.debug : this.opts.log.warn)("ipsec: checking charon failed", { error: message });
        this.checkError = message;
      },
    );
    return this.applying;
  }

  /**
   * The peer location's active host is where the tunnel belongs: IKE_SAs with any other of its
   * hosts are stale (that host is dead, stopped or cut off) and go at once instead of after DPD.
   * A connection charon just started needs nothing more; otherwise the initiator initiates
   * when no IKE_SA is left (stale ones closed, or the tunnel terminated by hand).
   */
  private async followActiveHost(conn: RenderedConn, started: boolean): Promise<void> {
    if (!conn.activeAddress) return;
    const stale = this.tracker.staleIkeSas(conn.name, conn.activeAddress);
    for (const ikeId of stale) {
      this.opts.log.info("ipsec: closing IKE_SA with a peer host that is no longer active", { conn: conn.name, ikeId });
      await this.ignoreGone(this.session.terminate({ ikeId, force: true, timeout: -1 }));
    }
    if (!conn.initiator || started || !(stale.length > 0 || this.tracker.isDown(conn.name))) return;
    if (await this.initiateUnlessUnderWay(conn.name, stale)) this.attempts.set(conn.name, 0);
  }

  /** Initiates unless an IKE_SA is being set up already; true when it initiated. */
  private async initiateUnlessUnderWay(name: string, closing: string[]): Promise<boolean> {
    // Events show established SAs only: ask charon whether one is being set up already.
    const current = (await this.session.listSas({ ike: name }))
      .map((entry) => entry[name])
      .filter((ike) => typeof ike === "object" && !Array.isArray(ike) && !closing.includes(String(ike.uniqueid)));
    if (current.length > 0) return false;
    await this.session.initiate({ child: name, ike: name, timeout: -1 });
    return true;
  }

  private async unloadConn(name: string): Promise<void> {
    // Unloading a responder's connection leaves its SAs up: close them first.
    await this.ignoreGone(this.session.terminate({ ike: name, force: true, timeout: -1 }));
    await this.ignoreGone(this.session.unloadConn(name));
    this.conns.delete(name);
    this.opts.log.info("ipsec: connection unloaded", { conn: name });
  }

  /** Terminate/unload of something already gone is success. */
  private async ignoreGone(call: Promise<void>): Promise<void> {
    try {
      await call;
    } catch (error) {
      if (!(error instanceof ViciCommandError)) throw error;
      this.opts.log.debug("ipsec: nothing to do", { error: error.message });
    }
  }

  private async reconnected(): Promise<void> {
    if (this.charonLost) this.opts.log.info("ipsec: charon's event connection is back");
    this.charonLost = false;
    await this.resync();
    // charon may have restarted in between, with none of our connections: put them back now
    // rather than on the next change of the desired state.
    if (!this.last) return;
    try {
      await this.apply(this.last.peers, this.last.self);
    } catch (error) {
      this.opts.log.warn("ipsec: re-applying after charon came back failed", { error: errorMessage(error) });
    }
  }

  private async resync(): Promise<void> {
    try {
      this.notifyIf(this.tracker.resync(await this.session.listSas()));
    } catch (error) {
      this.opts.log.warn("ipsec: listing SAs failed", { error: errorMessage(error) });
    }
  }

  private onEvent(event: string, message: ViciSection): void {
    this.notifyIf(this.tracker.event(event, message));
  }

  private notifyIf(changed: boolean): void {
    if (!changed) return;
    for (const listener of this.listeners) {
      try {
        listener();
      } catch (error) {
        this.opts.log.error("ipsec: tunnel change listener failed", { error: errorMessage(error) });
      }
    }
  }
}

const ours = (name: string) => name.startsWith(NAME_PREFIX);

/** Our names charon has loaded, with the digest we know for each ("" when loaded before us). */
function readBack(known: Map<string, string>, loaded: string[]): Map<string, string> {
  return new Map(loaded.filter(ours).map((name) => [name, known.get(name) ?? ""]));
}

// The seams of the agent: the reconcile loop drives these; each has one implementation module
// (or one per provider) and is tested on its own.
import type { DesiredState, HostCheckResult, HostCheckTarget, PeerLocation, TunnelReport } from "../contract/protocol";

/** Makes strongSwan (charon, over VICI) carry exactly the desired tunnels. */
export interface IpsecDriver {
  /** Throws, naming the bad field, when `peers` cannot be applied; changes nothing (checked before any part of an answer is applied). */
  validate(peers: PeerLocation[], self: { hostId: string; publicAddress?: string; privateAddress?: string }): void;
  /** Loads/unloads connections and PSKs so charon matches `peers`; initiates where this side initiates. Idempotent. */
  apply(peers: PeerLocation[], self: { hostId: string; publicAddress?: string; privateAddress?: string }): Promise<void>;
  /** Current tunnel state per peer location, kept up to date from charon's events. */
  tunnels(): TunnelReport[];
  /** Called whenever a tunnel changes state (so the agent can report at once). */
  onChange(listener: () => void): void;
  close(): Promise<void>;
}

/** Points remote CIDRs at this host in whatever plays the route table (cloud, kernel, file, lab). */
export interface RouteProvider {
  readonly name: "aws" | "gcp" | "azure" | "oracle" | "kernel" | "file" | "none" | "lab";
  /**
   * Make every CIDR in `cidrs` point at this host. Called only with a fresh state response.
   * `previous` are the CIDRs this host pointed at before; with removeRoutes on, the provider removes
   * those no longer desired (and only routes that point at this host). `linkHosts`: every link
   * host's address (the desired state's firewall.allow): a route that points at one of them may be
   * taken over, one that points elsewhere is someone else's (providers that cannot tell otherwise).
   */
  apply(cidrs: string[], opts: { previous: string[]; removeRoutes: boolean; linkHosts?: string[] }): Promise<void>;
  /** CIDRs currently pointing at this host, as far as the provider knows. */
  applied(): string[];
  /**
   * `shared`: a route table the location's hosts share (cloud route tables, the lab's router). The
   * active host points the routes at itself, written only on the strength of a fresh answer: a
   * standby leaves them to the new active host; a change found by the drift check is written back
   * after a fresh answer still says active.
   * `own`: this host's own routes (kernel table, routes file). Only the active host may hold them:
   * a standby withdraws them, and someone else's change is put back (drift check).
   */
  readonly table: "shared" | "own";
  /**
   * Drift check: whether every CIDR of `cidrs` (the last apply's) points here, and only here (for
   * `own` tables with `cidrs` empty: that nothing of ours is left). Throws when the table cannot be read.
   */
  inPlace?(cidrs: string[]): Promise<boolean>;
}

/** The agent's own firewall chain: UDP 500/4500 and TCP 9790 only from `allow`. */
export interface Firewall {
  apply(allow: string[]): Promise<void>;
  /** Drift check: whether the chain and its jump are still exactly as apply(allow) left them. */
  inPlace(allow: string[]): Promise<boolean>;
  /** Removes every rule it added, and nothing else. */
  remove(): Promise<void>;
}

/** `set-mtu`: TCP MSS clamping for traffic to and from the remote subnets (policy IPsec has no tunnel interface). */
export interface MssClamp {
  /** Clamps TCP SYNs to and from `cidrs` to fit `mtu`; replaces what was there atomically. Idempotent. */
  apply(mtu: number, cidrs: string[]): Promise<void>;
  /** Drift check: whether the chain and its jumps are still exactly as apply(mtu, cidrs) left them. */
  inPlace(mtu: number, cidrs: string[]): Promise<boolean>;
  /** Removes every rule it added (jumps and chain), and nothing else. */
  remove(): Promise<void>;
}

/** Authenticated reachability probes (TCP 9790) to the targets the state service names. */
export interface HostChecker {
  /** `allow`: the link's host addresses, the only sources the host-check listener admits. */
  setTargets(targets: HostCheckTarget[], key: string, timing: DesiredState["timing"], allow: readonly string[]): void;
  results(): HostCheckResult[];
  /** Called when a target flips between reachable and unreachable, or its failures reach DOWN_AFTER_FAILURES (urgent report). */
  onChange(listener: () => void): void;
  close(): Promise<void>;
}

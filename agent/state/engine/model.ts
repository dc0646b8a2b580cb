// The engine's mutable state: one record per host and per location, built from the topology.
import { connectedPairs, type Link, type Topology } from "../../contract/topology";
import type { OfflineReason, PartitionReason } from "./types";

/** A link's timing in ms, plus the windows derived from it. */
export interface LinkTiming {
  heartbeatMs: number;
  probeIntervalMs: number;
  probeTimeoutMs: number;
  crashConfirmMs: number;
  /** Host-check results older than this are ignored: one report period plus a failed probe and a few more. */
  freshMs: number;
  /** How long a host must reach fewer peers than another before it counts as partitioned. */
  partitionConfirmMs: number;
  /**
   * How long after a host comes online before reports about it, or from it, count as evidence: it
   * needs one round trip for its host-check key and a few probes before "unreachable" means anything.
   */
  settleMs: number;
}

/** One host-check result, as the service received it (observedAt on the service clock). */
export interface CheckResult {
  target: HostState;
  reachable: boolean;
  failures: number;
  observedAt: number;
}

export interface HostState {
  readonly id: string;
  readonly location: LocationState;
  priority: number;
  timeoutMs: number;
  backoffMs: number;
  online: boolean;
  /** When the host last came online (-Infinity when restored: it was online before the restart). */
  onlineSince: number;
  lastSeen: number | null;
  offlineSince: number | null;
  offlineReason: OfflineReason | null;
  /** Until then (after a restore) the host cannot time out or be declared crashed. */
  graceUntil: number;
  inBackoff: boolean;
  partition: PartitionReason | null;
  /** Since when this host has reached fewer peers than another candidate of its location. */
  behindSince: number | null;
  /** Online with no heartbeat for `timeout`: kept online because other hosts still reach it. */
  silent: boolean;
  /** Since when this host's heartbeats have arrived without a break (no gap over crashConfirm, never silent). */
  heardSince: number;
  /** A silent active host that must hand its role to a host heard for long enough (judge.ts silentHandover). */
  handsOver: boolean;
  /** Latest result per target host id, from this host's reports. */
  results: Map<string, CheckResult>;
  /** A timeout entry for this host is in the deadline queue (one is enough; it re-arms itself). */
  timeoutQueued: boolean;
}

export interface LocationState {
  readonly key: string;
  readonly link: string;
  readonly name: string;
  readonly timing: LinkTiming;
  /** Sorted by host id: the stable order among equal priorities. */
  readonly hosts: HostState[];
  /** Locations this one has a tunnel to. */
  readonly peers: LocationState[];
  active: HostState | null;
  hadActive: boolean;
  /** Until then (after a restore) an eligible active host is not preempted. */
  graceUntil: number;
  /** When a queued re-check of this location's partition status is due (one at a time). */
  recheckAt: number | null;
}

export interface Model {
  hosts: Map<string, HostState>;
  locations: Map<string, LocationState>;
}

export function locationKey(link: string, location: string): string {
  return `${link}/${location}`;
}

export function linkTiming(link: Link): LinkTiming {
  const t = link.timing;
  const heartbeatMs = t.heartbeat * 1000;
  const probeIntervalMs = t.probeInterval * 1000;
  const probeTimeoutMs = t.probeTimeout * 1000;
  return {
    heartbeatMs,
    probeIntervalMs,
    probeTimeoutMs,
    crashConfirmMs: t.crashConfirm * 1000,
    freshMs: heartbeatMs + probeTimeoutMs + 3 * probeIntervalMs,
    partitionConfirmMs: heartbeatMs + probeTimeoutMs + probeIntervalMs,
    settleMs: heartbeatMs + probeTimeoutMs + 2 * probeIntervalMs,
  };
}

/** Every host offline, no active host anywhere. */
export function buildModel(topology: Topology): Model {
  const hosts = new Map<string, HostState>();
  const locations = new Map<string, LocationState>();
  for (const link of topology.links) {
    const timing = linkTiming(link);
    const ofLink = new Map<string, LocationState>();
    for (const location of link.locations) {
      const state: LocationState = {
        key: locationKey(link.name, location.name),
        link: link.name,
        name: location.name,
        timing,
        hosts: [],
        peers: [],
        active: null,
        hadActive: false,
        graceUntil: 0,
        recheckAt: null,
      };
      for (const host of [...location.hosts].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
        const h: HostState = {
          id: host.id,
          location: state,
          priority: host.priority,
          timeoutMs: host.timeout * 1000,
          backoffMs: host.backoff * 1000,
          online: false,
          onlineSince: -Infinity,
          lastSeen: null,
          offlineSince: null,
          offlineReason: null,
          graceUntil: 0,
          inBackoff: false,
          partition: null,
          behindSince: null,
          silent: false,
          heardSince: -Infinity,
          handsOver: false,
          results: new Map(),
          timeoutQueued: false,
        };
        state.hosts.push(h);
        hosts.set(h.id, h);
      }
      ofLink.set(location.name, state);
      locations.set(state.key, state);
    }
    for (const [a, b] of connectedPairs(link)) {
      const la = ofLink.get(a);
      const lb = ofLink.get(b);
      if (!la || !lb) continue;
      la.peers.push(lb);
      lb.peers.push(la);
    }
  }
  return { hosts, locations };
}

/**
 * Moves the runtime state of a reloaded topology's survivors from `old` into `next`: hosts that stay
 * in the same location keep liveness, backoff, reports and the host checks about surviving targets;
 * locations keep their history. A removed or moved active host stays referenced as `active`, so the
 * next election hands over from it by name.
 */
export function carryOver(old: Model, next: Model): void {
  for (const host of next.hosts.values()) {
    const before = old.hosts.get(host.id);
    if (!before || before.location.key !== host.location.key) continue;
    host.online = before.online;
    host.onlineSince = before.onlineSince;
    host.lastSeen = before.lastSeen;
    host.offlineSince = before.offlineSince;
    host.offlineReason = before.offlineReason;
    host.graceUntil = before.graceUntil;
    host.inBackoff = before.inBackoff;
    host.behindSince = before.behindSince;
    host.silent = before.silent;
    host.heardSince = before.heardSince;
    host.handsOver = before.handsOver;
    for (const result of before.results.values()) {
      const target = next.hosts.get(result.target.id);
      if (target && target.location.key === result.target.location.key) host.results.set(target.id, { ...result, target });
    }
  }
  for (const location of next.locations.values()) {
    const before = old.locations.get(location.key);
    if (!before) continue;
    location.hadActive = before.hadActive;
    location.graceUntil = before.graceUntil;
    const kept = before.active && next.hosts.get(before.active.id);
    location.active = kept && kept.location === location ? kept : before.active;
  }
}

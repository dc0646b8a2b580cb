// The rules that turn host-check results into decisions: crash confirmation, partition, the election.
import { DOWN_AFTER_FAILURES } from "../../contract/topology";
import type { CheckResult, HostState, LocationState } from "./model";

/** One lost probe is no evidence: a target is down after DOWN_AFTER_FAILURES failures in a row. */
export function isDown(result: { reachable: boolean; failures: number }): boolean {
  return !result.reachable && result.failures >= DOWN_AFTER_FAILURES;
}

/** A host online long enough for its reports, and reports about it, to count (see LinkTiming.settleMs). */
export function settled(host: HostState, at: number): boolean {
  return at >= host.onlineSince + host.location.timing.settleMs;
}

/** A failed probe counts against a target only once the target had time to get its key and listen. */
export function failedSettled(result: CheckResult): boolean {
  return !result.reachable && settled(result.target, result.observedAt);
}

function isFresh(result: CheckResult, now: number, location: LocationState): boolean {
  return now < staleAt(result, location);
}

function staleAt(result: CheckResult, location: LocationState): number {
  return result.observedAt + location.timing.freshMs;
}

/** Freshness checks that remember when the first result they relied on goes stale. */
class Freshness {
  staleAt = Infinity;
  constructor(private readonly location: LocationState, private readonly now: number) {}

  check(result: CheckResult | undefined): result is CheckResult {
    if (!result || !isFresh(result, this.now, this.location)) return false;
    this.staleAt = Math.min(this.staleAt, staleAt(result, this.location));
    return true;
  }
}

/**
 * A quiet host is confirmed crashed when it has been silent for `crashConfirm` and another online host
 * failed to reach it DOWN_AFTER_FAILURES times in a row after it went quiet (one lost probe plus a late
 * poll is no crash). A witness that reaches nobody else proves nothing (it may be the one cut off),
 * and a witness's failure from before the host's last heartbeat is old news.
 */
export function crashConfirmed(host: HostState, now: number): boolean {
  const location = host.location;
  if (!host.online || host.lastSeen === null || now < host.graceUntil) return false;
  if (now - host.lastSeen < location.timing.crashConfirmMs) return false;
  return hasWitness(host, location, now) || location.peers.some((peer) => hasWitness(host, peer, now));
}

function hasWitness(target: HostState, among: LocationState, now: number): boolean {
  for (const witness of among.hosts) {
    // A witness that just came back (a flapping host) may report failures from its own outage.
    if (witness === target || !witness.online || !settled(witness, now)) continue;
    const result = witness.results.get(target.id);
    if (!result || !isDown(result) || !failedSettled(result) || result.observedAt <= target.lastSeen!) continue;
    if (isFresh(result, now, among) && reachesAnother(witness, target, now)) return true;
  }
  return false;
}

/**
 * Until when a quiet host is shown alive by the host checks of others: the latest time a fresh result
 * of a settled online host that reached it after its last heartbeat goes stale; undefined when none
 * does. Such a host has lost the state service, not its tunnels.
 */
export function reachedUntil(target: HostState, now: number): number | undefined {
  let until: number | undefined;
  const home = target.location;
  for (const among of [home, ...home.peers]) {
    for (const witness of among.hosts) {
      if (witness === target || !witness.online || !settled(witness, now)) continue;
      const result = witness.results.get(target.id);
      if (!result?.reachable || result.observedAt <= target.lastSeen! || !isFresh(result, now, among)) continue;
      until = Math.max(until ?? -Infinity, staleAt(result, among));
    }
  }
  return until;
}

function reachesAnother(witness: HostState, target: HostState, now: number): boolean {
  for (const result of witness.results.values()) {
    if (result.target !== target && result.reachable && isFresh(result, now, witness.location)) return true;
  }
  return false;
}

/** Online and out of backoff: may be active unless partitioned. */
export function isCandidate(host: HostState): boolean {
  return host.online && !host.inBackoff;
}

/**
 * May hold the active role: a candidate, not partitioned, and, when silent, already active and not
 * handing over (a silent host keeps its role while nobody better placed could take it; it cannot be
 * handed a new one, it would not hear of it).
 */
export function isEligible(host: HostState): boolean {
  return isCandidate(host) && host.partition === null && (!host.silent || (host.location.active === host && !host.handsOver));
}

/**
 * Whether the location's silent active host must hand its role over, and otherwise when to ask again.
 * It keeps the role while no other host could take it and hear of it (a location cut from the state
 * service as a whole changes nothing); but once another eligible host has been heard without a break
 * for the active host's timeout, that one takes over, as after a plain timeout: a host that cannot
 * hear the state service misses every later change (a peer's new active host, a new PSK). "Without a
 * break for a timeout" keeps a location whose hosts come back one after the other from handing the
 * role to whichever is heard first.
 */
export function silentHandover(location: LocationState, now: number): { handsOver: boolean; recheckAt?: number } {
  const active = location.active;
  if (!active?.silent) return { handsOver: false };
  let recheckAt: number | undefined;
  for (const host of location.hosts) {
    // Heard now (a host merely not silent yet may be cut off too) and without a break since.
    if (host === active || host.silent || !isEligible(host) || now - host.lastSeen! > location.timing.crashConfirmMs) continue;
    const heardLongEnough = host.heardSince + active.timeoutMs;
    if (now >= heardLongEnough) return { handsOver: true };
    recheckAt = Math.min(recheckAt ?? Infinity, heardLongEnough);
  }
  return recheckAt === undefined ? { handsOver: false } : { handsOver: false, recheckAt };
}

/**
 * Sets `partition` on the hosts of a location. Two rules, applied in order so that at least one
 * candidate always stays eligible (a lone candidate is never partitioned):
 * 1. peers-lost: every online host of the peer locations reports the host down, while another
 *    candidate is reached by them, and something other than those probes says so too
 *    (`corroborated`): their probes alone are one listener's word, which a flood of it can break;
 * 2. partitioned: among the rest, the host has reached fewer peer hosts than the best one for
 *    `partitionConfirmMs` (a short dip while reports interleave is not a partition).
 * Returns when the verdicts may change with no new report (a host behind long enough, a result
 * relied on going stale), so the caller re-checks then.
 */
export function judgePartitions(location: LocationState, now: number): number | undefined {
  const candidates: HostState[] = [];
  for (const host of location.hosts) {
    host.partition = null;
    if (isCandidate(host)) candidates.push(host);
    else host.behindSince = null;
  }
  if (candidates.length < 2) {
    for (const host of candidates) host.behindSince = null;
    return undefined;
  }

  const fresh = new Freshness(location, now);
  const verdicts = candidates.map((c) => peerVerdict(c, location, fresh, now));
  const lost = candidates.filter((_, i) => verdicts[i] === "lost");
  let remaining = candidates;
  if (lost.length > 0) {
    const kept = candidates.filter((_, i) => verdicts[i] !== "lost");
    if (verdicts.includes("reached")) {
      for (const c of lost) {
        c.partition = "peers-lost";
        c.behindSince = null;
      }
      remaining = kept;
    }
  }

  const scores = remaining.map((c) => reachScore(c, location, fresh));
  const best = Math.max(...scores);
  let recheckAt = fresh.staleAt;
  remaining.forEach((c, i) => {
    const score = scores[i]!;
    if (score < 0 || score >= best) {
      c.behindSince = null;
      return;
    }
    c.behindSince ??= now;
    const confirmedAt = c.behindSince + location.timing.partitionConfirmMs;
    if (now >= confirmedAt) c.partition = "partitioned";
    else recheckAt = Math.min(recheckAt, confirmedAt);
  });
  return Number.isFinite(recheckAt) ? recheckAt : undefined;
}

/** "lost": every online peer host reports it down; "reached": some peer host reaches it. */
function peerVerdict(host: HostState, location: LocationState, fresh: Freshness, now: number): "lost" | "reached" | "unknown" {
  let online = 0;
  let down = 0;
  let reached = false;
  for (const peer of location.peers) {
    for (const p of peer.hosts) {
      if (!p.online || !settled(p, now)) continue;
      online++;
      const result = p.results.get(host.id);
      if (!fresh.check(result)) continue;
      if (result.reachable) reached = true;
      else if (isDown(result) && failedSettled(result)) down++;
    }
  }
  if (reached) return "reached";
  return online > 0 && down === online && corroborated(host, location, fresh, now) ? "lost" : "unknown";
}

/**
 * Evidence beside the peers' failed probes that the host is really cut off: (a) its own fresh results
 * show it reaching no peer host and failing to reach one (a real cut is two-way: a TCP probe needs
 * both directions), or (b) a settled host of its own location that reaches another host reports it
 * down too (a crash, cables cut: it stops reporting, but its neighbours see it). A host whose listener
 * alone is flooded reaches its peers and its neighbours, and so keeps its role.
 */
function corroborated(host: HostState, location: LocationState, fresh: Freshness, now: number): boolean {
  let down = false;
  let reaches = false;
  for (const result of host.results.values()) {
    if (!location.peers.includes(result.target.location) || !fresh.check(result)) continue;
    if (result.reachable) reaches = true;
    else if (isDown(result) && failedSettled(result)) down = true;
  }
  if (down && !reaches) return true;
  return location.hosts.some((witness) => {
    if (witness === host || !witness.online || !settled(witness, now)) return false;
    const result = witness.results.get(host.id);
    return fresh.check(result) && isDown(result) && failedSettled(result) && reachesAnother(witness, host, now);
  });
}

/** How many peer hosts this host reaches by its fresh results; -1 when it has none (not judged). */
function reachScore(host: HostState, location: LocationState, fresh: Freshness): number {
  let judged = false;
  let score = 0;
  for (const result of host.results.values()) {
    if (!location.peers.includes(result.target.location) || !fresh.check(result)) continue;
    // A peer host still settling is no measure of who reaches the peers better.
    if (!result.reachable && !failedSettled(result)) continue;
    judged = true;
    if (!isDown(result)) score++;
  }
  return judged ? score : -1;
}

/**
 * The active host of a location:
 * 1. the eligible host with the highest priority; the current active host keeps the role among
 *    equals (and, during a grace period, against anyone), then the first by host id;
 * 2. with no eligible host but some online and heard (not silent), the best of those: backoff keeps
 *    a returning host from taking the role from an eligible one, never a location dark;
 * 3. with no such host, the current active host keeps the role even offline (its tunnels may still
 *    carry traffic, and nobody could do better), unless it stopped gracefully or left the topology.
 */
export function chooseActive(location: LocationState, now: number): HostState | null {
  const current = location.active;
  let best: HostState | null = null;
  let bestOnline: HostState | null = null;
  let currentEligible = false;
  for (const host of location.hosts) {
    if (host.online && !host.silent && (!bestOnline || host.priority > bestOnline.priority)) bestOnline = host;
    if (!isEligible(host)) continue;
    if (host === current) currentEligible = true;
    if (!best || host.priority > best.priority) best = host;
  }
  if (best) return currentEligible && (now < location.graceUntil || current!.priority === best.priority) ? current : best;
  if (bestOnline) return bestOnline;
  const stands = current !== null && location.hosts.includes(current) && current.offlineReason !== "offline";
  return stands ? current : null;
}

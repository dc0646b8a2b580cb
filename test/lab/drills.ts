// The failover drills. Each faults the lab, measures with steady probes between the clients, and
// leaves the lab as it found it (every host up, the preferred hosts active) for the next drill.
import { setHostLinks } from "./network";
import { firstReplyAfter, measureOutage } from "./outage";
import { allHosts, type HostPlan, type LocationPlan } from "./plan";
import { waitFor, type Lab, type Probe } from "./lab";

export interface Outage {
  /** Ms from the fault to the first packet through again; undefined when traffic never came back. */
  outageMs: number | undefined;
  /** Ms traffic stood still, from the first lost packet to the first packet through again. */
  gapMs: number | undefined;
  lost: number;
  sent: number;
}

/** How long a drill waits for something that should take seconds (generous: CI machines are slow). */
const PATIENCE_MS = 30_000;
/** Probes run this long past the restoration so late replies are counted, not lost. */
const SETTLE_MS = 1_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function preferredHost(loc: LocationPlan): HostPlan {
  return [...loc.hosts].sort((a, b) => b.priority - a.priority)[0]!;
}

function standbyHost(loc: LocationPlan): HostPlan {
  return [...loc.hosts].sort((a, b) => b.priority - a.priority)[1]!;
}

/** Probes from `loc`'s client to every other location's client, measured together. */
class ProbeSet {
  private constructor(private readonly probes: Probe[]) {}

  static async start(lab: Lab, loc: LocationPlan): Promise<ProbeSet> {
    const set = new ProbeSet(lab.plan.locations.filter((l) => l !== loc).map((other) => lab.startProbe(loc, other)));
    await waitFor("probe replies before the fault", PATIENCE_MS, () => set.probes.every((p) => p.read().filter((x) => x.recvAt).length >= 20));
    return set;
  }

  /**
   * The worst outage over all probes since `from`, measured once `ready` holds (say, the routes
   * moved) and packets sent after that came back; after `timeoutMs` it measures what there is.
   */
  async outageSince(from: number, ready: () => Promise<boolean>, timeoutMs = PATIENCE_MS): Promise<Outage> {
    let readyAt: number | undefined;
    const flowingSince = (at: number) => this.probes.every((p) => p.read().some((x) => x.sentAt >= at && x.recvAt !== undefined));
    await waitFor("traffic through again", timeoutMs, async () => {
      if (readyAt === undefined && (await ready())) readyAt = Date.now();
      return readyAt !== undefined && flowingSince(readyAt);
    }, 100).catch(() => undefined); // a timeout shows as outageMs undefined; the caller asserts
    await sleep(SETTLE_MS);
    return this.measure(from, Date.now() - SETTLE_MS);
  }

  measure(from: number, until: number): Outage {
    const reports = this.probes.map((p) => measureOutage(p.read(), from, until));
    const never = reports.some((r) => r.outageMs === undefined);
    return {
      outageMs: never ? undefined : Math.max(...reports.map((r) => r.outageMs!)),
      gapMs: never ? undefined : Math.max(...reports.map((r) => r.gapMs!)),
      lost: reports.reduce((n, r) => n + r.lost, 0),
      sent: reports.reduce((n, r) => n + r.sent, 0),
    };
  }

  async stop(): Promise<void> {
    await Promise.all(this.probes.map((p) => p.stop()));
  }
}

async function waitForRoute(lab: Lab, loc: LocationPlan, host: HostPlan, timeoutMs: number): Promise<void> {
  await waitFor(`${loc.name}'s routes to point at ${host.id}`, timeoutMs, async () => (await lab.routeTarget(loc))?.id === host.id, 100);
}

/** Every location's routes on its preferred host and a ping through every pair. */
export async function waitForSteady(lab: Lab, timeoutMs = PATIENCE_MS): Promise<void> {
  for (const loc of lab.plan.locations) await waitForRoute(lab, loc, preferredHost(loc), timeoutMs);
  for (const from of lab.plan.locations) {
    for (const to of lab.plan.locations.filter((l) => l !== from)) {
      await waitFor(`a ping from ${from.name} to ${to.name}`, timeoutMs, () => lab.ping(from, to), 200);
    }
  }
}

export interface FailoverResult {
  /** The fault: from the fault to the first packet through the standby. */
  failover: Outage;
  /** The preferred host's return after its backoff: traffic while it takes the role back (see gapMs). */
  takeBack: Outage;
  /** Ms from the fault until the preferred host owned the routes again (its backoff included). */
  takeBackAfterMs: number;
  standbyTookOver: boolean;
}

type Fault = "crash" | "graceful" | "partition";

/**
 * Drills 1-4: fault the active host of `loc` (crash: kill -9 + cables cut; graceful: SIGTERM;
 * partition: no path to the peer locations), wait for the standby to carry the traffic, then bring
 * the host back and measure its return after the backoff.
 */
export async function failoverDrill(lab: Lab, loc: LocationPlan, fault: Fault, backoffSeconds: number): Promise<FailoverResult> {
  const active = preferredHost(loc);
  const standby = standbyHost(loc);
  await waitForSteady(lab);
  await lab.settled();
  const probes = await ProbeSet.start(lab, loc);
  try {
    // A fault strikes at any point of the hosts' poll cycle: a drill that always struck at the same
    // point after the last decision would measure that point, not the failover.
    await sleep(Math.random() * lab.plan.topology.links[0]!.timing.heartbeat * 1000);
    const faultAt = Date.now();
    if (fault === "crash") await lab.crashHost(active);
    else if (fault === "graceful") await lab.stopHost(active);
    else await lab.partition(active, true);
    const onStandby = async () => (await lab.routeTarget(loc))?.id === standby.id;
    const failover = await probes.outageSince(faultAt, onStandby);
    const standbyTookOver = await onStandby();

    const returnAt = Date.now();
    if (fault === "partition") await lab.partition(active, false);
    else await lab.startHost(active);
    await waitForRoute(lab, loc, active, backoffSeconds * 1000 + PATIENCE_MS);
    const takeBackAfterMs = Date.now() - faultAt;
    await sleep(SETTLE_MS * 2);
    const takeBack = probes.measure(returnAt, Date.now() - SETTLE_MS);
    return { failover, takeBack, takeBackAfterMs, standbyTookOver };
  } finally {
    await probes.stop();
  }
}

export interface UnchangedResult {
  downSeconds: number;
  traffic: Outage;
  routesBefore: Record<string, string | undefined>;
  routesAfter: Record<string, string | undefined>;
  /** Established IKE SAs (name#id) of every host before and after: a re-made tunnel changes them. */
  sasBefore: string[];
  sasAfter: string[];
  /** The state service's decision generation: unchanged means no failover was decided. */
  generationBefore: number;
  generationAfter: number;
}

/**
 * A control-plane fault that must leave the data plane alone: `fault` for `downSeconds`, then
 * `heal`, then several heartbeats against the healed control plane (a failover would show then).
 */
async function unchangedThrough(lab: Lab, downSeconds: number, fault: () => Promise<void>, heal: () => Promise<void>): Promise<UnchangedResult> {
  await waitForSteady(lab);
  // An earlier drill's crossed initiations can leave a second IKE SA to one peer until charon drops
  // the duplicate; "nothing changed" is judged from a snapshot without one.
  await waitFor("one IKE SA per connection on every host", 3 * PATIENCE_MS, async () => {
    const connections = (await allSas(lab)).map((sa) => sa.replace(/#\d+$/, ""));
    return new Set(connections).size === connections.length;
  }, 200);
  const probes = await ProbeSet.start(lab, lab.plan.locations[0]!);
  try {
    const routesBefore = await lab.routeTable();
    const sasBefore = await allSas(lab);
    const generationBefore = await lab.generation();
    const from = Date.now();
    await fault();
    await sleep(downSeconds * 1000);
    await heal();
    await sleep(10_000);
    const traffic = probes.measure(from, Date.now() - SETTLE_MS);
    return {
      downSeconds,
      traffic,
      routesBefore,
      routesAfter: await lab.routeTable(),
      sasBefore,
      sasAfter: await allSas(lab),
      generationBefore,
      generationAfter: await lab.generation(),
    };
  } finally {
    await probes.stop();
  }
}

/** Drill 5: the state service is stopped for `downSeconds`, then restarted; nothing may change. */
export function stateOutageDrill(lab: Lab, downSeconds: number, signal: NodeJS.Signals = "SIGKILL"): Promise<UnchangedResult> {
  return unchangedThrough(lab, downSeconds, () => lab.stopState(signal), () => lab.startState());
}

/**
 * Drill 7: every host of `loc` loses its path to the state service (the service stays up and keeps
 * hearing the other locations) for longer than the heartbeat timeout; the tunnels keep working,
 * so nothing may change: the location keeps its active host.
 */
export function controlPlaneCutDrill(lab: Lab, loc: LocationPlan, downSeconds: number): Promise<UnchangedResult> {
  return unchangedThrough(lab, downSeconds, () => lab.cutFromState(loc, true), () => lab.cutFromState(loc, false));
}

/**
 * Drill 8: `probability` (0-1) of the packets from the internet dropped at random at every host and
 * at the state service for `seconds`: a lossy network is no failure, so no failover may be decided
 * (probes through the tunnels are lost, of course: judge the generation and the routes).
 */
export function lossDrill(lab: Lab, seconds: number, probability: number): Promise<UnchangedResult> {
  return unchangedThrough(lab, seconds, () => lab.setInternetLoss(probability), () => lab.setInternetLoss(0));
}

async function allSas(lab: Lab): Promise<string[]> {
  const all: string[] = [];
  for (const loc of lab.plan.locations) for (const host of loc.hosts) all.push(...(await lab.ikeSas(host)).map((sa) => `${host.id}:${sa}`));
  return all.sort();
}

export interface FlapResult {
  flaps: number;
  /** Times the flapping host's location moved its routes to another host. */
  roleChanges: number;
  /** Role changes in the other locations, whose hosts never flapped (should be none). */
  otherRoleChanges: number;
  traffic: Outage;
}

/** Drill 6: the preferred host's cables go down and up every `periodSeconds` for `totalSeconds`. */
export async function flapDrill(lab: Lab, loc: LocationPlan, totalSeconds: number, periodSeconds: number): Promise<FlapResult> {
  const host = preferredHost(loc);
  await waitForSteady(lab);
  const probes = await ProbeSet.start(lab, loc);
  const changes = new Map(lab.plan.locations.map((l) => [l.name, 0]));
  const last = new Map<string, string | undefined>();
  for (const l of lab.plan.locations) last.set(l.name, (await lab.routeTarget(l))?.id);
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      for (const l of lab.plan.locations) {
        const now = (await lab.routeTarget(l))?.id;
        if (now === undefined) continue;
        if (now !== last.get(l.name)) changes.set(l.name, changes.get(l.name)! + 1);
        last.set(l.name, now);
      }
      await sleep(50);
    }
  })();
  const from = Date.now();
  let flaps = 0;
  try {
    for (let t = 0; t < totalSeconds; t += periodSeconds) {
      flaps++;
      await setHostLinks(lab.sandbox, host, loc, flaps % 2 === 0);
      await sleep(periodSeconds * 1000);
    }
  } finally {
    await setHostLinks(lab.sandbox, host, loc, true);
  }
  const traffic = await probes.outageSince(from, async () => true);
  watching = false;
  await watcher;
  await probes.stop();
  const others = lab.plan.locations.filter((l) => l !== loc).reduce((n, l) => n + changes.get(l.name)!, 0);
  return { flaps, roleChanges: changes.get(loc.name)!, otherRoleChanges: others, traffic };
}

export interface StartResult {
  /** Ms from spawning every agent to the first packet through every tunnel of the location. */
  firstPacketMs: number | undefined;
  /** Ms from spawning until the slowest agent logged its first line: node start-up and config load. */
  processStartMs: number | undefined;
}

/** From all agents starting on a fresh lab to the first packet through every tunnel of `loc`. */
export async function agentStartDrill(lab: Lab, loc: LocationPlan): Promise<StartResult> {
  const probes = lab.plan.locations.filter((l) => l !== loc).map((other) => lab.startProbe(loc, other));
  try {
    await sleep(200); // the probes are sending before the agents start
    const startedAt = Date.now();
    lab.startAgents();
    await waitFor("the first packet through every tunnel", PATIENCE_MS * 2, () => probes.every((p) => firstReplyAfter(p.read(), startedAt) !== undefined), 50).catch(() => undefined);
    const figures = probes.map((p) => firstReplyAfter(p.read(), startedAt));
    const logged = allHosts(lab.plan).map((h) => lab.agentFirstLogAt(h));
    return {
      firstPacketMs: figures.some((f) => f === undefined) ? undefined : Math.max(...(figures as number[])),
      processStartMs: logged.some((t) => t === undefined) ? undefined : Math.max(...(logged as number[])) - startedAt,
    };
  } finally {
    await Promise.all(probes.map((p) => p.stop()));
  }
}

// Heartbeats per second through the failover engine alone: 10,000 hosts (2,500 links of two
// locations with two hosts each by default) reporting at 1 Hz with realistic host checks. Then the
// cost of rendering desired states against the size of one link (StateCore with a real SQLite store):
// every event re-renders only the hosts it concerns, so no event may block the event loop for long.
// Run: npx tsx bench/engine.ts [hosts] [seconds]
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { HostCheckResult, HostReport } from "../agent/contract/protocol";
import { StateCore } from "../agent/state/core";
import { FailoverEngine } from "../agent/state/engine";
import { SqliteStore } from "../agent/state/sqlite-store";
import { report as minimalReport } from "../test/support/state-testkit";
import { parseTopology, type TopologyInput } from "../agent/contract/topology";

const HOSTS = Number(process.argv[2] ?? 10_000);
const SECONDS = Number(process.argv[3] ?? 20);
const HOSTS_PER_LOCATION = 2;
const LINKS = Math.ceil(HOSTS / (2 * HOSTS_PER_LOCATION));

const links = Array.from({ length: LINKS }, (_, l) => ({
  name: `l${l}`,
  locations: ["east", "west"].map((side, s) => ({
    name: side,
    routes: [`10.${s}.0.0/16`],
    hosts: Array.from({ length: HOSTS_PER_LOCATION }, (_, h) => ({ id: `l${l}-${side}-${h}`, name: `h${h}`, priority: h === 0 ? 2 : 1 })),
  })),
}));
const built = performance.now();
const topology = parseTopology({ version: 1, links });
console.log(`topology: ${LINKS} links, ${LINKS * 2 * HOSTS_PER_LOCATION} hosts, parsed in ${(performance.now() - built).toFixed(0)} ms`);

// What each agent reports: every host probes the peer location's hosts; standbys also probe their own location.
const ids: string[] = [];
const reports = new Map<string, HostReport>();
for (const link of topology.links) {
  for (const location of link.locations) {
    for (const host of location.hosts) {
      const hostChecks: HostCheckResult[] = [];
      for (const other of link.locations) {
        const probe = other !== location || host.priority === 1;
        if (!probe) continue;
        for (const target of other.hosts) {
          if (target.id !== host.id) hostChecks.push({ target: target.id, reachable: true, failures: 0, rttMs: 1, ageMs: 120 });
        }
      }
      ids.push(host.id);
      reports.set(host.id, {
        agentVersion: "bench",
        role: host.priority === 2 ? "active" : "standby",
        appliedGeneration: 1,
        tunnels: [],
        hostChecks,
        routes: { provider: "file", applied: [] },
      });
    }
  }
}

const T0 = 1_700_000_000_000;
const engine = new FailoverEngine(topology);
let beats = 0;
let decisions = 0;
let evaluations = 0;
let beatMs = 0;
let evaluateMs = 0;
const stepMs = 1000 / ids.length;
const handovers: { at: number; from: string | null; reason: string }[] = [];

/** One virtual second: every host not in `silent` heartbeats once, spread evenly; timers run as the service would. */
function second(index: number, silent: Set<string>): void {
  for (let i = 0; i < ids.length; i++) {
    const now = Math.floor(T0 + index * 1000 + i * stepMs);
    const due = engine.nextDeadline();
    if (due !== undefined && due <= now) {
      const e0 = performance.now();
      const made = engine.evaluate(now);
      evaluateMs += performance.now() - e0;
      evaluations++;
      decisions += made.length;
      handovers.push(...made);
    }
    const id = ids[i]!;
    if (silent.has(id)) continue;
    const b0 = performance.now();
    const made = engine.heartbeat(id, reports.get(id)!, now);
    beatMs += performance.now() - b0;
    beats++;
    decisions += made.length;
    handovers.push(...made);
  }
}

for (let s = 0; s < SECONDS; s++) second(s, new Set());
const rate = beats / (beatMs / 1000);
console.log(`heartbeats: ${beats} in ${beatMs.toFixed(0)} ms of engine time → ${Math.round(rate).toLocaleString("en")} heartbeats/s (${((beatMs * 1000) / beats).toFixed(1)} µs each)`);
console.log(`evaluate: ${evaluations} calls, ${evaluateMs.toFixed(0)} ms total (${((evaluateMs * 1000) / Math.max(1, evaluations)).toFixed(1)} µs each)`);
console.log(`decisions while steady: ${decisions} (one "initial" per location expected: ${LINKS * 2})`);
console.log(`capacity: ${(rate / ids.length).toFixed(1)}× the load of ${ids.length} hosts at 1 Hz on one core`);

// Crash storm: the active host of every tenth link's east location dies; its standby's probes fail.
const victims = new Set(topology.links.filter((_, l) => l % 10 === 0).map((link) => link.locations[0]!.hosts[0]!.id));
const lastBeat = new Map([...victims].map((id) => [id, engine.hostView(id)!.lastSeen!]));
for (const link of topology.links) {
  const [active, standby] = link.locations[0]!.hosts;
  if (!victims.has(active!.id)) continue;
  const report = reports.get(standby!.id)!;
  reports.set(standby!.id, {
    ...report,
    hostChecks: report.hostChecks.map((c) => (c.target === active!.id ? { ...c, reachable: false, failures: 2, ageMs: 150 } : c)),
  });
}
handovers.length = 0;
for (let s = SECONDS; s < SECONDS + 3; s++) second(s, victims);
const detection = handovers.filter((d) => d.from !== null && victims.has(d.from)).map((d) => d.at - lastBeat.get(d.from!)!);
const reasons = new Map<string, number>();
for (const d of handovers) reasons.set(d.reason, (reasons.get(d.reason) ?? 0) + 1);
console.log(`crash storm: ${victims.size} active hosts killed → ${detection.length} handovers (${[...reasons].map(([r, n]) => `${r}: ${n}`).join(", ")})`);
console.log(`  virtual time from last heartbeat to handover: min ${Math.min(...detection)} ms, max ${Math.max(...detection)} ms`);

/**
 * One hub-and-spoke link of `hosts` hosts (two per location): the shape whose hub hosts have the
 * largest desired states. Every host's first poll reports its address (a change for the hub and for
 * every allowlist); then one decision in a spoke and one in the hub.
 */
async function renderCost(hosts: number): Promise<string> {
  const spokes = Math.max(1, Math.round(hosts / 2) - 1);
  const locations: TopologyInput["links"][number]["locations"] = [];
  for (let l = 0; l <= spokes; l++) {
    const name = l === 0 ? "hub" : `s${l}`;
    locations.push({ name, routes: [`10.${l >> 8}.${l & 0xff}.0/24`], hosts: [1, 2].map((h) => ({ id: `${name}-${h}`, name: `h${h}`, priority: 3 - h })) });
  }
  const doc = parseTopology({ version: 1, links: [{ name: "corp", locations, connections: locations.slice(1).map((l) => ["hub", l.name] as [string, string]) }] });
  const dir = mkdtempSync(join(tmpdir(), "sitelink-bench-render-"));
  const core = await StateCore.open(doc, { store: new SqliteStore(dir), masterKey: randomBytes(32), logger: { event() {} } });
  try {
    const ids = locations.flatMap((l) => l.hosts.map((h) => h.id));
    let slowest = 0;
    const t0 = performance.now();
    ids.forEach((id, n) => {
      const b0 = performance.now();
      core.heartbeat(id, minimalReport({ publicAddress: `198.18.${n >> 8}.${n & 0xff}` }));
      slowest = Math.max(slowest, performance.now() - b0);
    });
    const firstPolls = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 20));
    const timed = async (work: () => Promise<void>) => {
      const d0 = performance.now();
      const done = work();
      const ms = performance.now() - d0; // the synchronous part: what blocks the event loop
      await done;
      return ms;
    };
    const spoke = await timed(() => core.offline("s1-1", "bench"));
    const hub = await timed(() => core.offline("hub-1", "bench"));
    return `  ${String(ids.length).padStart(5)} hosts: first polls ${firstPolls.toFixed(0).padStart(5)} ms in all (slowest ${slowest.toFixed(1)} ms); one decision in a spoke ${spoke.toFixed(1)} ms, in the hub ${hub.toFixed(1)} ms`;
  } finally {
    await core.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

void (async () => {
  console.log("render cost against link size (hub and spoke, synchronous event-loop time):");
  for (const hosts of [100, 200, 1000]) console.log(await renderCost(hosts));
})();

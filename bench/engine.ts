// Heartbeats per second through the failover engine alone: 10,000 hosts (2,500 links of two
// locations with two hosts each by default) reporting at 1 Hz with realistic host checks.
// Run: npx tsx bench/engine.ts [hosts] [seconds]
import { performance } from "node:perf_hooks";
import type { HostCheckResult, HostReport } from "../agent/protocol";
import { FailoverEngine } from "../agent/state/engine";
import { parseTopology } from "../lib/topology";

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
const engine = new FailoverEngine(topology, T0);
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

// State service capacity: N simulated hosts long-polling the real service over TLS on loopback,
// signed exactly as agents sign, then the same load against a bare node:https server.
//   npm run bench:state                 # 1000, 5000 and 10000 hosts
//   npm run bench:state -- 10000 --duration 20
// The load is shaped like a deployment: most links small (two locations of two hosts), about a fifth
// of the hosts in hub-and-spoke links of 50-200 hosts; every host reports its addresses and the host
// checks of the targets its desired state names (real hosts of its link); and during the measured
// window a few active hosts go silent (their peers report them unreachable) and come back, so the
// service makes decisions and re-renders while it is measured.
// The service, the bare server and the load generators each run in their own process; the load
// generators use bare TLS sockets (poll-connection.ts), to take as little of the machine as they can.
// The "budget" line says what the load generators leave a server at the target rate.
// BENCH_LOG=1 shows the service's log, BENCH_DEBUG=1 the load generators' progress and failed
// polls, BENCH_PROFILE=DIR writes CPU profiles of the service, the bare server and the load
// generators over the measured window. Every figure is printed with the machine's load and CPU
// pressure: on a shared machine, the load generators compete too.
import { fork, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:https";
import { Session } from "node:inspector";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { TopologyInput } from "../agent/contract/topology";
import { API, type HostReport } from "../agent/contract/protocol";
import { deriveHostSecret } from "../agent/contract/signing";
import { startStateService } from "../agent/state/service";
import { selfSignedCertificate } from "../agent/state/tls";
import { jsonLogger } from "../agent/state/log";
import { PollConnection } from "./poll-connection";

// timing.heartbeat of the bench's links (not the default 0.5 s): how long a long-poll is held when
// nothing changes; figures per poll and "hosts at 1 Hz" compare with earlier runs this way.
const HOLD_MS = 1000;
const URGENT_EVERY = 10; // every 10th poll of a host is an urgent report (wait: false)
const LOAD_PROCESSES = 2;
/** A machine too busy to connect every host in this long still gets measured, with the ramp shown incomplete. */
const RAMP_LIMIT_MS = 180_000;

type Message =
  | { type: "ready"; url: string }
  | { type: "loaded" }
  | { type: "ramped" }
  | { type: "usage"; cpuMs: number; rssMb: number }
  | { type: "done"; stats: LoadStats };

interface LoadStats {
  requests: number;
  errors: number;
  /** ms beyond the hold, for long-polls answered at the hold's end */
  held: number[];
  /** full round trip of urgent (wait: false) polls */
  urgent: number[];
  cpuMs: number;
}

interface LoadPlan {
  url: string;
  fingerprint: string;
  masterKey: string;
  /** The whole deployment's size: every load process derives the same topology from it. */
  hosts: number;
  hostIds: string[];
  rampMs: number;
  /** The bare server does not sign its canned answer. */
  signed: boolean;
  outages: Outage[];
}

/** A host that stops polling (and answering probes) from `from` to `to` ms into the measured window. */
interface Outage {
  hostId: string;
  from: number;
  to: number;
}

// ---------------------------------------------------------------- roles of the child processes

async function serviceRole(dir: string) {
  const tls = selfSignedCertificate({ names: ["127.0.0.1"] });
  const masterKey = Buffer.from(process.env.BENCH_MASTER_KEY!, "hex");
  const service = await startStateService({
    topologyFile: join(dir, "topology.json"),
    dataDir: join(dir, "data"),
    tls: { cert: tls.certPem, key: tls.keyPem },
    masterKey,
    listen: { host: "127.0.0.1", port: 0 },
    logger: process.env.BENCH_LOG ? jsonLogger() : { event() {} },
    watchTopology: false,
    // Every simulated host connects from 127.0.0.1.
    connections: { perAddress: Number.MAX_SAFE_INTEGER },
  });
  serveUsage(() => service.close());
  process.send!({ type: "ready", url: `${service.url}#${service.fingerprint}` });
}

const CANNED = JSON.stringify({ protocol: 1, generation: 1, note: "x".repeat(900) });

async function bareRole() {
  const tls = selfSignedCertificate({ names: ["127.0.0.1"] });
  const server = createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const answer = () => {
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(CANNED) });
        res.end(CANNED);
      };
      // Same shape of load as the service: long-polls held for the heartbeat, urgent polls answered at once.
      if (Buffer.concat(chunks).includes('"wait":true')) setTimeout(answer, HOLD_MS);
      else answer();
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  serveUsage(async () => {
    server.closeAllConnections();
    server.close();
  });
  process.send!({ type: "ready", url: `https://127.0.0.1:${port}#${tls.fingerprint}` });
}

function serveUsage(close: () => Promise<void>) {
  const profiler = process.env.BENCH_PROFILE ? windowProfiler(process.env.BENCH_PROFILE) : undefined;
  process.on("message", (m: { type: string }) => {
    if (m.type === "usage") {
      // Asked at the window's start and end: the profile covers the window alone, not the ramp.
      void profiler?.toggle();
      const cpu = process.cpuUsage();
      process.send!({ type: "usage", cpuMs: (cpu.user + cpu.system) / 1000, rssMb: residentMb() });
    } else if (m.type === "stop") {
      void close().then(() => process.exit(0));
    }
  });
}

/** Resident memory; NaN when even /proc/self cannot be opened (every descriptor taken by connections). */
function residentMb(): number {
  try {
    return process.memoryUsage.rss() / 2 ** 20;
  } catch {
    return NaN;
  }
}

/** A CPU profile (open it in Chrome DevTools) from one toggle() to the next, written to `dir`. */
function windowProfiler(dir: string) {
  const session = new Session();
  session.connect();
  let running = false;
  return {
    /** Resolves once the profile is written (when stopping) or the profiler started. */
    toggle(): Promise<void> {
      return new Promise((resolve) => {
        if (!running) {
          running = true;
          session.post("Profiler.enable", () => session.post("Profiler.start", () => resolve()));
          return;
        }
        running = false;
        session.post("Profiler.stop", (error, result) => {
          if (!error) writeFileSync(join(dir, `${role}-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
          resolve();
        });
      });
    },
  };
}

/** What a host's agent reports: its addresses, and a result for every host its desired state has it probe. */
function benchReport(self: BenchHost, appliedGeneration: number, down: (hostId: string) => boolean): HostReport {
  return {
    agentVersion: "bench",
    publicAddress: self.publicAddress,
    privateAddress: self.privateAddress,
    role: "standby",
    appliedGeneration,
    tunnels: self.peerLocations.map((location) => ({ location, state: "up", since: 1 })),
    hostChecks: self.targets.map((target) =>
      down(target) ? { target, reachable: false, failures: 3, ageMs: 150 } : { target, reachable: true, rttMs: 0.4, failures: 0, ageMs: 120 },
    ),
    routes: { provider: "none", applied: [] },
  };
}

/** A load generator: its hosts poll as agents do; the window to measure comes once all are connected. */
async function loadRole() {
  const messages = new Map<string, (m: never) => void>();
  process.on("message", (m: { type: string }) => messages.get(m.type)?.(m as never));
  const planned = new Promise<LoadPlan>((resolve) => messages.set("plan", resolve));
  const windowed = new Promise<{ from: number; to: number }>((resolve) => messages.set("window", resolve));
  process.send!({ type: "loaded" });
  const plan = await planned;
  const masterKey = Buffer.from(plan.masterKey, "hex");
  const url = new URL(plan.url);
  const target = { host: url.hostname, port: Number(url.port), fingerprint: plan.fingerprint };
  const connections: PollConnection[] = [];
  const stats: LoadStats = { requests: 0, errors: 0, held: [], urgent: [], cpuMs: 0 };
  let window = { from: Infinity, to: Infinity };
  let stopping = false;
  let connected = 0;

  const { hosts: deployment } = topology(plan.hosts);
  const silenced = new Set(plan.outages.map((o) => o.hostId));
  /** Whether `hostId` is in one of the planned outages now (only inside the measured window). */
  const down = (hostId: string) => {
    if (!silenced.has(hostId)) return false;
    const t = Date.now() - window.from;
    return plan.outages.some((o) => o.hostId === hostId && t >= o.from && t < o.to);
  };

  async function host(hostId: string) {
    const connection = new PollConnection(target, hostId, deriveHostSecret(masterKey, hostId));
    connections.push(connection);
    const self = deployment.get(hostId)!;
    let generation = 0;
    /** Of the last whole state answered, sent back as agents do. */
    let etag: string | undefined;
    let answered = false;
    /** The report's JSON, made again only when what it says changes (as an agent's would). */
    let reported = { key: "", json: "" };
    for (let n = 0; !stopping; n++) {
      if (down(hostId)) {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      const wait = n > 0 && n % URGENT_EVERY !== 0;
      const key = `${generation} ${self.targets.filter(down).join(",")}`;
      if (key !== reported.key) reported = { key, json: JSON.stringify(benchReport(self, generation, down)) };
      const head = JSON.stringify({ protocol: 1, hostId, generation, wait, ...(etag && { etag }) });
      const body = `${head.slice(0, -1)},"report":${reported.json}}`;
      const started = performance.now();
      const startedAt = Date.now();
      try {
        // A connection lost in the ramp (backlog overflow, stalled handshake) is retried, as an agent would.
        const answer = await connection.call(API.poll, body, HOLD_MS + 9000);
        const elapsed = performance.now() - started;
        if (answer.status !== 200 || answer.signed !== plan.signed) throw new Error(`status ${answer.status}`);
        ({ generation, etag } = JSON.parse(answer.body) as { generation: number; etag?: string });
        completed++;
        if (!answered && ++connected === plan.hostIds.length) process.send!({ type: "ramped" });
        answered = true;
        if (startedAt >= window.from && Date.now() <= window.to) {
          stats.requests++;
          if (!wait) stats.urgent.push(elapsed);
          else if (elapsed >= HOLD_MS) stats.held.push(elapsed - HOLD_MS);
        }
      } catch (error) {
        if (stopping) return;
        if (startedAt >= window.from) stats.errors++;
        failures.set(String(error), (failures.get(String(error)) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  let completed = 0;
  /** Failed polls by error, ramp included (BENCH_DEBUG). */
  const failures = new Map<string, number>();
  if (process.env.BENCH_DEBUG) {
    setInterval(() => {
      console.error(`load ${process.pid}: connected ${connected}, answers ${completed}, counted ${stats.requests}, errors ${stats.errors}`);
      if (failures.size > 0) console.error(`  failed polls so far: ${JSON.stringify(Object.fromEntries(failures))}`);
    }, 2000).unref();
  }
  plan.hostIds.forEach((id, i) => setTimeout(() => void host(id), (i / plan.hostIds.length) * plan.rampMs));
  window = await windowed;
  await new Promise((r) => setTimeout(r, window.from - Date.now()));
  const profiler = process.env.BENCH_PROFILE ? windowProfiler(process.env.BENCH_PROFILE) : undefined;
  await profiler?.toggle();
  const cpuAtStart = process.cpuUsage();
  await new Promise((r) => setTimeout(r, window.to - Date.now()));
  const cpu = process.cpuUsage(cpuAtStart);
  await profiler?.toggle();
  stats.cpuMs = (cpu.user + cpu.system) / 1000;
  stopping = true;
  connections.forEach((c) => c.close());
  // The stats are large (every latency): exit only once the parent has them all.
  process.send!({ type: "done", stats }, undefined, {}, () => process.exit(0));
}

// ---------------------------------------------------------------- orchestration

interface BenchHost {
  publicAddress: string;
  privateAddress: string;
  /** The hosts its desired state has it probe: the others of its location, and those of connected locations. */
  targets: string[];
  peerLocations: string[];
}

/** Link sizes in hosts: about a fifth of the hosts in hub-and-spoke links of 50-200, the rest in links of 4. */
function linkSizes(hosts: number): number[] {
  const big = [50, 100, 200];
  const sizes: number[] = [];
  let inBig = 0;
  for (let i = 0; inBig + big[i % big.length]! <= Math.max(50, hosts / 5) && inBig + big[i % big.length]! <= hosts - 4; i++) {
    sizes.push(big[i % big.length]!);
    inBig += big[i % big.length]!;
  }
  for (let left = hosts - inBig; left > 0; left -= 4) sizes.push(4);
  return sizes;
}

/**
 * The deployment: links of linkSizes(), two hosts per location (the "-1" host preferred), small
 * links of two locations, big ones a hub with spokes. Half the links name their hosts' addresses,
 * the other half learn them from the reports. Deterministic, so every process derives the same.
 */
function topology(hosts: number): { doc: TopologyInput; ids: string[]; hosts: Map<string, BenchHost> } {
  const links: TopologyInput["links"] = [];
  const all = new Map<string, BenchHost>();
  let n = 0;
  linkSizes(hosts).forEach((size, l) => {
    const names = Array.from({ length: size / 2 }, (_, i) => (i === 0 ? "hub" : `s${i}`));
    const connections = size === 4 ? undefined : names.slice(1).map((name): [string, string] => ["hub", name]);
    const peersOf = (name: string) => (size === 4 ? names.filter((o) => o !== name) : name === "hub" ? names.slice(1) : ["hub"]);
    const locations = names.map((name, i) => ({
      name,
      routes: [`10.${i >> 8}.${i & 0xff}.0/24`],
      hosts: [1, 2].map((h) => {
        const id = `l${l}-${name}-${h}`;
        n++;
        const publicAddress = `198.${18 + (n >> 16)}.${(n >> 8) & 0xff}.${n & 0xff}`;
        const privateAddress = `10.${i >> 8}.${i & 0xff}.${10 + h}`;
        all.set(id, { publicAddress, privateAddress, targets: [], peerLocations: peersOf(name) });
        return { id, name: `h${h}`, priority: 3 - h, ...(l % 2 === 0 ? { publicAddress, privateAddress } : {}) };
      }),
    }));
    for (const location of locations) {
      const peers = locations.filter((o) => peersOf(location.name).includes(o.name));
      for (const host of location.hosts) {
        all.get(host.id)!.targets = [...location.hosts.filter((h) => h !== host), ...peers.flatMap((p) => p.hosts)].map((h) => h.id);
      }
    }
    links.push({ name: `link-${l}`, locations, timing: { heartbeat: HOLD_MS / 1000 }, ...(connections ? { connections } : {}) });
  });
  return { doc: { version: 1, links }, ids: [...all.keys()], hosts: all };
}

/** A few active hosts go silent in turn during the window, each long enough to lose its role, then return. */
function outages(ids: string[], durationMs: number): Outage[] {
  const preferred = ids.filter((id) => id.endsWith("-1"));
  const count = Math.max(2, Math.round((ids.length / 1000) * (durationMs / 5000)));
  const spacing = durationMs / (count + 1);
  return Array.from({ length: count }, (_, i) => ({
    hostId: preferred[Math.floor(((i + 0.5) / count) * preferred.length)]!,
    from: Math.round(spacing * (i + 0.5)),
    to: Math.round(spacing * (i + 0.5)) + 4000,
  }));
}

function child(role: string, env: Record<string, string> = {}): ChildProcess {
  return fork(__filename, [`--role=${role}`], {
    env: { ...process.env, ...env },
    execArgv: process.execArgv,
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
}

function next<T extends Message["type"]>(proc: ChildProcess, type: T): Promise<Extract<Message, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: Message) => {
      if (m.type !== type) return;
      proc.off("message", onMessage);
      resolve(m as Extract<Message, { type: T }>);
    };
    proc.on("message", onMessage);
    proc.once("exit", (code) => reject(new Error(`child exited (${code}) before "${type}"`)));
  });
}

const percentile = (values: number[], p: number) => {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};

interface Figures {
  perSecond: number;
  errors: number;
  heldP50: number;
  heldP99: number;
  urgentP50: number;
  urgentP99: number;
  serverCpu: number;
  loadCpu: number;
  rssMb: number;
  /** Server CPU time per answered poll: the figure that does not depend on what else the machine runs. */
  cpuUsPerRequest: number;
  /** Until every host had its first answer (new TLS connection, first decision). */
  rampSeconds: number;
}

/** `hosts` is the size topology() was given; `hostIds` are the hosts it made. */
async function measure(server: ChildProcess, url: string, hosts: number, hostIds: string[], masterKey: string, durationMs: number, signed: boolean): Promise<Figures> {
  const planned = outages(hostIds, durationMs);
  const [base, fingerprint] = url.split("#") as [string, string];
  const loads = Array.from({ length: LOAD_PROCESSES }, () => child("load"));
  await Promise.all(loads.map((l) => next(l, "loaded")));
  const rampMs = Math.max(2000, hostIds.length); // ~1000 new TLS connections a second
  const ramped = Promise.all(loads.map((l) => next(l, "ramped")));
  loads.forEach((load, i) => {
    const share = hostIds.filter((_, n) => n % LOAD_PROCESSES === i);
    load.send({ type: "plan", url: base, fingerprint, masterKey, hosts, hostIds: share, rampMs, signed, outages: planned });
  });
  const rampStart = Date.now();
  await Promise.race([ramped, new Promise((r) => setTimeout(r, RAMP_LIMIT_MS))]);
  const rampSeconds = (Date.now() - rampStart) / 1000;
  // Two held-poll periods to settle after the last connection, then the window.
  const measureFrom = Date.now() + 2 * HOLD_MS;
  const measureTo = measureFrom + durationMs;
  for (const load of loads) load.send({ type: "window", from: measureFrom, to: measureTo });
  const done = loads.map((l) => next(l, "done"));
  await new Promise((r) => setTimeout(r, measureFrom - Date.now()));
  server.send({ type: "usage" });
  const before = await next(server, "usage");
  await new Promise((r) => setTimeout(r, measureTo - Date.now()));
  server.send({ type: "usage" });
  const after = await next(server, "usage");
  const stats = (await Promise.all(done)).map((d) => d.stats);
  const seconds = durationMs / 1000;
  const requests = stats.reduce((n, s) => n + s.requests, 0);
  const held = stats.flatMap((s) => s.held);
  const urgent = stats.flatMap((s) => s.urgent);
  return {
    perSecond: requests / seconds,
    cpuUsPerRequest: ((after.cpuMs - before.cpuMs) * 1000) / requests,
    errors: stats.reduce((n, s) => n + s.errors, 0),
    heldP50: percentile(held, 50),
    heldP99: percentile(held, 99),
    urgentP50: percentile(urgent, 50),
    urgentP99: percentile(urgent, 99),
    serverCpu: (after.cpuMs - before.cpuMs) / durationMs,
    loadCpu: stats.reduce((n, s) => n + s.cpuMs, 0) / durationMs,
    rssMb: after.rssMb,
    rampSeconds,
  };
}

async function stop(proc: ChildProcess) {
  const exited = new Promise((r) => proc.once("exit", r));
  proc.send({ type: "stop" });
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  if (proc.exitCode === null) proc.kill("SIGKILL");
}

// NaN comes back from a child process as null (JSON).
const fmt = (n: number | null, digits = 1) => (n === null || Number.isNaN(n) ? "-" : n.toFixed(digits));

/**
 * What this machine leaves a server at the target rate once the load generators (sharing its cores)
 * have theirs, measured on the bare run: if the bare server's cost is above it, no server can be
 * shown to meet the target here, whatever its own code.
 */
function budget(hosts: number, bare: Figures, sitelink: Figures): string {
  const target = hosts * (1 + 1 / URGENT_EVERY);
  const loadCores = (bare.loadCpu / bare.perSecond) * target;
  const leftUs = ((cpus().length - loadCores) / target) * 1e6;
  return (
    `at ${fmt(target, 0)} polls/s the load generators need ${fmt(loadCores, 2)} of ${cpus().length} cores, leaving a server ` +
    `${leftUs > 0 ? `${fmt(leftUs, 0)} µs` : "no"} CPU per poll with every core busy (bare uses ${fmt(bare.cpuUsPerRequest, 0)}, sitelink ${fmt(sitelink.cpuUsPerRequest, 0)})`
  );
}

async function main() {
  const args = process.argv.slice(2);
  const durationIndex = args.indexOf("--duration");
  const durationMs = durationIndex >= 0 ? Number(args[durationIndex + 1]) * 1000 : 15_000;
  const sizes = args.filter((a, i) => /^\d+$/.test(a) && (durationIndex < 0 || i !== durationIndex + 1)).map(Number);
  const runs = sizes.length > 0 ? sizes : [1000, 5000, 10_000];
  console.log(`state service benchmark: hosts long-poll (held ${HOLD_MS} ms), every ${URGENT_EVERY}th poll urgent; ${durationMs / 1000} s measured after ramp-up`);
  console.log(`load: ${LOAD_PROCESSES} generator processes; service and bare server in their own process; loopback TLS, keep-alive`);
  const children: ChildProcess[] = [];
  let dir: string | undefined;
  const cleanup = () => {
    children.forEach((c) => c.exitCode === null && c.kill("SIGKILL"));
    if (dir) rmSync(dir, { recursive: true, force: true });
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      cleanup();
      process.exit(130);
    });
  }
  const pressure = () => {
    const psi = existsSync("/proc/pressure/cpu") ? readFileSync("/proc/pressure/cpu", "utf8").split("\n")[0] : "n/a";
    return `load average ${loadavg().map((n) => n.toFixed(1)).join(" ")} on ${cpus().length} cores; cpu pressure ${psi}`;
  };
  console.log(`machine before: ${pressure()}`);
  for (const hosts of runs) {
    dir = mkdtempSync(join(tmpdir(), "sitelink-bench-"));
    try {
      const masterKey = randomBytes(32).toString("hex");
      const { doc, ids } = topology(hosts);
      writeFileSync(join(dir, "topology.json"), JSON.stringify(doc));
      const service = child("service", { BENCH_DIR: dir, BENCH_MASTER_KEY: masterKey });
      children.push(service);
      const sitelink = await measure(service, (await next(service, "ready")).url, hosts, ids, masterKey, durationMs, true);
      await stop(service);
      const bare = child("bare");
      children.push(bare);
      const baseline = await measure(bare, (await next(bare, "ready")).url, hosts, ids, masterKey, durationMs, false);
      await stop(bare);
      const row = (name: string, f: Figures) =>
        `  ${name.padEnd(9)} ${fmt(f.perSecond, 0).padStart(7)}/s  errors ${String(f.errors).padStart(4)}  ` +
        `held +${fmt(f.heldP50)}/+${fmt(f.heldP99)} ms  urgent ${fmt(f.urgentP50)}/${fmt(f.urgentP99)} ms  ` +
        `server CPU ${fmt(f.serverCpu * 100, 0)}% (${fmt(f.cpuUsPerRequest, 0)} µs/poll)  RSS ${fmt(f.rssMb, 0)} MB  ` +
        `${f.rampSeconds >= RAMP_LIMIT_MS / 1000 ? `ramp incomplete after ${RAMP_LIMIT_MS / 1000} s` : `ramp ${fmt(f.rampSeconds)} s`}  (load generators ${fmt(f.loadCpu * 100, 0)}% CPU)`;
      // What one core would sustain at the measured cost: the figure that does not depend on what else ran.
      const perCore = (f: Figures) => `${fmt(1e6 / f.cpuUsPerRequest / (1 + 1 / URGENT_EVERY), 0)} hosts`;
      const sizes = linkSizes(hosts);
      const big = sizes.filter((n) => n > 4);
      console.log(
        `\n${ids.length} hosts (target ${ids.length}/s heartbeats plus ${ids.length / URGENT_EVERY}/s urgent)    p50/p99\n` +
          `  links     ${sizes.length - big.length} of 4 hosts, ${big.length} of 50-200 (${big.join(", ")}); ${outages(ids, durationMs).length} active hosts silent for 4 s each in the window`,
      );
      console.log(row("sitelink", sitelink));
      console.log(row("bare", baseline));
      console.log(
        `  machine   ${pressure()}\n` +
        `  ratio     throughput ${fmt(sitelink.perSecond / baseline.perSecond, 2)}  server CPU per poll ${fmt(sitelink.cpuUsPerRequest / baseline.cpuUsPerRequest, 2)}x  ` +
          `urgent p99 ${fmt(sitelink.urgentP99 / baseline.urgentP99, 2)}x\n` +
          `  one core  at the measured CPU per poll sustains ${perCore(sitelink)} at 1 Hz (bare ${perCore(baseline)})\n` +
          `  budget    ${budget(ids.length, baseline, sitelink)}`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
      dir = undefined;
    }
  }
  cleanup();
}

const role = process.argv.find((a) => a.startsWith("--role="))?.slice(7);
const run = role === "service" ? () => serviceRole(process.env.BENCH_DIR!) : role === "bare" ? bareRole : role === "load" ? loadRole : main;
run().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

// `npm run lab` and `npm run bench:failover` (through run.sh): bring the namespace lab up, prove the
// tunnels, run the failover drills, print the figures, tear everything down (also on Ctrl-C).
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { startCapture } from "./capture";
import { agentStartDrill, controlPlaneCutDrill, failoverDrill, flapDrill, lossDrill, stateOutageDrill, waitForSteady, type Outage, type StartResult, type UnchangedResult } from "./drills";
import { CpuHogs } from "./hogs";
import { Lab } from "./lab";
import { summarize } from "./outage";
import { locationPairs } from "./plan";
import { DEFAULTS, isTimingPreset, TIMING_PRESETS, timingSchema, type TimingPreset } from "../../agent/contract/topology";

interface Options {
  bench: boolean;
  keep: boolean;
  drills: boolean;
  locations: number;
  runs: number;
  longRuns: number;
  stateDownSeconds: number;
  cutSeconds: number;
  flapSeconds: number;
  /** The link's timing preset. */
  timing: TimingPreset;
  /** Seconds of drill 8 (random loss on the internet); 0: not run. */
  lossSeconds: number;
  /** Percent of the packets drill 8 drops. */
  lossPercent: number;
  /** CPU hogs beside the lab for a second, loaded bench pass (0: quiet pass only). */
  load: number;
}

const USAGE = `usage: run.sh [--keep] [--no-drills] [--locations 2|3] [--bench [--runs N] [--long-runs N] [--load N]] [--timing standard|fast]
              [--state-down S] [--cut S] [--flap S] [--loss-drill S [--loss PCT]]
  (no flags)    lab up, status, ESP proof, every drill once with its figure, tear down
  --keep        leave the lab up afterwards (until Ctrl-C) to poke around
  --no-drills   only the lab, the status and the ESP proof
  --bench       every figure over --runs runs (default 5; drills 5-7 over --long-runs, default 1), as a table
  --load N      with --bench: a second pass with N CPU hogs beside the lab (one core each), side by side
  --state-down  seconds the state service is down in drill 5 (default 60)
  --cut         seconds a location is cut from the state service in drill 7 (default 3 x the host timeout)
  --flap        seconds of flapping in drill 6 (default 60)
  --timing      the link's timing preset (default standard)
  --loss-drill  also drill 8: seconds of random loss on the lab's internet, during which no failover may happen
  --loss        percent of packets drill 8 drops at every host and the state service (default 2)
`;

function parseOptions(argv: string[]): Options {
  const opts: Options = { bench: false, keep: false, drills: true, locations: 2, runs: 5, longRuns: 1, stateDownSeconds: 60, cutSeconds: 3 * DEFAULTS.timeout, flapSeconds: 60, load: 0, timing: "standard", lossSeconds: 0, lossPercent: 2 };
  const number = (flag: string, value: string | undefined, min: number, max: number) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${flag} must be an integer ${min}-${max}, got "${value ?? ""}"`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--help" || arg === "-h") {
      process.stdout.write(USAGE);
      process.exit(0);
    } else if (arg === "--bench") opts.bench = true;
    else if (arg === "--keep") opts.keep = true;
    else if (arg === "--no-drills") opts.drills = false;
    else if (arg === "--locations") opts.locations = number(arg, argv[++i], 2, 3);
    else if (arg === "--runs") opts.runs = number(arg, argv[++i], 1, 100);
    else if (arg === "--long-runs") opts.longRuns = number(arg, argv[++i], 1, 100);
    else if (arg === "--state-down") opts.stateDownSeconds = number(arg, argv[++i], 1, 3600);
    else if (arg === "--cut") opts.cutSeconds = number(arg, argv[++i], 1, 3600);
    else if (arg === "--flap") opts.flapSeconds = number(arg, argv[++i], 4, 3600);
    else if (arg === "--load") opts.load = number(arg, argv[++i], 0, 64);
    else if (arg === "--loss-drill") opts.lossSeconds = number(arg, argv[++i], 1, 24 * 3600);
    else if (arg === "--loss") opts.lossPercent = number(arg, argv[++i], 1, 50);
    else if (arg === "--timing") {
      const preset = argv[++i] ?? "";
      if (!isTimingPreset(preset)) throw new Error(`--timing must be one of ${Object.keys(TIMING_PRESETS).join(", ")}, got "${preset}"`);
      opts.timing = preset;
    }
    else throw new Error(`unknown argument "${arg}"\n${USAGE}`);
  }
  if (opts.load > 0 && !opts.bench) throw new Error(`--load needs --bench\n${USAGE}`);
  return opts;
}

const say = (text: string) => process.stdout.write(`${text}\n`);
const seconds = (ms: number | undefined) => (ms === undefined ? "never" : `${(ms / 1000).toFixed(2)} s`);
const describe = (o: Outage) => `${seconds(o.outageMs)} (${o.lost}/${o.sent} probes lost)`;
const describeGap = (o: Outage) => `traffic stood still ${seconds(o.gapMs)} (${o.lost}/${o.sent} probes lost)`;

/** Lab up with every agent started; returns the start-to-first-packet figure too. */
async function labUp(opts: Options, label: string, codeCacheDir?: string): Promise<{ lab: Lab; start: StartResult }> {
  const lab = await Lab.create({ locations: opts.locations, label, codeCacheDir, timing: { preset: opts.timing } });
  try {
    const start = await agentStartDrill(lab, lab.plan.locations[0]!);
    await waitForSteady(lab);
    return { lab, start };
  } catch (error) {
    await lab.destroy(); // the caller never gets this lab to tear down
    throw error;
  }
}

const describeStart = (s: StartResult) => `${seconds(s.firstPacketMs)} (of which node start-up and config load ${seconds(s.processStartMs)})`;

async function proveTunnels(lab: Lab): Promise<void> {
  const capture = await startCapture(lab.sandbox, lab.plan.internetNs, "proof");
  for (const [from, to] of locationPairs(lab.plan)) {
    if (!(await lab.ping(from, to))) throw new Error(`no traffic from ${from.name} to ${to.name}`);
  }
  const counts = await capture.stop();
  say(`ESP proof: ${counts.esp} ESP-in-UDP datagrams on the internet bridge for ${locationPairs(lab.plan).length} client pings, ${counts.clear} packets with a 10.x address in the clear`);
  if (counts.esp < 2 * locationPairs(lab.plan).length || counts.clear !== 0) throw new Error("client traffic did not cross as ESP only");
}

/** Before any agent runs: the clients cannot reach each other, and nothing leaks in the clear. */
async function proveNoTunnelNoTraffic(lab: Lab): Promise<void> {
  const capture = await startCapture(lab.sandbox, lab.plan.internetNs, "no-tunnel");
  const passed = [];
  for (const [from, to] of locationPairs(lab.plan)) if (await lab.ping(from, to)) passed.push(`${from.name}->${to.name}`);
  const counts = await capture.stop();
  say(`without tunnels: ${passed.length === 0 ? "no client ping passes" : `pings passed: ${passed.join(", ")}`}, ${counts.clear} packets in the clear`);
  if (passed.length > 0 || counts.clear !== 0) throw new Error("traffic crossed without tunnels");
}

async function tour(opts: Options): Promise<void> {
  const lab = await Lab.create({ locations: opts.locations, label: "lab", timing: { preset: opts.timing } });
  try {
    say(`lab ${lab.plan.prefix}: ${lab.plan.locations.length} locations, work dir ${lab.workDir}; load average ${load()} on ${cpus().length} cores`);
    await proveNoTunnelNoTraffic(lab);
    const start = await agentStartDrill(lab, lab.plan.locations[0]!);
    say(`agent start to first packet through the tunnel: ${describeStart(start)}`);
    await waitForSteady(lab);
    say(await lab.stateStatus());
    await proveTunnels(lab);
    const problems = opts.drills ? await drillsOnce(lab, opts) : [];
    if (problems.length > 0) {
      say(`\nFAILED:\n  ${problems.join("\n  ")}\nlogs: ${lab.logDir}`);
      process.exitCode = 1;
    }
    if (opts.keep) await keep(lab);
  } finally {
    await lab.destroy();
  }
}

/** Every drill once; returns what went wrong (empty when every drill held). */
async function drillsOnce(lab: Lab, opts: Options): Promise<string[]> {
  const problems: string[] = [];
  const loc = lab.plan.locations[0]!;
  const backoff = DEFAULTS.backoff;
  for (const fault of ["crash", "graceful", "partition"] as const) {
    const result = await failoverDrill(lab, loc, fault, backoff);
    say(`drill ${fault}: failover ${describe(result.failover)}; standby took over: ${result.standbyTookOver}; ` +
      `preferred host back ${seconds(result.takeBackAfterMs)} after the fault, ${describeGap(result.takeBack)}`);
    if (!result.standbyTookOver || result.failover.outageMs === undefined) problems.push(`${fault}: the standby did not carry the traffic`);
    if (result.takeBack.gapMs === undefined) problems.push(`${fault}: no traffic after the preferred host took its role back`);
  }
  const unchanged = (what: string, r: UnchangedResult) => {
    const changed = whatChanged(r);
    say(`drill ${what} ${r.downSeconds} s: ${r.traffic.lost}/${r.traffic.sent} probes lost; ${changed.length === 0 ? "nothing changed" : changed.join("; ")}`);
    if (r.traffic.lost > 0 || changed.length > 0) problems.push(`${what}: traffic, routes, tunnels or roles changed`);
  };
  unchanged("state service down", await stateOutageDrill(lab, opts.stateDownSeconds));
  unchanged(`${loc.name} cut from the state service`, await controlPlaneCutDrill(lab, loc, opts.cutSeconds));
  const flap = await flapDrill(lab, loc, opts.flapSeconds, 2);
  say(`drill flapping ${opts.flapSeconds} s every 2 s: ${flap.flaps} flaps, ${flap.roleChanges} role changes (backoff ${backoff} s), ` +
    `${flap.otherRoleChanges} role changes in the other locations, ${flap.traffic.lost}/${flap.traffic.sent} probes lost`);
  if (flap.otherRoleChanges > 0) problems.push(`flapping: ${flap.otherRoleChanges} role changes in locations whose hosts did not flap`);
  if (opts.lossSeconds > 0) {
    const loss = await lossDrill(lab, opts.lossSeconds, opts.lossPercent / 100);
    const failovers = falseFailovers(loss);
    say(`drill ${describeLoss(opts, loss, failovers)}`);
    if (failovers.length > 0) problems.push(`random loss: ${failovers.join("; ")}`);
  }
  return problems;
}

/** What drill 8 changed that a lossy network must not change: decisions and routes. */
function falseFailovers(r: UnchangedResult): string[] {
  return whatChanged(r).filter((change) => !change.startsWith("tunnels"));
}

function describeLoss(opts: Options, r: UnchangedResult, failovers: string[]): string {
  return `random loss ${opts.lossPercent} % for ${r.downSeconds} s (timing ${opts.timing}): ${r.generationAfter - r.generationBefore} decisions, ` +
    `${r.traffic.lost}/${r.traffic.sent} probes lost; ${failovers.length === 0 ? "no failover" : failovers.join("; ")}`;
}

/** What a control-plane drill changed in the data plane or the decisions (empty: nothing). */
function whatChanged(r: UnchangedResult): string[] {
  const changed: string[] = [];
  const differ = (a: unknown, b: unknown) => JSON.stringify(a) !== JSON.stringify(b);
  if (differ(r.routesBefore, r.routesAfter)) changed.push(`routes CHANGED ${JSON.stringify(r.routesBefore)} -> ${JSON.stringify(r.routesAfter)}`);
  if (differ(r.sasBefore, r.sasAfter)) changed.push(`tunnels CHANGED ${JSON.stringify(r.sasBefore)} -> ${JSON.stringify(r.sasAfter)}`);
  if (r.generationBefore !== r.generationAfter) changed.push(`generation CHANGED ${r.generationBefore} -> ${r.generationAfter}`);
  return changed;
}

async function keep(lab: Lab): Promise<void> {
  const [a, b] = lab.plan.locations as [(typeof lab.plan.locations)[number], (typeof lab.plan.locations)[number]];
  say(`\nThe lab stays up. In another terminal, for example:
  ip netns exec ${a.clientNs} ping ${b.clientAddress}
  ip netns exec ${a.hosts[0]!.ns} swanctl --list-sas --uri unix://${lab.workDir}/charon-${a.hosts[0]!.id}/charon.vici
  ip -n ${a.routerNs} route
  logs: ${lab.logDir} and ${lab.workDir}/charon-*/charon.log
Press Ctrl-C here (or kill ${process.pid}) to tear it all down.`);
  // Wait for a signal; the sandbox's signal handlers tear everything down and exit.
  await new Promise<never>(() => setInterval(() => undefined, 1 << 30));
}

const load = () => loadavg().map((l) => l.toFixed(1)).join(" ");

/** One figure of a bench pass: the failover figures over every run, or one long drill's result. */
interface BenchRow {
  name: string;
  cells: string[];
}

interface BenchPass {
  rows: BenchRow[];
  failures: string[];
  loadStart: string;
  loadEnd: string;
}

/** Every figure over opts.runs runs (the long drills over opts.longRuns), on fresh labs. */
async function benchPass(opts: Options, tag: string): Promise<BenchPass> {
  const loadStart = load();
  const rows: BenchRow[] = [];
  const figures: Record<string, number[]> = { coldStart: [], coldProcessStart: [], start: [], processStart: [], crash: [], graceful: [], partition: [], takeBack: [] };
  const lost: Record<string, number[]> = { crash: [], graceful: [], partition: [], takeBack: [] };
  const failures: string[] = [];
  const backoff = DEFAULTS.backoff;

  // The start figure needs a fresh lab each time. The labs share one code cache, as restarts on one
  // host do: the first start compiles the bundle (cold, as right after an install), the others use it.
  const codeCacheDir = mkdtempSync(join(tmpdir(), "sitelink-bench-cache-"));
  const removeCache = () => rmSync(codeCacheDir, { recursive: true, force: true });
  process.once("exit", removeCache); // Ctrl-C: the sandbox's handler exits without unwinding
  try {
    for (let run = 0; run < opts.runs; run++) {
      const { lab, start } = await labUp(opts, `bench-${tag}-start-${run}`, codeCacheDir);
      await lab.destroy();
      const key = run === 0 ? "coldStart" : "start";
      if (start.firstPacketMs === undefined) failures.push(`start run ${run + 1}: no packet through`);
      else figures[key]!.push(start.firstPacketMs);
      if (start.processStartMs !== undefined) figures[run === 0 ? "coldProcessStart" : "processStart"]!.push(start.processStartMs);
      say(`[${tag}] start run ${run + 1} (${run === 0 ? "cold" : "warm"} code cache): ${describeStart(start)}`);
    }
  } finally {
    removeCache();
    process.off("exit", removeCache);
  }

  const { lab } = await labUp(opts, `bench-${tag}`);
  try {
    const loc = lab.plan.locations[0]!;
    for (const fault of ["crash", "graceful", "partition"] as const) {
      for (let run = 0; run < opts.runs; run++) {
        const result = await failoverDrill(lab, loc, fault, backoff);
        say(`[${tag}] ${fault} run ${run + 1}: failover ${describe(result.failover)}, take-back: ${describeGap(result.takeBack)}`);
        if (result.failover.outageMs === undefined || !result.standbyTookOver) failures.push(`${fault} run ${run + 1}: standby did not carry the traffic`);
        else figures[fault]!.push(result.failover.outageMs);
        lost[fault]!.push(result.failover.lost);
        if (result.takeBack.gapMs !== undefined) figures.takeBack!.push(result.takeBack.gapMs);
        else failures.push(`${fault} run ${run + 1}: traffic did not come back after the take-back`);
        lost.takeBack!.push(result.takeBack.lost);
      }
    }
    const row = (name: string, key: string) => {
      const values = figures[key]!;
      if (values.length === 0) return rows.push({ name, cells: ["0", "-", "-", "-"] });
      const s = summarize(values);
      const l = lost[key] ? String(summarize(lost[key]!).median) : "-";
      return rows.push({ name, cells: [String(s.runs), seconds(s.median), seconds(s.max), l] });
    };
    row("agent start -> first packet (warm code cache)", "start");
    row("  of which node start-up + config load", "processStart");
    row("first agent start (cold code cache)", "coldStart");
    row("  of which node start-up + config load", "coldProcessStart");
    row("1 crash (cables cut + kill -9)", "crash");
    row("2 graceful stop (SIGTERM)", "graceful");
    row("3 partition (peers unreachable)", "partition");
    row(`4 preferred host back (after ${backoff} s backoff)`, "takeBack");

    const unchangedRow = (name: string, run: number, r: UnchangedResult) => {
      const changed = whatChanged(r);
      rows.push({ name: `${name} (run ${run + 1})`, cells: ["1", `${r.traffic.lost} lost`, `of ${r.traffic.sent}`, changed.length === 0 ? "no change" : "CHANGED"] });
      if (r.traffic.lost > 0 || changed.length > 0) failures.push(`${name} run ${run + 1}: ${r.traffic.lost} lost; ${changed.join("; ") || "nothing changed"}`);
    };
    for (let run = 0; run < opts.longRuns; run++) {
      unchangedRow(`5 state service down ${opts.stateDownSeconds} s`, run, await stateOutageDrill(lab, opts.stateDownSeconds));
    }
    for (let run = 0; run < opts.longRuns; run++) {
      unchangedRow(`7 ${loc.name} cut from the state service ${opts.cutSeconds} s`, run, await controlPlaneCutDrill(lab, loc, opts.cutSeconds));
    }
    for (let run = 0; opts.lossSeconds > 0 && run < opts.longRuns; run++) {
      const loss = await lossDrill(lab, opts.lossSeconds, opts.lossPercent / 100);
      const failovers = falseFailovers(loss);
      say(`[${tag}] ${describeLoss(opts, loss, failovers)}`);
      rows.push({ name: `8 random loss ${opts.lossPercent} % ${opts.lossSeconds} s (run ${run + 1})`, cells: ["1", `${loss.generationAfter - loss.generationBefore} decisions`, `${loss.traffic.lost}/${loss.traffic.sent} lost`, failovers.length === 0 ? "no failover" : "FAILOVER"] });
      if (failovers.length > 0) failures.push(`random loss run ${run + 1}: ${failovers.join("; ")}`);
    }
    for (let run = 0; run < opts.longRuns; run++) {
      const flap = await flapDrill(lab, loc, opts.flapSeconds, 2);
      rows.push({ name: `6 flapping ${opts.flapSeconds} s / 2 s (run ${run + 1})`, cells: ["1", `${flap.roleChanges} role changes`, `${flap.otherRoleChanges} elsewhere`, `${flap.traffic.lost} lost`] });
      if (flap.otherRoleChanges > 0) failures.push(`flapping run ${run + 1}: ${flap.otherRoleChanges} role changes in locations that did not flap`);
    }
  } finally {
    await lab.destroy();
  }
  return { rows, failures: failures.map((f) => `[${tag}] ${f}`), loadStart, loadEnd: load() };
}

/** The passes' figures side by side, one column group per pass. */
function printBench(passes: { title: string; pass: BenchPass }[]): void {
  const header = ["figure", ...passes.flatMap(({ title }) => [`${title}: runs`, "median", "max", "lost (median)"])];
  const table = [header, ...passes[0]!.pass.rows.map((row, i) => [row.name, ...passes.flatMap(({ pass }) => pass.rows[i]?.cells ?? ["-", "-", "-", "-"])])];
  const widths = header.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
  say("");
  for (const r of table) say(r.map((cell, c) => cell.padEnd(widths[c]!)).join("  "));
  for (const { title, pass } of passes) say(`${title}: load average ${pass.loadStart} at the start, ${pass.loadEnd} at the end`);
}

async function bench(opts: Options): Promise<void> {
  say(`load average at start: ${load()} (${cpus().length} cores); the figures include waiting for the CPU`);
  const passes = [{ title: "quiet", pass: await benchPass(opts, "quiet") }];
  if (opts.load > 0) {
    const hogs = CpuHogs.start(opts.load);
    say(`\n${hogs.pids.length} CPU hogs started beside the lab (each keeps one core busy)`);
    try {
      passes.push({ title: `--load ${opts.load}`, pass: await benchPass(opts, `load-${opts.load}`) });
    } finally {
      await hogs.stop();
    }
  }
  printBench(passes);
  const targets = opts.timing === "fast" ? "crash median < 0.3 s, no failover in drill 8" : "crash median < 1 s and max < 1.5 s, graceful max < 0.5 s, start median < 2 s (at --load 2)";
  say(`\ntargets: ${targets}; probe interval 10 ms; timing ${opts.timing} ${JSON.stringify(timingSchema.parse({ preset: opts.timing }))}, timeout ${DEFAULTS.timeout} s, backoff ${DEFAULTS.backoff} s`);
  const failures = passes.flatMap(({ pass }) => pass.failures);
  if (failures.length > 0) {
    say(`\nFAILED:\n  ${failures.join("\n  ")}`);
    process.exitCode = 1;
  }
}

async function main(): Promise<void> {
  if (typeof process.getuid !== "function" || process.getuid() !== 0) throw new Error("the lab needs root (network namespaces)");
  const opts = parseOptions(process.argv.slice(2));
  if (opts.bench) await bench(opts);
  else await tour(opts);
}

main().catch((error: unknown) => {
  process.stderr.write(`lab: ${(error as Error).message}\n`);
  process.exitCode = 1;
});

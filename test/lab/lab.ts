// The namespace lab: the network of plan.ts, a real state service, and per host a real charon
// and a real agent, each a process in its own namespace so a kill -9 is a real crash.
import { execFileSync, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { buildSync } from "esbuild";
import type { AgentConfigInput } from "../../agent/contract/agent-config";
import { deriveHostSecret } from "../../agent/contract/signing";
import { formatHostUri } from "../../agent/contract/uri";
import { DATA_FILES, readMasterKey } from "../../agent/state/cli";
import { certificateFingerprint } from "../../agent/state/tls";
import { linkTiming } from "../../agent/state/engine/model";
import { NetnsSandbox } from "../support/netns";
import { startCharon, type Charon } from "../support/charon";
import { buildNetwork, routeNextHop, setHostLinks, setInternetLoss, setPartition } from "./network";
import { allHosts, hostByPrivateAddress, planLab, STATE_ADDRESS, STATE_PORT, type HostPlan, type LabPlan, type LabPlanOptions, type LocationPlan } from "./plan";
import { parseProbeLog, type ProbePacket } from "./outage";
import { CODE_CACHE_DIR_ENV } from "../../agent/code-cache";

export const REPO_ROOT = resolve(__dirname, "../..");
const PROBE_PORT = 7777;
/** Generous: node start-up and the first answer of an agent, before its host counts as online. */
const AGENT_START_UP_MS = 1_000;
/** Milliseconds between probe datagrams: the resolution of every outage figure. */
export const PROBE_INTERVAL_MS = 10;

export interface LabOptions extends LabPlanOptions {
  /** Names the work dir (logs, configs, state data). */
  label?: string;
  /**
   * The agents' V8 code cache directory (SITELINK_CODE_CACHE_DIR), as a host's /var/cache/sitelink:
   * shared by every lab host, since they run the same bundle. Default: one in the work dir, so the
   * lab's first agent start is cold and every later one warm.
   */
  codeCacheDir?: string;
}

/** Bundles the current sources the way they are deployed (scripts/bundle.mjs: one file); returns its path. */
function bundleSitelink(outfile: string): string {
  try {
    execFileSync(process.execPath, [join(REPO_ROOT, "scripts/bundle.mjs"), "--outfile", outfile, "--no-check"], { stdio: "pipe" });
  } catch (error) {
    const stderr = String((error as { stderr?: Buffer }).stderr ?? "").trim();
    throw new Error(`bundling agent/sitelink.ts failed:\n${stderr.split("\n").slice(0, 12).join("\n")}`);
  }
  return outfile;
}

/**
 * The scheduling priority the systemd units give the agent and the state service (their `Nice=`):
 * the lab runs them with it, as hosts do, so `--load N` measures them beside other work the way
 * they run in production.
 */
export function unitNice(unit: "agent" | "state"): number {
  const file = unit === "agent" ? "agent/host/sitelink-agent.service" : "agent/state/sitelink-state.service";
  const match = /^Nice=(-?\d+)$/m.exec(readFileSync(join(REPO_ROOT, file), "utf8"));
  if (!match) throw new Error(`${file} sets no Nice=`);
  return Number(match[1]);
}

export class Lab {
  private readonly charons = new Map<string, Charon>();
  private readonly agents = new Map<string, ChildProcess>();
  private readonly agentStartedAt = new Map<string, number>();
  private internetLoss = 0;
  private state: ChildProcess | undefined;
  private masterKey: Buffer | undefined;
  private fingerprint: string | undefined;
  private probeScript: string | undefined;
  private readonly stateDir: string;
  /** The bundled `sitelink` (dist/sitelink.js as deployed). */
  private readonly sitelinkFile: string;
  /** The agents' code cache directory (the state service, as on its own host, keeps none here). */
  private readonly codeCacheDir: string;
  private readonly nice = { agent: unitNice("agent"), state: unitNice("state") };

  private constructor(
    readonly sandbox: NetnsSandbox,
    readonly plan: LabPlan,
    codeCacheDir: string,
  ) {
    this.stateDir = join(sandbox.workDir, "state");
    this.sitelinkFile = bundleSitelink(join(sandbox.workDir, "sitelink.js"));
    this.codeCacheDir = codeCacheDir;
  }

  /** Builds the network and starts the state service, every charon and the probe echo servers; agents are started by startAgents(). */
  static async create(opts: LabOptions = {}): Promise<Lab> {
    const sandbox = await NetnsSandbox.create(opts.label ?? "lab");
    try {
      const lab = new Lab(sandbox, planLab({ ...opts, prefix: sandbox.prefix }), opts.codeCacheDir ?? join(sandbox.workDir, "code-cache"));
      mkdirSync(lab.logDir, { recursive: true });
      await buildNetwork(sandbox, lab.plan);
      await lab.initState();
      await lab.startState();
      await Promise.all(allHosts(lab.plan).map((h) => lab.startCharon(h)));
      lab.startEchoServers();
      return lab;
    } catch (error) {
      await sandbox.cleanup();
      throw error;
    }
  }

  get workDir(): string {
    return this.sandbox.workDir;
  }

  get logDir(): string {
    return join(this.sandbox.workDir, "logs");
  }

  async destroy(): Promise<void> {
    await this.sandbox.cleanup();
  }

  // --- state service ---

  private async initState(): Promise<void> {
    await this.sitelink(this.plan.stateNs, ["state", "init", "--data", this.stateDir]);
    writeFileSync(this.topologyFile, JSON.stringify(this.plan.topology, null, 2));
    this.masterKey = readMasterKey(join(this.stateDir, DATA_FILES.masterKey));
    this.fingerprint = certificateFingerprint(readFileSync(join(this.stateDir, DATA_FILES.cert)));
  }

  private get topologyFile(): string {
    return join(this.sandbox.workDir, "topology.json");
  }

  async startState(): Promise<void> {
    if (this.state) throw new Error("the state service is already running");
    this.state = this.sandbox.spawn(
      this.plan.stateNs,
      [
        ...this.sitelinkCommand({ nice: this.nice.state }),
        "state", "serve",
        "--topology", this.topologyFile,
        "--data", this.stateDir,
        "--listen", `${STATE_ADDRESS}:${STATE_PORT}`,
      ],
      { logFile: join(this.logDir, "state.log") },
    );
    await waitFor(`state service listening on ${STATE_ADDRESS}:${STATE_PORT}`, 20_000, async () => {
      const result = await this.sandbox.exec(this.plan.stateNs, ["ss", "-Hltn", `sport = :${STATE_PORT}`], { allowFail: true });
      return result.stdout.includes(`${STATE_ADDRESS}:${STATE_PORT}`);
    });
  }

  async stopState(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const state = this.state;
    this.state = undefined;
    if (state?.pid) await this.sandbox.kill(state.pid, signal);
  }

  /** `sitelink state status`: the table of links, locations and hosts. */
  async stateStatus(): Promise<string> {
    const result = await this.sitelink(this.plan.stateNs, ["state", "status", "--data", this.stateDir]);
    return result.stdout;
  }

  /** The stored decision generation, from the status table's first line. */
  async generation(): Promise<number> {
    const status = await this.stateStatus();
    const match = /^generation (\d+)/.exec(status);
    if (!match) throw new Error(`no generation in the state status:\n${status}`);
    return Number(match[1]);
  }

  // --- hosts ---

  private async startCharon(host: HostPlan): Promise<void> {
    // Its log and config live in the sandbox's charon-<host> dir; a restart reuses (appends to) them.
    const charon = await startCharon(this.sandbox, host.ns, { name: host.id });
    this.charons.set(host.id, charon);
  }

  private agentConfig(host: HostPlan): string {
    const charon = this.charons.get(host.id);
    if (!charon || !this.masterKey || !this.fingerprint) throw new Error(`host ${host.id} has no charon or the state service is not initialized`);
    const loc = this.location(host);
    const config: AgentConfigInput = {
      uris: [
        formatHostUri({
          hostId: host.id,
          secret: deriveHostSecret(this.masterKey, host.id),
          endpoints: [{ host: STATE_ADDRESS, port: STATE_PORT }],
          fingerprints: [this.fingerprint],
        }),
      ],
      provider: "lab",
      lab: { namespace: loc.routerNs, via: host.privateAddress },
      viciSocket: charon.viciSocket,
      publicAddress: host.publicAddress,
      privateAddress: host.privateAddress,
      logLevel: "debug",
    };
    const file = join(this.sandbox.workDir, `agent-${host.id}.json`);
    writeFileSync(file, JSON.stringify(config, null, 2), { mode: 0o600 });
    chmodSync(file, 0o600);
    return file;
  }

  startAgent(host: HostPlan): void {
    if (this.agents.has(host.id)) throw new Error(`the agent of ${host.id} is already running`);
    // Each agent gets its own status file: the default path would be shared by every lab host.
    const statusFile = join(this.sandbox.workDir, `status-${host.id}.json`);
    const command = this.sitelinkCommand({ nice: this.nice.agent, env: [`${CODE_CACHE_DIR_ENV}=${this.codeCacheDir}`] });
    const argv = [...command, "--config", this.agentConfig(host), "run", "--status", statusFile];
    const child = this.sandbox.spawn(host.ns, argv, {
      logFile: join(this.logDir, `agent-${host.id}.log`),
    });
    this.agents.set(host.id, child);
    this.agentStartedAt.set(host.id, Date.now());
    child.once("exit", () => {
      if (this.agents.get(host.id) === child) this.agents.delete(host.id);
    });
  }

  startAgents(hosts: HostPlan[] = allHosts(this.plan)): void {
    for (const host of hosts) this.startAgent(host);
  }

  /**
   * A host dying at once: its cables cut, then kill -9 of its agent and charon. Cables first: an
   * agent that outlived its charon by a few hundred ms would report the dead tunnels, a heartbeat
   * no dead machine sends (and the figure would measure the kill order, not the failover).
   */
  async crashHost(host: HostPlan): Promise<void> {
    await setHostLinks(this.sandbox, host, this.location(host), false);
    await Promise.all([this.killAgent(host, "SIGKILL"), this.killCharon(host, "SIGKILL")]);
  }

  /** A graceful stop as systemd does it: SIGTERM to the agent and to charon. */
  async stopHost(host: HostPlan): Promise<void> {
    // The agent first tells the state service it leaves; charon's SIGTERM deletes its SAs.
    await this.killAgent(host, "SIGTERM");
    await this.killCharon(host, "SIGTERM");
  }

  /** Brings a stopped or crashed host back: cables, charon, agent. */
  async startHost(host: HostPlan): Promise<void> {
    await setHostLinks(this.sandbox, host, this.location(host), true);
    if (!this.charons.has(host.id)) await this.startCharon(host);
    if (!this.agents.has(host.id)) this.startAgent(host);
  }

  /** Cuts (or heals) the path between a host and every host of the other locations, not the state service. */
  async partition(host: HostPlan, cut: boolean): Promise<void> {
    const peers = allHosts(this.plan).filter((h) => h.location !== host.location).map((h) => h.publicAddress);
    await setPartition(this.sandbox, host, peers, cut);
  }

  /**
   * Waits until every agent has run for the state service's settle time (heartbeat + probe timeout
   * + 2 probe intervals, plus start-up): before that, its host checks, and reports about it, do not
   * count as evidence yet. A drill faults a settled lab, as a real failure meets settled hosts.
   */
  async settled(): Promise<void> {
    const settleMs = linkTiming(this.plan.topology.links[0]!).settleMs + AGENT_START_UP_MS;
    const waitMs = Math.max(0, ...[...this.agentStartedAt.values()].map((at) => at + settleMs - Date.now()));
    await new Promise((resolve) => setTimeout(resolve, waitMs));
  }

  /** Drops `probability` (0-1) of the packets reaching every host and the state service from the internet; 0 heals. */
  async setInternetLoss(probability: number): Promise<void> {
    await setInternetLoss(this.sandbox, this.plan, probability, this.internetLoss);
    this.internetLoss = probability;
  }

  /** Cuts (or heals) the path between every host of `loc` and the state service, nothing else. */
  async cutFromState(loc: LocationPlan, cut: boolean): Promise<void> {
    for (const host of loc.hosts) await setPartition(this.sandbox, host, [STATE_ADDRESS], cut);
  }

  private async killAgent(host: HostPlan, signal: "SIGTERM" | "SIGKILL"): Promise<void> {
    const agent = this.agents.get(host.id);
    this.agents.delete(host.id);
    if (agent?.pid) await this.sandbox.kill(agent.pid, signal);
  }

  private async killCharon(host: HostPlan, signal: "SIGTERM" | "SIGKILL"): Promise<void> {
    const charon = this.charons.get(host.id);
    this.charons.delete(host.id);
    if (charon) await charon.stop(signal);
  }

  /** When the host's agent logged its first line (it logs once its config is loaded), in ms since epoch. */
  agentFirstLogAt(host: HostPlan): number | undefined {
    const file = join(this.logDir, `agent-${host.id}.log`);
    if (!existsSync(file)) return undefined;
    const time = /"time":"([^"]+)"/.exec(readFileSync(file, "utf8"))?.[1];
    return time === undefined ? undefined : Date.parse(time);
  }

  /** The host the location's "route table" points the first remote route at. */
  async routeTarget(loc: LocationPlan): Promise<HostPlan | undefined> {
    const remote = this.plan.locations.find((l) => l !== loc)!;
    const via = await routeNextHop(this.sandbox, loc, remote.route);
    return via === undefined ? undefined : hostByPrivateAddress(loc, via);
  }

  /** Every router route, for "nothing changed" checks. */
  async routeTable(): Promise<Record<string, string | undefined>> {
    const table: Record<string, string | undefined> = {};
    for (const loc of this.plan.locations) {
      for (const remote of this.plan.locations.filter((l) => l !== loc)) {
        table[`${loc.name}->${remote.route}`] = await routeNextHop(this.sandbox, loc, remote.route);
      }
    }
    return table;
  }

  /** Established IKE SAs of a host's charon as `name#uniqueId` (a re-keyed or re-made tunnel changes them). */
  async ikeSas(host: HostPlan): Promise<string[]> {
    const charon = this.charons.get(host.id);
    if (!charon) return [];
    const result = await this.sandbox.exec(host.ns, ["swanctl", "--list-sas", "--noblock", "--uri", `unix://${charon.viciSocket}`], { allowFail: true });
    return [...result.stdout.matchAll(/^(\S+): #(\d+), ESTABLISHED/gm)].map((m) => `${m[1]}#${m[2]}`).sort();
  }

  location(host: HostPlan): LocationPlan {
    return this.plan.locations.find((l) => l.name === host.location)!;
  }

  // --- traffic ---

  /** One ping from a client to another location's client. */
  async ping(from: LocationPlan, to: LocationPlan): Promise<boolean> {
    const result = await this.sandbox.exec(from.clientNs, ["ping", "-c", "1", "-W", "1", to.clientAddress], { allowFail: true });
    return result.code === 0;
  }

  private startEchoServers(): void {
    for (const loc of this.plan.locations) {
      this.sandbox.spawn(loc.clientNs, [process.execPath, this.probeBundle(), "echo", String(PROBE_PORT)], {
        logFile: join(this.logDir, `echo-${loc.name}.log`),
      });
    }
  }

  /** The prober as one plain JS file, so a probe starts in a few ms. */
  private probeBundle(): string {
    if (!this.probeScript) {
      this.probeScript = join(this.sandbox.workDir, "probe.js");
      buildSync({ entryPoints: [join(__dirname, "probe.ts")], bundle: true, platform: "node", target: "node20", outfile: this.probeScript, logLevel: "error" });
    }
    return this.probeScript;
  }

  /** Starts a steady probe from one client to another; read() parses what it logged so far. */
  startProbe(from: LocationPlan, to: LocationPlan): Probe {
    const logFile = join(this.logDir, `probe-${from.name}-${to.name}-${Date.now()}.log`);
    const child = this.sandbox.spawn(from.clientNs, [process.execPath, this.probeBundle(), "send", to.clientAddress, String(PROBE_PORT), String(PROBE_INTERVAL_MS)], { logFile });
    return {
      read: () => (existsSync(logFile) ? parseProbeLog(readFileSync(logFile, "utf8")) : []),
      stop: async () => {
        if (child.pid) await this.sandbox.kill(child.pid, "SIGTERM");
      },
    };
  }

  private async sitelink(ns: string, args: string[]) {
    return this.sandbox.exec(ns, [...this.sitelinkCommand(), ...args]);
  }

  /** argv that runs the bundled `sitelink`: a service with its unit's priority and its environment. */
  private sitelinkCommand(opts: { nice?: number; env?: string[] } = {}): string[] {
    const nice = opts.nice === undefined ? [] : ["nice", "-n", String(opts.nice)];
    // The native modules the state service needs stay in the repo's node_modules.
    return [...nice, "env", `NODE_PATH=${join(REPO_ROOT, "node_modules")}`, ...(opts.env ?? []), process.execPath, this.sitelinkFile];
  }
}

export interface Probe {
  read(): ProbePacket[];
  stop(): Promise<void>;
}

/** Polls `check` every 50 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

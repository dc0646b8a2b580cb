// A sandbox of network namespaces for tests and the lab: every namespace, veth, bridge and process
// it creates is tracked and removed by cleanup(), also when the test process is interrupted
// (SIGINT/SIGTERM), throws an uncaught error or exits without cleaning up.
//
// Names: every namespace is `${prefix}-${short}` with a random prefix `sl<4 chars>`, so parallel or
// leftover runs never collide. Interface names are chosen by the caller (≤ 15 chars) and live
// inside the sandbox's namespaces only, so they never clash with the host's interfaces.
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, openSync, closeSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const IP = "ip";
const MAX_IFNAME = 15;
/** How long kill() and cleanup() wait for a process to exit after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 3000;

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface VethEnd {
  ns: string;
  ifname: string;
  /** Address with prefix length, e.g. `198.18.0.1/24`. */
  addr?: string;
}

/** True when the process runs as root; namespace tests skip with a clear reason otherwise. */
export function requireRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

const live = new Set<NetnsSandbox>();
let handlersInstalled = false;

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  // 'exit' handlers must be synchronous: this is the last chance when a test runner exits early.
  process.on("exit", () => cleanupAllSync());
  process.on("uncaughtExceptionMonitor", () => cleanupAllSync());
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      cleanupAllSync();
      process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1));
    });
  }
}

function cleanupAllSync(): void {
  for (const sandbox of live) sandbox.cleanupSync();
}

function run(argv: string[]): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(argv[0]!, argv.slice(1), { maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolve({ stdout: String(stdout), stderr: String(stderr), code });
    });
  });
}

function checkIfname(ifname: string): void {
  if (!/^[A-Za-z0-9_.-]+$/.test(ifname) || ifname.length > MAX_IFNAME) {
    throw new Error(`interface name "${ifname}" must be 1-${MAX_IFNAME} of A-Z a-z 0-9 _ . -`);
  }
}

export class NetnsSandbox {
  private readonly namespaces: string[] = [];
  private readonly processes = new Map<number, ChildProcess>();
  private cleanedUp = false;

  private constructor(
    readonly prefix: string,
    readonly workDir: string,
  ) {}

  /** A new sandbox with a fresh random prefix and work dir; `label` names the work dir only. */
  static async create(label: string): Promise<NetnsSandbox> {
    const prefix = `sl${randomBytes(3).toString("hex").slice(0, 4)}`;
    const safeLabel = label.replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 40);
    const workDir = mkdtempSync(join(tmpdir(), `${prefix}-${safeLabel}-`));
    const sandbox = new NetnsSandbox(prefix, workDir);
    installHandlers();
    live.add(sandbox);
    return sandbox;
  }

  /** Creates namespace `${prefix}-${short}` with lo up; returns its full name. */
  async addNamespace(short: string): Promise<string> {
    const name = `${this.prefix}-${short}`;
    if (!/^[A-Za-z0-9_-]+$/.test(short) || name.length > 64) {
      throw new Error(`namespace short name "${short}" must be letters, digits, '_' or '-'`);
    }
    if (this.namespaces.includes(name)) throw new Error(`namespace ${name} already exists in this sandbox`);
    await this.must([IP, "netns", "add", name]);
    this.namespaces.push(name);
    await this.must([IP, "-n", name, "link", "set", "lo", "up"]);
    return name;
  }

  /** A veth pair between two of the sandbox's namespaces (or within one), both ends up. */
  async veth(a: VethEnd, b: VethEnd): Promise<void> {
    checkIfname(a.ifname);
    checkIfname(b.ifname);
    this.own(a.ns);
    this.own(b.ns);
    // Created directly inside the target namespaces: the names never touch the root namespace.
    await this.must([IP, "link", "add", a.ifname, "netns", a.ns, "type", "veth", "peer", "name", b.ifname, "netns", b.ns]);
    for (const end of [a, b]) await this.up(end.ns, end.ifname, end.addr);
  }

  /** A bridge inside `ns`, up, with an optional address (CIDR). Attach veth ends with attach(). */
  async bridge(ns: string, ifname: string, addr?: string): Promise<void> {
    checkIfname(ifname);
    this.own(ns);
    await this.must([IP, "-n", ns, "link", "add", ifname, "type", "bridge"]);
    await this.up(ns, ifname, addr);
  }

  /** Makes interface `ifname` of `ns` a port of bridge `bridge` in the same namespace. */
  async attach(ns: string, ifname: string, bridge: string): Promise<void> {
    this.own(ns);
    await this.must([IP, "-n", ns, "link", "set", ifname, "master", bridge]);
  }

  /** Runs a command inside `ns`; throws (with stderr) on a non-zero exit unless allowFail. */
  async exec(ns: string, argv: string[], opts: { allowFail?: boolean } = {}): Promise<ExecResult> {
    this.own(ns);
    const result = await run([IP, "netns", "exec", ns, ...argv]);
    if (result.code !== 0 && !opts.allowFail) {
      throw new Error(`in ${ns}: ${argv.join(" ")} exited ${result.code}: ${result.stderr.trim()}`);
    }
    return result;
  }

  /**
   * Starts a long-running process inside `ns`, tracked until it exits. Its pid is the real
   * process (ip netns exec, unshare and sh all exec). `privateRun` is a directory bind-mounted on
   * /run in a private mount namespace (charon's pid file path is compiled in).
   */
  spawn(ns: string, argv: string[], opts: { env?: NodeJS.ProcessEnv; logFile?: string; privateRun?: string } = {}): ChildProcess {
    this.own(ns);
    if (this.cleanedUp) throw new Error("sandbox already cleaned up");
    let command = [IP, "netns", "exec", ns, ...argv];
    if (opts.privateRun) {
      mkdirSync(opts.privateRun, { recursive: true });
      command = [
        IP, "netns", "exec", ns,
        "unshare", "--mount", "--propagation", "private",
        "sh", "-c", 'mount --bind "$0" /run && exec "$@"', opts.privateRun, ...argv,
      ];
    }
    const log = opts.logFile ? openSync(opts.logFile, "a") : undefined;
    const child = spawn(command[0]!, command.slice(1), {
      env: opts.env ?? process.env,
      stdio: ["ignore", log ?? "ignore", log ?? "ignore"],
    });
    if (log !== undefined) closeSync(log);
    if (child.pid === undefined) throw new Error(`could not start ${argv[0]} in ${ns}`);
    const pid = child.pid;
    this.processes.set(pid, child);
    child.once("exit", () => this.processes.delete(pid));
    return child;
  }

  /** Signals a process this sandbox started and waits until it has exited (SIGKILL after a grace period). */
  async kill(pid: number, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const child = this.processes.get(pid);
    if (!child) return; // already gone (or never ours): never signal foreign pids
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill(signal);
    const grace = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
    await exited;
    clearTimeout(grace);
  }

  /** Stops every process, deletes every namespace (and so every veth and bridge) and the work dir. Idempotent. */
  async cleanup(): Promise<void> {
    if (this.cleanedUp) return;
    await Promise.all([...this.processes.keys()].map((pid) => this.kill(pid)));
    this.cleanupSync();
  }

  /** The synchronous part of cleanup, also used from exit and signal handlers. */
  cleanupSync(): void {
    if (this.cleanedUp) return;
    this.cleanedUp = true;
    live.delete(this);
    for (const child of this.processes.values()) child.kill("SIGKILL");
    for (const ns of this.namespaces) {
      // Anything still running inside our own namespaces was started by us (or our processes).
      for (const pid of namespacePids(ns)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already exited
        }
      }
      try {
        execFileSync(IP, ["netns", "del", ns], { stdio: "ignore" });
      } catch {
        // already deleted
      }
    }
    this.namespaces.length = 0;
    if (!process.env.SITELINK_KEEP_WORKDIR) rmSync(this.workDir, { recursive: true, force: true });
  }

  private own(ns: string): void {
    if (!this.namespaces.includes(ns)) throw new Error(`namespace ${ns} is not part of sandbox ${this.prefix}`);
  }

  private async up(ns: string, ifname: string, addr?: string): Promise<void> {
    if (addr) await this.must([IP, "-n", ns, "addr", "add", addr, "dev", ifname]);
    await this.must([IP, "-n", ns, "link", "set", ifname, "up"]);
  }

  private async must(argv: string[]): Promise<void> {
    const result = await run(argv);
    if (result.code !== 0) throw new Error(`${argv.join(" ")} exited ${result.code}: ${result.stderr.trim()}`);
  }
}

function namespacePids(ns: string): number[] {
  try {
    return execFileSync(IP, ["netns", "pids", ns], { encoding: "utf8" })
      .split("\n")
      .filter((line) => /^\d+$/.test(line.trim()))
      .map(Number);
  } catch {
    return [];
  }
}

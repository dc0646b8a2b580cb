// Throwaway Debian instances on this machine: systemd as PID 1 under systemd-nspawn, each in its
// own network namespace on the lab's bridge, its root an overlayfs upper layer over the cached base
// (rootfs.ts), cloud-init running the NoCloud seed the lab writes (the user data, verbatim).
//
// Everything a lab creates (bridge, namespaces, veths, overlay mounts, cgroups, the nspawn
// processes, its work dir) is tracked and removed by cleanup(), also when the process is
// interrupted (SIGINT/SIGTERM/SIGHUP), throws an uncaught error or exits without cleaning up.
// Only the nspawn processes the lab started are signalled (by pid), and what is left in their own
// cgroups after they exit.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { aptSourceLine } from "./apt-repo";
import { cgroupPids, createCgroup, removeCgroupSync } from "./cgroups";
import { unmountUnderSync } from "./mounts";
import { addInstanceNetwork, createBridge, deleteLinkSync, deleteNamespaceSync, freeSubnet } from "./network";
import { run, secondsSince, type RunOptions, type RunResult } from "./proc";

/** The host's Node, bind-mounted read-only into every instance: bookworm's own nodejs is 18. */
export const HOST_NODE = "/usr/bin/node";
const MIN_NODE_MAJOR = 20;
/** How long stop() waits for systemd inside to power off after SIGTERM (it takes 1-2 s) before SIGKILL. */
const STOP_GRACE_MS = 15_000;
const CGROUP_ROOT = "sitelink-boot";
/** What commands run inside an instance see, instead of the lab process's environment. */
const INSTANCE_ENV = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C.UTF-8", HOME: "/root" };

export interface InstanceSpec {
  /** Machine name and hostname: lower-case letters, digits and '-', at most 20. */
  name: string;
  /** cloud-init user data, written verbatim to the NoCloud seed. */
  userData: string;
  /** A served apt repository (apt-repo.ts): the instance's only package source. */
  aptRepoUrl?: string;
  /** A port on the bridge address that 169.254.169.254:80 leads to from inside this instance (the fake IMDS). */
  imdsPort?: number;
  /** @default a fresh EC2-like id (i-…) */
  instanceId?: string;
  /** cloud-init vendor data (the NoCloud seed's `vendor-data`): the lab's own additions, never the user data. */
  vendorData?: string;
  /** Files written into the instance's root before it boots (lab-only additions; `path` absolute inside the instance). */
  files?: { path: string; content: string | Buffer; mode?: number }[];
}

export class Instance {
  /** The nspawn process (the launcher execs it, so this is its pid). */
  launcher: ChildProcess | undefined;
  /** performance.now() when nspawn was spawned. */
  startedAt: number | undefined;
  exitCode: number | null | undefined;
  /** nspawn --bind arguments ("host path:instance path"), set before start(). */
  readonly binds: string[] = [];
  /** Loop devices the lab attached for this instance (volumes), detached at teardown. */
  readonly loopDevices: string[] = [];
  private pid1: number | undefined;

  constructor(
    readonly name: string,
    readonly instanceId: string,
    readonly address: string,
    readonly ns: string,
    readonly hostEnd: string,
    /** Holds upper/, work/, root/ and console.log. */
    readonly dir: string,
    readonly cgroup: string,
  ) {}

  /** The instance's root filesystem as it sees it (the mounted overlay), readable from the host. */
  get root(): string {
    return join(this.dir, "root");
  }

  get consoleLog(): string {
    return join(this.dir, "console.log");
  }

  get running(): boolean {
    return this.launcher !== undefined && this.exitCode === undefined;
  }

  /** The container's PID 1 (systemd): the child of nspawn in another pid namespace. */
  initPid(): number | undefined {
    if (this.pid1 !== undefined || !this.running) return this.pid1;
    const ownPidNs = readlinkSync("/proc/self/ns/pid");
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        if (ppid === this.launcher?.pid && readlinkSync(`/proc/${entry}/ns/pid`) !== ownPidNs) this.pid1 = Number(entry);
      } catch {
        // exited while we looked
      }
    }
    return this.pid1;
  }
}

const live = new Set<BootLab>();
let handlersInstalled = false;

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  // 'exit' handlers must be synchronous: the last chance when the process exits early.
  process.on("exit", () => cleanupAllSync());
  process.on("uncaughtExceptionMonitor", () => cleanupAllSync());
  for (const [signal, number] of [["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]] as const) {
    process.once(signal, () => {
      cleanupAllSync();
      process.exit(128 + number);
    });
  }
}

function cleanupAllSync(): void {
  for (const lab of live) lab.cleanupSync();
}

export class BootLab {
  private readonly instances: Instance[] = [];
  private bridgeCreated = false;
  private cleanedUp = false;

  private constructor(
    /** `slboot` and 4 hex digits: the bridge's name and the prefix of every name the lab gives. */
    readonly id: string,
    readonly baseDir: string,
    /** The lab's /24 without the last octet, e.g. 198.19.7 */
    readonly subnet: string,
    readonly workDir: string,
    private readonly log: (line: string) => void,
  ) {}

  get bridge(): string {
    return this.id;
  }

  /** The host's address on the bridge: where the lab's servers listen and instances reach them. */
  get bridgeAddress(): string {
    return `${this.subnet}.1`;
  }

  /** A lab with its bridge up, instances booted from `baseDir` (rootfs.ts). */
  static async create(baseDir: string, log: (line: string) => void = () => {}): Promise<BootLab> {
    checkHostNode();
    const id = `slboot${randomBytes(2).toString("hex")}`;
    const workDir = mkdtempSync(join(tmpdir(), `${id}-`));
    const lab = new BootLab(id, baseDir, await freeSubnet(), workDir, log);
    installHandlers();
    live.add(lab);
    try {
      // Set first: a bridge made but not yet addressed must still be deleted.
      lab.bridgeCreated = true;
      await createBridge(lab.bridge, lab.bridgeAddress);
    } catch (error) {
      await lab.cleanup();
      throw error;
    }
    return lab;
  }

  /** Everything of an instance but its launch: network, root filesystem, seed. Start it with start(). */
  async prepare(spec: InstanceSpec): Promise<Instance> {
    if (this.cleanedUp) throw new Error("boot lab already cleaned up");
    if (!/^[a-z][a-z0-9-]{0,19}$/.test(spec.name)) throw new Error(`instance name "${spec.name}" must be a-z 0-9 '-', at most 20, starting with a letter`);
    if (this.instances.some((i) => i.name === spec.name)) throw new Error(`instance ${spec.name} already exists in lab ${this.id}`);
    const index = this.instances.length + 1;
    if (index > 200) throw new Error("at most 200 instances per lab");
    const instance = new Instance(
      spec.name,
      spec.instanceId ?? `i-${randomBytes(9).toString("hex").slice(0, 17)}`,
      `${this.subnet}.${10 + index}`,
      `${this.id}-${spec.name}`,
      `${this.id}v${index}`,
      join(this.workDir, spec.name),
      `${CGROUP_ROOT}/${this.id}/${spec.name}`,
    );
    // Tracked before anything exists, so a failure half-way is still cleaned up.
    this.instances.push(instance);
    for (const sub of ["upper", "work", "root"]) mkdirSync(join(instance.dir, sub), { recursive: true });
    await run([
      "mount", "-t", "overlay", "overlay",
      "-o", `lowerdir=${this.baseDir},upperdir=${join(instance.dir, "upper")},workdir=${join(instance.dir, "work")}`,
      instance.root,
    ]);
    writeSeed(instance, spec);
    await addInstanceNetwork({
      ns: instance.ns, hostEnd: instance.hostEnd, bridge: this.bridge, bridgeAddress: this.bridgeAddress,
      address: instance.address, imdsPort: spec.imdsPort,
    });
    return instance;
  }

  /** Launches systemd-nspawn for a prepared instance; returns at once (see waitCloudInit). */
  start(instance: Instance): void {
    if (instance.launcher) throw new Error(`instance ${instance.name} already started`);
    const cgroupProcs = createCgroup(instance.cgroup);
    const output = openSync(instance.consoleLog, "a");
    const nspawn = [
      "systemd-nspawn", "-D", instance.root, "-M", instance.name, "--boot",
      // No systemd on the host: nothing to register with, no scope unit to make.
      "--register=no", "--keep-unit",
      `--network-namespace-path=/run/netns/${instance.ns}`,
      // charon cannot open its XFRM and netlink sockets without it.
      "--capability=CAP_NET_ADMIN",
      // The base's own resolv.conf and timezone stay; the journal stays inside (read with journal()).
      "--resolv-conf=off", "--timezone=off", "--link-journal=no",
      "--console=read-only", `--bind-ro=${HOST_NODE}`,
      ...instance.binds.map((bind) => `--bind=${bind}`),
    ];
    // The shell moves itself into the instance's own cgroups, then becomes nspawn (same pid).
    const child = spawn("sh", ["-c", 'for f in $BOOT_LAB_CGROUPS; do echo $$ > "$f"; done; exec "$@"', "sh", ...nspawn], {
      // SYSTEMD_NSPAWN_API_VFS_WRITABLE=network: /proc/sys/net writable (nspawn mounts /proc/sys
      // read-only otherwise), so the user data's sysctl --load sets forwarding — in the instance's own namespace.
      env: { ...INSTANCE_ENV, BOOT_LAB_CGROUPS: cgroupProcs.join(" "), SYSTEMD_NSPAWN_API_VFS_WRITABLE: "network" },
      stdio: ["ignore", output, output],
      // Its own process group: a Ctrl-C at the terminal reaches the lab process, which powers the
      // instance off with SIGTERM, and not nspawn itself (whose SIGINT would reboot the container).
      detached: true,
    });
    closeSync(output);
    instance.launcher = child;
    instance.startedAt = performance.now();
    child.on("error", (error) => this.log(`${instance.name}: ${error.message}`));
    child.once("exit", (code) => {
      instance.exitCode = code;
    });
  }

  /**
   * A blank block device of `sizeMb` (a sparse file on a loop device) the instance sees at
   * `devicePath`, as a cloud volume attached before boot. Also bound under its own name, so blkid
   * (which walks /proc/partitions, host-wide) finds it by UUID without udev. Call before start().
   */
  async attachVolume(instance: Instance, devicePath: string, sizeMb: number): Promise<string> {
    if (instance.launcher) throw new Error(`instance ${instance.name} already started: attach volumes before`);
    const file = join(instance.dir, `volume-${instance.loopDevices.length}.img`);
    await run(["truncate", "-s", `${sizeMb}M`, file]);
    const device = (await run(["losetup", "--find", "--show", file])).stdout.trim();
    instance.loopDevices.push(device);
    instance.binds.push(`${device}:${devicePath}`, `${device}:${device}`);
    return device;
  }

  /** prepare() then start(). */
  async boot(spec: InstanceSpec): Promise<Instance> {
    const instance = await this.prepare(spec);
    this.start(instance);
    return instance;
  }

  /** Powers the instance off (SIGTERM to nspawn; SIGKILL after a grace period) and removes all it had but its files. */
  async stop(instance: Instance): Promise<void> {
    const child = instance.launcher;
    if (child && instance.running) {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      const grace = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
      await exited;
      clearTimeout(grace);
    }
    teardownSync(instance);
  }

  /** Stops every instance, removes the bridge and the lab's cgroups and work dir. Idempotent. */
  async cleanup(): Promise<void> {
    if (this.cleanedUp) return;
    await Promise.all(this.instances.map((instance) => this.stop(instance)));
    this.cleanupSync();
  }

  /** The synchronous cleanup, also used from exit and signal handlers (waits for nspawn by polling). */
  cleanupSync(): void {
    if (this.cleanedUp) return;
    this.cleanedUp = true;
    live.delete(this);
    const running = this.instances.filter((i) => i.running && alive(i.launcher!.pid!));
    for (const instance of running) instance.launcher!.kill("SIGTERM");
    const deadline = Date.now() + STOP_GRACE_MS;
    while (running.some((i) => alive(i.launcher!.pid!)) && Date.now() < deadline) sleepSync(100);
    for (const instance of running) if (alive(instance.launcher!.pid!)) instance.launcher!.kill("SIGKILL");
    for (const instance of this.instances) teardownSync(instance);
    if (this.bridgeCreated) deleteLinkSync(this.bridge);
    removeCgroupSync(`${CGROUP_ROOT}/${this.id}`, 1);
    if (!process.env.SITELINK_KEEP_WORKDIR) {
      unmountUnderSync(this.workDir);
      rmSync(this.workDir, { recursive: true, force: true });
    }
  }
}

function checkHostNode(): void {
  let version = "";
  try {
    version = execFileSync(HOST_NODE, ["-v"], { encoding: "utf8" }).trim();
  } catch {
    throw new Error(`${HOST_NODE} is missing: the boot lab bind-mounts it into every instance`);
  }
  if (Number(/^v(\d+)\./.exec(version)?.[1] ?? 0) < MIN_NODE_MAJOR) throw new Error(`${HOST_NODE} is ${version}; instances need Node ${MIN_NODE_MAJOR} or later`);
}

function writeSeed(instance: Instance, spec: InstanceSpec): void {
  const seed = join(instance.root, "var/lib/cloud/seed/nocloud");
  mkdirSync(seed, { recursive: true });
  writeFileSync(join(seed, "meta-data"), `instance-id: ${instance.instanceId}\nlocal-hostname: ${instance.name}\n`);
  // User data carries secrets in the real bootstraps: root only, as on a cloud instance.
  writeFileSync(join(seed, "user-data"), spec.userData, { mode: 0o600 });
  if (spec.vendorData !== undefined) writeFileSync(join(seed, "vendor-data"), spec.vendorData, { mode: 0o600 });
  for (const file of spec.files ?? []) {
    const path = join(instance.root, file.path);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, file.content, { mode: file.mode ?? 0o644 });
  }
  if (spec.aptRepoUrl) writeFileSync(join(instance.root, "etc/apt/sources.list.d/boot-lab.list"), aptSourceLine(spec.aptRepoUrl));
}

/** Removes what an instance holds on the host, once its nspawn has exited. Idempotent. */
function teardownSync(instance: Instance): void {
  // Whatever outlived nspawn in the instance's own cgroups was started inside it.
  for (const pid of cgroupPids(instance.cgroup)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already exited
    }
  }
  unmountUnderSync(instance.root);
  for (const device of instance.loopDevices.splice(0)) {
    try {
      execFileSync("losetup", ["-d", device], { stdio: "ignore" });
    } catch {
      // already detached
    }
  }
  deleteNamespaceSync(instance.ns);
  // The namespace took the veth pair along; this is for a failure between creating both.
  deleteLinkSync(instance.hostEnd);
  removeCgroupSync(instance.cgroup, 0);
}

/** True while `pid` exists and is not a zombie (an exited child Node has not reaped yet). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Runs argv inside the instance (all its namespaces, its root, a clean environment) via nsenter into its PID 1. */
export async function exec(instance: Instance, argv: readonly string[], opts: Omit<RunOptions, "env"> = {}): Promise<RunResult> {
  const pid = instance.initPid();
  if (pid === undefined) throw new Error(`instance ${instance.name} is not running`);
  return run(["nsenter", "-t", String(pid), "-a", "-r", "-w", "--", ...argv], { ...opts, env: INSTANCE_ENV });
}

export type CloudInitStatus = "done" | "error" | "degraded" | "disabled";

/**
 * Waits until cloud-init has finished and returns its final status, in seconds from the nspawn
 * launch. Watches for /run/cloud-init/result.json (written when the final stage ends) from the
 * host, 10 times a second, and asks `cloud-init status` once it is there: a python start per poll
 * would cost the instances the CPU this measures.
 */
export async function waitCloudInit(instance: Instance, timeoutMs = 300_000): Promise<{ status: CloudInitStatus; seconds: number }> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!instance.running) throw new Error(`instance ${instance.name} exited (${instance.exitCode}) before cloud-init finished; see ${instance.consoleLog}`);
    const pid = instance.initPid();
    if (pid !== undefined && existsSync(`/proc/${pid}/root/run/cloud-init/result.json`)) {
      const seconds = secondsSince(instance.startedAt!);
      const status = await cloudInitStatus(instance);
      // Newer cloud-init says "degraded done" for a run with recoverable errors.
      const word = status.split(" ")[0];
      if (word === "done" || word === "error" || word === "degraded" || word === "disabled") return { status: word, seconds };
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const last = instance.initPid() === undefined ? "systemd not started" : await cloudInitStatus(instance);
  throw new Error(`cloud-init in ${instance.name} not finished after ${timeoutMs / 1000} s (status: ${last})`);
}

async function cloudInitStatus(instance: Instance): Promise<string> {
  const { stdout } = await exec(instance, ["cloud-init", "status"], { allowFail: true });
  return /^status: (.+)$/m.exec(stdout)?.[1]?.trim() ?? "unknown";
}

/** Names of the instance's failed systemd units. */
export async function failedUnits(instance: Instance): Promise<string[]> {
  const { stdout } = await exec(instance, ["systemctl", "--failed", "--plain", "--no-legend", "--no-pager"]);
  return stdout.split("\n").map((line) => line.trim().split(/\s+/)[0] ?? "").filter(Boolean);
}

/**
 * The instance's journal, read on the host with journalctl -D (journalctl -M needs a systemd on
 * the host). `args` are journalctl's, e.g. ["-u", "cloud-final", "-o", "cat"].
 */
export async function journal(instance: Instance, args: readonly string[] = []): Promise<string> {
  const persistent = join(instance.root, "var/log/journal");
  const pid = instance.initPid();
  const dir = existsSync(persistent) ? persistent : `/proc/${pid}/root/run/log/journal`;
  const { stdout } = await run(["journalctl", "-D", dir, "--no-pager", "-q", ...args]);
  return stdout;
}

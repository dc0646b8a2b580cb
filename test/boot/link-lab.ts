// The boot lab with a real link: the user data, parameters and agent object the components render
// for an AWS link (render-link.ts) run on three throwaway Debian instances — the state service and
// one host in each of two locations — against the fake cloud, plus the seam (seam.ts). Used by
// boot.test.ts and `npm run lab:boot` (this file run directly).
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { aptRepo, serveRepo, type RepoServer } from "./apt-repo";
import { REPO_ROOT } from "./cache";
import { FakeCloud } from "./fake-cloud";
import { BootLab, exec, failedUnits, journal, waitCloudInit, type CloudInitStatus, type Instance } from "./instance";
import { secondsSince } from "./proc";
import { renderLabLink, type LabLocation, type RenderedInstance, type RenderedLink } from "./render-link";
import { baseRootfs } from "./rootfs";
import { addSiteInterface, awsEndpointNames, BOOT_PACKAGES, labTls, seamFiles, SEAM_VENDOR_DATA } from "./seam";
import { fetchOperatorStatus, readiness } from "../../agent/contract/operator";
import { deriveOperatorKey } from "../../agent/contract/signing";
import { DEFAULT_STATE_PORT as STATE_PORT } from "../../agent/contract/uri";
import { certificateFingerprint, masterKeyBytes } from "../../lib/link/state-service";

export const LINK = "boot";
export const LAB_LOCATIONS: LabLocation[] = [
  { name: "loc-a", routes: ["10.1.0.0/16"], routeTableId: "rtb-0a00000000000000a" },
  { name: "loc-b", routes: ["10.2.0.0/16"], routeTableId: "rtb-0b00000000000000b" },
];
/** The address of each location's site interface (inside its routes). */
export const SITE_ADDRESS: Record<string, string> = { "loc-a": "10.1.0.1", "loc-b": "10.2.0.1" };
/** The state service's EBS volume as the instance sees it (the candidates of the rendered script). */
const STATE_VOLUME = { device: "/dev/xvdf", sizeMb: 256 };
const INSTALL_STATUS = "/etc/sitelink/install-status.json";
const INSTALLED_BUNDLE = "/usr/local/lib/sitelink/sitelink.js";

export interface LabMachine {
  rendered: RenderedInstance;
  instance: Instance;
  cloudInit?: { status: CloudInitStatus; seconds: number };
  /** Seconds from the nspawn launch to labReadiness() first seeing it ready. */
  readySeconds?: number;
}

export interface Phase {
  name: string;
  seconds: number;
  detail?: string;
}

export class LinkLab {
  readonly phases: Phase[] = [];
  readonly machines: LabMachine[] = [];
  lab?: BootLab;
  cloud?: FakeCloud;
  repo?: RepoServer;
  rendered?: RenderedLink;
  private readonly started = performance.now();

  constructor(readonly log: (line: string) => void = () => {}) {}

  async phase<T>(name: string, step: () => Promise<T>, detail?: (result: T) => string): Promise<T> {
    const start = performance.now();
    const result = await step();
    const entry = { name, seconds: secondsSince(start), ...(detail && { detail: detail(result) }) };
    this.phases.push(entry);
    this.log(`${name}: ${entry.seconds} s${entry.detail ? ` (${entry.detail})` : ""}`);
    return result;
  }

  get elapsed(): number {
    return secondsSince(this.started);
  }

  machine(resource: string): LabMachine {
    const found = this.machines.find((m) => m.rendered.resource === resource);
    if (!found) throw new Error(`no lab instance ${resource}`);
    return found;
  }

  get hosts(): LabMachine[] {
    return this.machines.filter((m) => m.rendered.role === "host");
  }

  /** Builds (or finds) the rootfs and apt repo, renders the link, loads the fake cloud and boots every instance. */
  async start(): Promise<void> {
    const bundle = join(REPO_ROOT, "dist", "sitelink.js");
    if (!existsSync(bundle)) throw new Error(`${bundle} is missing: build it first (npm run bundle)`);
    const base = await this.phase("rootfs", () => baseRootfs(this.log), (e) => (e.built ? "built" : "cached"));
    const packages = await this.phase("apt repo", () => aptRepo(base.dir, BOOT_PACKAGES, this.log), (e) => (e.built ? "built" : "cached"));
    const lab = await BootLab.create(base.dir, this.log);
    this.lab = lab;
    // Instances get .11, .12, … in the order they are prepared: the mocks hand those out as the Elastic IPs.
    const order = [`${LINK}-state`, ...LAB_LOCATIONS.map((l) => `${l.name}-a`)];
    const planned = (resource: string) => {
      const index = order.indexOf(resource);
      if (index < 0) throw new Error(`the link rendered ${resource}, which the lab did not plan for`);
      return `${lab.subnet}.${11 + index}`;
    };
    const rendered = await this.phase("render (Pulumi mocks)", () => renderLabLink(LINK, LAB_LOCATIONS, planned), (r) => `${r.instances.length} instances, ${r.parameters.length} parameters, ${r.objects.length} objects`);
    this.rendered = rendered;

    const cloud = await FakeCloud.start(lab.bridgeAddress);
    this.cloud = cloud;
    const tls = labTls(awsEndpointNames(rendered.region));
    await cloud.listenTls(lab.bridgeAddress, tls);
    for (const p of rendered.parameters) cloud.setParameter(p.name, p.value, p.type);
    for (const o of rendered.objects) cloud.putObject(o.bucket, o.key, o.body);
    for (const l of LAB_LOCATIONS) {
      cloud.addRouteTable(l.routeTableId, rendered.routes.filter((r) => r.routeTableId === l.routeTableId).map((r) => ({ destination: r.destination, networkInterfaceId: r.networkInterfaceId })));
    }
    this.repo = await serveRepo(packages.dir, lab.bridgeAddress);

    for (const resource of order) {
      const r = rendered.instances.find((i) => i.resource === resource)!;
      const instance = await lab.prepare({
        name: resource, userData: r.userData, instanceId: r.instanceId, aptRepoUrl: this.repo.url, imdsPort: cloud.port,
        vendorData: SEAM_VENDOR_DATA, files: seamFiles(rendered.region, lab.bridgeAddress, tls.caPem),
      });
      if (instance.address !== r.address) throw new Error(`${resource}: the lab gave ${instance.address}, the render planned ${r.address}`);
      cloud.addInstance({ instanceId: r.instanceId, localIpv4: r.address, publicIpv4: r.address, interfaceId: r.networkInterfaceId, region: rendered.region, role: `${resource}-role` });
      if (r.role === "state") {
        await lab.attachVolume(instance, STATE_VOLUME.device, STATE_VOLUME.sizeMb);
      } else {
        await addSiteInterface(instance.ns, `${SITE_ADDRESS[r.location]}/16`);
      }
      this.machines.push({ rendered: r, instance });
    }
    for (const m of this.machines) lab.start(m.instance);
    this.log(`booting ${this.machines.map((m) => `${m.rendered.resource} ${m.instance.address}`).join(", ")}`);
    await this.phase("cloud-init (all)", () =>
      Promise.all(this.machines.map(async (m) => {
        m.cloudInit = await waitCloudInit(m.instance);
        this.log(`${m.rendered.resource}: cloud-init ${m.cloudInit.status} ${m.cloudInit.seconds} s after launch`);
      })),
    );
  }

  async failedUnits(): Promise<Record<string, string[]>> {
    return Object.fromEntries(await Promise.all(this.machines.map(async (m) => [m.rendered.resource, await failedUnits(m.instance)] as const)));
  }

  /**
   * What to read when the link does not come up: each link host's SAs and connections as charon
   * sees them, and its charon and agent journal (the last lines); each instance's warnings.
   */
  async diagnostics(): Promise<string> {
    const sections = await Promise.all(this.machines.map(async (m) => {
      const parts = [`--- ${m.rendered.resource}: warnings and errors ---`, await journal(m.instance, ["-p", "warning", "-o", "short-monotonic"]).catch((e: Error) => e.message)];
      if (m.rendered.role !== "state") {
        for (const argv of [["swanctl", "--list-sas"], ["swanctl", "--list-conns"]]) {
          parts.push(`--- ${m.rendered.resource}: ${argv.join(" ")} ---`, await exec(m.instance, argv).then((r) => r.stdout + r.stderr, (e: Error) => e.message));
        }
        for (const unit of ["strongswan-starter.service", "sitelink-agent.service"]) {
          parts.push(`--- ${m.rendered.resource}: ${unit} (last 200 lines) ---`, await journal(m.instance, ["-u", unit, "-n", "200", "-o", "short-monotonic"]).catch((e: Error) => e.message));
        }
      }
      return parts.join("\n");
    }));
    return sections.join("\n");
  }

  async cleanup(): Promise<void> {
    await this.lab?.cleanup();
    await this.cloud?.close();
    await this.repo?.close();
  }
}

/** What a host's agent says about itself (`sitelink status --json`), the fields readiness reads. */
export interface AgentView {
  hostId: string;
  location?: string;
  stateService: { reachable: boolean; lastError?: string };
  activeHost?: string | null;
  peers: { location: string; activeHost: string | null }[];
  tunnels: { location: string; state: string }[];
  installProblem?: { kind: string; message: string };
}

export async function agentStatus(instance: Instance): Promise<AgentView | string> {
  const result = await exec(instance, ["sitelink", "status", "--json"], { allowFail: true });
  if (result.code !== 0) return (result.stderr.trim() || `sitelink status exited ${result.code}`).split("\n")[0]!;
  try {
    return JSON.parse(result.stdout) as AgentView;
  } catch {
    return `sitelink status printed no JSON: ${result.stdout.slice(0, 120)}`;
  }
}

export interface Readiness {
  ready: boolean;
  /** Per host (and the state service itself): undefined when ready, else why not, in the operator readiness check's words. */
  notReady: Record<string, string>;
}

/** How the lab operator reaches the state service: its URL, the pinned fingerprint and the operator key, from what the components rendered. */
export function operatorAccess(ll: LinkLab): { url: string; fingerprint: string; operatorKey: string } {
  const rendered = ll.rendered!;
  const parameter = (name: string) => rendered.parameters.find((p) => p.name === `/sitelink/${LINK}/state/${name}`)!.value;
  const state = rendered.instances.find((i) => i.role === "state")!;
  return {
    url: `https://${state.address}:${STATE_PORT}`,
    fingerprint: certificateFingerprint(parameter("tls-cert")),
    operatorKey: deriveOperatorKey(masterKeyBytes(parameter("master-key"))),
  };
}

/**
 * The readiness check the Link runs in `pulumi up` and `sitelink state status` prints: the state
 * service's operator endpoint read with the operator key, judged by `readiness()`. Polls until
 * ready or `timeoutMs`; records each instance's boot-to-ready seconds the first time it is ready
 * (the state host: the first time its endpoint answers).
 */
export async function labReadiness(ll: LinkLab, timeoutMs = 180_000): Promise<Readiness> {
  const { url, fingerprint, operatorKey } = operatorAccess(ll);
  const deadline = Date.now() + timeoutMs;
  let last: Readiness = { ready: false, notReady: {} };
  while (Date.now() < deadline) {
    try {
      const verdict = readiness(await fetchOperatorStatus(url, fingerprint, operatorKey, { timeoutMs: 5_000 }));
      ll.machines.find((m) => m.rendered.role === "state")!.readySeconds ??= secondsSince(ll.machines.find((m) => m.rendered.role === "state")!.instance.startedAt!);
      for (const host of verdict.hosts) {
        const machine = ll.machines.find((m) => m.rendered.hostId === host.id);
        if (host.ready && machine) machine.readySeconds ??= secondsSince(machine.instance.startedAt!);
      }
      last = { ready: verdict.ready, notReady: Object.fromEntries(verdict.hosts.filter((h) => !h.ready).map((h) => [h.id, h.reason ?? "not ready"])) };
    } catch (error) {
      last = { ready: false, notReady: { "state service": (error as Error).message } };
    }
    if (last.ready) return last;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  return last;
}

export interface PingResult {
  ok: boolean;
  /** `ip route get` of the destination from the site address: the tunnel's device (ipsec0, kernel-libipsec). */
  route: string;
  output: string;
}

/** A ping from `from`'s site address to `to`'s: site traffic through the tunnel. */
export async function sitePing(ll: LinkLab, from: string, to: string): Promise<PingResult> {
  const source = ll.machine(from);
  const src = SITE_ADDRESS[source.rendered.location]!;
  const dst = SITE_ADDRESS[ll.machine(to).rendered.location]!;
  const route = await exec(source.instance, ["ip", "-4", "route", "get", dst, "from", src], { allowFail: true });
  const ping = await exec(source.instance, ["ping", "-c", "3", "-W", "2", "-I", src, dst], { allowFail: true });
  return { ok: ping.code === 0, route: route.stdout.trim() || route.stderr.trim(), output: (ping.stdout + ping.stderr).trim() };
}

export interface TamperEvidence {
  /** The SHA-256 the host was told to install, and what the object held. */
  expected: string;
  got: string;
  installStatus: string;
  /** Installed bundle's SHA-256 before and after, and the agent's main PID before and after. */
  bundleBefore: string;
  bundleAfter: string;
  agentPidBefore: string;
  agentPidAfter: string;
  agentActive: string;
  /** The refresh's journal: the installer's refusal and the problem reporter's attempt. */
  refreshLog: string;
  /** The running (old) agent's status: installProblem from install-status.json. */
  statusProblem?: { kind: string; message: string };
}

/**
 * A tampered agent: `pulumi up` of a newer library would publish bundle B (its SHA-256 in the host's
 * config, the object under B's key); here the object under that key holds other bytes. The host's
 * refresh (started at once rather than waiting for its timer) must refuse it and keep its agent.
 * A running host never re-fetches the object it has verified (the installer skips an installed
 * SHA-256), so replacing the bytes of the current object alone changes nothing on it: the host
 * sees a tampered object only when it is told to install one.
 */
export async function tamperAgent(ll: LinkLab, resource: string): Promise<TamperEvidence> {
  const m = ll.machine(resource);
  const cloud = ll.cloud!;
  const location = m.rendered.location;
  const configName = `/sitelink/${LINK}/${location}/a/config`;
  const config = JSON.parse(ll.rendered!.parameters.find((p) => p.name === configName)!.value) as { agentSource: string; agentSha256: string };
  const [bucket, ...keyParts] = config.agentSource.replace(/^s3:\/\//, "").split("/");
  const current = ll.rendered!.objects.find((o) => o.bucket === bucket && o.key === keyParts.join("/"))!.body;
  const next = Buffer.concat([current, Buffer.from("\n// boot lab: the next version\n")]);
  const tampered = Buffer.concat([current, Buffer.from("\n// boot lab: tampered on its way\n")]);
  const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
  const key = `sitelink/agent/${sha(next)}/sitelink.js`;
  cloud.putObject(bucket!, key, tampered);
  cloud.setParameter(configName, JSON.stringify({ ...config, agentSource: `s3://${bucket}/${key}`, agentSha256: sha(next) }, null, 2));

  const run = (argv: string[]) => exec(m.instance, argv, { allowFail: true }).then((r) => r.stdout.trim());
  const bundleSha = async () => (await run(["sha256sum", INSTALLED_BUNDLE])).split(" ")[0] ?? "";
  const agentPid = () => run(["systemctl", "show", "-p", "MainPID", "--value", "sitelink-agent.service"]);
  const bundleBefore = await bundleSha();
  const agentPidBefore = await agentPid();
  await run(["systemctl", "start", "sitelink-agent-refresh.service"]);
  // The agent reads install-status.json each round.
  let view: AgentView | string = "";
  for (let i = 0; i < 30; i++) {
    view = await agentStatus(m.instance);
    if (typeof view !== "string" && view.installProblem) break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  return {
    expected: sha(next),
    got: sha(tampered),
    installStatus: await run(["cat", INSTALL_STATUS]),
    bundleBefore,
    bundleAfter: await bundleSha(),
    agentPidBefore,
    agentPidAfter: await agentPid(),
    agentActive: await run(["systemctl", "is-active", "sitelink-agent.service"]),
    refreshLog: await journal(m.instance, ["-u", "sitelink-agent-refresh.service", "-o", "cat"]),
    ...(typeof view !== "string" && view.installProblem && { statusProblem: view.installProblem }),
  };
}

/** The problem the state service holds for `hostId` (its operator endpoint): what `POST /v1/problem` or the agent's report told it. */
export async function labProblemSeen(ll: LinkLab, hostId: string): Promise<{ kind: string; message: string } | undefined> {
  const { url, fingerprint, operatorKey } = operatorAccess(ll);
  const status = await fetchOperatorStatus(url, fingerprint, operatorKey, { timeoutMs: 5_000 });
  for (const link of status.links) for (const location of link.locations) for (const host of location.hosts) if (host.id === hostId) return host.lastProblem ?? undefined;
  return undefined;
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error("lab:boot needs root (debootstrap, nspawn, namespaces, mounts)");
    return 1;
  }
  const started = performance.now();
  const log = (line: string) => console.log(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}`);
  const ll = new LinkLab(log);
  const checks: { what: string; ok: boolean; detail?: string }[] = [];
  const check = (what: string, ok: boolean, detail?: string) => {
    checks.push({ what, ok, detail });
    log(`${ok ? "ok  " : "FAIL"} ${what}${detail ? `: ${detail}` : ""}`);
  };
  try {
    await ll.start();
    for (const m of ll.machines) check(`${m.rendered.resource}: cloud-init done`, m.cloudInit?.status === "done", m.cloudInit?.status);
    for (const [name, failed] of Object.entries(await ll.failedUnits())) check(`${name}: no failed unit`, failed.length === 0, failed.join(" "));
    const readiness = await ll.phase("readiness", () => labReadiness(ll));
    check("readiness: state reachable, one active host per location, tunnels up", readiness.ready, JSON.stringify(readiness.notReady));
    const ping = await ll.phase("ping", () => sitePing(ll, "loc-a-a", "loc-b-a"));
    check(`ping ${SITE_ADDRESS["loc-a"]} → ${SITE_ADDRESS["loc-b"]} through the tunnel`, ping.ok && /dev ipsec0/.test(ping.route), `${ping.route} | ${ping.output.split("\n").slice(-2).join(" ")}`);
    const tamper = await ll.phase("tamper", () => tamperAgent(ll, "loc-b-a"));
    check("tamper: install-status.json names the mismatch", tamper.installStatus.includes(`agent integrity mismatch: expected ${tamper.expected} got ${tamper.got}`), tamper.installStatus);
    check("tamper: old agent untouched", tamper.bundleAfter === tamper.bundleBefore && tamper.agentPidAfter === tamper.agentPidBefore && tamper.agentActive === "active", `${tamper.bundleAfter.slice(0, 12)} pid ${tamper.agentPidAfter} ${tamper.agentActive}`);
    check("tamper: the host's log names the mismatch", tamper.refreshLog.includes(`sitelink: agent integrity mismatch: expected ${tamper.expected} got ${tamper.got}`));
    check("tamper: the running agent reports it (installProblem)", tamper.statusProblem?.kind === "integrity", tamper.statusProblem?.message);
    const problem = await labProblemSeen(ll, ll.machine("loc-b-a").rendered.hostId!);
    check("tamper: the state service shows the refusal (operator status lastProblem)", problem?.kind === "integrity", problem?.message);

    console.log("\nBoot lab (link)");
    for (const p of ll.phases) console.log(`  phase ${p.name.padEnd(24)} ${String(p.seconds).padStart(6)} s${p.detail ? `  ${p.detail}` : ""}`);
    for (const m of ll.machines) console.log(`  ${m.rendered.resource.padEnd(12)} ${m.instance.address}  cloud-init ${m.cloudInit?.status} at ${m.cloudInit?.seconds} s, ready at ${m.readySeconds ?? "-"} s`);
    console.log(`  boot-to-ready (all)  ${Math.max(...ll.machines.map((m) => m.readySeconds ?? Number.NaN))} s`);
    const ops = new Map<string, number>();
    for (const r of ll.cloud!.requests) ops.set(`${r.service}${r.operation ? ` ${r.operation}` : ""} ${r.status}`, (ops.get(`${r.service}${r.operation ? ` ${r.operation}` : ""} ${r.status}`) ?? 0) + 1);
    console.log(`  fake cloud requests  ${[...ops].map(([k, n]) => `${k}: ${n}`).join(", ")}`);
    const failures = checks.filter((c) => !c.ok);
    if (failures.length > 0) {
      console.log(await ll.diagnostics());
    }
    console.log(failures.length === 0 ? `\nPASS (${checks.length} checks) in ${ll.elapsed} s` : `\nFAIL: ${failures.length} of ${checks.length} checks`);
    return failures.length === 0 ? 0 : 1;
  } finally {
    const stopping = performance.now();
    await ll.cleanup();
    log(`cleaned up in ${secondsSince(stopping)} s`);
  }
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error(error instanceof Error ? (error.stack ?? error.message) : error);
      process.exit(1);
    },
  );
}

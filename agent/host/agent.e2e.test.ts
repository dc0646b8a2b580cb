// `sitelink run` for real: the agent process (via tsx) with its real seams — strongSwan over VICI
// (a real charon in a sandbox namespace), the host-check listener and prober, the file route
// provider — against a real state service in this process. Firewall stays off: iptables here would
// touch this machine's own rules. Traffic: loopback only (the peer location's address is 127.0.0.2);
// charon's initiations stay in its namespace.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, onTestFailed, onTestFinished, vi } from "vitest";
import type { TopologyInput } from "../contract/topology";
import { deriveHostSecret } from "../contract/signing";
import { formatHostUri } from "../contract/uri";
import { memoryLogger } from "../state/log";
import { startStateService, type StateService } from "../state/service";
import { selfSignedCertificate } from "../state/tls";
import { NetnsSandbox, requireRoot } from "../../test/support/netns";
import { startCharon, type Charon } from "../../test/support/charon";
import { reportAs } from "../../test/support/stand-in-host";
import { ViciSession } from "./vici/session";
import { StateClient } from "./state-client";
import { agentStatusSchema } from "./status";

const root = join(__dirname, "..", "..");
const masterKey = randomBytes(32);
const tls = selfSignedCertificate({ names: ["127.0.0.1"] });
const topology: TopologyInput = {
  version: 1,
  links: [
    {
      name: "corp",
      locations: [
        { name: "aws", routes: ["10.1.0.0/16"], hosts: [{ id: "aws-a", name: "a", publicAddress: "198.18.1.10", privateAddress: "10.1.0.10" }] },
        // The peer's address is on loopback: the agent runs in this machine's own namespace, so its host
        // checks must not leave it (nothing listens there: the probes are refused).
        { name: "office", routes: ["10.2.0.0/16"], hosts: [{ id: "off-a", name: "a", publicAddress: "127.0.0.2" }] },
      ],
    },
  ],
};

let dir: string;
let service: StateService;
let sandbox: NetnsSandbox;
let charon: Charon;
let agent: ChildProcess | undefined;
let stderr = "";

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

beforeAll(async () => {
  if (!requireRoot()) return;
  dir = mkdtempSync(join(tmpdir(), "sl-agent-e2e-"));
  writeFileSync(join(dir, "topology.json"), JSON.stringify(topology));
  service = await startStateService({
    topologyFile: join(dir, "topology.json"),
    dataDir: join(dir, "data"),
    tls: { cert: tls.certPem, key: tls.keyPem },
    masterKey,
    listen: { host: "127.0.0.1", port: 0 },
    logger: memoryLogger(),
    watchTopology: false,
  });
  sandbox = await NetnsSandbox.create("agent-e2e");
  charon = await startCharon(sandbox, await sandbox.addNamespace("a"));
}, 60_000);

afterAll(async () => {
  if (agent?.exitCode === null && agent.pid) process.kill(agent.pid, "SIGKILL");
  await sandbox?.cleanup();
  await service?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!requireRoot())("sitelink run", () => {
  it("becomes active, loads the tunnel into charon, writes routes and status; SIGTERM → offline, tunnels left", async () => {
    const url = new URL(service.url);
    // The office host's agent, played: the tunnel is loaded only toward a host in service.
    onTestFinished(reportAs(service, masterKey, "off-a"));
    const secret = deriveHostSecret(masterKey, "aws-a");
    const uri = formatHostUri({ hostId: "aws-a", secret, endpoints: [{ host: url.hostname, port: Number(url.port) }], fingerprints: [service.fingerprint] });
    const config = join(dir, "agent.json");
    const routesFile = join(dir, "routes");
    const statusFile = join(dir, "run", "status.json");
    const hostCheckPort = await freePort();
    const settings = {
        uris: [uri],
        provider: "file",
        file: { path: routesFile },
        hostCheckPort,
        publicAddress: "198.18.1.10",
        privateAddress: "10.1.0.10",
        viciSocket: charon.viciSocket,
        logLevel: "debug",
    };
    writeFileSync(config, JSON.stringify(settings), { mode: 0o600 });

    onTestFailed(() => console.log(`agent log:\n${stderr}`));
    agent = spawn(process.execPath, ["--import", "tsx", join(root, "agent", "sitelink.ts"), "run", "--config", config, "--status", statusFile], {
      cwd: root,
      stdio: ["ignore", "ignore", "pipe"],
    });
    agent.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => agent!.once("exit", (code) => resolve(code)));

    const status = () => agentStatusSchema.parse(JSON.parse(readFileSync(statusFile, "utf8")));
    await vi.waitFor(() => expect(status()).toMatchObject({ hostId: "aws-a", role: "active", routes: { provider: "file", applied: ["10.2.0.0/16"] } }), {
      timeout: 20_000,
      interval: 50,
    });
    await vi.waitFor(() => expect(status().appliedGeneration).toBeGreaterThan(0), { timeout: 10_000, interval: 50 });
    expect(readFileSync(routesFile, "utf8")).toContain("10.2.0.0/16");
    const vici = new ViciSession(charon.viciSocket, 2000);
    const conns = await vici.getConns();
    expect(conns.filter((c) => c.startsWith("sitelink-"))).toHaveLength(1);
    expect(status().tunnels.map((t) => t.location)).toEqual(["office"]);

    // Secrets of this host (URI secret, PSK, host-check key) never reach the log.
    const probe = new StateClient({ hostId: "aws-a", secret, endpoints: [{ host: url.hostname, port: Number(url.port) }], fingerprints: [service.fingerprint] });
    const desired = await probe.poll({ generation: 0, wait: false, report: { agentVersion: "probe", role: "active", appliedGeneration: 0, tunnels: [], hostChecks: [], routes: { provider: "file", applied: [] } } }, { timeoutMs: 5000 });
    probe.close();
    for (const line of stderr.trim().split("\n")) expect(() => JSON.parse(line)).not.toThrow();
    expect(stderr).not.toContain(secret);
    expect(stderr).not.toContain(desired.peers[0]!.psk);
    expect(stderr).not.toContain(desired.hostCheck.key);

    // SIGHUP: a broken file is refused and the agent keeps running; host-check-off closes the
    // listener at once; a provider change is logged as needing a restart.
    expect(await connects(hostCheckPort)).toBe(true);
    writeFileSync(config, JSON.stringify({ ...settings, hostCheck: "no" }));
    process.kill(agent.pid!, "SIGHUP");
    await vi.waitFor(() => expect(stderr).toContain("config reload refused: keeping the running config"), { timeout: 10_000, interval: 50 });
    expect(stderr).toContain("hostCheck:");
    writeFileSync(config, JSON.stringify({ ...settings, hostCheck: false, provider: "none" }));
    process.kill(agent.pid!, "SIGHUP");
    await vi.waitFor(() => expect(stderr).toContain('"msg":"config reloaded"'), { timeout: 10_000, interval: 50 });
    expect(stderr).toMatch(/take effect after a restart.*"fields":\["provider"\]/);
    expect(await connects(hostCheckPort)).toBe(false);

    const before = performance.now();
    process.kill(agent.pid!, "SIGTERM");
    expect(await exited).toBe(0);
    const stopMs = performance.now() - before;
    console.log(`sitelink run: SIGTERM → exit in ${stopMs.toFixed(0)} ms`);
    expect(service.core.hosts().find((h) => h.hostId === "aws-a")).toMatchObject({ status: "offline" });
    // The offline message is answered before the process winds down, never raced by its exit.
    expect(stderr).toMatch(/"msg":"told the state service this host goes offline"[\s\S]*"msg":"agent stopped"/);
    expect(existsSync(statusFile)).toBe(false);
    // The tunnel stays loaded for whoever takes over; the agent never tears it down on stop.
    expect((await vici.getConns()).filter((c) => c.startsWith("sitelink-"))).toHaveLength(1);
    vici.close();
  });
});

// From `pulumi up` to a running agent and back, for an SSH host in IPsec-router mode: the
// SshLocation (under Pulumi mocks) renders the script it copies, the install command and the stdin
// config; the install runs for real in a temporary root; the installed bundle then runs (`sitelink
// run`) with that config against a real state service on loopback and a real charon in a sandbox
// namespace, becomes active and writes the routes file. Then the component's uninstall command runs:
// the agent's connection and PSK leave charon, an operator's own connection in the same charon stays.
// Only machine-specific paths are redirected (VICI socket, routes file under the temp root, a free
// host-check port). Traffic: loopback only (the peer location's address is 127.0.0.2); charon's
// initiations stay in its namespace. Firewall stays off (iptables would touch this machine).
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { afterAll, beforeAll, describe, expect, it, onTestFailed, onTestFinished, vi } from "vitest";
import { agentStatusSchema } from "../../agent/host/status";
import { deriveHostSecret } from "../../agent/contract/signing";
import { memoryLogger } from "../../agent/state/log";
import { startStateService, type StateService } from "../../agent/state/service";
import { certificateFingerprint, selfSignedCertificate } from "../../agent/state/tls";
import { ViciSession } from "../../agent/host/vici/session";
import { isSecretValue, one, settle, setupMocks, valueOf } from "../components/harness";
import { startCharon, type Charon } from "../support/charon";
import { NetnsSandbox, requireRoot } from "../support/netns";
import { reportAs } from "../support/stand-in-host";
import { HostFixture } from "./fixture";

const masterKey = randomBytes(32);
const tls = selfSignedCertificate({ names: ["127.0.0.1"] });
let host: HostFixture;
let service: StateService | undefined;
let sandbox: NetnsSandbox | undefined;
let charon: Charon;
let agent: ChildProcess | undefined;
let stderr = "";

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

beforeAll(async () => {
  if (!requireRoot()) return;
  await setupMocks();
  host = HostFixture.create();
  sandbox = await NetnsSandbox.create("ssh-e2e");
  charon = await startCharon(sandbox, await sandbox.addNamespace("a"));
}, 120_000);

afterAll(async () => {
  if (agent?.exitCode === null && agent.pid) process.kill(agent.pid, "SIGKILL");
  await sandbox?.cleanup();
  await service?.close();
  host?.cleanup();
});

describe.skipIf(!requireRoot())("an SSH host installed by the component", () => {
  it("runs the installed agent on the config the component sent (active, routes file written, no secret logged); the uninstall unloads only its tunnel", async () => {
    const lib = await import("../../lib/index.js");
    const port = await freePort();
    const office = new lib.SshLocation("e2e-office", {
      routes: ["10.20.0.0/16"],
      routeMode: "file",
      hosts: [{ name: "a", publicAddress: "127.0.0.3", privateAddress: "10.20.0.10", connection: { user: "root", privateKey: pulumi.secret("unused"), hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUnused" } }],
    });
    const dc = new lib.ManualLocation("e2e-dc", { routes: ["10.30.0.0/16", "10.31.0.0/16"], hosts: [{ name: "a", publicAddress: "127.0.0.2", privateAddress: "10.30.0.10" }] });
    const link = new lib.Link("e2e", {
      locations: [office, dc],
      stateService: { url: `https://127.0.0.1:${port}`, fingerprint: certificateFingerprint(tls.certPem), masterKey: pulumi.secret(masterKey.toString("base64")) },
    });
    // The state service serves the topology the Link rendered.
    const dir = host.fresh("state");
    writeFileSync(join(dir, "topology.json"), await valueOf(link.topology));
    service = await startStateService({
      topologyFile: join(dir, "topology.json"),
      dataDir: join(dir, "data"),
      tls: { cert: tls.certPem, key: tls.keyPem },
      masterKey,
      listen: { host: "127.0.0.1", port },
      logger: memoryLogger(),
      watchTopology: false,
    });
    await settle();

    const install = one("e2e-office-a-install", "command:remote:Command").inputs;
    if (!isSecretValue(install.stdin)) throw new Error("stdin must be secret");
    const h = host.hostRoot();
    const root = h.root;
    // What the component copies (the script, and this library's agent bundle beside it), then the exact command line and stdin it gives @pulumi/command.
    const bundle = readFileSync(await (one("e2e-office-a-package", "command:remote:CopyToRemote").inputs.source as pulumi.asset.FileAsset).path);
    host.stage(h, await (one("e2e-office-a-script", "command:remote:CopyToRemote").inputs.source as pulumi.asset.StringAsset).text, bundle);
    const result = host.runCommand(String(install.create), h, host.stubs(root), String(install.stdin.value));
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);

    const configFile = join(root, "etc/sitelink/agent.json");
    const written = JSON.parse(readFileSync(configFile, "utf8"));
    expect(written.file).toEqual({ path: "/etc/sitelink/routes" });
    const routesFile = join(root, written.file.path);
    writeFileSync(configFile, JSON.stringify({ ...written, file: { path: routesFile }, viciSocket: charon.viciSocket, hostCheckPort: await freePort() }), { mode: 0o600 });

    const statusFile = join(dir, "run", "status.json");
    mkdirSync(join(dir, "run"));
    // The dc host's agent, played: the tunnel is loaded only toward a host in service.
    onTestFinished(reportAs(service, masterKey, "e2e.e2e-dc.a"));
    onTestFailed(() => console.log(`agent log:\n${stderr}`));
    const started = performance.now();
    agent = spawn(host.sitelink(h), ["run", "--config", configFile, "--status", statusFile], { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
    agent.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => agent!.once("exit", (code) => resolve(code)));

    const status = () => agentStatusSchema.parse(JSON.parse(readFileSync(statusFile, "utf8")));
    await vi.waitFor(() => expect(status()).toMatchObject({ hostId: "e2e.e2e-office.a", role: "active", routes: { provider: "file", applied: ["10.30.0.0/16", "10.31.0.0/16"] } }), {
      timeout: 20_000,
      interval: 50,
    });
    console.log(`installed agent: start → active with routes file written in ${(performance.now() - started).toFixed(0)} ms`);
    expect(readFileSync(routesFile, "utf8")).toBe("# sitelink routes of host e2e.e2e-office.a: send these networks via 10.20.0.10\n10.30.0.0/16\n10.31.0.0/16\n");
    expect(status().tunnels.map((t) => t.location)).toEqual(["e2e-dc"]);
    expect(stderr).not.toContain(deriveHostSecret(masterKey, "e2e.e2e-office.a"));

    process.kill(agent.pid!, "SIGTERM");
    expect(await exited).toBe(0);
    expect(service.core.hosts().find((h) => h.hostId === "e2e.e2e-office.a")).toMatchObject({ status: "offline" });
    expect(existsSync(statusFile)).toBe(false);

    // A stopped agent leaves its tunnel for the new active host; an operator's own connection sits next to it.
    const vici = new ViciSession(charon.viciSocket);
    try {
      await vici.loadShared({ id: "office-legacy", type: "IKE", data: "operator-psk", owners: ["198.51.100.7"] });
      await vici.loadConn("office-legacy", { version: 2, remote_addrs: ["198.51.100.7"], local: { auth: "psk" }, remote: { auth: "psk" }, children: { "office-legacy": { remote_ts: ["10.99.0.0/16"] } } });
      expect((await vici.getConns()).sort()).toEqual(["office-legacy", "sitelink-e2e-dc"]);
      expect((await vici.getShared()).sort()).toEqual(["office-legacy", "sitelink-e2e-dc"]);

      const uninstall = one("e2e-office-a-uninstall", "command:remote:Command").inputs;
      const removed = host.runCommand(String(uninstall.delete), h, host.stubs(root), "");
      expect(removed.stderr).toBe("");
      expect(removed.status).toBe(0);
      expect(removed.stdout).toBe("unloaded 1 connection(s) and 1 secret(s)\n");
      expect(await vici.getConns()).toEqual(["office-legacy"]);
      expect(await vici.getShared()).toEqual(["office-legacy"]);
      // charon itself kept running (it answered above), and nothing of the agent is left on disk.
      expect(existsSync(host.sitelink(h))).toBe(false);
      expect(existsSync(configFile)).toBe(false);
    } finally {
      vici.close();
    }
  });
});

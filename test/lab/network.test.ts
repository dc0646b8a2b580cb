// The lab's own plumbing, proven without the agent: the namespaces route as planned, nothing
// crosses between sites without a tunnel, a hand-made tunnel carries the clients' traffic as ESP
// in UDP only, and the prober sees a cut cable as an outage. (The agent drills are in drills.test.ts.)
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildSync } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NetnsSandbox, requireRoot } from "../support/netns";
import { startCharon, type Charon } from "../support/charon";
import { startCapture } from "./capture";
import { buildNetwork, routeNextHop, setHostLinks, setPartition } from "./network";
import { measureOutage, parseProbeLog } from "./outage";
import { planLab, type HostPlan, type LabPlan, type LocationPlan } from "./plan";
import { waitFor } from "./lab";

/** A static swanctl connection between two hosts: the fixture standing in for the agent here. */
function staticConnection(self: HostPlan, selfLoc: LocationPlan, peer: HostPlan, peerLoc: LocationPlan): string {
  return `connections {
  lab {
    version = 2
    local_addrs = ${self.publicAddress}
    remote_addrs = ${peer.publicAddress}
    proposals = aes128-sha256-x25519
    local { auth = psk
            id = ${self.publicAddress} }
    remote { auth = psk
             id = ${peer.publicAddress} }
    children {
      lab {
        local_ts = ${selfLoc.route}
        remote_ts = ${peerLoc.route}
        esp_proposals = aes128gcm128-x25519
        start_action = trap
      }
    }
  }
}
secrets {
  ike-lab {
    id-1 = ${self.publicAddress}
    id-2 = ${peer.publicAddress}
    secret = 0sbGFiLXN0YXRpYy1wc2stZm9yLXRoZS1uZXR3b3JrLXRlc3Q=
  }
}
`;
}

describe.skipIf(!requireRoot())("lab network (real namespaces, real charon)", () => {
  let sandbox: NetnsSandbox;
  let plan: LabPlan;
  let l1: LocationPlan;
  let l2: LocationPlan;
  const charons: Charon[] = [];

  beforeAll(async () => {
    sandbox = await NetnsSandbox.create("lab-network");
    plan = planLab({ prefix: sandbox.prefix });
    [l1, l2] = plan.locations as [LocationPlan, LocationPlan];
    await buildNetwork(sandbox, plan);
  });
  afterAll(async () => {
    await sandbox?.cleanup();
  });

  it("starts every route at the highest-priority host", async () => {
    expect(await routeNextHop(sandbox, l1, l2.route)).toBe(l1.hosts[0]!.privateAddress);
    expect(await routeNextHop(sandbox, l2, l1.route)).toBe(l2.hosts[0]!.privateAddress);
  });

  it("connects hosts over the internet, to the state service and inside their site", async () => {
    const ping = async (ns: string, to: string) => (await sandbox.exec(ns, ["ping", "-c", "1", "-W", "2", to], { allowFail: true })).code;
    expect(await ping(l1.hosts[0]!.ns, l2.hosts[1]!.publicAddress)).toBe(0);
    expect(await ping(l1.hosts[1]!.ns, "198.18.0.10")).toBe(0);
    expect(await ping(l1.hosts[1]!.ns, l1.hosts[0]!.privateAddress)).toBe(0);
    expect(await ping(l1.hosts[0]!.ns, l1.clientAddress)).toBe(0);
  });

  it("passes nothing between sites without a tunnel, and nothing in the clear", async () => {
    const capture = await startCapture(sandbox, plan.internetNs, "no-tunnel");
    const result = await sandbox.exec(l1.clientNs, ["ping", "-c", "3", "-i", "0.2", "-W", "1", l2.clientAddress], { allowFail: true });
    const counts = await capture.stop();
    expect(result.code).not.toBe(0);
    expect(counts.clear).toBe(0);
  });

  it("carries client traffic through a real IKEv2/ESP tunnel, only as ESP in UDP", async () => {
    const [a1, a2] = [l1.hosts[0]!, l2.hosts[0]!];
    for (const [self, selfLoc, peer, peerLoc] of [[a1, l1, a2, l2], [a2, l2, a1, l1]] as const) {
      const charon = await startCharon(sandbox, self.ns, { name: self.id });
      charons.push(charon);
      const conf = join(charon.dir, "swanctl.conf");
      writeFileSync(conf, staticConnection(self, selfLoc, peer, peerLoc), { mode: 0o600 });
      await sandbox.exec(self.ns, ["swanctl", "--load-all", "--file", conf, "--uri", `unix://${charon.viciSocket}`]);
    }
    await sandbox.exec(a1.ns, ["swanctl", "--initiate", "--child", "lab", "--uri", `unix://${charons[0]!.viciSocket}`]);
    await waitFor("a ping through the tunnel", 10_000, async () => (await sandbox.exec(l1.clientNs, ["ping", "-c", "1", "-W", "1", l2.clientAddress], { allowFail: true })).code === 0);

    const capture = await startCapture(sandbox, plan.internetNs, "tunnel");
    await sandbox.exec(l1.clientNs, ["ping", "-c", "5", "-i", "0.05", l2.clientAddress]);
    const counts = await capture.stop();
    expect(counts.esp).toBeGreaterThanOrEqual(10); // 5 requests + 5 replies, each one ESP datagram
    expect(counts.clear).toBe(0);
  });

  it("probes steadily and sees a cut path as lost packets, then the restoration", async () => {
    const probe = join(sandbox.workDir, "probe.js");
    buildSync({ entryPoints: [join(__dirname, "probe.ts")], bundle: true, platform: "node", target: "node20", outfile: probe, logLevel: "error" });
    sandbox.spawn(l2.clientNs, [process.execPath, probe, "echo", "7777"]);
    const log = join(sandbox.workDir, "probe.log");
    const sender = sandbox.spawn(l1.clientNs, [process.execPath, probe, "send", l2.clientAddress, "7777", "10"], { logFile: log });
    const read = () => parseProbeLog(readFileSync(log, "utf8"));
    await waitFor("probe replies", 10_000, () => read().filter((p) => p.recvAt !== undefined).length >= 20);

    const cutAt = Date.now();
    await setPartition(sandbox, l1.hosts[0]!, [l2.hosts[0]!.publicAddress], true);
    await new Promise((r) => setTimeout(r, 500));
    await setPartition(sandbox, l1.hosts[0]!, [l2.hosts[0]!.publicAddress], false);
    await waitFor("replies after the cut", 10_000, () => read().some((p) => p.sentAt > cutAt + 600 && p.recvAt !== undefined));
    await new Promise((r) => setTimeout(r, 300));
    await sandbox.kill(sender.pid!, "SIGTERM");

    const report = measureOutage(read(), cutAt, Date.now() - 300);
    expect(report.lost).toBeGreaterThanOrEqual(20); // ~50 sent into the 0.5 s cut
    expect(report.outageMs).toBeGreaterThanOrEqual(500);
    expect(report.outageMs).toBeLessThan(10_000);
  });

  it("cuts a host's cables and puts them back", async () => {
    const host = l1.hosts[1]!;
    const ping = async () => (await sandbox.exec(host.ns, ["ping", "-c", "1", "-W", "1", "198.18.0.10"], { allowFail: true })).code;
    await setHostLinks(sandbox, host, l1, false);
    expect(await ping()).not.toBe(0);
    await setHostLinks(sandbox, host, l1, true);
    await waitFor("the host back on the internet", 10_000, async () => (await ping()) === 0);
    expect((await sandbox.exec(host.ns, ["ip", "route", "show", l1.route])).stdout).toContain(`via ${l1.routerLanAddress}`);
  });
});

// Attacks on the state service with one host's secret (issue 15, S2): what a report may change of
// other hosts' states. A real service on loopback, real HTTPS, a real SQLite store.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { API, desiredStateSchema, type DesiredState, type HostReport } from "../../agent/contract/protocol";
import { deriveHostSecret } from "../../agent/contract/signing";
import type { TopologyInput } from "../../agent/contract/topology";
import { memoryLogger } from "../../agent/state/log";
import { startStateService, type StateService } from "../../agent/state/service";
import { selfSignedCertificate } from "../../agent/state/tls";
import { PinnedTestAgent, report, signedCall } from "../support/state-testkit";

const tls = selfSignedCertificate({ names: ["127.0.0.1"] });
const masterKey = randomBytes(32);
const host = (id: string, name: string, priority = 1) => ({ id, name, priority, timeout: 120, backoff: 0 });

/**
 * aws: both hosts pinned (aws-b also its host-check port); office and gcp: addresses from reports.
 * office is connected to aws only, gcp to aws only.
 */
const topology: TopologyInput = {
  version: 1,
  links: [
    {
      name: "corp",
      locations: [
        {
          name: "aws",
          routes: ["10.1.0.0/16"],
          hosts: [
            { ...host("aws-a", "a", 2), publicAddress: "198.18.1.1", privateAddress: "10.1.0.10" },
            { ...host("aws-b", "b"), publicAddress: "198.18.1.2", privateAddress: "10.1.0.11", hostCheckPort: 9999 },
          ],
        },
        { name: "office", routes: ["10.2.0.0/16"], hosts: [host("off-a", "a", 2), host("off-b", "b")] },
        { name: "gcp", routes: ["10.4.0.0/16"], hosts: [host("gcp-a", "a")] },
      ],
      connections: [
        ["aws", "office"],
        ["aws", "gcp"],
      ],
      // Short windows: a host's reports count 0.35 s after it came online.
      timing: { heartbeat: 0.2, probeInterval: 0.05, probeTimeout: 0.05 },
    },
  ],
};

const dirs: string[] = [];
let service: StateService;
let logger: ReturnType<typeof memoryLogger>;
let agent: PinnedTestAgent;

async function start(): Promise<StateService> {
  const dir = mkdtempSync(join(tmpdir(), "sl-sec-addr-"));
  dirs.push(dir);
  writeFileSync(join(dir, "topology.json"), JSON.stringify(topology));
  logger = memoryLogger();
  return startStateService({
    topologyFile: join(dir, "topology.json"),
    dataDir: join(dir, "data"),
    tls: { cert: tls.certPem, key: tls.keyPem },
    masterKey,
    listen: { host: "127.0.0.1", port: 0 },
    logger,
    watchTopology: false,
  });
}

async function poll(hostId: string, overrides: Partial<HostReport> = {}): Promise<DesiredState> {
  const body = JSON.stringify({ protocol: 1, hostId, generation: 0, wait: false, report: report(overrides) });
  const answer = await signedCall(service.url, agent, { hostId, secret: deriveHostSecret(masterKey, hostId), path: API.poll, body });
  expect(answer.status, answer.body).toBe(200);
  return desiredStateSchema.parse(JSON.parse(answer.body));
}

/** A host's state once the reports before have been stored and rendered. */
async function settled(hostId: string): Promise<DesiredState> {
  await poll(hostId);
  await new Promise((resolve) => setTimeout(resolve, 50));
  return poll(hostId);
}

beforeAll(() => {
  agent = new PinnedTestAgent(tls.fingerprint);
});
afterEach(async () => {
  await service?.close();
});
afterAll(() => {
  agent.destroy();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("reported addresses (S2)", () => {
  it("ignores the addresses and host-check port a host reports where the topology pins them", async () => {
    service = await start();
    await poll("aws-a", { publicAddress: "203.0.113.66", privateAddress: "10.9.9.9", hostCheckPort: 19790 });
    await poll("aws-b", { publicAddress: "198.18.7.7", hostCheckPort: 12345 });
    const state = await settled("off-a");
    expect(state.firewall.allow).toEqual(["10.1.0.10", "10.1.0.11", "198.18.1.1", "198.18.1.2"]);
    // aws-a's port is not pinned: its report names it. aws-b's is.
    const aws = await settled("aws-b");
    expect(aws.hostCheck.targets.filter((t) => t.scope === "location")).toEqual([{ hostId: "aws-a", address: "10.1.0.10", port: 19790, scope: "location" }]);
    const fromA = await settled("aws-a");
    expect(fromA.hostCheck.targets.find((t) => t.hostId === "aws-b")).toEqual({ hostId: "aws-b", address: "10.1.0.11", port: 9999, scope: "location" });
  });

  it("ignores a reported address another host holds, pinned or reported first, but lets a location's hosts share a public one (NAT)", async () => {
    service = await start();
    await poll("off-a", { publicAddress: "198.18.2.1", privateAddress: "10.2.0.5" });
    // gcp-a claims aws-a's pinned address and then office's reported one; off-b claims off-a's private address.
    await poll("gcp-a", { publicAddress: "198.18.1.1", privateAddress: "10.1.0.10" });
    await poll("off-b", { publicAddress: "198.18.2.1", privateAddress: "10.2.0.5" });
    let aws = await settled("aws-a");
    expect(aws.firewall.allow).toEqual(["10.1.0.10", "10.1.0.11", "10.2.0.5", "198.18.1.1", "198.18.1.2", "198.18.2.1"]);
    // No probe of gcp-a at aws-a's own address; off-b shares off-a's public address, not its private one.
    expect(aws.hostCheck.targets.map((t) => [t.hostId, t.address])).toEqual([
      ["aws-b", "10.1.0.11"],
      ["off-a", "198.18.2.1"],
      ["off-b", "198.18.2.1"],
    ]);
    await poll("gcp-a", { publicAddress: "198.18.2.1" });
    aws = await settled("aws-a");
    expect(aws.hostCheck.targets.map((t) => t.hostId)).not.toContain("gcp-a");
    const offA = await settled("off-a");
    expect(offA.hostCheck.targets.filter((t) => t.scope === "location")).toEqual([]);
    const ignored = logger.lines.map((l) => JSON.parse(l)).filter((e) => e.event === "address-ignored");
    expect(ignored).toContainEqual(expect.objectContaining({ host: "gcp-a", field: "report.publicAddress", address: "198.18.1.1", reason: "address of host aws-a" }));
    expect(ignored).toContainEqual(expect.objectContaining({ host: "off-b", field: "report.privateAddress", address: "10.2.0.5", reason: "address of host off-a" }));
    // Once the holder moves on, the address can be claimed.
    await poll("off-a", { publicAddress: "198.18.2.9", privateAddress: "10.2.0.6" });
    await poll("off-b", { publicAddress: "198.18.2.9" });
    await poll("gcp-a", { publicAddress: "198.18.2.1" });
    aws = await settled("aws-a");
    expect(aws.hostCheck.targets.find((t) => t.hostId === "gcp-a")).toMatchObject({ address: "198.18.2.1" });
  });

  it.each([
    ["loopback", "127.0.0.1"],
    ["link-local", "169.254.169.254"],
    ["multicast", "224.0.0.251"],
    ["broadcast", "255.255.255.255"],
    ["IPv6 loopback", "::1"],
    ["IPv6 link-local", "fe80::1"],
    ["IPv6 multicast", "ff02::1"],
  ])("ignores a reported %s address (%s)", async (_, address) => {
    service = await start();
    await poll("off-a", { publicAddress: address, privateAddress: address });
    const aws = await settled("aws-a");
    expect(aws.firewall.allow).not.toContain(address);
    expect(aws.hostCheck.targets.map((t) => t.hostId)).not.toContain("off-a");
  });

  it("takes no probe result about a host the reporter was never told to probe", async () => {
    service = await start();
    // off-a (priority 2) has no known address: nobody is told to probe it. off-b is reached at its public address.
    const online = ["aws-a", "off-a", "off-b", "gcp-a"];
    const reports: Record<string, Partial<HostReport>> = {
      "off-b": { publicAddress: "198.18.2.2" },
      // aws-a is connected to office: it reaches off-b and "fails" off-a, never a target of its.
      "aws-a": {
        hostChecks: [
          { target: "off-a", reachable: false, failures: 5, ageMs: 0 },
          { target: "off-b", reachable: true, failures: 0, ageMs: 0 },
        ],
      },
    };
    let state: DesiredState | undefined;
    // Every host reports for well past the windows in which the results would count (0.35 s settle).
    for (let round = 0; round < 15; round++) {
      for (const id of online) state = await poll(id, reports[id]);
      await new Promise((resolve) => setTimeout(resolve, 60));
    }
    expect(state!.activeHost).toBe("gcp-a");
    expect((await poll("off-b", reports["off-b"])).activeHost).toBe("off-a");
    expect(service.core.hosts().find((h) => h.hostId === "off-a")).toMatchObject({ status: "active" });
  });
});

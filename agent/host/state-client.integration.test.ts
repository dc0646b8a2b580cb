// The real state client against the real state service (in-process, HTTPS on loopback, a SQLite
// file), and two reconcile loops failing over through it. The seams below the loop are fakes here;
// the namespace lab runs the whole agent.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { TopologyInput } from "../contract/topology";
import type { HostReport, PeerLocation } from "../contract/protocol";
import { deriveHostSecret } from "../contract/signing";
import { memoryLogger } from "../state/log";
import { startStateService, type StateService } from "../state/service";
import { selfSignedCertificate } from "../state/tls";
import { createLogger } from "./log";
import { ReconcileLoop } from "./reconcile";
import { StateClient } from "./state-client";
import type { Firewall, HostChecker, IpsecDriver, RouteProvider } from "./types";

const masterKey = randomBytes(32);
const tls = selfSignedCertificate({ names: ["127.0.0.1"] });
const host = (id: string, name: string, priority: number, last: number) => ({
  id,
  name,
  priority,
  timeout: 120,
  backoff: 0,
  publicAddress: `198.18.1.${last}`,
  privateAddress: `10.1.0.${last}`,
});
const topology: TopologyInput = {
  version: 1,
  links: [
    {
      name: "corp",
      locations: [
        { name: "aws", routes: ["10.1.0.0/16"], hosts: [host("aws-a", "a", 2, 10), host("aws-b", "b", 1, 11)] },
        { name: "office", routes: ["10.2.0.0/16"], hosts: [{ id: "off-a", name: "a", timeout: 120, publicAddress: "198.18.2.10" }] },
      ],
      // Long heartbeat: a poll is held until a decision releases it, never by the clock during the test.
      timing: { heartbeat: 30 },
    },
  ],
};

let dir: string;
let service: StateService;
const clients: StateClient[] = [];

function client(hostId: string): StateClient {
  const url = new URL(service.url);
  const c = new StateClient({
    hostId,
    secret: deriveHostSecret(masterKey, hostId),
    endpoints: [{ host: url.hostname, port: Number(url.port) }],
    fingerprints: [service.fingerprint],
  });
  clients.push(c);
  return c;
}

const report: HostReport = { agentVersion: "0.1.0", role: "standby", appliedGeneration: 0, tunnels: [], hostChecks: [], routes: { provider: "none", applied: [] } };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "sl-agent-int-"));
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
});

afterAll(async () => {
  clients.forEach((c) => c.close());
  await service?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("state client ↔ state service", () => {
  it("signed round trip, and a held long-poll released by a failover decision", async () => {
    const a = client("aws-a");
    const b = client("aws-b");
    const first = await b.poll({ generation: 0, wait: false, report }, { timeoutMs: 5000 });
    expect(first).toMatchObject({ protocol: 1, hostId: "aws-b", link: "corp", location: "aws" });
    const fromA = await a.poll({ generation: 0, wait: false, report }, { timeoutMs: 5000 });
    expect(fromA).toMatchObject({ hostId: "aws-a", role: "active", activeHost: "aws-a" });
    expect(fromA.peers.map((p) => p.location)).toEqual(["office"]);
    expect(fromA.routes.pointHere).toEqual(["10.2.0.0/16"]);

    const seen = (await b.poll({ generation: 0, wait: false, report }, { timeoutMs: 5000 })).generation;
    const held = b.poll({ generation: seen, wait: true, report }, { timeoutMs: 60_000 });
    await vi.waitFor(() => expect(service.core.heldPolls()).toBe(1));
    const bye = await a.offline("SIGTERM", { timeoutMs: 5000 });
    const released = await held;
    expect(released).toMatchObject({ hostId: "aws-b", role: "active", activeHost: "aws-b" });
    expect(released.generation).toBeGreaterThan(seen);
    expect(bye.generation).toBe(released.generation);
    expect(released.routes.pointHere).toEqual(["10.2.0.0/16"]);
  });
});

// Minimal recording seams: only what the failover needs to show.
function seams() {
  const applied: PeerLocation[][] = [];
  const routeCalls: string[][] = [];
  let routes: string[] = [];
  const ipsec: IpsecDriver = {
    validate: () => {},
    apply: async (peers) => void applied.push(peers),
    tunnels: () => [],
    onChange: () => {},
    close: async () => {},
  };
  const provider: RouteProvider = {
    name: "lab",
    table: "shared",
    apply: async (cidrs) => {
      routeCalls.push(cidrs);
      routes = cidrs;
    },
    applied: () => routes,
  };
  const firewall: Firewall = { apply: async () => {}, inPlace: async () => true, remove: async () => {} };
  const checker: HostChecker = { setTargets: () => {}, results: () => [], onChange: () => {}, close: async () => {} };
  return { applied, routeCalls, ipsec, provider, firewall, checker };
}

describe("two reconcile loops through the real service", () => {
  it("a graceful stop of the active host moves tunnels and routes to the standby", async () => {
    const run = (hostId: string) => {
      const s = seams();
      const loop = new ReconcileLoop({
        state: client(hostId),
        ipsec: s.ipsec,
        routes: s.provider,
        firewall: s.firewall,
        mss: { apply: async () => {}, inPlace: async () => true, remove: async () => {} },
        checker: s.checker,
        self: { hostId, publicAddress: hostId === "aws-a" ? "198.18.1.10" : "198.18.1.11" },
        options: { firewall: false, removeRoutes: false, hostCheck: true },
        agentVersion: "0.1.0",
        log: createLogger("error", () => {}),
      });
      return { ...s, loop, done: loop.start() };
    };
    const a = run("aws-a");
    const b = run("aws-b");
    await vi.waitFor(() => expect(a.routeCalls).toEqual([["10.2.0.0/16"]]));
    await vi.waitFor(() => expect(service.core.heldPolls()).toBeGreaterThanOrEqual(2));
    expect(b.routeCalls).toEqual([]);
    expect(b.applied.at(-1)).toEqual([]);

    await a.loop.stop("SIGTERM");
    await a.done;
    await vi.waitFor(() => expect(b.routeCalls).toEqual([["10.2.0.0/16"]]));
    expect(b.applied.at(-1)!.map((p) => p.location)).toEqual(["office"]);
    // The stopped host left its tunnels and routes alone.
    expect(a.applied.at(-1)!.map((p) => p.location)).toEqual(["office"]);
    expect(a.routeCalls).toHaveLength(1);
    await b.loop.stop("test over");
  });
});

// readiness() on status documents, and the operator client against a real state service on loopback.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API, type OperatorHost, type OperatorStatus } from "./protocol";
import { fetchOperatorStatus, readiness, waitForReadiness } from "./operator";
import { deriveOperatorKey } from "./signing";
import { PinnedTestAgent, report, signedCall } from "../../test/support/state-testkit";
import { EAST_WEST, startTestStateService, type TestStateService } from "../../test/support/state-fixture";

const NOW = Date.parse("2030-01-01T12:00:00Z");

const up = (location: string) => ({ location, state: "up" as const });

function hostOf(id: string, overrides: Partial<OperatorHost> = {}): OperatorHost {
  return { id, status: "available", role: "standby", lastContactMsAgo: 400, offlineSince: null, agentVersion: "0.1.0", tunnels: [], lastProblem: null, ...overrides };
}

/** corp: east (e.a active, e.b standby) ↔ west (w.a active), both tunnels up. */
function readyStatus(): OperatorStatus {
  return {
    protocol: 1,
    generation: 7,
    serverTime: NOW,
    links: [
      {
        name: "corp",
        locations: [
          { name: "east", activeHost: "e.a", connectedTo: ["west"], hosts: [hostOf("e.a", { status: "active", role: "active", tunnels: [up("west")] }), hostOf("e.b")] },
          { name: "west", activeHost: "w.a", connectedTo: ["east"], hosts: [hostOf("w.a", { status: "active", role: "active", tunnels: [up("east")] })] },
        ],
      },
    ],
  };
}

function edit(status: OperatorStatus, id: string, overrides: Partial<OperatorHost>): OperatorStatus {
  for (const location of status.links[0]!.locations) location.hosts = location.hosts.map((h) => (h.id === id ? { ...h, ...overrides } : h));
  return status;
}

const notReady = (status: OperatorStatus, expect?: { hosts?: string[] }) =>
  readiness(status, expect).hosts.filter((h) => !h.ready).map((h) => [h.id, h.reason]);

describe("readiness", () => {
  it("is ready when every host is heard from, every location has its active host and every tunnel is up", () => {
    expect(readiness(readyStatus())).toEqual({
      ready: true,
      hosts: [
        { id: "e.a", ready: true, reason: "ready" },
        { id: "e.b", ready: true, reason: "ready" },
        { id: "w.a", ready: true, reason: "ready" },
      ],
    });
  });

  it("names why each host is not ready, in our words", () => {
    const status = readyStatus();
    edit(status, "e.b", { lastContactMsAgo: null, status: "offline", agentVersion: null });
    edit(status, "e.a", { tunnels: [{ location: "west", state: "down" }] });
    expect(readiness(status).ready).toBe(false);
    expect(notReady(status)).toEqual([
      ["e.a", "tunnel to west down (IKE failing)"],
      ["e.b", "never heard from"],
    ]);
    edit(status, "e.a", { tunnels: [{ location: "west", state: "connecting" }] });
    expect(notReady(status)[0]).toEqual(["e.a", "tunnel to west connecting (IKE not established yet)"]);
    edit(status, "e.a", { tunnels: [] });
    expect(notReady(status)[0]).toEqual(["e.a", "tunnel to west not set up yet"]);
  });

  it("puts a reported problem first: agent refused for integrity, bootstrap failed", () => {
    const status = readyStatus();
    edit(status, "e.b", { lastContactMsAgo: null, status: "offline", lastProblem: { kind: "bootstrap", message: "apt-get failed", at: NOW, source: "problem" } });
    edit(status, "w.a", { lastProblem: { kind: "integrity", message: "expected aa got bb (s3)", at: NOW, source: "report" } });
    expect(notReady(status)).toEqual([
      ["e.b", "bootstrap failed: apt-get failed"],
      ["w.a", "agent refused: integrity mismatch (expected aa got bb (s3))"],
    ]);
  });

  it("names offline hosts with the time they went, and locations without an active host", () => {
    const status = readyStatus();
    edit(status, "w.a", { status: "offline", role: "standby", lastContactMsAgo: 90_000, offlineSince: NOW - 60_000 });
    status.links[0]!.locations[1]!.activeHost = null;
    edit(status, "e.b", { status: "backoff" });
    expect(notReady(status)).toEqual([
      ["e.b", "back online, but in backoff after going offline"],
      ["w.a", "offline since 2030-01-01T11:59:00Z (60 s ago)"],
    ]);
    edit(status, "w.a", { status: "available", lastContactMsAgo: 100, offlineSince: null });
    expect(notReady(status)).toContainEqual(["w.a", "location west has no active host"]);
  });

  it("judges only the expected hosts, and names an expected host the service does not know", () => {
    const status = edit(readyStatus(), "e.b", { lastContactMsAgo: null, status: "offline" });
    expect(readiness(status, { hosts: ["e.a", "w.a"] }).ready).toBe(true);
    expect(notReady(status, { hosts: ["e.a", "x.y"] })).toEqual([["x.y", "not in the state service's topology (deliver the link's topology to it)"]]);
  });
});

describe("operator client", () => {
  let state: TestStateService;
  let agent: PinnedTestAgent;
  const poll = (hostId: string, overrides = {}) =>
    signedCall(state.service.url, agent, {
      hostId,
      secret: state.secret(hostId),
      path: API.poll,
      body: JSON.stringify({ protocol: 1, hostId, generation: 0, wait: false, report: report(overrides) }),
    });

  beforeAll(async () => {
    state = await startTestStateService(EAST_WEST);
    agent = new PinnedTestAgent(state.service.fingerprint);
  });

  afterAll(async () => {
    agent.destroy();
    await state?.close();
  });

  it("reads the signed status with the operator key", async () => {
    const status = await fetchOperatorStatus(state.service.url, state.service.fingerprint, state.operatorKey);
    expect(status.links[0]!.locations.map((l) => l.name)).toEqual(["east", "west"]);
  });

  it("refuses another certificate, another key, and names neither key in its errors", async () => {
    const other = "ab".repeat(32);
    await expect(fetchOperatorStatus(state.service.url, other, state.operatorKey)).rejects.toThrow(/did not answer: certificate of 127\.0\.0\.1:\d+ does not match the pinned fingerprint/);
    const wrongKey = deriveOperatorKey(Buffer.alloc(32, 1));
    const error = await fetchOperatorStatus(state.service.url, state.service.fingerprint, wrongKey).catch((e: Error) => e);
    expect(String(error)).toMatch(/refused the status request: 401 unknown host or bad signature \(is the operator key derived from this service's master key\?\)/);
    expect(String(error)).not.toContain(wrongKey);
    await expect(fetchOperatorStatus(state.service.url, state.service.fingerprint, state.secret("corp.east.a"))).rejects.toThrow(/401/);
  });

  it("waits until ready, and at the timeout names every host not ready", async () => {
    const opts = { url: state.service.url, fingerprint: state.service.fingerprint, operatorKey: state.operatorKey, intervalMs: 50 };
    // Long enough that a status read finishes on a loaded machine: the verdict, not a read error, is under test.
    await expect(waitForReadiness({ ...opts, timeoutMs: 3000 })).rejects.toThrow("not ready after 3 s:\n  corp.east.a: never heard from\n  corp.west.a: never heard from");
    await poll("corp.east.a", { role: "active", tunnels: [{ location: "west", state: "up" }] });
    await expect(waitForReadiness({ ...opts, timeoutMs: 3000, expectHosts: ["corp.east.a", "corp.west.a"] })).rejects.toThrow(
      /^not ready after 3 s:\n {2}corp\.west\.a: never heard from$/,
    );
    const waiting = waitForReadiness({ ...opts, timeoutMs: 20_000 });
    await poll("corp.west.a", { role: "active", tunnels: [{ location: "east", state: "up" }] });
    expect(await waiting).toMatchObject({ ready: true });
  });

  it("says so when the service never answered", async () => {
    // A port nothing listens on any more: a service of its own, closed.
    const other = await startTestStateService({
      version: 1,
      links: [{ name: "x", locations: [{ name: "a", routes: ["10.9.0.0/16"], hosts: [{ id: "x.a.a", name: "a" }] }, { name: "b", routes: ["10.8.0.0/16"], hosts: [{ id: "x.b.a", name: "a" }] }] }],
    });
    const url = other.service.url;
    await other.close();
    await expect(waitForReadiness({ url, fingerprint: state.service.fingerprint, operatorKey: state.operatorKey, intervalMs: 50, timeoutMs: 200 })).rejects.toThrow(
      new RegExp(`^not ready after 0.2 s: state service ${url.replace(/[.]/g, "\\.")} did not answer: connect ECONNREFUSED .*; no host could be checked$`),
    );
  });
});

// POST /v1/problem and GET /v1/operator/status against a real state service on loopback.
import { request } from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TopologyInput } from "../contract/topology";
import { API, errorResponseSchema, operatorStatusSchema, type HostReport, type OperatorStatus } from "../contract/protocol";
import { OPERATOR_ID } from "../contract/signing";
import { PinnedTestAgent, report, signedCall, type CallResult } from "../../test/support/state-testkit";
import { startTestStateService, type TestStateService } from "../../test/support/state-fixture";

/** corp: aws (aws-a, aws-b) and office (off-a), connected. */
const TOPOLOGY: TopologyInput = {
  version: 1,
  links: [
    {
      name: "corp",
      locations: [
        { name: "aws", routes: ["10.1.0.0/16"], hosts: [{ id: "aws-a", name: "a", priority: 2, timeout: 120 }, { id: "aws-b", name: "b", timeout: 120 }] },
        { name: "office", routes: ["10.2.0.0/16"], hosts: [{ id: "off-a", name: "a", timeout: 120 }] },
      ],
    },
  ],
};

let state: TestStateService;
let agent: PinnedTestAgent;

beforeAll(async () => {
  state = await startTestStateService(TOPOLOGY);
  agent = new PinnedTestAgent(state.service.fingerprint);
});

afterAll(async () => {
  agent.destroy();
  await state?.close();
});

const url = () => state.service.url;

function readStatus(call: { hostId?: string; secret?: string; headers?: Record<string, string> } = {}): Promise<CallResult> {
  return signedCall(url(), agent, { hostId: OPERATOR_ID, secret: state.operatorKey, method: "GET", path: API.operatorStatus, body: "", ...call });
}

async function status(): Promise<OperatorStatus> {
  const answer = await readStatus();
  expect(answer.status, answer.body).toBe(200);
  expect(answer.signed).toBe(true);
  return operatorStatusSchema.parse(JSON.parse(answer.body));
}

const host = (s: OperatorStatus, id: string) => s.links.flatMap((l) => l.locations.flatMap((loc) => loc.hosts)).find((h) => h.id === id)!;

function poll(hostId: string, overrides: Partial<HostReport> = {}) {
  const body = JSON.stringify({ protocol: 1, hostId, generation: 0, wait: false, report: report(overrides) });
  return signedCall(url(), agent, { hostId, secret: state.secret(hostId), path: API.poll, body });
}

function postProblem(hostId: string, body: unknown, secret = state.secret(hostId)) {
  return signedCall(url(), agent, { hostId, secret, path: API.problem, body: JSON.stringify(body) });
}

function expectRefused(answer: CallResult, status: number, error: RegExp, fields?: string[]) {
  expect(answer.status, answer.body).toBe(status);
  const body = errorResponseSchema.parse(JSON.parse(answer.body));
  expect(body.error).toMatch(error);
  if (fields) expect(body.fields).toEqual(fields);
}

describe("GET /v1/operator/status", () => {
  it("shows every link, location and host; a host never heard from has no last contact", async () => {
    const s = await status();
    expect(s.links.map((l) => l.name)).toEqual(["corp"]);
    expect(s.links[0]!.locations.map((l) => [l.name, l.activeHost, l.connectedTo, l.hosts.map((h) => h.id)])).toEqual([
      ["aws", null, ["office"], ["aws-a", "aws-b"]],
      ["office", null, ["aws"], ["off-a"]],
    ]);
    expect(host(s, "off-a")).toEqual({
      id: "off-a",
      status: "offline",
      role: "standby",
      lastContactMsAgo: null,
      offlineSince: null,
      agentVersion: null,
      tunnels: [],
      lastProblem: null,
    });
  });

  it("shows what the hosts reported: role, version, tunnels per peer location", async () => {
    expect((await poll("aws-a", { agentVersion: "0.1.0", role: "active", tunnels: [{ location: "office", state: "down" }] })).status).toBe(200);
    const s = await status();
    expect(s.links[0]!.locations[0]!.activeHost).toBe("aws-a");
    expect(host(s, "aws-a")).toMatchObject({ status: "active", role: "active", agentVersion: "0.1.0", tunnels: [{ location: "office", state: "down" }], lastProblem: null });
    expect(host(s, "aws-a").lastContactMsAgo).toBeGreaterThanOrEqual(0);
  });

  it("takes only the operator's signature: host secrets, unsigned and forged requests are refused", async () => {
    // A host's own secret, under its own id or as "operator".
    expectRefused(await readStatus({ hostId: "aws-a", secret: state.secret("aws-a") }), 401, /unknown host or bad signature/);
    expectRefused(await readStatus({ secret: state.secret("aws-a") }), 401, /unknown host or bad signature/);
    // Unsigned.
    const unsigned = await new Promise<number>((resolve, reject) => {
      const req = request(new URL(API.operatorStatus, url()), { method: "GET", agent }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end();
    });
    expect(unsigned).toBe(401);
    expectRefused(await readStatus({ headers: { "x-sitelink-signature": "0".repeat(64) } }), 401, /unknown host or bad signature/);
    expectRefused(await signedCall(url(), agent, { hostId: OPERATOR_ID, secret: state.operatorKey, method: "POST", path: API.operatorStatus, body: "" }), 405, /use GET/);
  });

  it("refuses the operator key on the hosts' endpoints", async () => {
    const body = JSON.stringify({ protocol: 1, hostId: "aws-a", generation: 0, wait: false, report: report() });
    expectRefused(await signedCall(url(), agent, { hostId: OPERATOR_ID, secret: state.operatorKey, path: API.poll, body }), 401, /unknown host/);
    expectRefused(await signedCall(url(), agent, { hostId: "aws-a", secret: state.operatorKey, path: API.poll, body }), 401, /unknown host or bad signature/);
    const problem = { hostId: "aws-a", kind: "bootstrap", message: "x" };
    expectRefused(await postProblem(OPERATOR_ID, problem, state.operatorKey), 401, /unknown host/);
    expectRefused(await postProblem("aws-a", problem, state.operatorKey), 401, /unknown host or bad signature/);
    expect(host(await status(), "aws-a").lastProblem).toBeNull();
  });
});

describe("POST /v1/problem", () => {
  it("keeps a host's last problem until its first poll without an install problem", async () => {
    const answer = await postProblem("aws-b", { hostId: "aws-b", kind: "bootstrap", message: "apt-get install strongswan failed (exit 100)" });
    expect(answer.status, answer.body).toBe(200);
    expect(answer.body).toBe("{}");
    expect(answer.signed).toBe(true);
    expect(host(await status(), "aws-b").lastProblem).toMatchObject({ kind: "bootstrap", message: "apt-get install strongswan failed (exit 100)", source: "problem" });

    // The last one wins.
    await postProblem("aws-b", { hostId: "aws-b", kind: "integrity", message: "sitelink: agent integrity mismatch: expected aa got bb (s3)" });
    expect(host(await status(), "aws-b").lastProblem).toMatchObject({ kind: "integrity", source: "problem" });

    // An old agent still running reports the install problem: it stays (now from the report).
    const installProblem = { kind: "integrity" as const, message: "sitelink: agent integrity mismatch: expected aa got cc (s3)" };
    expect((await poll("aws-b", { installProblem })).status).toBe(200);
    expect(host(await status(), "aws-b").lastProblem).toMatchObject({ ...installProblem, source: "report" });

    // The first report without one clears both.
    expect((await poll("aws-b")).status).toBe(200);
    expect(host(await status(), "aws-b").lastProblem).toBeNull();
  });

  it("refuses bad bodies with 400 naming the field, and unsigned or unknown hosts with 401", async () => {
    expectRefused(await postProblem("aws-b", { hostId: "aws-b", kind: "disk", message: "x" }), 400, /invalid problem request/, ["kind"]);
    expectRefused(await postProblem("aws-b", { hostId: "aws-b", kind: "bootstrap", message: "x".repeat(501) }), 400, /invalid problem request/, ["message"]);
    expectRefused(await postProblem("aws-b", { hostId: "aws-b", kind: "bootstrap", message: "two\nlines" }), 400, /invalid problem request/, ["message"]);
    expectRefused(await postProblem("aws-b", { hostId: "aws-b", kind: "bootstrap" }), 400, /invalid problem request/, ["message"]);
    expectRefused(await postProblem("aws-b", { hostId: "aws-b", kind: "bootstrap", message: "x", extra: 1 }), 400, /invalid problem request/, ["(body)"]);
    expectRefused(await postProblem("aws-b", { hostId: "aws-a", kind: "bootstrap", message: "x" }), 400, /does not match/, ["hostId"]);
    expectRefused(await signedCall(url(), agent, { hostId: "aws-b", secret: state.secret("aws-b"), path: API.problem, body: "{" }), 400, /not JSON/);
    expectRefused(await postProblem("nobody", { hostId: "nobody", kind: "bootstrap", message: "x" }, state.secret("nobody")), 401, /unknown host/);
    expectRefused(await postProblem("aws-b", { hostId: "aws-b", kind: "bootstrap", message: "x" }, state.secret("aws-a")), 401, /unknown host or bad signature/);
    expectRefused(await signedCall(url(), agent, { hostId: "aws-b", secret: state.secret("aws-b"), method: "GET", path: API.problem, body: "" }), 405, /use POST/);
    expect(host(await status(), "aws-b").lastProblem).toBeNull();
  });
});

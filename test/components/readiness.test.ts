// The Link's readiness wait under Pulumi mocks (`pulumi up`, not preview), against a real state
// service on loopback that the test delivers the Link's own topology to, as a user of an external
// state service does.
import * as pulumi from "@pulumi/pulumi";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Readiness } from "../../agent/contract/operator";
import { API } from "../../agent/contract/protocol";
import { PinnedTestAgent, report, signedCall } from "../support/state-testkit";
import { startTestStateService, type TestStateService } from "../support/state-fixture";
import { settle, setupMocks, valueOf } from "./harness";

type Lib = typeof import("../../lib/index.js");
let lib: Lib;
const services: TestStateService[] = [];

beforeAll(async () => {
  await setupMocks();
  lib = await import("../../lib/index.js");
});

afterAll(async () => {
  await Promise.all(services.map((s) => s.close()));
});

/** Any valid document: the service starts with it, then gets the Link's. */
const PLACEHOLDER = {
  version: 1,
  links: [
    {
      name: "placeholder",
      locations: [
        { name: "a", routes: ["10.90.0.0/16"], hosts: [{ id: "placeholder.a.a", name: "a" }] },
        { name: "b", routes: ["10.91.0.0/16"], hosts: [{ id: "placeholder.b.a", name: "a" }] },
      ],
    },
  ],
};

/** A link of two ManualLocations (`${p}-east`: hosts a and b; `${p}-west`: host a) on an external state service. */
async function manualLink(p: string, readiness: { timeoutSeconds: number }) {
  const state = await startTestStateService(PLACEHOLDER);
  services.push(state);
  const east = new lib.ManualLocation(`${p}-east`, {
    routes: ["10.10.0.0/16"],
    hosts: [
      { name: "a", priority: 2, publicAddress: "198.18.10.1", privateAddress: "10.10.0.10" },
      { name: "b", publicAddress: "198.18.10.2", privateAddress: "10.10.0.11" },
    ],
  });
  const west = new lib.ManualLocation(`${p}-west`, { routes: ["10.20.0.0/16"], hosts: [{ name: "a", publicAddress: "198.18.20.1", privateAddress: "10.20.0.10" }] });
  const link = new lib.Link(p, {
    locations: [east, west],
    stateService: { url: state.service.url, fingerprint: state.service.fingerprint, masterKey: state.masterKey.toString("base64") },
    readiness: { wait: true, ...readiness },
  });
  await state.setTopology(JSON.parse(await valueOf(link.topology)));
  return { state, link };
}

/** The value of an Output. */
function outcome<T>(output: pulumi.Output<T>): Promise<T> {
  return (output as unknown as { promise(): Promise<T> }).promise();
}

/**
 * What `pulumi up` fails with while `run` runs: the Pulumi runtime hands a component output that
 * rejects to the process as an unhandled rejection (on purpose, see runAsyncResourceOp), and the
 * language host ends the program with it. Caught here instead of by the test runner.
 */
async function upFailures(run: () => Promise<void>): Promise<string[]> {
  const runnerListeners = process.listeners("unhandledRejection");
  process.removeAllListeners("unhandledRejection");
  const failures: string[] = [];
  let failed!: () => void;
  const first = new Promise<void>((resolve) => (failed = resolve));
  const listener = (reason: unknown) => {
    failures.push(reason instanceof Error ? reason.message : String(reason));
    failed();
  };
  process.on("unhandledRejection", listener);
  try {
    await run();
    await first;
    await settle();
  } finally {
    process.off("unhandledRejection", listener);
    for (const l of runnerListeners) process.on("unhandledRejection", l);
  }
  return failures;
}

/** Has the host poll as a running agent does (every 0.5 s, so it stays online) until stopped. */
function runAgent(state: TestStateService, hostId: string, overrides: Parameters<typeof report>[0]): () => Promise<void> {
  const agent = new PinnedTestAgent(state.service.fingerprint);
  let running = true;
  const loop = (async () => {
    while (running) {
      const body = JSON.stringify({ protocol: 1, hostId, generation: 0, wait: false, report: report(overrides) });
      const answer = await signedCall(state.service.url, agent, { hostId, secret: state.secret(hostId), path: API.poll, body });
      if (answer.status !== 200) throw new Error(`poll of ${hostId}: ${answer.status} ${answer.body}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  })();
  return async () => {
    running = false;
    await loop;
    agent.destroy();
  };
}

describe("Link readiness", () => {
  it("fails `pulumi up` naming every host of the link that was never heard from", async () => {
    const failures = await upFailures(async () => {
      const { link } = await manualLink("rdya", { timeoutSeconds: 1 });
      await expect(outcome(link.readiness)).rejects.toThrow('Link "rdya": not ready after 1 s:');
    });
    expect(failures.length).toBeGreaterThan(0);
    expect(new Set(failures)).toEqual(
      new Set([
        [
          'error serializing property "outputs": Link "rdya": not ready after 1 s:',
        "  rdya.rdya-east.a: never heard from",
        "  rdya.rdya-east.b: never heard from",
        "  rdya.rdya-west.a: never heard from",
          `(readiness: { wait: false } skips this check, e.g. on a runner that cannot reach the state service at ${services[0]!.service.url})`,
        ].join("\n"),
      ]),
    );
  });

  it("passes once every host reports and the active hosts' tunnels are up", async () => {
    const { state, link } = await manualLink("rdyb", { timeoutSeconds: 60 });
    const stops = [
      runAgent(state, "rdyb.rdyb-east.a", { role: "active", tunnels: [{ location: "rdyb-west", state: "up" }] }),
      runAgent(state, "rdyb.rdyb-east.b", {}),
      runAgent(state, "rdyb.rdyb-west.a", { role: "active", tunnels: [{ location: "rdyb-east", state: "up" }] }),
    ];
    try {
      const verdict: Readiness | undefined = await outcome(link.readiness);
      expect(verdict).toEqual({
        ready: true,
        hosts: [
          { id: "rdyb.rdyb-east.a", ready: true, reason: "ready" },
          { id: "rdyb.rdyb-east.b", ready: true, reason: "ready" },
          { id: "rdyb.rdyb-west.a", ready: true, reason: "ready" },
        ],
      });
      expect(await pulumi.isSecret(link.readiness)).toBe(false);
    } finally {
      await Promise.all(stops.map((stop) => stop()));
    }
  });

  it("does not wait when told not to", async () => {
    const off = new lib.Link("rdyd", {
      locations: [
        new lib.ManualLocation("rdyd-a", { routes: ["10.30.0.0/16"], hosts: [{ name: "a", publicAddress: "198.18.30.1", privateAddress: "10.30.0.1" }] }),
        new lib.ManualLocation("rdyd-b", { routes: ["10.31.0.0/16"], hosts: [{ name: "a", publicAddress: "198.18.31.1", privateAddress: "10.31.0.1" }] }),
      ],
      stateService: { url: "https://127.0.0.1:1", fingerprint: "ab".repeat(32), masterKey: Buffer.alloc(32, 1).toString("base64") },
      readiness: { wait: false },
    });
    expect(await outcome(off.readiness)).toBeUndefined();
    // Nor when the stack config says so (the harness sets sitelink:waitForReadiness to false).
    expect(pulumi.runtime.getConfig("sitelink:waitForReadiness")).toBe("false");
    const byConfig = new lib.Link("rdye", {
      locations: [
        new lib.ManualLocation("rdye-a", { routes: ["10.32.0.0/16"], hosts: [{ name: "a", publicAddress: "198.18.32.1", privateAddress: "10.32.0.1" }] }),
        new lib.ManualLocation("rdye-b", { routes: ["10.33.0.0/16"], hosts: [{ name: "a", publicAddress: "198.18.33.1", privateAddress: "10.33.0.1" }] }),
      ],
      stateService: { url: "https://127.0.0.1:1", fingerprint: "ab".repeat(32), masterKey: Buffer.alloc(32, 1).toString("base64") },
    });
    expect(await outcome(byConfig.readiness)).toBeUndefined();
  });

  it("validates its arguments at construction, naming the field", () => {
    const locations = (p: string) => [
      new lib.ManualLocation(`${p}-a`, { routes: ["10.40.0.0/16"], hosts: [{ name: "a", publicAddress: "198.18.40.1", privateAddress: "10.40.0.1" }] }),
      new lib.ManualLocation(`${p}-b`, { routes: ["10.41.0.0/16"], hosts: [{ name: "a", publicAddress: "198.18.41.1", privateAddress: "10.41.0.1" }] }),
    ];
    const stateService = { url: "https://127.0.0.1:1", fingerprint: "ab".repeat(32), masterKey: "x" };
    const issues = (readiness: unknown, p: string) =>
      lib.validateLinkArgs(p, { locations: locations(p), stateService, readiness }).map((i) => `${i.path}: ${i.message}`);
    expect(issues({ timeoutSeconds: 0 }, "rv1")).toEqual(["readiness.timeoutSeconds: must be 1 to 3600 seconds"]);
    expect(issues({ timeoutSeconds: 1.5 }, "rv2")).toEqual(["readiness.timeoutSeconds: must be a whole number of seconds"]);
    expect(issues({ wait: "no" }, "rv3")).toEqual([expect.stringMatching(/^readiness\.wait: /)]);
    expect(issues({ wiat: false }, "rv4")).toEqual([expect.stringMatching(/^readiness: .*wiat/)]);
    expect(() => new lib.Link("rv5", { locations: locations("rv5"), stateService, readiness: { timeoutSeconds: 7200 } })).toThrow(
      /readiness\.timeoutSeconds: must be 1 to 3600 seconds/,
    );
  });
});

// S1 (issue 15): idle sockets held to an active host's host-check port made every real probe of it
// fail, and the state service then demoted it. The listener now admits the link's hosts alone and
// caps each source address: real listener, prober and flooder, each in its own network namespace.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { NetnsSandbox, requireRoot } from "../support/netns";

const FIXTURE = join(__dirname, "../support/hostcheck-fixture.ts");
const KEY = "flood-test-key-".padEnd(43, "z");
const LISTENER = { link: "198.18.13.1", outside: "198.18.14.1" };
const PEER = "198.18.13.2";
const ATTACKER = "198.18.14.2";
/** More than the listener's 256 connection slots. */
const FLOOD = 300;

describe.skipIf(!requireRoot())("host-check listener under a flood of idle sockets", () => {
  let sandbox: NetnsSandbox;
  let active: string;
  let peer: string;
  let attacker: string;
  let runs = 0;

  beforeAll(async () => {
    sandbox = await NetnsSandbox.create("hcflood");
    active = await sandbox.addNamespace("active");
    peer = await sandbox.addNamespace("peer");
    attacker = await sandbox.addNamespace("attacker");
    await sandbox.veth({ ns: active, ifname: "a0", addr: `${LISTENER.link}/24` }, { ns: peer, ifname: "p0", addr: `${PEER}/24` });
    await sandbox.veth({ ns: active, ifname: "a1", addr: `${LISTENER.outside}/24` }, { ns: attacker, ifname: "x0", addr: `${ATTACKER}/24` });
    // Port 9790: the attacker is outside the link; port 9791: the attacker's address is a link host's.
    await Promise.all([
      listen("9790", [PEER]),
      listen("9791", [PEER, ATTACKER]),
    ]);
  }, 60_000);

  afterAll(async () => {
    await sandbox?.cleanup();
  });

  /** The listener of the active host on all addresses (dual stack: IPv4 peers show as ::ffff:…). */
  async function listen(port: string, allow: string[]): Promise<void> {
    const log = join(sandbox.workDir, `listener-${port}.log`);
    sandbox.spawn(active, [process.execPath, "--import", "tsx", FIXTURE, "listen", "host-a", "::", port], {
      env: { ...process.env, SITELINK_TEST_HOSTCHECK_KEY: KEY, SITELINK_TEST_HOSTCHECK_ALLOW: allow.join(",") },
      logFile: log,
    });
    await vi.waitFor(() => expect(readFileSync(log, "utf8")).toContain("listening"), { timeout: 30_000, interval: 50 });
  }

  async function flood(address: string, port: string): Promise<ChildProcess> {
    const log = join(sandbox.workDir, `flood-${++runs}.log`);
    const child = sandbox.spawn(attacker, [process.execPath, "--import", "tsx", FIXTURE, "flood", "attacker", address, port, String(FLOOD)], { logFile: log });
    await vi.waitFor(() => expect(readFileSync(log, "utf8")).toContain("flooding"), { timeout: 30_000, interval: 50 });
    return child;
  }

  /** `count` probes of the active host from namespace `ns`; their outcomes ("ok" or the failure). */
  async function probes(ns: string, address: string, port: string, count: number): Promise<string[]> {
    const log = join(sandbox.workDir, `probes-${++runs}.log`);
    const child = sandbox.spawn(ns, [process.execPath, "--import", "tsx", FIXTURE, "probes", "host-b", "host-a", address, port, String(count)], {
      env: { ...process.env, SITELINK_TEST_HOSTCHECK_KEY: KEY },
      logFile: log,
    });
    await new Promise((resolve) => child.once("exit", resolve));
    return JSON.parse(readFileSync(log, "utf8").trim().split("\n").pop()!) as string[];
  }

  it("a flood from outside the link holds no slot: every probe of a link host still succeeds", async () => {
    const flooder = await flood(LISTENER.outside, "9790");
    try {
      expect(await probes(peer, LISTENER.link, "9790", 10)).toEqual(Array(10).fill("ok"));
    } finally {
      await sandbox.kill(flooder.pid!);
    }
  }, 60_000);

  it("a host outside the link gets no answer, even with the right key", async () => {
    // Cut off on accept: a close or a reset, depending on when the prober reads.
    const outcomes = await probes(attacker, LISTENER.outside, "9790", 3);
    expect(outcomes).toHaveLength(3);
    for (const outcome of outcomes) expect(["closed", "unreachable"]).toContain(outcome);
  }, 30_000);

  it("a flood from one link address cannot take the slots of the others", async () => {
    const flooder = await flood(LISTENER.outside, "9791");
    try {
      expect(await probes(peer, LISTENER.link, "9791", 10)).toEqual(Array(10).fill("ok"));
    } finally {
      await sandbox.kill(flooder.pid!);
    }
  }, 60_000);
});

// The host check across two network namespaces: listener in one, prober in the other.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { NetnsSandbox, requireRoot } from "../../../test/support/netns";

const FIXTURE = join(__dirname, "../../../test/support/hostcheck-fixture.ts");
const KEY = "netns-test-key-".padEnd(43, "z");

describe.skipIf(!requireRoot())("host check across network namespaces", () => {
  let sandbox: NetnsSandbox;
  let a: string;
  let b: string;
  let listener: ChildProcess;
  let runs = 0;

  beforeAll(async () => {
    sandbox = await NetnsSandbox.create("hostcheck");
    a = await sandbox.addNamespace("a");
    b = await sandbox.addNamespace("b");
    await sandbox.veth({ ns: a, ifname: "a0", addr: "198.18.11.1/24" }, { ns: b, ifname: "b0", addr: "198.18.11.2/24" });
    const log = join(sandbox.workDir, "listener.log");
    listener = sandbox.spawn(a, [process.execPath, "--import", "tsx", FIXTURE, "listen", "host-a", "198.18.11.1", "9790"], {
      env: { ...process.env, SITELINK_TEST_HOSTCHECK_KEY: KEY, SITELINK_TEST_HOSTCHECK_ALLOW: "198.18.11.2" },
      logFile: log,
    });
    await vi.waitFor(() => expect(readFileSync(log, "utf8")).toContain("listening"), { timeout: 30_000, interval: 50 });
  });

  afterAll(async () => {
    await sandbox?.cleanup();
  });

  /** One prober round from namespace b; resolves with the first verdict it reports. */
  async function probeFromB(key: string): Promise<Array<{ target: string; reachable: boolean; rttMs?: number; failures: number }>> {
    const log = join(sandbox.workDir, `probe-${++runs}.log`);
    const child = sandbox.spawn(b, [process.execPath, "--import", "tsx", FIXTURE, "probe", "host-b", "host-a", "198.18.11.1", "9790"], {
      env: { ...process.env, SITELINK_TEST_HOSTCHECK_KEY: key },
      logFile: log,
    });
    await new Promise((resolve) => child.once("exit", resolve));
    return JSON.parse(readFileSync(log, "utf8").trim().split("\n").pop()!);
  }

  it("a peer in another namespace is reachable, with its RTT", async () => {
    const [result] = await probeFromB(KEY);
    expect(result).toMatchObject({ target: "host-a", reachable: true, failures: 0 });
    expect(result!.rttMs).toBeGreaterThan(0);
  });

  it("with another key the peer counts as unreachable", async () => {
    expect(await probeFromB("another-key-".padEnd(43, "q"))).toMatchObject([{ target: "host-a", reachable: false, failures: 1 }]);
  });

  it("a crashed listener is unreachable on the first probe", async () => {
    await sandbox.kill(listener.pid!, "SIGKILL");
    expect(await probeFromB(KEY)).toMatchObject([{ target: "host-a", reachable: false, failures: 1 }]);
  });
});

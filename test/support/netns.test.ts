import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NetnsSandbox, requireRoot } from "./netns";
import { isAlive as alive } from "./process";

const namespaces = () => execFileSync("ip", ["netns", "list"], { encoding: "utf8" });

describe.skipIf(!requireRoot())("NetnsSandbox (needs root)", () => {
  let sandbox: NetnsSandbox;
  beforeAll(async () => {
    sandbox = await NetnsSandbox.create("netns-test");
  });
  afterAll(async () => {
    await sandbox?.cleanup();
  });

  it("names everything with a fresh random prefix", async () => {
    expect(sandbox.prefix).toMatch(/^sl[0-9a-f]{4}$/);
    expect(existsSync(sandbox.workDir)).toBe(true);
    const other = await NetnsSandbox.create("netns-test");
    expect(other.prefix).not.toBe(sandbox.prefix);
    await other.cleanup();
  });

  it("joins namespaces with veths and a bridge, lo up", async () => {
    const hub = await sandbox.addNamespace("hub");
    expect(hub).toBe(`${sandbox.prefix}-hub`);
    expect(namespaces()).toContain(hub);
    await sandbox.bridge(hub, "br0");
    const x = await sandbox.addNamespace("x");
    const y = await sandbox.addNamespace("y");
    await sandbox.veth({ ns: x, ifname: "eth0", addr: "198.18.7.1/24" }, { ns: hub, ifname: "px" });
    await sandbox.veth({ ns: y, ifname: "eth0", addr: "198.18.7.2/24" }, { ns: hub, ifname: "py" });
    await sandbox.attach(hub, "px", "br0");
    await sandbox.attach(hub, "py", "br0");
    expect((await sandbox.exec(x, ["ping", "-c", "1", "-W", "2", "198.18.7.2"])).code).toBe(0);
    expect((await sandbox.exec(x, ["ping", "-c", "1", "-W", "1", "127.0.0.1"])).code).toBe(0);
  });

  it("throws with stderr on a failing command unless allowFail", async () => {
    const ns = await sandbox.addNamespace("fail");
    await expect(sandbox.exec(ns, ["ip", "link", "show", "nope0"])).rejects.toThrow(/exited 1: .*nope0/);
    const result = await sandbox.exec(ns, ["ip", "link", "show", "nope0"], { allowFail: true });
    expect(result.code).not.toBe(0);
  });

  it("refuses namespaces that are not its own and bad interface names", async () => {
    await expect(sandbox.exec("some-other-ns", ["true"])).rejects.toThrow(/not part of sandbox/);
    const ns = await sandbox.addNamespace("names");
    await expect(sandbox.veth({ ns, ifname: "a-name-that-is-too-long" }, { ns, ifname: "b" })).rejects.toThrow(/1-15/);
  });

  it("spawns tracked processes with a private /run and stops them", async () => {
    const ns = await sandbox.addNamespace("proc");
    const runDir = join(sandbox.workDir, "run-proc");
    const child = sandbox.spawn(ns, ["sh", "-c", "echo $$ > /run/marker.pid && exec sleep 600"], { privateRun: runDir });
    await expect.poll(() => existsSync(join(runDir, "marker.pid")), { timeout: 5_000 }).toBe(true);
    // The pid is the real process: ip netns exec, unshare and sh all exec.
    await expect.poll(() => readFileSync(join(runDir, "marker.pid"), "utf8").trim(), { timeout: 5_000 }).toBe(String(child.pid));
    expect(existsSync("/run/marker.pid")).toBe(false);
    await sandbox.kill(child.pid!);
    expect(alive(child.pid!)).toBe(false);
  });

  it("cleans up everything, idempotently", async () => {
    const box = await NetnsSandbox.create("netns-cleanup");
    const ns = await box.addNamespace("c");
    const child = box.spawn(ns, ["sleep", "600"]);
    await box.cleanup();
    await box.cleanup();
    expect(namespaces()).not.toContain(ns);
    expect(alive(child.pid!)).toBe(false);
    expect(existsSync(box.workDir)).toBe(false);
  });

  it("cleans up when its process is stopped by a signal", async () => {
    const fixture = spawn(join(process.cwd(), "node_modules/.bin/tsx"), [join(__dirname, "netns.fixture.ts")], { stdio: ["ignore", "pipe", "inherit"] });
    const line = await new Promise<string>((resolve) => createInterface({ input: fixture.stdout! }).once("line", resolve));
    const made = JSON.parse(line) as { ns: string; pid: number; workDir: string };
    expect(namespaces()).toContain(made.ns);
    const exited = new Promise((resolve) => fixture.once("exit", resolve));
    fixture.kill("SIGTERM");
    await exited;
    expect(namespaces()).not.toContain(made.ns);
    // SIGKILLed by the handler; reaped by init once its parent is gone.
    await expect.poll(() => alive(made.pid), { timeout: 5_000 }).toBe(false);
    expect(existsSync(made.workDir)).toBe(false);
  });
});

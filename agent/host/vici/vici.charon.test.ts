// The VICI client against a real charon (strongSwan 5.9) in a network namespace.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCharon, type Charon } from "../../../test/support/charon";
import { NetnsSandbox, requireRoot } from "../../../test/support/netns";
import { ViciCommandError } from "./connection";
import { ViciSubscription } from "./events";
import { ViciSession } from "./session";

const root = requireRoot();

describe.skipIf(!root)("VICI client against charon (needs root: network namespaces)", () => {
  let sandbox: NetnsSandbox;
  let ns: string;
  let charon: Charon;
  let vici: ViciSession;

  beforeAll(async () => {
    sandbox = await NetnsSandbox.create("vici-client");
    ns = await sandbox.addNamespace("v");
    charon = await startCharon(sandbox, ns);
    vici = new ViciSession(charon.viciSocket);
  });
  afterAll(async () => {
    vici?.close();
    await sandbox?.cleanup();
  });

  const conn = {
    version: 2,
    local_addrs: ["198.18.9.1"],
    remote_addrs: ["198.18.9.2", "198.18.9.3"],
    local: { auth: "psk", id: "198.18.9.1" },
    remote: { auth: "psk", id: "%any" },
    children: { net: { local_ts: ["10.1.0.0/24"], remote_ts: ["10.2.0.0/24"], start_action: "none" } },
  };

  it("reads the daemon version", async () => {
    await expect(vici.version()).resolves.toMatchObject({ daemon: "charon", version: expect.stringMatching(/^5\./), sysname: "Linux" });
  });

  it("loads, lists and unloads a connection", async () => {
    await vici.loadConn("client-test", conn);
    expect(await vici.getConns()).toEqual(["client-test"]);
    const listed = await vici.listConns({ ike: "client-test" });
    expect(listed).toHaveLength(1);
    expect(listed[0]!["client-test"]).toMatchObject({
      local_addrs: ["198.18.9.1"],
      remote_addrs: ["198.18.9.2", "198.18.9.3"],
      version: "IKEv2",
      children: { net: { "local-ts": ["10.1.0.0/24"], "remote-ts": ["10.2.0.0/24"] } },
    });
    await vici.unloadConn("client-test");
    expect(await vici.getConns()).toEqual([]);
    expect(await vici.listConns()).toEqual([]);
  });

  it("throws charon's own error message", async () => {
    await expect(vici.unloadConn("never-loaded")).rejects.toThrow(new ViciCommandError("unload-conn", "unload: connection 'never-loaded' not found"));
    await expect(vici.loadConn("bad", { ...conn, proposals: ["no-such-cipher"] })).rejects.toThrow(ViciCommandError);
    await expect(vici.initiate({ child: "no-such-child", timeout: -1 })).rejects.toThrow(/VICI initiate failed: CHILD_SA config 'no-such-child' not found/);
  });

  it("loads, lists and unloads shared secrets by id", async () => {
    await vici.loadShared({ id: "client-test-psk", type: "IKE", data: "0123456789abcdef0123456789abcdef", owners: ["198.18.9.1", "198.18.9.2"] });
    expect(await vici.getShared()).toEqual(["client-test-psk"]);
    await vici.unloadShared("client-test-psk");
    expect(await vici.getShared()).toEqual([]);
  });

  it("lists no SAs on an idle charon", async () => {
    await expect(vici.listSas()).resolves.toEqual([]);
  });

  it("survives a charon restart: the session reconnects, the subscription re-registers", async () => {
    let connects = 0;
    const subscription = ViciSubscription.start(charon.viciSocket, ["ike-updown", "child-updown"], () => undefined, {
      onConnect: () => connects++,
      retryMs: { min: 20, max: 200 },
    });
    try {
      await expect.poll(() => connects, { timeout: 10_000 }).toBe(1);
      await charon.stop("SIGKILL");
      await expect(vici.version()).rejects.toThrow(/VICI/);
      charon = await startCharon(sandbox, ns);
      await expect(vici.version()).resolves.toMatchObject({ daemon: "charon" });
      await expect.poll(() => connects, { timeout: 10_000 }).toBe(2);
    } finally {
      subscription.close();
    }
  });
});

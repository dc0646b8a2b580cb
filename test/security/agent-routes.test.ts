// S4 and S8 (issue 15): the kernel route provider replaced an operator's static route and the
// default route (and with remove-routes on deleted both on withdrawal), read a default route back
// as `default/32`, and applied whatever the state service sent. Real routing tables of namespaces
// this test creates.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentConfigSchema } from "../../agent/contract/agent-config";
import { inNetns } from "../../agent/host/routes/command";
import { createRouteProvider } from "../../agent/host/routes/index";
import { createKernelRouteProvider } from "../../agent/host/routes/kernel";
import { NetnsSandbox, requireRoot } from "../support/netns";

describe.skipIf(!requireRoot())("kernel routes: local bounds and other people's routes", () => {
  let sandbox: NetnsSandbox;
  let host: string;

  beforeAll(async () => {
    sandbox = await NetnsSandbox.create("sec-routes");
    host = await sandbox.addNamespace("host");
    const gw = await sandbox.addNamespace("gw");
    await sandbox.veth({ ns: host, ifname: "h0", addr: "198.18.15.2/24" }, { ns: gw, ifname: "g0", addr: "198.18.15.1/24" });
    await sandbox.exec(host, ["ip", "-6", "addr", "add", "fd00:15::2/64", "dev", "h0", "nodad"]);
  });

  afterAll(async () => {
    await sandbox?.cleanup();
  });

  async function table(family: "-4" | "-6" = "-4"): Promise<string[]> {
    const { stdout } = await sandbox.exec(host, ["ip", family, "route", "show"]);
    return stdout.trim().split("\n").map((line) => line.trim());
  }

  const kernel = () => createKernelRouteProvider({ device: "h0", via: "198.18.15.3" }, inNetns(host));

  it("S8: a default route of its own is read back as 0.0.0.0/0 (and ::/0), found in place, and withdrawn without an error", async () => {
    const p = kernel();
    await p.apply(["0.0.0.0/0"], { previous: [], removeRoutes: true });
    expect(await table()).toContain("default via 198.18.15.3 dev h0 proto 83");
    expect(await p.inPlace(["0.0.0.0/0"])).toBe(true);
    await p.apply([], { previous: p.applied(), removeRoutes: true });
    expect((await table()).some((line) => line.startsWith("default"))).toBe(false);
    await p.apply([], { previous: [], removeRoutes: true }); // nothing stuck for the next apply

    const v6 = createKernelRouteProvider({ device: "h0", via: "fd00:15::3" }, inNetns(host));
    await v6.apply(["::/0"], { previous: [], removeRoutes: true });
    expect(await v6.inPlace(["::/0"])).toBe(true);
    await v6.apply([], { previous: v6.applied(), removeRoutes: true });
    expect((await table("-6")).some((line) => line.startsWith("default"))).toBe(false);
  });

  it("S4: never takes the place of the operator's static route or default route, nor deletes them on withdrawal", async () => {
    await sandbox.exec(host, ["ip", "route", "add", "default", "via", "198.18.15.1"]);
    await sandbox.exec(host, ["ip", "route", "add", "10.60.0.0/16", "via", "198.18.15.1", "proto", "static"]);
    const before = await table();
    const p = kernel();
    const error = (await p.apply(["0.0.0.0/0", "10.60.0.0/16", "10.61.0.0/16"], { previous: [], removeRoutes: true }).catch((e: Error) => e)) as Error;
    expect(error.message).toContain("cannot point 0.0.0.0/0 here: a route the agent did not make is in place (via 198.18.15.1 dev h0 proto boot)");
    expect(error.message).toContain("cannot point 10.60.0.0/16 here: a route the agent did not make is in place (via 198.18.15.1 dev h0 proto static)");
    expect(p.applied()).toEqual(["10.61.0.0/16"]);
    await p.apply([], { previous: ["0.0.0.0/0", "10.60.0.0/16", "10.61.0.0/16"], removeRoutes: true });
    expect(await table()).toEqual(before);
  });

  it("S4: holds what the state service sends to the config's allowedRoutes; without them, never a default route", async () => {
    const config = (extra: object) => agentConfigSchema.parse({ provider: "kernel", kernel: { device: "h0", via: "198.18.15.3" }, ...extra });
    const bounded = createRouteProvider(config({ allowedRoutes: ["10.70.0.0/16"] }), { hostId: "h1" }, { run: inNetns(host) });
    const error = (await bounded.apply(["10.70.1.0/24", "10.71.0.0/16"], { previous: [], removeRoutes: false }).catch((e: Error) => e)) as Error;
    expect(error.message).toBe("route provider kernel: 10.71.0.0/16 refused: not inside this host's allowedRoutes");
    expect(bounded.applied()).toEqual(["10.70.1.0/24"]);
    expect((await table()).some((line) => line.startsWith("10.71.0.0/16"))).toBe(false);

    await sandbox.exec(host, ["ip", "route", "del", "default"]);
    const unbounded = createRouteProvider(config({}), { hostId: "h1" }, { run: inNetns(host) });
    const refusal = (await unbounded.apply(["0.0.0.0/0", "::/0", "10.72.0.0/16"], { previous: [], removeRoutes: false }).catch((e: Error) => e)) as Error;
    expect(refusal.message).toBe(
      "route provider kernel: 0.0.0.0/0 refused: a default route is taken over only when allowedRoutes lists it; ::/0 refused: a default route is taken over only when allowedRoutes lists it",
    );
    expect(unbounded.applied()).toEqual(["10.72.0.0/16"]);
    expect((await table()).some((line) => line.startsWith("default"))).toBe(false);
  });
});

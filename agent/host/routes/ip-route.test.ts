// kernel and lab providers against real routing tables of namespaces this test creates.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NetnsSandbox, requireRoot } from "../../../test/support/netns";
import { agentConfigSchema } from "../../contract/agent-config";
import { inNetns } from "./command";
import { createRouteProvider } from "./index";
import { createKernelRouteProvider } from "./kernel";

describe.skipIf(!requireRoot())("ip route providers in network namespaces", () => {
  let sandbox: NetnsSandbox;
  let host: string;
  let router: string;

  beforeAll(async () => {
    sandbox = await NetnsSandbox.create("ip-route");
    host = await sandbox.addNamespace("host");
    router = await sandbox.addNamespace("rt");
    await sandbox.veth({ ns: router, ifname: "r0", addr: "198.18.9.1/24" }, { ns: host, ifname: "h0", addr: "198.18.9.2/24" });
    await sandbox.exec(router, ["ip", "addr", "add", "198.18.9.3/24", "dev", "r0"]);
    // The "remote" networks answer inside the host namespace, so a working route is proven by a ping.
    await sandbox.exec(host, ["ip", "addr", "add", "10.30.0.1/16", "dev", "lo"]);
  });

  afterAll(async () => {
    await sandbox?.cleanup();
  });

  async function routes(ns: string): Promise<string[]> {
    const { stdout } = await sandbox.exec(ns, ["ip", "route", "show"]);
    return stdout.trim().split("\n").map((line) => line.trim());
  }

  async function pings(ns: string, address: string): Promise<boolean> {
    const { code } = await sandbox.exec(ns, ["ping", "-c", "1", "-W", "1", address], { allowFail: true });
    return code === 0;
  }

  describe("lab", () => {
    const config = () => agentConfigSchema.parse({ provider: "lab", lab: { namespace: router, via: "198.18.9.2" } });

    it("points CIDRs at this host in the router namespace, and traffic follows", async () => {
      expect(await pings(router, "10.30.0.1")).toBe(false);
      const p = createRouteProvider(config(), { hostId: "h1" });
      await p.apply(["10.30.0.0/16", "10.31.0.0/16"], { previous: [], removeRoutes: false });
      expect(await routes(router)).toEqual(expect.arrayContaining(["10.30.0.0/16 via 198.18.9.2 dev r0 proto 83", "10.31.0.0/16 via 198.18.9.2 dev r0 proto 83"]));
      expect(p.applied()).toEqual(["10.30.0.0/16", "10.31.0.0/16"]);
      expect(await pings(router, "10.30.0.1")).toBe(true);
    });

    it("takes over a route that pointed at another host (a route of its own kind, proto 83)", async () => {
      await sandbox.exec(router, ["ip", "route", "replace", "10.32.0.0/16", "via", "198.18.9.3", "proto", "83"]);
      const p = createRouteProvider(config(), { hostId: "h1" });
      await p.apply(["10.32.0.0/16"], { previous: [], removeRoutes: false });
      expect(await routes(router)).toContain("10.32.0.0/16 via 198.18.9.2 dev r0 proto 83");
    });

    it("with removeRoutes, deletes its stale routes but not one that now points elsewhere", async () => {
      await sandbox.exec(router, ["ip", "route", "replace", "10.31.0.0/16", "via", "198.18.9.3"]); // another host took it
      const p = createRouteProvider(config(), { hostId: "h1" });
      await p.apply(["10.30.0.0/16"], { previous: ["10.30.0.0/16", "10.31.0.0/16", "10.32.0.0/16"], removeRoutes: true });
      const table = await routes(router);
      expect(table).toContain("10.30.0.0/16 via 198.18.9.2 dev r0 proto 83");
      expect(table).toContain("10.31.0.0/16 via 198.18.9.3 dev r0");
      expect(table.some((line) => line.startsWith("10.32.0.0/16"))).toBe(false);
      expect(p.applied()).toEqual(["10.30.0.0/16"]);
    });

    it("is left alone by a standby (the new active host points the routes at itself)", () => {
      expect(createRouteProvider(config(), { hostId: "h1" }).table).toBe("shared");
    });

    it("without removeRoutes, leaves stale routes in place", async () => {
      const p = createRouteProvider(config(), { hostId: "h1" });
      await p.apply([], { previous: ["10.30.0.0/16"], removeRoutes: false });
      expect(await routes(router)).toContain("10.30.0.0/16 via 198.18.9.2 dev r0 proto 83");
      expect(p.applied()).toEqual([]);
    });

    it("reports a CIDR the kernel refuses and a malformed one, by name, and applies the rest", async () => {
      const p = createRouteProvider(config(), { hostId: "h1" });
      const error = (await p.apply(["fd00:33::/64", "10.33.0.0/16", "10.34.0.0"], { previous: [], removeRoutes: false }).catch((e: Error) => e)) as Error;
      expect(error.message).toMatch(/^route provider lab: "10\.34\.0\.0" is not a CIDR .*; cannot point fd00:33::\/64 here: ip -n \S+ route add fd00:33::\/64 via 198\.18\.9\.2 proto 83 failed/);
      expect(p.applied()).toEqual(["10.33.0.0/16"]);
    });
  });

  describe("kernel", () => {
    it("installs routes on this host through a device and a via address, and removes its own", async () => {
      const p = createKernelRouteProvider({ device: "h0", via: "198.18.9.1" }, inNetns(host));
      await p.apply(["10.40.0.0/16", "10.41.0.0/16"], { previous: [], removeRoutes: true });
      expect(await routes(host)).toEqual(expect.arrayContaining(["10.40.0.0/16 via 198.18.9.1 dev h0 proto 83", "10.41.0.0/16 via 198.18.9.1 dev h0 proto 83"]));
      await p.apply(["10.41.0.0/16"], { previous: p.applied(), removeRoutes: true });
      const table = await routes(host);
      expect(table.some((line) => line.startsWith("10.40.0.0/16"))).toBe(false);
      expect(table).toContain("10.41.0.0/16 via 198.18.9.1 dev h0 proto 83");
    });

    it("finds its own routes again after a restart: a standby withdraws them, and only them", async () => {
      const before = createKernelRouteProvider({ device: "h0", via: "198.18.9.1" }, inNetns(host));
      await before.apply(["10.43.0.0/16", "10.44.0.5/32"], { previous: [], removeRoutes: false });
      // The operator's own route to a remote subnet, same next hop: not ours.
      await sandbox.exec(host, ["ip", "route", "replace", "10.45.0.0/16", "via", "198.18.9.1", "dev", "h0"]);
      const restarted = createKernelRouteProvider({ device: "h0", via: "198.18.9.1" }, inNetns(host));
      expect(restarted.table).toBe("own");
      await restarted.apply([], { previous: [], removeRoutes: true });
      const table = await routes(host);
      expect(table.some((line) => line.startsWith("10.43.0.0/16") || line.startsWith("10.44.0.5"))).toBe(false);
      expect(table).toContain("10.45.0.0/16 via 198.18.9.1 dev h0");
      expect(restarted.applied()).toEqual([]);
    });

    it("inPlace notices a route someone deleted or moved; apply puts it back", async () => {
      const p = createKernelRouteProvider({ via: "198.18.9.1" }, inNetns(host));
      await p.apply(["10.46.0.0/16", "10.47.0.0/16"], { previous: [], removeRoutes: false });
      expect(await p.inPlace(["10.46.0.0/16", "10.47.0.0/16"])).toBe(true);
      await sandbox.exec(host, ["ip", "route", "del", "10.46.0.0/16"]);
      expect(await p.inPlace(["10.46.0.0/16", "10.47.0.0/16"])).toBe(false);
      await p.apply(["10.46.0.0/16", "10.47.0.0/16"], { previous: p.applied(), removeRoutes: false });
      expect(await p.inPlace(["10.46.0.0/16", "10.47.0.0/16"])).toBe(true);
      await sandbox.exec(host, ["ip", "route", "replace", "10.47.0.0/16", "dev", "h0"]); // the operator's now
      expect(await p.inPlace(["10.46.0.0/16", "10.47.0.0/16"])).toBe(false);
    });

    it("installs device-only routes", async () => {
      const p = createKernelRouteProvider({ device: "h0" }, inNetns(host));
      await p.apply(["10.42.0.0/16"], { previous: [], removeRoutes: false });
      expect(await routes(host)).toContain("10.42.0.0/16 dev h0 proto 83 scope link");
    });

    it("needs a device or a via address", () => {
      expect(() => createRouteProvider(agentConfigSchema.parse({ provider: "kernel" }), { hostId: "h1" })).toThrow("route provider kernel: set kernel.device or kernel.via in the agent config");
    });
  });
});

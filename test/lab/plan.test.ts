import { describe, expect, it } from "vitest";
import { allHosts, hostById, hostByPrivateAddress, locationPairs, planLab } from "./plan";
import { cidrContains, parseCidr } from "../../agent/contract/net";

describe("planLab", () => {
  it("plans two locations of two hosts, the first preferred, on lab-only addresses", () => {
    const plan = planLab({ prefix: "sl1234" });
    expect(plan.locations.map((l) => l.route)).toEqual(["10.1.0.0/16", "10.2.0.0/16"]);
    expect(plan.locations[0]!.hosts.map((h) => [h.id, h.priority, h.publicAddress, h.privateAddress, h.ns])).toEqual([
      ["site1-a", 2, "198.18.1.11", "10.1.0.11", "sl1234-h1a"],
      ["site1-b", 1, "198.18.1.12", "10.1.0.12", "sl1234-h1b"],
    ]);
    const internet = parseCidr("198.18.0.0/15");
    for (const loc of plan.locations) {
      const site = parseCidr(loc.route);
      for (const h of loc.hosts) {
        expect(cidrContains(internet, h.publicAddress)).toBe(true);
        expect(cidrContains(site, h.privateAddress)).toBe(true);
      }
      expect(cidrContains(site, loc.clientAddress)).toBe(true);
    }
  });

  it("renders a valid topology document with the planned hosts, addresses and timing", () => {
    const plan = planLab({ prefix: "sl1234", locations: 3, backoff: 4, timeout: 3 });
    const link = plan.topology.links[0]!;
    expect(link.locations.map((l) => l.name)).toEqual(["site1", "site2", "site3"]);
    const host = link.locations[2]!.hosts[1]!;
    expect(host).toMatchObject({ id: "site3-b", priority: 1, backoff: 4, timeout: 3, publicAddress: "198.18.3.12", privateAddress: "10.3.0.12" });
    expect(locationPairs(plan)).toHaveLength(6);
    expect(allHosts(plan)).toHaveLength(6);
  });

  it("keeps every namespace name unique and short", () => {
    const plan = planLab({ prefix: "slabcd", locations: 3, hostsPerLocation: 3 });
    const names = [plan.internetNs, plan.stateNs, ...plan.locations.flatMap((l) => [l.routerNs, l.clientNs, ...l.hosts.map((h) => h.ns)])];
    expect(new Set(names).size).toBe(names.length);
    for (const name of names) expect(name.length).toBeLessThanOrEqual(15);
  });

  it("finds hosts by id and by the address a route points at", () => {
    const plan = planLab({ prefix: "sl1234" });
    expect(hostById(plan, "site2-b").publicAddress).toBe("198.18.2.12");
    expect(hostByPrivateAddress(plan.locations[0]!, "10.1.0.12")?.id).toBe("site1-b");
    expect(hostByPrivateAddress(plan.locations[0]!, "10.2.0.12")).toBeUndefined();
    expect(() => hostById(plan, "nope")).toThrow('no host "nope" in the lab');
  });

  it("refuses sizes and prefixes it cannot lay out, naming the option", () => {
    expect(() => planLab({ locations: 4 })).toThrow("locations must be 2 or 3, got 4");
    expect(() => planLab({ hostsPerLocation: 0 })).toThrow("hostsPerLocation must be 1-8, got 0");
    expect(() => planLab({ prefix: "Bad-Prefix" })).toThrow('prefix must be 2-8 lowercase letters or digits, got "Bad-Prefix"');
  });
});

import { describe, expect, it } from "vitest";
import type { NetworkInterfaceInfo } from "node:os";
import { detectAddresses } from "./addresses";

const ROUTES = `Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth1\t0001010A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t00000000\t010012C6\t0003\t0\t0\t0\t00000000\t0\t0\t0
`;

function iface(address: string, family: "IPv4" | "IPv6" = "IPv4"): NetworkInterfaceInfo {
  return { address, family, netmask: "", mac: "00:00:00:00:00:00", internal: false, cidr: null } as NetworkInterfaceInfo;
}

describe("detectAddresses", () => {
  it("takes the default-route interface's IPv4 address; a routable one is also the public address", () => {
    const interfaces = () => ({ eth0: [iface("fe80::1", "IPv6"), iface("198.18.0.10")], eth1: [iface("10.1.0.11")] });
    expect(detectAddresses({}, { routeTable: () => ROUTES, interfaces })).toEqual({ publicAddress: "198.18.0.10", privateAddress: "198.18.0.10" });
  });

  it("a private default-route address is never reported as public (cloud NAT)", () => {
    const interfaces = () => ({ eth0: [iface("10.1.0.11")] });
    expect(detectAddresses({}, { routeTable: () => ROUTES, interfaces })).toEqual({ privateAddress: "10.1.0.11" });
  });

  it("config overrides win; no default route → only the overrides", () => {
    const interfaces = () => ({ eth0: [iface("10.1.0.11")] });
    expect(detectAddresses({ publicAddress: "198.18.5.5" }, { routeTable: () => ROUTES, interfaces })).toEqual({ publicAddress: "198.18.5.5", privateAddress: "10.1.0.11" });
    expect(detectAddresses({ privateAddress: "10.9.9.9" }, { routeTable: () => ROUTES.split("\n").slice(0, 2).join("\n"), interfaces })).toEqual({ privateAddress: "10.9.9.9" });
  });
});

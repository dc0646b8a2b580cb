import { describe, expect, it } from "vitest";
import { cidrContains, cidrProblem, cidrsOverlap, isAddress, parseCidr } from "./net";

describe("addresses and CIDRs", () => {
  it("accepts canonical IPv4 and IPv6 addresses only", () => {
    expect(["10.0.0.1", "198.18.0.1", "::1", "fd00::1"].every(isAddress)).toBe(true);
    expect(["1", "0x0a000001", "10.1", "10.0.0.256", "", "fd00::g"].some(isAddress)).toBe(false);
  });

  it("normalizes CIDRs", () => {
    expect(parseCidr("fd00:0:0::/48").text).toBe("fd00::/48");
    expect(parseCidr("10.0.0.0/8")).toMatchObject({ family: 4, prefix: 8 });
    expect(cidrProblem("0.0.0.0/0")).toBeUndefined();
  });

  it("detects overlap by containment, never across families", () => {
    const a = parseCidr("10.0.0.0/16");
    expect(cidrsOverlap(a, parseCidr("10.0.255.0/24"))).toBe(true);
    expect(cidrsOverlap(parseCidr("10.0.255.0/24"), a)).toBe(true);
    expect(cidrsOverlap(a, parseCidr("10.1.0.0/16"))).toBe(false);
    expect(cidrsOverlap(parseCidr("::/0"), a)).toBe(false);
  });

  it("tells whether an address is inside a network", () => {
    const net = parseCidr("10.1.0.0/16");
    expect(cidrContains(net, "10.1.200.3")).toBe(true);
    expect(cidrContains(net, "10.2.0.1")).toBe(false);
    expect(cidrContains(net, "::1")).toBe(false);
  });
});

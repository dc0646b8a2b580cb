// The host's own addresses for the report: the config overrides win (NAT, several interfaces);
// otherwise the IPv4 address of the interface that carries the default route.
import { readFileSync } from "node:fs";
import { networkInterfaces, type NetworkInterfaceInfo } from "node:os";
import { parseAddress } from "../contract/net";

export interface HostAddresses {
  publicAddress?: string;
  privateAddress?: string;
}

export interface AddressSources {
  /** Contents of /proc/net/route. */
  routeTable?: () => string;
  interfaces?: () => NodeJS.Dict<NetworkInterfaceInfo[]>;
}

export function detectAddresses(overrides: HostAddresses, sources: AddressSources = {}): HostAddresses {
  const detected = defaultRouteAddress(sources);
  const privateAddress = overrides.privateAddress ?? detected;
  // A detected address counts as public only when it is globally routable; behind a cloud NAT the
  // public address is not on any interface and must come from the config (or the topology).
  const publicAddress = overrides.publicAddress ?? (detected && !isPrivateRange(detected) ? detected : undefined);
  return { ...(publicAddress && { publicAddress }), ...(privateAddress && { privateAddress }) };
}

function defaultRouteAddress(sources: AddressSources): string | undefined {
  let table: string;
  try {
    table = (sources.routeTable ?? (() => readFileSync("/proc/net/route", "utf8")))();
  } catch {
    return undefined;
  }
  // Columns: Iface Destination Gateway Flags RefCnt Use Metric Mask …; the default route has destination and mask 0.
  const device = table
    .split("\n")
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .find((cols) => cols[1] === "00000000" && cols[7] === "00000000")?.[0];
  if (!device) return undefined;
  const infos = (sources.interfaces ?? networkInterfaces)()[device] ?? [];
  return infos.find((i) => i.family === "IPv4" && !i.internal)?.address;
}

function isPrivateRange(address: string): boolean {
  const range = parseAddress(address)?.range();
  return range === "private" || range === "carrierGradeNat" || range === "linkLocal" || range === "loopback" || range === "uniqueLocal";
}

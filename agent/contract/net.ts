// Address and CIDR helpers shared by the topology rules, the components and the agent.
import ipaddr from "ipaddr.js";

export type Family = 4 | 6;

export interface Cidr {
  /** The CIDR as written, normalized (`10.0.0.0/16`, `fd00::/8`). */
  text: string;
  family: Family;
  address: ipaddr.IPv4 | ipaddr.IPv6;
  prefix: number;
}

/** Parses an IPv4 or IPv6 address; returns undefined when it is not one. */
export function parseAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  if (!ipaddr.isValid(text)) return undefined;
  // ipaddr.isValid accepts "1", "0x1" and other legacy IPv4 forms; require canonical dotted quads.
  if (!text.includes(":") && !ipaddr.IPv4.isValidFourPartDecimal(text)) return undefined;
  return ipaddr.parse(text);
}

export function isAddress(text: string): boolean {
  return parseAddress(text) !== undefined;
}

/** Why `text` is not a usable network CIDR, or undefined when it is one. */
export function cidrProblem(text: string): string | undefined {
  const [addr, prefixText, extra] = text.split("/");
  if (addr === undefined || prefixText === undefined || extra !== undefined || !/^\d{1,3}$/.test(prefixText)) {
    return `"${text}" is not a CIDR (expected address/prefix, e.g. 10.0.0.0/16)`;
  }
  const address = parseAddress(addr);
  if (!address) return `"${text}" has an invalid address`;
  const prefix = Number(prefixText);
  const max = address.kind() === "ipv4" ? 32 : 128;
  if (prefix > max) return `"${text}" has a prefix longer than /${max}`;
  const network = networkOf(address, prefix);
  if (network.toNormalizedString() !== address.toNormalizedString()) {
    return `"${text}" has host bits set (did you mean ${network.toString()}/${prefix}?)`;
  }
  return undefined;
}

/** Parses a network CIDR; throws with the reason when it is not one. */
export function parseCidr(text: string): Cidr {
  const problem = cidrProblem(text);
  if (problem) throw new Error(problem);
  const [addr, prefixText] = text.split("/") as [string, string];
  const address = ipaddr.parse(addr);
  const prefix = Number(prefixText);
  return { text: `${address.toString()}/${prefix}`, family: address.kind() === "ipv4" ? 4 : 6, address, prefix };
}

/** True when the two networks share at least one address. */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const shorter = a.prefix <= b.prefix ? a : b;
  const longer = shorter === a ? b : a;
  return longer.address.match(shorter.address, shorter.prefix);
}

/** True when `address` lies inside `cidr`. */
export function cidrContains(cidr: Cidr, address: string): boolean {
  const parsed = parseAddress(address);
  if (!parsed || (parsed.kind() === "ipv4") !== (cidr.family === 4)) return false;
  return parsed.match(cidr.address, cidr.prefix);
}

function networkOf(address: ipaddr.IPv4 | ipaddr.IPv6, prefix: number): ipaddr.IPv4 | ipaddr.IPv6 {
  const bytes = address.toByteArray();
  for (let bit = prefix; bit < bytes.length * 8; bit++) {
    const index = Math.floor(bit / 8);
    bytes[index] = bytes[index]! & ~(0x80 >> bit % 8);
  }
  return ipaddr.fromByteArray(bytes);
}

/** Ranges no host of a link can be reached at: what a report naming one is up to, it is not a host address. */
const UNREACHABLE_RANGES = new Set(["unspecified", "broadcast", "multicast", "linkLocal", "loopback"]);

/** Why a host's reported address cannot be one of its link addresses (loopback, link-local, ...), or undefined. */
export function specialAddressRange(text: string): string | undefined {
  const address = parseAddress(text);
  if (!address) return "not an address";
  const range = address.range();
  return UNREACHABLE_RANGES.has(range) ? range : undefined;
}

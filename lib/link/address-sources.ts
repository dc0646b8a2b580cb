// The public addresses of link hosts as firewall sources of the cloud locations and state services:
// one source per address, as hosts of one location may share one behind a NAT and a cloud refuses
// two identical rules. What is known at construction (plain strings) is merged then, so each source
// can name a resource; an address known only at deployment (a cloud address, an Output) is a source
// of its own, merged or refused once it resolves.
import * as pulumi from "@pulumi/pulumi";
import { parseAddress } from "../../agent/contract/net";
import type { LinkHost } from "./location";

export interface AddressSource {
  /** The hosts behind the address, in the order given. */
  hostIds: string[];
  /** The address when known at construction. */
  known?: string;
  /** The address as an IPv4 /32. */
  cidr: pulumi.Output<string>;
}

/** One source per distinct public address of `hosts` known at construction, in host order. */
export function publicAddressSources(hosts: LinkHost[]): AddressSource[] {
  const byAddress = new Map<string, { hostIds: string[]; known?: string; address: pulumi.Output<string> }>();
  for (const host of hosts) {
    const known = host.known?.publicAddress;
    // Host ids never start with "#": an address known only later never meets a known one here.
    const key = known ?? `#${host.id}`;
    const source = byAddress.get(key);
    if (source) source.hostIds.push(host.id);
    else byAddress.set(key, { hostIds: [host.id], ...(known === undefined ? {} : { known }), address: host.publicAddress });
  }
  return [...byAddress.values()].map(({ address, ...source }) => ({ ...source, cidr: address.apply((a) => ipv4HostCidr(a, source.hostIds[0]!)) }));
}

/**
 * How a resource of its own for `source` is named: after its host while the host has the address
 * alone (so a link of hosts with addresses of their own keeps the names it had), after the address
 * once hosts share it. Each form lists the other as aliases, so a host joining or leaving an
 * address renames the resource in place instead of creating a second identical rule (which AWS
 * refuses) before the old one goes.
 */
export function sourceNaming(source: AddressSource): { key: string; aliases: string[] } {
  if (source.known === undefined) return { key: source.hostIds[0]!, aliases: [] };
  return source.hostIds.length === 1 ? { key: source.hostIds[0]!, aliases: [source.known] } : { key: source.known, aliases: source.hostIds };
}

/**
 * The sources when each gets a resource of its own: one whose address turns out to be another's
 * fails, naming both hosts, rather than leaving the cloud to refuse a duplicate rule halfway.
 */
export function distinctAddressSources(hosts: LinkHost[]): AddressSource[] {
  const sources = publicAddressSources(hosts);
  const all = pulumi.all(sources.map((s) => s.cidr));
  return sources.map((source, i) => ({
    ...source,
    cidr: pulumi.all([source.cidr, all]).apply(([cidr, cidrs]) => {
      const first = cidrs.indexOf(cidr);
      if (first !== i) {
        throw new Error(
          `hosts ${sources[first]!.hostIds[0]} and ${source.hostIds[0]} share the public address ${cidr.slice(0, -3)}, which was not known when the firewall rules were declared: give a shared address as a plain string, not an Output`,
        );
      }
      return cidr;
    }),
  }));
}

/** The sources as the ranges of one rule or prefix list: an address that resolves twice is listed once. */
export function addressRanges(sources: AddressSource[]): pulumi.Output<{ cidr: string; hostIds: string[] }[]> {
  return pulumi.all(sources.map((s) => s.cidr)).apply((cidrs) => {
    const merged = new Map<string, string[]>();
    cidrs.forEach((cidr, i) => merged.set(cidr, [...(merged.get(cidr) ?? []), ...sources[i]!.hostIds]));
    return [...merged].map(([cidr, hostIds]) => ({ cidr, hostIds }));
  });
}

/** What a rule or an entry admitting `hostIds` says (AWS allows at most 255 characters). */
export function describeHosts(hostIds: string[]): string {
  return hostIds.length === 1 ? `link host ${hostIds[0]}` : `link host ${hostIds[0]} and ${hostIds.length - 1} more behind the same address`;
}

/**
 * `address/32`. The cloud hosts and state services have IPv4 addresses only, so an IPv6 peer
 * could not reach them: the Link refuses a plain IPv6 address there; an Output is refused here.
 */
function ipv4HostCidr(address: string, hostId: string): string {
  if (parseAddress(address)?.kind() !== "ipv4") {
    throw new Error(`host ${hostId}: public address "${address}" is not an IPv4 address; cloud locations and the link's own state service reach link hosts over IPv4 only`);
  }
  return `${address}/32`;
}

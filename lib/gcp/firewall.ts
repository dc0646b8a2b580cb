// Ingress firewall rules of GCP link and state hosts, targeted at a network tag. A GCP rule holds
// one address family, and one without sources admits everyone: ranges are split by family, and a
// family without ranges gets no rule.
import type * as gcp from "@pulumi/gcp";
import * as pulumi from "@pulumi/pulumi";
import { parseCidr } from "../../agent/contract/net";
import { addressRanges, publicAddressSources } from "../link/address-sources";
import type { LinkHost } from "../link/location";
import { loadGcp } from "./peer";

export interface IngressRule {
  /** The Pulumi resource name; the GCP name is `${tag}-${suffix}`. */
  resource: string;
  suffix: string;
  description: string;
  allows: { protocol: string; ports?: string[] }[];
}

export interface FirewallTarget {
  network: pulumi.Input<string>;
  project?: string;
  /** The network tag of the hosts the rules admit traffic to. */
  tag: string;
}

/** CIDRs split by address family (`""` for IPv4, `"6"` for IPv6), families without any left out. */
export function cidrsByFamily(cidrs: string[]): [string, string[]][] {
  const families: [string, string[]][] = [
    ["", cidrs.filter((c) => parseCidr(c).family === 4)],
    ["6", cidrs.filter((c) => parseCidr(c).family === 6)],
  ];
  return families.filter(([, list]) => list.length > 0);
}

/** An ingress rule from `sources` (never empty: the caller skips a rule without sources). */
export function ingressFirewall(target: FirewallTarget, rule: IngressRule, sources: pulumi.Input<pulumi.Input<string>[]>, opts: pulumi.CustomResourceOptions): gcp.compute.Firewall {
  const gcp = loadGcp("GcpLocation");
  return new gcp.compute.Firewall(
    rule.resource,
    {
      name: `${target.tag}-${rule.suffix}`,
      project: target.project,
      network: target.network,
      direction: "INGRESS",
      allows: rule.allows,
      sourceRanges: sources,
      targetTags: [target.tag],
      description: rule.description,
    },
    // Explicitly named: the old rule must go before its replacement exists.
    { ...opts, deleteBeforeReplace: true },
  );
}

/** Addresses of cloud hosts (IPv4) as /32 sources. */
export function hostSources(addresses: pulumi.Output<string>[]): pulumi.Output<string>[] {
  return addresses.map((a) => a.apply((ip) => `${ip}/32`));
}

/** The public addresses of link hosts as the sources of one rule, each address once. */
export function publicAddressRanges(hosts: LinkHost[]): pulumi.Output<string[]> {
  return addressRanges(publicAddressSources(hosts)).apply((ranges) => ranges.map((r) => r.cidr));
}

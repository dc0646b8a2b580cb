// Security group rules as separate resources, one source each (a CIDR or a managed prefix list), so
// a change of sources adds or removes exactly the rules it concerns.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { parseCidr } from "../../agent/contract/net";

/** The ports link hosts need between each other, and nothing else from the internet. */
export const LINK_PORTS = [
  { label: "ike", protocol: "udp", port: 500 },
  { label: "natt", protocol: "udp", port: 4500 },
  { label: "check", protocol: "tcp", port: 9790 },
] as const;

/** Where a rule admits traffic from (ingress) or to (egress): a CIDR, or a managed prefix list. */
export type RulePeer =
  /** A plain CIDR (its family picks IPv4 or IPv6) or an Output of an IPv4 CIDR. */
  | { cidr: string | pulumi.Output<string> }
  | { prefixListId: pulumi.Input<string> };

export type RuleSpec = RulePeer & {
  protocol: "tcp" | "udp" | "all";
  /** Absent for `all`. */
  port?: number;
  description: string;
};

/** An IPv4 address as a /32. */
export function hostCidr(address: pulumi.Output<string>): pulumi.Output<string> {
  return address.apply((a) => `${a}/32`);
}

function peerArgs(peer: RulePeer) {
  if ("prefixListId" in peer) return { prefixListId: peer.prefixListId };
  const ipv6 = typeof peer.cidr === "string" && parseCidr(peer.cidr).family === 6;
  return ipv6 ? { cidrIpv6: peer.cidr } : { cidrIpv4: peer.cidr };
}

function ruleArgs(securityGroupId: pulumi.Input<string>, rule: RuleSpec) {
  return {
    securityGroupId,
    ipProtocol: rule.protocol === "all" ? "-1" : rule.protocol,
    ...(rule.protocol === "all" ? {} : { fromPort: rule.port, toPort: rule.port }),
    ...peerArgs(rule),
    description: rule.description,
  };
}

export function ingressRule(name: string, securityGroupId: pulumi.Input<string>, rule: RuleSpec, opts: pulumi.CustomResourceOptions) {
  return new aws.vpc.SecurityGroupIngressRule(name, ruleArgs(securityGroupId, rule), opts);
}

export function egressRule(name: string, securityGroupId: pulumi.Input<string>, rule: RuleSpec, opts: pulumi.CustomResourceOptions) {
  return new aws.vpc.SecurityGroupEgressRule(name, ruleArgs(securityGroupId, rule), opts);
}

/** A resource-name-safe form of a CIDR (`10.1.0.0/16` → `10.1.0.0-16`). */
export function cidrSlug(cidr: string): string {
  return cidr.replace(/[/:]/g, "-");
}

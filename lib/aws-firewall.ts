// Security group rules as separate resources, one source each, so a peer joining or leaving the link
// adds or removes exactly its own rules.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { parseCidr } from "./net";

/** The ports link hosts need between each other, and nothing else from the internet. */
export const LINK_PORTS = [
  { label: "ike", protocol: "udp", port: 500 },
  { label: "natt", protocol: "udp", port: 4500 },
  { label: "check", protocol: "tcp", port: 9790 },
] as const;

export interface RuleSpec {
  protocol: "tcp" | "udp" | "all";
  /** Absent for `all`. */
  port?: number;
  /** A plain CIDR (its family picks IPv4 or IPv6) or an Output of an IPv4 CIDR. */
  cidr: string | pulumi.Output<string>;
  description: string;
}

/** An IPv4 address as a /32. */
export function hostCidr(address: pulumi.Output<string>): pulumi.Output<string> {
  return address.apply((a) => `${a}/32`);
}

function ruleArgs(securityGroupId: pulumi.Input<string>, rule: RuleSpec) {
  const ipv6 = typeof rule.cidr === "string" && parseCidr(rule.cidr).family === 6;
  return {
    securityGroupId,
    ipProtocol: rule.protocol === "all" ? "-1" : rule.protocol,
    ...(rule.protocol === "all" ? {} : { fromPort: rule.port, toPort: rule.port }),
    ...(ipv6 ? { cidrIpv6: rule.cidr } : { cidrIpv4: rule.cidr }),
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

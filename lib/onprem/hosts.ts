// Hosts that already exist (offices, data centers): given by address, not created. Shared by
// SshLocation and ManualLocation.
import * as pulumi from "@pulumi/pulumi";
import { parseAddress } from "../../agent/contract/net";
import type { LinkHost } from "../link/location";
import { hostId, hostSpecs, type KnownAddresses, type LocationSpec } from "../link/args";

export interface ExistingHostArgs {
  /** Host name, unique in the location (1-63 of a-z 0-9 -). */
  name: string;
  /**
   * Higher wins the active role.
   * @default 1
   */
  priority?: number;
  /**
   * Seconds without a heartbeat before the host counts as offline.
   * @default 5
   */
  timeout?: number;
  /**
   * Seconds after going offline during which the host may not become active again.
   * @default 10
   */
  backoff?: number;
  /**
   * Where the other locations' hosts reach this one (IKE, host checks). Behind NAT: the router's
   * public address, which forwards UDP 500, UDP 4500 and TCP 9790 to the host.
   */
  publicAddress: pulumi.Input<string>;
  /** The host's address on the site network (host checks between the location's hosts, routes file). */
  privateAddress: pulumi.Input<string>;
}

/** The spec of a location of existing hosts. */
export function existingLocationSpec(name: string, cloud: "ssh" | "manual", args: { routes: string[]; hosts: ExistingHostArgs[] }): LocationSpec {
  return { name, cloud, routes: [...args.routes], hosts: hostSpecs(args).map((h, i) => ({ ...h, known: knownAddresses(args.hosts[i]!) })) };
}

/** The addresses given as plain strings, normalized as the topology writes them (`2001:db8::10`). */
function knownAddresses(host: ExistingHostArgs): KnownAddresses {
  const known = (address: pulumi.Input<string>) => (typeof address === "string" ? parseAddress(address)?.toString() : undefined);
  return { publicAddress: known(host.publicAddress), privateAddress: known(host.privateAddress) };
}

/** The link hosts of a location of existing hosts, in the order of `hosts`. */
export function existingLinkHosts(link: string, spec: LocationSpec, hosts: ExistingHostArgs[]): LinkHost[] {
  return spec.hosts.map((h, i) => ({
    ...h,
    id: hostId(link, spec.name, h.name),
    location: spec.name,
    publicAddress: pulumi.output(hosts[i]!.publicAddress),
    privateAddress: pulumi.output(hosts[i]!.privateAddress),
  }));
}

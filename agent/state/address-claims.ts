// Which reported addresses a host may claim. A host's report fills only the addresses the topology
// leaves open, so a host with a leaked secret must not use it to pull traffic, probes or firewall
// openings toward an address that is not its own.
import type { HostReport } from "../contract/protocol";
import { specialAddressRange } from "../contract/net";
import { effectiveAddresses, type Allowlist, type LinkIndex, type ReportedHost } from "./render";

const FIELDS = ["publicAddress", "privateAddress"] as const;

export interface IgnoredAddress {
  field: (typeof FIELDS)[number];
  address: string;
  reason: string;
}

/**
 * The report with every reported address the host may not claim left out, and why each was:
 * - an address in a range no link host can be reached at (loopback, link-local, multicast,
 *   broadcast, unspecified);
 * - an address another host of the link holds (pinned in the topology, or claimed first by its
 *   report), except that hosts of one location may share a public address (a NAT).
 * Addresses the topology pins for this host are kept as reported: they are never used (the pinned
 * ones win, effectiveAddresses) and show what the agent detected.
 */
export function screenReport(
  index: LinkIndex,
  allow: Allowlist,
  hostId: string,
  report: HostReport,
  reported: (hostId: string) => ReportedHost | undefined,
): { report: HostReport; ignored: IgnoredAddress[] } {
  const self = index.hosts.get(hostId)!;
  const ignored: IgnoredAddress[] = [];
  for (const field of FIELDS) {
    const address = report[field];
    if (address === undefined || self.host[field] !== undefined) continue;
    const special = specialAddressRange(address);
    const holder = special === undefined ? otherHolder(index, allow, hostId, field, address, reported) : undefined;
    if (special !== undefined) ignored.push({ field, address, reason: `${special} address` });
    else if (holder !== undefined) ignored.push({ field, address, reason: `address of host ${holder}` });
  }
  if (ignored.length === 0) return { report, ignored };
  const screened = { ...report };
  for (const { field } of ignored) delete screened[field];
  return { report: screened, ignored };
}

function otherHolder(
  index: LinkIndex,
  allow: Allowlist,
  hostId: string,
  field: IgnoredAddress["field"],
  address: string,
  reported: (hostId: string) => ReportedHost | undefined,
): string | undefined {
  const home = index.hosts.get(hostId)!.location;
  for (const holder of allow.holdersOf(address)) {
    if (holder === hostId) continue;
    const other = index.hosts.get(holder);
    if (!other) continue;
    const sharedNat = field === "publicAddress" && other.location === home && effectiveAddresses(other.host, reported(holder)).publicAddress === address;
    if (!sharedNat) return holder;
  }
  return undefined;
}

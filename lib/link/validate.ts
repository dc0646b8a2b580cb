// The Link's own argument rules: its fields, where its state service runs, and the topology rules
// across its locations (taken from checkTopology, with document paths mapped to argument paths).
import { z } from "zod";
import { parseAddress } from "../../agent/contract/net";
import { definedOnly } from "../../agent/contract/topology";
import { isFingerprint } from "../../agent/contract/uri";
import { AWS_STATE_SETTINGS } from "../aws/validate";
import { GCP_STATE_SETTINGS } from "../gcp/validate";
import { hostId, isDeferred, isRecord, MAX_HOST_ID_LENGTH, topologyIssues, uniqueIssues, withIds, zodIssues, type ArgIssue, type HostSpec, type LocationLike } from "./args";
import { agentPackageSchema } from "../bootstrap/agent-source";
import { adminCidrsSchema, STATE_SETTINGS_COMMON } from "./state-service";

/**
 * The location kinds that can run the link's state service, with the `stateService` settings only
 * they take: one line per kind.
 */
const STATE_HOSTS: Record<string, { kind: string; article: string; settings: Record<string, z.ZodType> }> = {
  aws: { kind: "AWS", article: "an", settings: AWS_STATE_SETTINGS },
  gcp: { kind: "GCP", article: "a", settings: GCP_STATE_SETTINGS },
};
const described = (host: { kind: string; article: string }) => `${host.article} ${host.kind} location`;

// Every kind's settings; the field order is the order problems are reported in.
const ownedStateSchema = z.strictObject({
  location: z.string(),
  instanceType: AWS_STATE_SETTINGS.instanceType,
  ...GCP_STATE_SETTINGS,
  ...STATE_SETTINGS_COMMON,
  ami: AWS_STATE_SETTINGS.ami,
});

const externalStateSchema = z.strictObject({
  url: z.string().refine(isStateUrl, "must be https://host[:port] (no path)"),
  fingerprint: z.custom<unknown>((v) => isDeferred(v) || (typeof v === "string" && isFingerprint(v)), {
    message: "must be the SHA-256 fingerprint of the state service certificate (64 hex digits)",
  }),
  masterKey: z.custom<unknown>((v) => isDeferred(v) || (typeof v === "string" && v.length > 0), { message: "must be the master key (a secret)" }),
});

const linkArgsSchema = z.object({
  locations: z.array(z.custom<LocationLike>((v) => isRecord(v) && isRecord(v.spec), { message: "must be a sitelink location (e.g. an AwsLocation)" })),
  connections: z.unknown().optional(),
  cipher: z.unknown().optional(),
  timing: z.unknown().optional(),
  agentPackage: agentPackageSchema.optional(),
  adminCidrs: adminCidrsSchema.optional(),
  readiness: z
    .strictObject({
      wait: z.boolean().optional(),
      timeoutSeconds: z.int("must be a whole number of seconds").min(1, "must be 1 to 3600 seconds").max(3600, "must be 1 to 3600 seconds").optional(),
    })
    .optional(),
});

/** Checks Link arguments: its own fields, the topology rules across locations, and where the state service runs. */
export function validateLinkArgs(name: string, args: unknown): ArgIssue[] {
  const issues = zodIssues(linkArgsSchema, args);
  if (!isRecord(args)) return issues;
  const locations = (Array.isArray(args.locations) ? args.locations : []).filter((l): l is LocationLike => isRecord(l) && isRecord(l.spec));
  locations.forEach((l, i) => {
    if (l.linkName !== undefined) issues.push({ path: `locations[${i}]`, message: `location "${l.spec.name}" already belongs to link "${l.linkName}"` });
    l.spec.hosts.forEach((h, j) => {
      const id = hostId(name, l.spec.name, h.name);
      if (id.length > MAX_HOST_ID_LENGTH) {
        issues.push({
          path: `locations[${i}].hosts[${j}].name`,
          message: `host id "${id}" is ${id.length} characters; link, location and host names together must fit in ${MAX_HOST_ID_LENGTH}`,
        });
      }
    });
  });
  issues.push(...stateServiceIssues(args.stateService, locations));
  const doc = {
    version: 1,
    links: [
      {
        name,
        locations: locations.map((l) => withIds(name, { ...l.spec, hosts: l.spec.hosts.map(topologyHost) })),
        ...definedOnly({ connections: args.connections, cipher: args.cipher, timing: args.timing }),
      },
    ],
  };
  issues.push(...topologyIssues(doc, "links[0]"), ...ipv6AddressIssues(args, locations));
  return uniqueIssues(issues);
}

/** A host as the topology has it: the addresses known now are checked now (one public address per location). */
function topologyHost({ known, ...host }: HostSpec) {
  return { ...host, ...known };
}

/** The location kinds whose hosts have IPv4 public addresses only (an Elastic IP, a GCP external address). */
const IPV4_ONLY: Record<string, string> = { aws: "AWS", gcp: "GCP" };

/**
 * A host's public address is where IKE peers and the state service see it from: an IPv6 one works
 * only with IPv6 at the other end, so it is refused where the other end has IPv4 only.
 */
function ipv6AddressIssues(args: Record<string, unknown>, locations: LocationLike[]): ArgIssue[] {
  const names = locations.map((l) => l.spec.name);
  const pairs: unknown[] = Array.isArray(args.connections) ? args.connections : names.flatMap((a, i) => names.slice(i + 1).map((b) => [a, b]));
  const peersOf = (name: string) => pairs.flatMap((p) => (Array.isArray(p) && p.length === 2 ? (p[0] === name ? [p[1]] : p[1] === name ? [p[0]] : []) : []));
  const ownState = isRecord(args.stateService) && typeof args.stateService.location === "string" ? args.stateService.location : undefined;
  const issues: ArgIssue[] = [];
  locations.forEach((l, i) => {
    const ipv4Peers = locations.filter((p) => IPV4_ONLY[p.spec.cloud] && peersOf(l.spec.name).includes(p.spec.name));
    l.spec.hosts.forEach((h, j) => {
      const address = h.known?.publicAddress;
      if (address === undefined || parseAddress(address)?.kind() !== "ipv6") return;
      const path = `locations[${i}].hosts[${j}].publicAddress`;
      for (const peer of ipv4Peers) {
        issues.push({ path, message: `${address} is an IPv6 address, but connected location "${peer.spec.name}" (${IPV4_ONLY[peer.spec.cloud]}) has IPv4 addresses only: IKE needs both ends in one address family` });
      }
      if (ownState !== undefined) {
        issues.push({
          path,
          message: `${address} is an IPv6 address, but the link's own state service (in "${ownState}") has an IPv4 address and admits hosts by their public address: give the IPv4 address the host reaches the internet from, or use a state service run elsewhere ({ url, fingerprint, masterKey })`,
        });
      }
    });
  });
  return issues;
}

/** `stateService`: run by this link in one of its locations that can host it, or run elsewhere. */
function stateServiceIssues(state: unknown, locations: LocationLike[]): ArgIssue[] {
  const issues: ArgIssue[] = [];
  if (isRecord(state) && ("location" in state || "url" in state)) {
    const schema = "location" in state ? ownedStateSchema : externalStateSchema;
    issues.push(...zodIssues(schema, state).map((i) => ({ path: `stateService${i.path ? `.${i.path}` : ""}`, message: i.message })));
  } else {
    issues.push({ path: "stateService", message: "must be { location } (run by this link) or { url, fingerprint, masterKey } (run elsewhere)" });
  }
  if (!isRecord(state) || typeof state.location !== "string") return issues;
  const target = locations.find((l) => l.spec.name === state.location);
  const host = target && STATE_HOSTS[target.spec.cloud];
  if (!target) {
    const known = locations.map((l) => l.spec.name).join(", ");
    issues.push({ path: "stateService.location", message: `"${state.location}" is not a location of this link (locations: ${known})` });
  } else if (!host) {
    issues.push({ path: "stateService.location", message: `"${state.location}" is not ${Object.values(STATE_HOSTS).map(described).join(" nor ")}` });
  } else {
    // Settings of another kind would be silently ignored: refuse them.
    for (const other of Object.values(STATE_HOSTS).filter((h) => h !== host)) {
      for (const key of Object.keys(other.settings).filter((k) => state[k] !== undefined && !(k in host.settings))) {
        issues.push({ path: `stateService.${key}`, message: `applies to ${other.kind} locations only; "${state.location}" is ${described(host)}` });
      }
    }
  }
  return issues;
}

/** The `stateService` settings that belong to the kind of location `cloud` (passed on to it). */
export function stateSettingsOf(cloud: string, state: Record<string, unknown>): Record<string, unknown> {
  const keys = Object.keys(STATE_HOSTS[cloud]?.settings ?? {});
  return Object.fromEntries(keys.filter((k) => state[k] !== undefined).map((k) => [k, state[k]]));
}

function isStateUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === "https:" && (url.pathname === "/" || url.pathname === "") && !url.search && !url.username && !url.hash;
  } catch {
    return false;
  }
}

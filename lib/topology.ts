// The topology document: what the Pulumi components render and the state service loads.
// Pure (no Pulumi import) so the agent bundle and the components share one schema.
import { z } from "zod";
import { cidrProblem, cidrsOverlap, isAddress, parseCidr, type Cidr } from "./net";

export const TOPOLOGY_VERSION = 1;

/** IKE proposals the agent may offer (strongSwan syntax), strongest defaults first. */
export const IKE_PROPOSALS = [
  "aes128-sha256-x25519",
  "aes256-sha256-x25519",
  "aes128gcm16-prfsha256-x25519",
  "aes256gcm16-prfsha384-x25519",
  "aes256-sha384-ecp384",
  "aes128-sha256-modp2048",
  "aes256-sha256-modp2048",
] as const;

/** ESP proposals the agent may offer (strongSwan syntax). */
export const ESP_PROPOSALS = [
  "aes128gcm128-x25519",
  "aes256gcm128-x25519",
  "aes128-sha256-x25519",
  "aes256-sha256-x25519",
  "aes256gcm128-ecp384",
  "aes128-sha256-modp2048",
  "aes256-sha256-modp2048",
] as const;

export type IkeProposal = (typeof IKE_PROPOSALS)[number];
export type EspProposal = (typeof ESP_PROPOSALS)[number];

/** Every default of the document, in one place (the README lists them). */
export const DEFAULTS = {
  priority: 1,
  /** Seconds without a heartbeat before a host is offline: the slow, conservative backstop. */
  timeout: 5,
  /** Seconds after going offline during which a returning host may not become active. */
  backoff: 10,
  cipher: { ike: "aes128-sha256-x25519", esp: "aes128gcm128-x25519", force: false },
  timing: {
    /** Seconds between agent reports; also the longest a long-poll is held. */
    heartbeat: 1,
    /** Seconds between host-check probes of the hosts an agent watches. */
    probeInterval: 0.25,
    /** Seconds a probe waits for an answer before counting the target unreachable. */
    probeTimeout: 0.4,
    /** Seconds of missing heartbeats after which another host's failed probe confirms a crash. */
    crashConfirm: 1.2,
  },
} as const;

export const LIMITS = {
  priority: { min: 1, max: 1000 },
  timeout: { min: 1, max: 600 },
  backoff: { min: 0, max: 3600 },
} as const;

const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const HOST_ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,127}$/;

const name = (what: string) =>
  z.string().regex(NAME_PATTERN, `${what} must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'`);

const address = z.string().refine(isAddress, { message: "must be an IPv4 or IPv6 address" });

const cidr = z.string().superRefine((value, ctx) => {
  const problem = cidrProblem(value);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

const seconds = (limits: { min: number; max: number }) => z.number().min(limits.min).max(limits.max);

export const hostSchema = z.strictObject({
  /** Unique across the whole document; the host's identity on the wire and in its secret. */
  id: z.string().regex(HOST_ID_PATTERN, "host id must be 1-128 of a-z 0-9 . _ - starting with a letter or digit"),
  name: name("host name"),
  priority: z.int().min(LIMITS.priority.min).max(LIMITS.priority.max).default(DEFAULTS.priority),
  timeout: seconds(LIMITS.timeout).default(DEFAULTS.timeout),
  backoff: seconds(LIMITS.backoff).default(DEFAULTS.backoff),
  /** Known at deploy time for cloud hosts; otherwise taken from the agent's reports. */
  publicAddress: address.optional(),
  privateAddress: address.optional(),
});

export const locationSchema = z.strictObject({
  name: name("location name"),
  routes: z.array(cidr).min(1, "a location needs at least one route"),
  hosts: z.array(hostSchema).min(1, "a location needs at least one host"),
});

export const cipherSchema = z.strictObject({
  ike: z.enum(IKE_PROPOSALS).default(DEFAULTS.cipher.ike),
  esp: z.enum(ESP_PROPOSALS).default(DEFAULTS.cipher.esp),
  /** Offer only the preferred proposals instead of falling back to strongSwan's defaults. */
  force: z.boolean().default(DEFAULTS.cipher.force),
});

export const timingSchema = z.strictObject({
  heartbeat: z.number().min(0.2).max(30).default(DEFAULTS.timing.heartbeat),
  probeInterval: z.number().min(0.05).max(10).default(DEFAULTS.timing.probeInterval),
  probeTimeout: z.number().min(0.05).max(10).default(DEFAULTS.timing.probeTimeout),
  crashConfirm: z.number().min(0.1).max(60).default(DEFAULTS.timing.crashConfirm),
});

export const linkSchema = z.strictObject({
  name: name("link name"),
  locations: z.array(locationSchema).min(2, "a link needs at least two locations"),
  /** Allowed location pairs; full mesh when absent. */
  connections: z.array(z.tuple([z.string(), z.string()])).optional(),
  cipher: cipherSchema.default({ ...DEFAULTS.cipher }),
  timing: timingSchema.default({ ...DEFAULTS.timing }),
});

export const topologySchema = z.strictObject({
  version: z.literal(TOPOLOGY_VERSION),
  links: z.array(linkSchema).min(1, "the document needs at least one link"),
});

export type Topology = z.output<typeof topologySchema>;
export type TopologyInput = z.input<typeof topologySchema>;
export type Link = z.output<typeof linkSchema>;
export type Location = z.output<typeof locationSchema>;
export type Host = z.output<typeof hostSchema>;
export type Cipher = z.output<typeof cipherSchema>;
export type Timing = z.output<typeof timingSchema>;

export interface TopologyIssue {
  /** Dotted path of the offending field, e.g. `links[0].locations[1].routes[0]`. */
  path: string;
  message: string;
}

/** Thrown with every problem of a document at once. */
export class TopologyError extends Error {
  constructor(readonly issues: TopologyIssue[]) {
    super(`invalid topology:\n${issues.map((i) => `  ${i.path || "(document)"}: ${i.message}`).join("\n")}`);
    this.name = "TopologyError";
  }
}

export function formatPath(path: readonly PropertyKey[]): string {
  return path
    .map((key, i) => (typeof key === "number" ? `[${key}]` : i === 0 ? String(key) : `.${String(key)}`))
    .join("");
}

/** Validates a document and returns it with defaults filled in, or the list of every problem. */
export function checkTopology(input: unknown): { ok: true; topology: Topology } | { ok: false; issues: TopologyIssue[] } {
  const parsed = topologySchema.safeParse(input);
  const issues: TopologyIssue[] = parsed.success
    ? []
    : parsed.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message }));
  // The cross-field rules run on the raw input too, so one pass reports everything.
  issues.push(...crossFieldIssues(input));
  if (issues.length > 0 || !parsed.success) return { ok: false, issues: uniqueIssues(issues) };
  return { ok: true, topology: parsed.data };
}

/** Validates a document; throws a TopologyError listing every problem. */
export function parseTopology(input: unknown): Topology {
  const result = checkTopology(input);
  if (!result.ok) throw new TopologyError(result.issues);
  return result.topology;
}

/** The location pairs of a link that get a tunnel, each pair once, in document order. */
export function connectedPairs(link: Pick<Link, "locations" | "connections">): [string, string][] {
  const names = link.locations.map((l) => l.name);
  if (!link.connections) {
    return names.flatMap((a, i) => names.slice(i + 1).map((b): [string, string] => [a, b]));
  }
  const seen = new Set<string>();
  const pairs: [string, string][] = [];
  for (const [a, b] of link.connections) {
    const key = [a, b].sort().join("\u0000");
    if (seen.has(key)) continue;
    seen.add(key);
    pairs.push([a, b]);
  }
  return pairs;
}

type Raw = Record<string, unknown>;
const isRecord = (v: unknown): v is Raw => typeof v === "object" && v !== null && !Array.isArray(v);
const arrayAt = (v: unknown, key: string): unknown[] => (isRecord(v) && Array.isArray(v[key]) ? v[key] : []);

function crossFieldIssues(input: unknown): TopologyIssue[] {
  const issues: TopologyIssue[] = [];
  const hostIds = new Map<string, string>();
  const linkNames = new Map<string, string>();
  arrayAt(input, "links").forEach((link, li) => {
    const linkPath = `links[${li}]`;
    noteDuplicate(linkNames, isRecord(link) ? link.name : undefined, `${linkPath}.name`, "link name", issues);
    const locationNames = new Map<string, string>();
    const routes: { cidr: Cidr; path: string; location: string; locationIndex: number }[] = [];
    arrayAt(link, "locations").forEach((location, oi) => {
      const locationPath = `${linkPath}.locations[${oi}]`;
      const locationName = isRecord(location) && typeof location.name === "string" ? location.name : `#${oi}`;
      noteDuplicate(locationNames, isRecord(location) ? location.name : undefined, `${locationPath}.name`, "location name", issues);
      const hostNames = new Map<string, string>();
      arrayAt(location, "hosts").forEach((host, hi) => {
        const hostPath = `${locationPath}.hosts[${hi}]`;
        noteDuplicate(hostNames, isRecord(host) ? host.name : undefined, `${hostPath}.name`, "host name in this location", issues);
        noteDuplicate(hostIds, isRecord(host) ? host.id : undefined, `${hostPath}.id`, "host id", issues);
      });
      arrayAt(location, "routes").forEach((route, ri) => {
        if (typeof route !== "string" || cidrProblem(route)) return;
        routes.push({ cidr: parseCidr(route), path: `${locationPath}.routes[${ri}]`, location: locationName, locationIndex: oi });
      });
    });
    routes.forEach((a, i) => {
      for (const b of routes.slice(0, i)) {
        if (!cidrsOverlap(a.cidr, b.cidr)) continue;
        const where = a.locationIndex === b.locationIndex ? "in the same location" : `of location "${b.location}"`;
        issues.push({ path: a.path, message: `${a.cidr.text} overlaps ${b.cidr.text} ${where} (${b.path})` });
      }
    });
    arrayAt(link, "connections").forEach((pair, ci) => {
      if (!Array.isArray(pair)) return;
      pair.forEach((end, ei) => {
        if (typeof end === "string" && !locationNames.has(end)) {
          issues.push({ path: `${linkPath}.connections[${ci}][${ei}]`, message: `unknown location "${end}"` });
        }
      });
      if (pair.length === 2 && pair[0] === pair[1] && typeof pair[0] === "string") {
        issues.push({ path: `${linkPath}.connections[${ci}]`, message: `a location cannot connect to itself ("${pair[0]}")` });
      }
    });
  });
  return issues;
}

function noteDuplicate(seen: Map<string, string>, value: unknown, path: string, what: string, issues: TopologyIssue[]) {
  if (typeof value !== "string") return;
  const first = seen.get(value);
  if (first) issues.push({ path, message: `duplicate ${what} "${value}" (first at ${first})` });
  else seen.set(value, path);
}

/** The issues in order, each (path, message) once. */
export function uniqueIssues<T extends TopologyIssue>(issues: T[]): T[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.path}\u0000${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

// The topology document: what the Pulumi components render and the state service loads.
// Pure (no Pulumi import) so the agent bundle and the components share one schema.
import type ipaddr from "ipaddr.js";
import { z } from "zod";
import { cidrProblem, cidrsOverlap, parseAddress, parseCidr, type Cidr } from "./net";

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
  /** The `standard` timing preset (TIMING_PRESETS), with the crashConfirm it implies. */
  timing: {
    /** Seconds between agent reports; also the longest a long-poll is held. */
    heartbeat: 0.5,
    /** Seconds between host-check probes of the hosts an agent watches. */
    probeInterval: 0.25,
    /** Seconds a probe waits for an answer before counting the target unreachable. */
    probeTimeout: 0.4,
    /**
     * Seconds of missing heartbeats after which another host's failed probes confirm a crash. When
     * absent, defaultCrashConfirm(): heartbeat + CRASH_CONFIRM_MARGIN.default, since a healthy host's
     * poll arrives up to one round trip and one agent apply after the heartbeat period, and the margin
     * must cover a cross-region round trip and a busy agent; never less than two failed probes take.
     */
    crashConfirm: 1.05,
  },
} as const;

/**
 * Named timing sets (`timing.preset`); fields given beside a preset override it.
 * - standard: safe across regions and on busy hosts (probe timeout 0.4 s covers a long round trip).
 * - fast: for hosts close to each other (one region, low jitter): probes every 50 ms that give up
 *   after 100 ms, so the standby and the peers agree on a dead host within about 0.2 s. It keeps the
 *   standard margin on missing heartbeats (a busy but live host is not failed over any sooner); it
 *   costs each agent 20 probes per second per watched host, and the state service twice the polls.
 */
export const TIMING_PRESETS = {
  standard: { heartbeat: DEFAULTS.timing.heartbeat, probeInterval: 0.25, probeTimeout: 0.4 },
  fast: { heartbeat: 0.25, probeInterval: 0.04, probeTimeout: 0.08 },
} as const;

export type TimingPreset = keyof typeof TIMING_PRESETS;

export function isTimingPreset(value: unknown): value is TimingPreset {
  return typeof value === "string" && Object.hasOwn(TIMING_PRESETS, value);
}

export const LIMITS = {
  priority: { min: 1, max: 1000 },
  timeout: { min: 1, max: 600 },
  backoff: { min: 0, max: 3600 },
  heartbeat: { min: 0.2, max: 30 },
  probeInterval: { min: 0.02, max: 10 },
  probeTimeout: { min: 0.02, max: 10 },
  crashConfirm: { min: 0.1, max: 60 },
} as const;

/** Seconds rounded to the millisecond (0.2 + 0.25 is not 0.45 in floating point). */
const ms = (seconds: number) => Math.round(seconds * 1000) / 1000;

/** How much longer than the heartbeat crashConfirm is: by default, and at least (seconds). */
export const CRASH_CONFIRM_MARGIN = { default: 0.5, min: 0.25 } as const;

/** Consecutive failed probes after which a host-check target counts as down (crash and partition rules). */
export const DOWN_AFTER_FAILURES = 2;

export const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const HOST_ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,127}$/;

const name = (what: string) =>
  z.string().regex(NAME_PATTERN, `${what} must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'`);

/** A canonical dotted-quad IPv4 address: already normalized, checked without parsing (every poll has some). */
const CANONICAL_IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

type Checked = { value: string; problem?: undefined } | { value?: undefined; problem: string };

const UNSPECIFIED = "must not be the unspecified address (0.0.0.0 or ::)";

/** A host address normalized (`fd00::1`), or why `text` cannot be a host's address. */
function checkHostAddress(text: string): Checked {
  if (CANONICAL_IPV4.test(text)) {
    return text === "0.0.0.0" ? { problem: UNSPECIFIED } : { value: text };
  }
  const address = parseAddress(text);
  if (!address) return { problem: "must be an IPv4 or IPv6 address" };
  if (text.includes("%")) return { problem: "must be an address without a zone id (%...)" };
  if (address.range() === "unspecified") return { problem: UNSPECIFIED };
  if (address.kind() === "ipv6" && (address as ipaddr.IPv6).isIPv4MappedAddress()) {
    return { problem: `is an IPv4-mapped IPv6 address: write it as IPv4 (${(address as ipaddr.IPv6).toIPv4Address().toString()})` };
  }
  return { value: address.toString() };
}

/** A network CIDR normalized (`10.0.0.0/8` for `10.0.0.0/08`), or why `text` cannot be a route. */
function checkRoute(text: string): Checked {
  const problem = cidrProblem(text);
  if (problem) return { problem };
  const cidr = parseCidr(text);
  const address = cidr.address;
  if (cidr.family === 6 && cidr.prefix >= 96 && (address as ipaddr.IPv6).isIPv4MappedAddress()) {
    return { problem: `"${text}" is an IPv4-mapped IPv6 network: write it as IPv4 (${(address as ipaddr.IPv6).toIPv4Address().toString()}/${cidr.prefix - 96})` };
  }
  return { value: cidr.text };
}

/** A string schema that checks and normalizes in one pass. */
const normalizing = (check: (text: string) => Checked) =>
  z.string().transform((text, ctx) => {
    const checked = check(text);
    if (checked.problem === undefined) return checked.value;
    ctx.issues.push({ code: "custom", message: checked.problem, input: text });
    return z.NEVER;
  });

/** A host address (IPv4 or IPv6, no zone id, not unspecified), normalized (`fd00::1`). */
export const hostAddressSchema = normalizing(checkHostAddress);

/** A network CIDR, normalized (`10.0.0.0/8` for `10.0.0.0/08`), never IPv4-mapped IPv6. */
export const routeSchema = normalizing(checkRoute);

const address = hostAddressSchema;
const cidr = routeSchema;

const seconds = (limits: { min: number; max: number }) => z.number().min(limits.min).max(limits.max);

/** The timing fields as the agents get them (no defaults): same ranges as the topology. */
export const timingFields = {
  heartbeat: seconds(LIMITS.heartbeat),
  probeInterval: seconds(LIMITS.probeInterval),
  probeTimeout: seconds(LIMITS.probeTimeout),
} as const;

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
  /** The TCP port the host answers host checks on; when set, what the host reports is ignored. */
  hostCheckPort: z.int().min(1).max(65535).optional(),
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

export const timingSchema = z
  .strictObject({
    /** A named set of the fields below (TIMING_PRESETS); fields given beside it override it. */
    preset: z.enum(Object.keys(TIMING_PRESETS) as [TimingPreset, ...TimingPreset[]]).optional(),
    heartbeat: timingFields.heartbeat.optional(),
    probeInterval: timingFields.probeInterval.optional(),
    probeTimeout: timingFields.probeTimeout.optional(),
    crashConfirm: seconds(LIMITS.crashConfirm).optional(),
  })
  .transform(({ preset, crashConfirm, ...given }) => {
    const t = { ...TIMING_PRESETS[preset ?? "standard"], ...definedOnly(given) };
    return { ...t, crashConfirm: crashConfirm ?? defaultCrashConfirm(t) };
  });

/** `value` without its undefined fields (so that they do not hide the defaults they are spread over). */
export function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * crashConfirm when the document leaves it out: heartbeat plus the default margin, and never less
 * than two failed probes take (2 × probeTimeout + probeInterval).
 */
export function defaultCrashConfirm(t: { heartbeat: number; probeInterval: number; probeTimeout: number }): number {
  return ms(Math.max(t.heartbeat + CRASH_CONFIRM_MARGIN.default, 2 * t.probeTimeout + t.probeInterval));
}

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
export type TimingInput = z.input<typeof timingSchema>;

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
export const isRecord = (v: unknown): v is Raw => typeof v === "object" && v !== null && !Array.isArray(v);
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
    const publicAddresses = new Map<string, { path: string; locationIndex: number }>();
    arrayAt(link, "locations").forEach((location, oi) => {
      const locationPath = `${linkPath}.locations[${oi}]`;
      const locationName = isRecord(location) && typeof location.name === "string" ? location.name : `#${oi}`;
      noteDuplicate(locationNames, isRecord(location) ? location.name : undefined, `${locationPath}.name`, "location name", issues);
      const hostNames = new Map<string, string>();
      const privateAddresses = new Map<string, string>();
      arrayAt(location, "hosts").forEach((host, hi) => {
        const hostPath = `${locationPath}.hosts[${hi}]`;
        noteDuplicate(hostNames, isRecord(host) ? host.name : undefined, `${hostPath}.name`, "host name in this location", issues);
        noteDuplicate(hostIds, isRecord(host) ? host.id : undefined, `${hostPath}.id`, "host id", issues);
        // Peers tell locations apart by public address (hosts of one location may share one behind a NAT);
        // host checks tell a location's hosts apart by private address.
        const publicAddress = normalizedAddress(isRecord(host) ? host.publicAddress : undefined);
        if (publicAddress !== undefined) {
          const first = publicAddresses.get(publicAddress);
          if (!first) publicAddresses.set(publicAddress, { path: `${hostPath}.publicAddress`, locationIndex: oi });
          else if (first.locationIndex !== oi) {
            issues.push({ path: `${hostPath}.publicAddress`, message: `${publicAddress} is also the public address of a host of another location (${first.path})` });
          }
        }
        noteDuplicate(privateAddresses, normalizedAddress(isRecord(host) ? host.privateAddress : undefined), `${hostPath}.privateAddress`, "private address in this location", issues);
      });
      arrayAt(location, "routes").forEach((route, ri) => {
        if (typeof route !== "string" || checkRoute(route).problem) return;
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
    issues.push(...connectionIssues(link, linkPath, locationNames), ...timingIssues(link, linkPath));
  });
  return issues;
}

function connectionIssues(link: unknown, linkPath: string, locationNames: Map<string, string>): TopologyIssue[] {
  if (!isRecord(link) || !Array.isArray(link.connections)) return [];
  const issues: TopologyIssue[] = [];
  if (link.connections.length === 0) {
    return [{ path: `${linkPath}.connections`, message: "lists no pair: omit connections for a full mesh, or list the pairs that get a tunnel" }];
  }
  const connected = new Set<unknown>();
  link.connections.forEach((pair, ci) => {
    if (!Array.isArray(pair)) return;
    pair.forEach((end, ei) => {
      connected.add(end);
      if (typeof end === "string" && !locationNames.has(end)) {
        issues.push({ path: `${linkPath}.connections[${ci}][${ei}]`, message: `unknown location "${end}"` });
      }
    });
    if (pair.length === 2 && pair[0] === pair[1] && typeof pair[0] === "string") {
      issues.push({ path: `${linkPath}.connections[${ci}]`, message: `a location cannot connect to itself ("${pair[0]}")` });
    }
  });
  for (const [name, path] of locationNames) {
    if (!connected.has(name)) issues.push({ path, message: `location "${name}" is in no connection, so it would get no tunnel (add a pair with it, or remove it)` });
  }
  return issues;
}

/**
 * The rules between timing fields that keep failover possible. Each rule is checked only when
 * the fields it compares are numbers in range (otherwise the schema already names them).
 * - a host's timeout ≥ 2 × heartbeat: a long-poll is held for up to a heartbeat, so a host's polls arrive
 *   up to one heartbeat (plus a round trip) apart;
 * - crashConfirm ≥ heartbeat + CRASH_CONFIRM_MARGIN.min: a healthy host's next poll may be that late;
 * - a host's timeout > crashConfirm: the timeout is the slow backstop behind crash confirmation;
 * - 2 × probeTimeout + probeInterval ≤ crashConfirm: the two failed probes that confirm a crash fit in it.
 * A probe timeout longer than the probe interval is fine: an agent starts a probe of each target every
 * interval, whether or not the last one has answered (a few at a time at most).
 */
function timingIssues(link: unknown, linkPath: string): TopologyIssue[] {
  if (!isRecord(link)) return [];
  const raw = isRecord(link.timing) ? link.timing : {};
  const preset = TIMING_PRESETS[isTimingPreset(raw.preset) ? raw.preset : "standard"];
  const field = (name: keyof typeof DEFAULTS.timing, fallback: number | undefined): number | undefined => {
    const value = raw[name] === undefined ? fallback : raw[name];
    const limits = LIMITS[name];
    return typeof value === "number" && value >= limits.min && value <= limits.max ? value : undefined;
  };
  const heartbeat = field("heartbeat", preset.heartbeat);
  const probeInterval = field("probeInterval", preset.probeInterval);
  const probeTimeout = field("probeTimeout", preset.probeTimeout);
  const crashConfirm = field(
    "crashConfirm",
    heartbeat === undefined || probeInterval === undefined || probeTimeout === undefined ? undefined : defaultCrashConfirm({ heartbeat, probeInterval, probeTimeout }),
  );
  const at = (name: string) => `${linkPath}.timing.${name}`;
  const issues: TopologyIssue[] = [];
  if (heartbeat !== undefined && crashConfirm !== undefined && crashConfirm < heartbeat + CRASH_CONFIRM_MARGIN.min) {
    issues.push({ path: at("crashConfirm"), message: `${crashConfirm} s must be at least timing.heartbeat + ${CRASH_CONFIRM_MARGIN.min} s (${ms(heartbeat + CRASH_CONFIRM_MARGIN.min)} s): a healthy host's poll may arrive that late` });
  }
  if (probeTimeout !== undefined && probeInterval !== undefined && crashConfirm !== undefined && 2 * probeTimeout + probeInterval > crashConfirm) {
    issues.push({ path: at("probeTimeout"), message: `2 × ${probeTimeout} s + timing.probeInterval (${probeInterval} s) must not exceed timing.crashConfirm (${crashConfirm} s): the two failed probes that confirm a crash must fit in it` });
  }
  arrayAt(link, "locations").forEach((location, oi) => {
    arrayAt(location, "hosts").forEach((host, hi) => {
      const rawTimeout = isRecord(host) && host.timeout !== undefined ? host.timeout : DEFAULTS.timeout;
      if (typeof rawTimeout !== "number" || rawTimeout < LIMITS.timeout.min || rawTimeout > LIMITS.timeout.max) return;
      const path = `${linkPath}.locations[${oi}].hosts[${hi}].timeout`;
      if (heartbeat !== undefined && rawTimeout < 2 * heartbeat) {
        issues.push({ path, message: `${rawTimeout} s must be at least 2 × timing.heartbeat (${ms(2 * heartbeat)} s): polls arrive up to a heartbeat apart` });
      } else if (crashConfirm !== undefined && rawTimeout <= crashConfirm) {
        issues.push({ path, message: `${rawTimeout} s must be longer than timing.crashConfirm (${crashConfirm} s): the timeout is the backstop behind crash confirmation` });
      }
    });
  });
  return issues;
}

function normalizedAddress(value: unknown): string | undefined {
  return typeof value === "string" ? checkHostAddress(value).value : undefined;
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

// What every component's argument check shares: the issue and error types, the host and location
// specs a Link reads, `pulumi.Input` checks, and the topology rules of one location mapped onto
// argument paths. Every check runs before any resource is registered and returns every problem at
// once, each naming the argument field; the topology rules are not repeated here but taken from
// checkTopology (agent/contract/topology.ts).
import { z } from "zod";
import { DEFAULTS, checkTopology, formatPath, isRecord, uniqueIssues, type TopologyInput } from "../../agent/contract/topology";
import { NODE_SOURCES } from "../bootstrap/host";

export { isRecord, uniqueIssues };

export interface ArgIssue {
  /** The offending argument field, e.g. `locations[1].hosts[0].priority`. */
  path: string;
  message: string;
}

/** Thrown by a component constructor with every problem of its arguments. */
export class ArgsError extends Error {
  constructor(
    readonly component: string,
    readonly issues: ArgIssue[],
  ) {
    super(`invalid arguments for ${component}:\n${issues.map((i) => `  ${i.path || "(args)"}: ${i.message}`).join("\n")}`);
    this.name = "ArgsError";
  }
}

/** Throws an ArgsError when there is any issue. */
export function throwIfInvalid(component: string, issues: ArgIssue[]): void {
  if (issues.length > 0) throw new ArgsError(component, issues);
}

/** A host's addresses given as plain strings, normalized: known before anything is deployed. */
export interface KnownAddresses {
  publicAddress?: string;
  privateAddress?: string;
}

/** A host of a location, defaults filled in. */
export interface HostSpec {
  name: string;
  priority: number;
  timeout: number;
  backoff: number;
  /** The addresses known at construction (on-prem hosts); an Output or a cloud-made address is not. */
  known?: KnownAddresses;
}

/** What the Link needs to know about a location to validate and render the topology. */
export interface LocationSpec {
  name: string;
  cloud: "aws" | "gcp" | "ssh" | "manual";
  routes: string[];
  hosts: HostSpec[];
}

/** A location as the Link sees it: its spec, and the link it already joined, if any. */
export interface LocationLike {
  readonly spec: LocationSpec;
  readonly linkName?: string;
}

/** The longest host id the topology accepts. */
export const MAX_HOST_ID_LENGTH = 128;

/** The id of a host, unique across links: `link.location.host`. */
export function hostId(link: string, location: string, host: string): string {
  return `${link}.${location}.${host}`;
}

/** The hosts a location gets when `hosts` is not given. */
export const DEFAULT_HOSTS = [{ name: "a" }] as const;

/** Host args with defaults filled in (only meaningful once validated). */
export function hostSpecs(args: { hosts?: readonly { name: string; priority?: number; timeout?: number; backoff?: number }[] }): HostSpec[] {
  const hosts: readonly { name: string; priority?: number; timeout?: number; backoff?: number }[] = args.hosts ?? DEFAULT_HOSTS;
  return hosts.map((h) => ({
    name: h.name,
    priority: h.priority ?? DEFAULTS.priority,
    timeout: h.timeout ?? DEFAULTS.timeout,
    backoff: h.backoff ?? DEFAULTS.backoff,
  }));
}

/** An Output or a Promise: its value is checked when it resolves, not now. */
export const isDeferred = (v: unknown) =>
  typeof v === "object" && v !== null && (typeof (v as { apply?: unknown }).apply === "function" || typeof (v as { then?: unknown }).then === "function");

/** A pass-through `pulumi.Input<string>`: a string is checked now, an Output or Promise when it resolves. */
export const inputString = (pattern: RegExp | undefined, what: string) =>
  z.custom<unknown>((v) => isDeferred(v) || (typeof v === "string" && (pattern ? pattern.test(v) : v.length > 0)), {
    message: `must be ${what}`,
  });

/** `nodeSource` of the cloud locations. */
export const nodeSource = z.enum(NODE_SOURCES);

/** The topology rules of one location (routes, hosts), on its own. */
export function locationTopologyIssues(name: string, args: unknown): ArgIssue[] {
  const location = { name, routes: isRecord(args) ? args.routes : undefined, hosts: hostsOf(args) };
  // A one-location document: keep only the issues of this location (the link-level "two
  // locations" rule is the Link's), and drop host ids, which this library derives from names.
  const doc = { version: 1, links: [{ name: "x", locations: [withIds("x", location)] }] };
  return topologyIssues(doc, "links[0].locations[0]");
}

function hostsOf(args: unknown): unknown {
  return isRecord(args) && args.hosts !== undefined ? args.hosts : DEFAULT_HOSTS;
}

/** The location as a topology location, host ids derived from names. */
export function withIds(link: string, location: { name: string; routes: unknown; hosts: unknown }) {
  const hosts = Array.isArray(location.hosts)
    ? location.hosts.map((h) => (isRecord(h) && typeof h.name === "string" ? { id: hostId(link, location.name, h.name), ...h } : h))
    : location.hosts;
  return { name: location.name, routes: location.routes, hosts };
}

/** The issues of `doc` under `prefix`, with paths (also those quoted in messages) relative to it. */
export function topologyIssues(doc: unknown, prefix: string): ArgIssue[] {
  const result = checkTopology(doc as TopologyInput);
  if (result.ok) return [];
  return result.issues.flatMap((issue) => {
    // Host ids are derived from names: a bad or duplicate id is already reported on the name.
    if (/\.hosts\[\d+\]\.id$/.test(issue.path) || !issue.path.startsWith(`${prefix}.`)) return [];
    return [{ path: issue.path.slice(prefix.length + 1), message: issue.message.replaceAll(`${prefix}.`, "") }];
  });
}

export function zodIssues(schema: z.ZodType, value: unknown): ArgIssue[] {
  const parsed = schema.safeParse(value);
  if (parsed.success) return [];
  return parsed.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message }));
}

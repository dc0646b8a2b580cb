// Pure validators of the components' arguments. They run before any resource is registered and
// return every problem at once, each naming the argument field; the topology rules themselves are
// not repeated here but taken from checkTopology (lib/topology.ts) with its paths mapped to args.
import { z } from "zod";
import { normalizeFingerprint } from "../../agent/contract/uri";
import { NODE_SOURCES } from "../bootstrap/bootstrap";
import { cidrProblem } from "../../agent/contract/net";
import { DEFAULTS, checkTopology, uniqueIssues, type TopologyInput } from "../../agent/contract/topology";

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

/** A host of a location, defaults filled in. */
export interface HostSpec {
  name: string;
  priority: number;
  timeout: number;
  backoff: number;
}

/** What the Link needs to know about a location to validate and render the topology. */
export interface LocationSpec {
  name: string;
  cloud: "aws" | "gcp" | "ssh" | "manual";
  routes: string[];
  hosts: HostSpec[];
}

/** The longest host id the topology accepts. */
export const MAX_HOST_ID_LENGTH = 128;

/** The id of a host, unique across links: `link.location.host`. */
export function hostId(link: string, location: string, host: string): string {
  return `${link}.${location}.${host}`;
}

// AWS resource ids: a prefix and 8 or 17 hex digits.
const awsId = (prefix: string) => new RegExp(`^${prefix}-([0-9a-f]{8}|[0-9a-f]{17})$`);
export const AWS_ID_PATTERNS = {
  vpc: awsId("vpc"),
  subnet: awsId("subnet"),
  routeTable: awsId("rtb"),
  ami: awsId("ami"),
} as const;

const isDeferred = (v: unknown) =>
  typeof v === "object" && v !== null && (typeof (v as { apply?: unknown }).apply === "function" || typeof (v as { then?: unknown }).then === "function");

/** A pass-through `pulumi.Input<string>`: a string is checked now, an Output or Promise when it resolves. */
export const inputString = (pattern: RegExp | undefined, what: string) =>
  z.custom<unknown>((v) => isDeferred(v) || (typeof v === "string" && (pattern ? pattern.test(v) : v.length > 0)), {
    message: `must be ${what}`,
  });

const instanceType = z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9-]+$/, "must be an EC2 instance type such as t3.small");
const nodeSource = z.enum(NODE_SOURCES);

/** A key of the record form of `routeTableIds`: it names the routes of its table. */
export const ROUTE_TABLE_KEY = /^[A-Za-z0-9_]{1,63}$/;

const routeTableId = inputString(AWS_ID_PATTERNS.routeTable, "a route table id (rtb-…)");

/**
 * `routeTableIds`: plain ids (each names its own routes), or a record of stable keys to ids of any
 * kind. An Output in the list is refused: its value is not known when the routes get their names.
 */
const routeTableIdsSchema = z.unknown().superRefine((value, ctx) => {
  const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: "custom", path, message });
  let entries: [string | number, unknown][];
  if (Array.isArray(value)) entries = value.map((v, i) => [i, v]);
  else if (isRecord(value) && !isDeferred(value)) entries = Object.entries(value);
  else return issue([], "must be a list of route table ids (rtb-…) or a record of keys to ids ({ private: table.id })");
  if (entries.length === 0) return issue([], "at least one route table id is needed");
  const seen = new Set<unknown>();
  for (const [key, id] of entries) {
    if (typeof key === "string" && !ROUTE_TABLE_KEY.test(key)) issue([key], "must be a key of 1-63 letters, digits or _ (it names the routes of this table)");
    if (typeof key === "number" && isDeferred(id)) {
      issue([key], "an Output cannot name routes (its value is unknown when they are declared): pass routeTableIds as a record of stable keys, e.g. { private: table.id }");
    } else if (!routeTableId.safeParse(id).success) {
      issue([key], "must be a route table id (rtb-…)");
    } else if (typeof id === "string" && seen.has(id)) {
      issue([key], `duplicate route table id "${id}"`);
    }
    seen.add(id);
  }
});

const awsLocationArgsSchema = z.object({
  vpcId: inputString(AWS_ID_PATTERNS.vpc, "a VPC id (vpc-…)"),
  subnetId: inputString(AWS_ID_PATTERNS.subnet, "a subnet id (subnet-…)"),
  routeTableIds: routeTableIdsSchema,
  routes: z.array(z.unknown()),
  hosts: z.array(z.unknown()).optional(),
  instanceType: instanceType.optional(),
  ami: inputString(AWS_ID_PATTERNS.ami, "an AMI id (ami-…)").optional(),
  keyName: inputString(undefined, "a key pair name").optional(),
  nodeSource: nodeSource.optional(),
});

/** The hosts a location gets when `hosts` is not given. */
export const DEFAULT_HOSTS = [{ name: "a" }] as const;

/** Checks AwsLocation arguments on their own (the Link checks what spans locations). */
export function validateAwsLocationArgs(name: string, args: unknown): ArgIssue[] {
  const issues = zodIssues(awsLocationArgsSchema, args);
  issues.push(...locationTopologyIssues(name, args));
  return uniqueIssues(issues);
}

/** The topology rules of one location (routes, hosts), on its own. */
export function locationTopologyIssues(name: string, args: unknown): ArgIssue[] {
  const location = { name, routes: isRecord(args) ? args.routes : undefined, hosts: hostsOf(args) };
  // A one-location document: keep only the issues of this location (the link-level "two
  // locations" rule is the Link's), and drop host ids, which this library derives from names.
  const doc = { version: 1, links: [{ name: "x", locations: [withIds("x", location)] }] };
  return topologyIssues(doc, "links[0].locations[0]");
}

const gcpLabel = "[a-z]([-a-z0-9]{0,61}[a-z0-9])?";
/** A name, or a (partial) self-link of a resource in `collection`. */
const gcpRef = (collection: string) => new RegExp(`^(${gcpLabel}|(https://www\\.googleapis\\.com/compute/v1/)?projects/[^/]+/${collection}/${gcpLabel})$`);
export const GCP_PATTERNS = {
  network: gcpRef("global/networks"),
  subnetwork: gcpRef("regions/[a-z]+-[a-z]+\\d+/subnetworks"),
  zone: /^([a-z]+-[a-z]+\d+)-[a-z]$/,
  project: /^[a-z][-a-z0-9]{4,28}[a-z0-9]$/,
  machineType: new RegExp(`^${gcpLabel}$`),
} as const;

const gcpLocationArgsSchema = z.object({
  network: inputString(GCP_PATTERNS.network, "a VPC network name or self-link (projects/P/global/networks/N)"),
  subnetwork: inputString(GCP_PATTERNS.subnetwork, "a subnetwork name or self-link (projects/P/regions/R/subnetworks/S)"),
  zone: z.string().regex(GCP_PATTERNS.zone, "must be a GCP zone such as us-central1-a"),
  project: z.string().regex(GCP_PATTERNS.project, "must be a GCP project id (6-30 of a-z 0-9 -, starting with a letter)").optional(),
  routes: z.array(z.unknown()),
  hosts: z.array(z.unknown()).optional(),
  machineType: z.string().regex(GCP_PATTERNS.machineType, "must be a GCP machine type such as e2-small").optional(),
  image: inputString(undefined, "an image (self-link, family path or name)").optional(),
  nodeSource: nodeSource.optional(),
});

/** The region of a GCP zone (`us-central1-a` → `us-central1`). */
export function gcpRegionOf(zone: string): string {
  return GCP_PATTERNS.zone.exec(zone)?.[1] ?? zone;
}

/** Checks GcpLocation arguments on their own (the Link checks what spans locations). */
export function validateGcpLocationArgs(name: string, args: unknown): ArgIssue[] {
  const issues = zodIssues(gcpLocationArgsSchema, args);
  if (isRecord(args) && typeof args.subnetwork === "string" && typeof args.zone === "string" && GCP_PATTERNS.zone.test(args.zone)) {
    const region = /\/regions\/([^/]+)\//.exec(args.subnetwork)?.[1];
    if (region && region !== gcpRegionOf(args.zone)) {
      issues.push({ path: "subnetwork", message: `is in region ${region}, but the hosts' zone ${args.zone} is in ${gcpRegionOf(args.zone)}` });
    }
  }
  issues.push(...locationTopologyIssues(name, args));
  return uniqueIssues(issues);
}

/** A location as the Link sees it: its spec, and the link it already joined, if any. */
export interface LocationLike {
  readonly spec: LocationSpec;
  readonly linkName?: string;
}

/** Settings of a state service instance, on its own (StateService, GcpStateService) or through the Link. */
const stateSettings = {
  instanceType: instanceType.optional(),
  machineType: z.string().regex(GCP_PATTERNS.machineType, "must be a GCP machine type such as e2-micro").optional(),
  image: inputString(undefined, "an image (self-link, family path or name)").optional(),
  port: z.int().min(1).max(65535).optional(),
  volumeSize: z.int().min(1, "must be at least 1 GiB").max(16384).optional(),
  ami: inputString(AWS_ID_PATTERNS.ami, "an AMI id (ami-…)").optional(),
};

const ownedStateSchema = z.strictObject({ location: z.string(), ...stateSettings });

const agentPackage = z.string().regex(/^[^\s'"`$\\]+$/, "must be an npm package spec or tarball URL without spaces or quotes");
const adminCidrs = z.array(
  z.string().superRefine((v, ctx) => {
    const problem = cidrProblem(v);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  }),
);

const isLocationOf = (cloud: LocationSpec["cloud"]) => (v: unknown) => isRecord(v) && isRecord(v.spec) && v.spec.cloud === cloud;

/** What StateService and GcpStateService take besides their cloud's own settings. */
const stateServiceCommon = {
  link: z.string().min(1, "must be the link's name"),
  hosts: z.array(z.custom<unknown>((v) => isRecord(v) && typeof v.id === "string", { message: "must be a link host (from a location)" })),
  topology: inputString(undefined, "the topology document (JSON)"),
  agentPackage,
  adminCidrs: adminCidrs.optional(),
  port: stateSettings.port,
  volumeSize: stateSettings.volumeSize,
  topologyDependsOn: z.unknown().optional(),
};

const stateServiceArgsSchema = z.strictObject({
  ...stateServiceCommon,
  location: z.custom<unknown>(isLocationOf("aws"), { message: "must be an AwsLocation" }),
  instanceType: stateSettings.instanceType,
  ami: stateSettings.ami,
});

const gcpStateServiceArgsSchema = z.strictObject({
  ...stateServiceCommon,
  location: z.custom<unknown>(isLocationOf("gcp"), { message: "must be a GcpLocation" }),
  machineType: stateSettings.machineType,
  image: stateSettings.image,
});

/** Checks StateService arguments (the Link passes them; a program may create one itself). */
export function validateStateServiceArgs(args: unknown): ArgIssue[] {
  return zodIssues(stateServiceArgsSchema, args);
}

/** Checks GcpStateService arguments. */
export function validateGcpStateServiceArgs(args: unknown): ArgIssue[] {
  return zodIssues(gcpStateServiceArgsSchema, args);
}

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
  agentPackage: agentPackage.optional(),
  adminCidrs: adminCidrs.optional(),
});

/** Checks Link arguments: its own fields, the topology rules across locations, and AWS specifics. */
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
  const state = args.stateService;
  if (isRecord(state) && ("location" in state || "url" in state)) {
    const schema = "location" in state ? ownedStateSchema : externalStateSchema;
    issues.push(...zodIssues(schema, state).map((i) => ({ path: `stateService${i.path ? `.${i.path}` : ""}`, message: i.message })));
  } else {
    issues.push({ path: "stateService", message: "must be { location } (run by this link) or { url, fingerprint, masterKey } (run elsewhere)" });
  }
  if (isRecord(state) && typeof state.location === "string") {
    const target = locations.find((l) => l.spec.name === state.location);
    if (!target) {
      const known = locations.map((l) => l.spec.name).join(", ");
      issues.push({ path: "stateService.location", message: `"${state.location}" is not a location of this link (locations: ${known})` });
    } else if (target.spec.cloud !== "aws" && target.spec.cloud !== "gcp") {
      issues.push({ path: "stateService.location", message: `"${state.location}" is not an AWS location nor a GCP location` });
    } else {
      // Settings of the other cloud would be silently ignored: refuse them.
      const foreign = target.spec.cloud === "aws" ? ["machineType", "image"] : ["instanceType", "ami"];
      for (const key of foreign.filter((k) => state[k] !== undefined)) {
        issues.push({ path: `stateService.${key}`, message: `applies to ${target.spec.cloud === "aws" ? "GCP" : "AWS"} locations only; "${state.location}" is ${target.spec.cloud === "aws" ? "an AWS" : "a GCP"} location` });
      }
    }
  }
  const doc = {
    version: 1,
    links: [
      {
        name,
        locations: locations.map((l) => withIds(name, l.spec)),
        ...definedOnly({ connections: args.connections, cipher: args.cipher, timing: args.timing }),
      },
    ],
  };
  issues.push(...topologyIssues(doc, "links[0]"));
  return uniqueIssues(issues);
}

/** Throws an ArgsError when there is any issue. */
export function throwIfInvalid(component: string, issues: ArgIssue[]): void {
  if (issues.length > 0) throw new ArgsError(component, issues);
}

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

function isStateUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === "https:" && (url.pathname === "/" || url.pathname === "") && !url.search && !url.username && !url.hash;
  } catch {
    return false;
  }
}

function isFingerprint(text: string): boolean {
  try {
    normalizeFingerprint(text);
    return true;
  } catch {
    return false;
  }
}

function hostsOf(args: unknown): unknown {
  return isRecord(args) && args.hosts !== undefined ? args.hosts : DEFAULT_HOSTS;
}

/** The location as a topology location, host ids derived from names. */
function withIds(link: string, location: { name: string; routes: unknown; hosts: unknown }) {
  const hosts = Array.isArray(location.hosts)
    ? location.hosts.map((h) => (isRecord(h) && typeof h.name === "string" ? { id: hostId(link, location.name, h.name), ...h } : h))
    : location.hosts;
  return { name: location.name, routes: location.routes, hosts };
}

/** The issues of `doc` under `prefix`, with paths (also those quoted in messages) relative to it. */
function topologyIssues(doc: unknown, prefix: string): ArgIssue[] {
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
  return parsed.error.issues.map((i) => ({ path: formatArgPath(i.path), message: i.message }));
}

function formatArgPath(path: readonly PropertyKey[]): string {
  return path.map((key, i) => (typeof key === "number" ? `[${key}]` : i === 0 ? String(key) : `.${String(key)}`)).join("");
}

function definedOnly<T extends Record<string, unknown>>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export { uniqueIssues };

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

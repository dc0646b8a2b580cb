// `gcp`: GCP routes cannot be edited, so the active host creates its own route for each CIDR
// (next hop = this instance, a name derived from CIDR + network + instance) and only once that
// insert is DONE deletes the older sitelink route for the same CIDR that points elsewhere — make
// before break, and never two equal routes for longer than one operation. Routes not created by
// sitelink (name prefix + description marker) are never deleted.
import { createHash } from "node:crypto";
import { Failures } from "./failures";
import { HttpError, request, type Fetch } from "./http";
import type { RouteProvider } from "../types";
import { GCP_ROUTE_PRIORITY, type AgentConfig } from "../../contract/agent-config";
import { missingSection, type ProviderFlags, type RouteProviderDescriptor } from "./descriptor";

export const GCP_METADATA_URL = "http://metadata.google.internal/computeMetadata/v1";
export const GCP_COMPUTE_URL = "https://compute.googleapis.com/compute/v1";
/** The canonical prefix of GCP resource URLs (selfLinks), whatever endpoint served them. */
const SELF_LINK_BASE = "https://www.googleapis.com/compute/v1/";
const NAME_PREFIX = "sitelink-";
const DESCRIPTION_MARKER = "sitelink:";
/** Route operations in flight at once: enough for every CIDR of a site, gentle on the API's rate limits. */
const CONCURRENT_OPERATIONS = 8;
/** operations.wait answers after at most ~2 minutes even when the operation still runs. */
const WAIT_CALL_TIMEOUT_MS = 130_000;

export interface GcpIdentity {
  project: string;
  zone: string;
  instance: string;
}

export interface GcpRouteProviderOptions {
  /** Network name or self-link. */
  network: string;
  /** @default the instance's project from the metadata server */
  project?: string;
  priority: number;
  hostId: string;
  /** @default http://metadata.google.internal/computeMetadata/v1 */
  metadataUrl?: string;
  /** @default https://compute.googleapis.com/compute/v1 */
  computeUrl?: string;
  fetch?: Fetch;
  /** How long one insert/delete operation may take before the apply gives up on it. @default 180000 */
  operationTimeoutMs?: number;
}

interface GcpRoute {
  name: string;
  network?: string;
  destRange?: string;
  nextHopInstance?: string;
  description?: string;
}

interface GcpOperation {
  name: string;
  status?: string;
  error?: { errors?: Array<{ code?: string; message?: string }> };
}

/** `projects/P/…` out of a self-link or partial URL. */
function resourcePath(url: string | undefined): string | undefined {
  return url?.match(/(?:^|\/)(projects\/.+)$/)?.[1];
}

/** Deterministic, valid GCP name (`[a-z]([-a-z0-9]{0,61}[a-z0-9])?`) for this host's route to `cidr`. */
export function gcpRouteName(cidr: string, networkPath: string, instancePath: string): string {
  const hash = createHash("sha256").update(`${networkPath}|${cidr}|${instancePath}`).digest("hex").slice(0, 10);
  const slug = cidr.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 63 - NAME_PREFIX.length - 1 - hash.length);
  return `${NAME_PREFIX}${slug.replace(/-$/, "")}-${hash}`;
}

export class GcpRouteProvider implements RouteProvider {
  readonly name = "gcp" as const;
  readonly table = "shared" as const;
  private identity: GcpIdentity | undefined;
  private token: { value: string; expires: number } | undefined;
  private current = new Set<string>();
  private pendingRemoval = new Set<string>();
  private readonly fetch: Fetch;
  private readonly metadataUrl: string;
  private readonly computeUrl: string;

  constructor(private readonly options: GcpRouteProviderOptions) {
    this.fetch = options.fetch ?? fetch;
    this.metadataUrl = (options.metadataUrl ?? GCP_METADATA_URL).replace(/\/+$/, "");
    this.computeUrl = (options.computeUrl ?? GCP_COMPUTE_URL).replace(/\/+$/, "");
  }

  async apply(cidrs: string[], opts: { previous: string[]; removeRoutes: boolean }): Promise<void> {
    const failures = new Failures(this.name);
    const desired = failures.validCidrs(cidrs);
    let identity: GcpIdentity;
    let owned: GcpRoute[];
    try {
      identity = await this.readIdentity();
      owned = await this.listSitelinkRoutes(identity.project);
    } catch (error) {
      failures.add("cannot read this instance's identity or the network's routes", error);
      this.current = new Set();
      return failures.throwIfAny();
    }
    const network = this.networkPath(identity.project);
    const instance = `projects/${identity.project}/zones/${identity.zone}/instances/${identity.instance}`;
    // CIDRs are independent, so their operations run side by side (a few seconds each on GCP);
    // within one CIDR it stays make before break: the older routes go only once ours is DONE.
    const pointed = await inBatches(desired, async (cidr) => {
      const mine = gcpRouteName(cidr, network, instance);
      const forCidr = owned.filter((route) => route.destRange === cidr);
      if (!forCidr.some((route) => route.name === mine)) {
        await this.insertRoute(identity.project, { name: mine, network: SELF_LINK_BASE + network, destRange: cidr, priority: this.options.priority, nextHopInstance: SELF_LINK_BASE + instance, description: `${DESCRIPTION_MARKER} ${cidr} via host ${this.options.hostId}` });
      }
      const older = forCidr.filter((old) => old.name !== mine && resourcePath(old.nextHopInstance) !== instance);
      await Promise.all(older.map((old) => this.deleteRoute(identity.project, old.name)));
    });
    const applied = new Set<string>();
    pointed.forEach((outcome, i) => {
      const cidr = desired[i]!;
      if (outcome.status === "fulfilled") applied.add(cidr);
      else failures.add(`cannot point ${cidr} at ${identity.instance} (route ${gcpRouteName(cidr, network, instance)})`, outcome.reason);
    });
    const stale = [...new Set([...opts.previous, ...this.current, ...this.pendingRemoval])].filter((cidr) => !desired.includes(cidr));
    this.pendingRemoval = new Set();
    if (opts.removeRoutes) {
      const own = stale.filter((cidr) => owned.some((route) => route.name === gcpRouteName(cidr, network, instance)));
      const removed = await inBatches(own, (cidr) => this.deleteRoute(identity.project, gcpRouteName(cidr, network, instance)));
      removed.forEach((outcome, i) => {
        if (outcome.status === "fulfilled") return;
        this.pendingRemoval.add(own[i]!);
        failures.add(`cannot delete route ${gcpRouteName(own[i]!, network, instance)} for ${own[i]}`, outcome.reason);
      });
    }
    this.current = applied;
    failures.throwIfAny();
  }

  applied(): string[] {
    return [...this.current];
  }

  /** Whether each CIDR has this host's route and no other sitelink route (one routes list). */
  async inPlace(cidrs: string[]): Promise<boolean> {
    const identity = await this.readIdentity();
    const owned = await this.listSitelinkRoutes(identity.project);
    const network = this.networkPath(identity.project);
    const instance = `projects/${identity.project}/zones/${identity.zone}/instances/${identity.instance}`;
    return cidrs.every((cidr) => {
      const forCidr = owned.filter((route) => route.destRange === cidr);
      return forCidr.length === 1 && forCidr[0]!.name === gcpRouteName(cidr, network, instance);
    });
  }

  private networkPath(project: string): string {
    return resourcePath(this.options.network) ?? `projects/${project}/global/networks/${this.options.network}`;
  }

  private async readIdentity(): Promise<GcpIdentity> {
    if (this.identity) return this.identity;
    const [project, zone, instance] = await Promise.all([
      this.options.project ?? this.metadata("project/project-id"),
      this.metadata("instance/zone").then((zone) => zone.split("/").pop() ?? zone),
      this.metadata("instance/name"),
    ]);
    this.identity = { project, zone, instance };
    return this.identity;
  }

  private async metadata(path: string): Promise<string> {
    return (await request(this.fetch, "GET", `${this.metadataUrl}/${path}`, { headers: { "Metadata-Flavor": "Google" } })).trim();
  }

  /** The instance service account's access token, cached until a minute before it expires. Secret. */
  private async accessToken(): Promise<string> {
    if (this.token && Date.now() < this.token.expires) return this.token.value;
    const body = await this.metadata("instance/service-accounts/default/token");
    let parsed: { access_token?: unknown; expires_in?: unknown };
    try {
      parsed = JSON.parse(body) as typeof parsed;
    } catch {
      throw new Error("the metadata server's token answer is not JSON");
    }
    if (typeof parsed.access_token !== "string" || parsed.access_token === "") throw new Error("the metadata server's token answer has no access_token");
    const lifetime = typeof parsed.expires_in === "number" ? parsed.expires_in : 300;
    this.token = { value: parsed.access_token, expires: Date.now() + Math.max(0, lifetime - 60) * 1000 };
    return this.token.value;
  }

  private async compute<T>(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    const headers: Record<string, string> = { Authorization: `Bearer ${await this.accessToken()}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const text = await request(this.fetch, method, `${this.computeUrl}/${path}`, { headers, body: body === undefined ? undefined : JSON.stringify(body), timeoutMs });
    return (text ? JSON.parse(text) : {}) as T;
  }

  /** Every sitelink-created route on our network (pages followed). */
  private async listSitelinkRoutes(project: string): Promise<GcpRoute[]> {
    const network = this.networkPath(project);
    const out: GcpRoute[] = [];
    let pageToken: string | undefined;
    do {
      const query = new URLSearchParams({ maxResults: "500", ...(pageToken ? { pageToken } : {}) });
      const page = await this.compute<{ items?: GcpRoute[]; nextPageToken?: string }>("GET", `projects/${project}/global/routes?${query}`);
      for (const route of page.items ?? []) {
        const ours = route.name.startsWith(NAME_PREFIX) && (route.description ?? "").startsWith(DESCRIPTION_MARKER);
        if (ours && resourcePath(route.network) === network) out.push(route);
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
    return out;
  }

  private async insertRoute(project: string, route: GcpRoute & { priority: number }): Promise<void> {
    try {
      await this.wait(project, await this.compute<GcpOperation>("POST", `projects/${project}/global/routes`, route));
    } catch (error) {
      if (error instanceof HttpError && error.status === 409) return; // created meanwhile by an earlier, interrupted apply
      throw error;
    }
  }

  private async deleteRoute(project: string, name: string): Promise<void> {
    try {
      await this.wait(project, await this.compute<GcpOperation>("DELETE", `projects/${project}/global/routes/${name}`));
    } catch (error) {
      if (error instanceof HttpError && error.status === 404) return; // already gone
      throw error;
    }
  }

  /** Waits until the global operation is DONE; throws its error if it failed. */
  private async wait(project: string, operation: GcpOperation): Promise<void> {
    const deadline = Date.now() + (this.options.operationTimeoutMs ?? 180_000);
    while (operation.status !== "DONE") {
      if (Date.now() > deadline) throw new Error(`operation ${operation.name} not DONE in time`);
      // The wait call itself blocks until DONE or about two minutes: give it that long.
      const remaining = Math.max(1000, deadline - Date.now());
      operation = await this.compute<GcpOperation>("POST", `projects/${project}/global/operations/${operation.name}/wait`, undefined, Math.min(remaining, WAIT_CALL_TIMEOUT_MS));
    }
    const errors = operation.error?.errors ?? [];
    if (errors.length > 0) throw new Error(`operation ${operation.name} failed: ${errors.map((e) => `${e.code ?? "ERROR"} ${e.message ?? ""}`.trim()).join(", ")}`);
  }
}

/** Runs `task` for every item, CONCURRENT_OPERATIONS at a time; the outcomes in item order. */
async function inBatches<T>(items: T[], task: (item: T) => Promise<void>): Promise<PromiseSettledResult<void>[]> {
  const outcomes: PromiseSettledResult<void>[] = [];
  for (let i = 0; i < items.length; i += CONCURRENT_OPERATIONS) {
    outcomes.push(...(await Promise.allSettled(items.slice(i, i + CONCURRENT_OPERATIONS).map(task))));
  }
  return outcomes;
}

export const gcpRoutes: RouteProviderDescriptor = {
  name: "gcp",
  section: "gcp",
  flags: ["network", "project", "priority"],
  usage: "--network N [--project P] [--priority N]",
  configure(config: AgentConfig, flags: ProviderFlags): AgentConfig {
    const network = flags.get("network") ?? config.gcp?.network;
    if (!network) flags.usage("set-provider gcp needs --network");
    const project = flags.get("project") ?? config.gcp?.project;
    const priorityText = flags.get("priority");
    if (priorityText !== undefined && !/^\d+$/.test(priorityText)) flags.usage(`--priority "${priorityText}" is not a number`);
    const priority = priorityText !== undefined ? Number(priorityText) : (config.gcp?.priority ?? GCP_ROUTE_PRIORITY);
    return { ...config, provider: "gcp", gcp: { network, priority, ...(project && { project }) } };
  },
  create(config, self, deps) {
    if (!config.gcp) throw missingSection("gcp", "gcp", "gcp.network names the VPC network");
    return new GcpRouteProvider({ ...config.gcp, hostId: self.hostId, metadataUrl: deps.gcpMetadataUrl, computeUrl: deps.gcpComputeUrl, fetch: deps.fetch });
  },
};

// `azure`: points the location's route tables at this VM (next hop type VirtualAppliance, its private
// address) through ARM, with the VM's managed identity. One route per CIDR, named after the CIDR
// alone, so a failover PUTs the same route with another next hop: replaced in place, make before
// break. A route of that name whose next hop is not a link host, or another route for the CIDR, is
// someone else's: left alone and reported. Only routes named `sitelink-…` that point here are deleted.
import { isIPv4 } from "node:net";
import type { AgentConfig } from "../../contract/agent-config";
import { parseCidr } from "../../contract/net";
import type { RouteProvider } from "../types";
import { missingSection, type ProviderFlags, type RouteProviderDescriptor } from "./descriptor";
import { Failures, normalizeCidr } from "./failures";
import { CLOUD_RETRY, HttpError, send, withAuthRetries, withRetries, type Fetch, type HttpAnswer, type RetryPolicy } from "./http";

export const AZURE_IMDS_URL = "http://169.254.169.254/metadata";
export const AZURE_ARM_URL = "https://management.azure.com";
const ARM_RESOURCE = "https://management.azure.com/";
const API_VERSION = "2023-09-01";
const NAME_PREFIX = "sitelink-";
/** A token is renewed this long before it expires. */
const TOKEN_MARGIN_MS = 5 * 60_000;

export interface AzureRouteProviderOptions {
  /** Full ARM ids of the location's route tables: the only ones ever touched. */
  routeTables: string[];
  /** This VM's private address (the config's override); @default the first one IMDS reports per family. */
  privateAddress?: string;
  /** @default http://169.254.169.254/metadata */
  imdsUrl?: string;
  /** @default https://management.azure.com */
  armUrl?: string;
  fetch?: Fetch;
  retry?: RetryPolicy;
  now?: () => number;
  /** How long one route PUT/DELETE may run before the apply gives up on it. @default 120000 */
  operationTimeoutMs?: number;
}

interface AzureRoute {
  name: string;
  properties?: { addressPrefix?: string; nextHopType?: string; nextHopIpAddress?: string };
}

/** This VM's private addresses, one per family. */
interface OwnAddresses {
  4?: string;
  6?: string;
}

/** `sitelink-<CIDR>` with `:` → `-` and `/` → `_`: one name per CIDR, valid in Azure (letters, digits, `.-_`, ≤ 80). */
export function azureRouteName(cidr: string): string {
  return NAME_PREFIX + normalizeCidr(cidr).replace(/:/g, "-").replace("/", "_");
}

/** The last part of a route table id, for messages. */
function tableName(id: string): string {
  return id.split("/").pop() ?? id;
}

export class AzureRouteProvider implements RouteProvider {
  readonly name = "azure" as const;
  readonly table = "shared" as const;
  private addresses: OwnAddresses | undefined;
  private token: { value: string; renewAt: number } | undefined;
  private current = new Set<string>();
  private pendingRemoval = new Set<string>();
  private readonly fetch: Fetch;
  private readonly imdsUrl: string;
  private readonly armUrl: string;
  private readonly retry: RetryPolicy;
  private readonly now: () => number;

  constructor(private readonly options: AzureRouteProviderOptions) {
    this.fetch = options.fetch ?? fetch;
    this.imdsUrl = (options.imdsUrl ?? AZURE_IMDS_URL).replace(/\/+$/, "");
    this.armUrl = (options.armUrl ?? AZURE_ARM_URL).replace(/\/+$/, "");
    this.retry = options.retry ?? CLOUD_RETRY;
    this.now = options.now ?? Date.now;
  }

  async apply(cidrs: string[], opts: { previous: string[]; removeRoutes: boolean; linkHosts?: string[] }): Promise<void> {
    const failures = new Failures(this.name);
    const desired = failures.validCidrs(cidrs).map(normalizeCidr);
    let own: OwnAddresses;
    try {
      own = await this.ownAddresses();
    } catch (error) {
      failures.add("cannot read this VM's private address from the instance metadata service", error);
      this.current = new Set();
      return failures.throwIfAny();
    }
    const linkHosts = new Set([...(opts.linkHosts ?? []), own[4], own[6]].filter((a): a is string => a !== undefined));
    const stale = [...new Set([...opts.previous.map(normalizeCidr), ...this.current, ...this.pendingRemoval])].filter((cidr) => !desired.includes(cidr));
    this.pendingRemoval = new Set();
    const applied = new Set(desired);
    for (const table of this.options.routeTables) {
      let routes: AzureRoute[];
      try {
        routes = await this.readRoutes(table);
      } catch (error) {
        desired.forEach((cidr) => applied.delete(cidr));
        if (opts.removeRoutes) stale.forEach((cidr) => this.pendingRemoval.add(cidr));
        failures.add(`cannot read route table ${tableName(table)}`, error);
        continue;
      }
      for (const cidr of desired) {
        try {
          await this.pointHere(table, routes, cidr, own, linkHosts);
        } catch (error) {
          applied.delete(cidr);
          failures.add(`cannot point ${cidr} in ${tableName(table)} at this host`, error);
        }
      }
      if (!opts.removeRoutes) continue;
      for (const cidr of stale) {
        const route = routes.find((r) => r.name === azureRouteName(cidr));
        if (!route || !isOwnHop(route, own)) continue;
        try {
          await this.operation("DELETE", `${table}/routes/${route.name}`);
        } catch (error) {
          if (error instanceof HttpError && error.status === 404) continue;
          this.pendingRemoval.add(cidr);
          failures.add(`cannot delete route ${route.name} from ${tableName(table)}`, error);
        }
      }
    }
    this.current = applied;
    failures.throwIfAny();
  }

  applied(): string[] {
    return [...this.current];
  }

  /** Whether every table has, for each CIDR, our route to this VM and no other route (one GET per table). */
  async inPlace(cidrs: string[]): Promise<boolean> {
    const own = await this.ownAddresses();
    for (const table of this.options.routeTables) {
      const routes = await this.readRoutes(table);
      for (const cidr of cidrs.map(normalizeCidr)) {
        const forCidr = routes.filter((r) => prefixOf(r) === cidr);
        if (forCidr.length !== 1 || forCidr[0]!.name !== azureRouteName(cidr) || forCidr[0]!.properties?.nextHopIpAddress !== hopFor(cidr, own)) return false;
      }
    }
    return true;
  }

  /** PUTs our route for `cidr` unless it already points here; refuses what is not the link's. */
  private async pointHere(table: string, routes: AzureRoute[], cidr: string, own: OwnAddresses, linkHosts: Set<string>): Promise<void> {
    const hop = hopFor(cidr, own);
    if (!hop) throw new Error(`this VM has no private IPv${parseCidr(cidr).family} address`);
    const name = azureRouteName(cidr);
    const other = routes.find((r) => r.name !== name && prefixOf(r) === cidr);
    if (other) throw new Error(`route ${other.name} (not sitelink's) already covers it; left alone`);
    const existing = routes.find((r) => r.name === name);
    if (existing) {
      const props = existing.properties ?? {};
      if (props.nextHopType === "VirtualAppliance" && props.nextHopIpAddress === hop && prefixOf(existing) === cidr) return;
      const target = props.nextHopIpAddress;
      if (props.nextHopType !== "VirtualAppliance" || !target || !linkHosts.has(target)) {
        throw new Error(`route ${name} points at ${target ?? props.nextHopType ?? "nothing"}, not a link host; left alone`);
      }
    }
    await this.operation("PUT", `${table}/routes/${name}`, { properties: { addressPrefix: cidr, nextHopType: "VirtualAppliance", nextHopIpAddress: hop } });
  }

  private async readRoutes(table: string): Promise<AzureRoute[]> {
    const answer = await this.arm("GET", `${this.armUrl}${table}?api-version=${API_VERSION}`);
    const parsed = JSON.parse(answer.text) as { properties?: { routes?: AzureRoute[] } };
    return parsed.properties?.routes ?? [];
  }

  /**
   * A PUT or DELETE, followed to its end: ARM answers 200/201/202 at once and finishes
   * asynchronously; we poll Azure-AsyncOperation until Succeeded, so `applied()` and errors say
   * what Azure actually did (a failed provisioning is reported now, not at the next drift check).
   */
  private async operation(method: "PUT" | "DELETE", path: string, body?: unknown): Promise<void> {
    const answer = await this.arm(method, `${this.armUrl}${path}?api-version=${API_VERSION}`, body);
    const statusUrl = answer.headers.get("azure-asyncoperation");
    if (!statusUrl) return;
    if (new URL(statusUrl).origin !== new URL(this.armUrl).origin) throw new Error(`Azure-AsyncOperation points outside ${this.armUrl}; the token is not sent there`);
    const deadline = this.now() + (this.options.operationTimeoutMs ?? 120_000);
    let wait = answer.headers.get("retry-after");
    for (;;) {
      await this.retry.sleep(Math.min(this.retry.maxMs, wait && /^\d+$/.test(wait) ? Number(wait) * 1000 : 1000));
      const poll = await this.arm("GET", statusUrl);
      const status = JSON.parse(poll.text) as { status?: string; error?: { code?: string; message?: string } };
      if (status.status === "Succeeded") return;
      if (status.status === "Failed" || status.status === "Canceled") {
        throw new Error(`${method} ${path.split("/").pop()} ${status.status}${status.error ? `: ${status.error.code ?? ""} ${status.error.message ?? ""}`.trimEnd() : ""}`);
      }
      if (this.now() > deadline) throw new Error(`${method} ${path.split("/").pop()} still ${status.status ?? "running"} after ${this.options.operationTimeoutMs ?? 120_000} ms`);
      wait = poll.headers.get("retry-after");
    }
  }

  /** An ARM call with the managed identity's token: retried on 429/5xx, and once with a new token on 401. */
  private async arm(method: string, url: string, body?: unknown): Promise<HttpAnswer> {
    const call = async () => {
      const headers: Record<string, string> = { Authorization: `Bearer ${await this.accessToken()}` };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      return send(this.fetch, method, url, { headers, body: body === undefined ? undefined : JSON.stringify(body) });
    };
    return withAuthRetries(this.retry, () => (this.token = undefined), call);
  }

  /** The managed identity's ARM token, renewed five minutes before expires_on. Secret. */
  private async accessToken(): Promise<string> {
    if (this.token && this.now() < this.token.renewAt) return this.token.value;
    const answer = await this.imds(`identity/oauth2/token?api-version=2018-02-01&resource=${ARM_RESOURCE}`);
    const parsed = JSON.parse(answer) as { access_token?: unknown; expires_on?: unknown };
    if (typeof parsed.access_token !== "string" || parsed.access_token === "") throw new Error("the instance metadata service's token answer has no access_token");
    const expiresOn = Number(parsed.expires_on);
    const expires = Number.isFinite(expiresOn) && expiresOn > 0 ? expiresOn * 1000 : this.now() + 10 * 60_000;
    this.token = { value: parsed.access_token, renewAt: expires - TOKEN_MARGIN_MS };
    return this.token.value;
  }

  private async ownAddresses(): Promise<OwnAddresses> {
    if (this.addresses) return this.addresses;
    const override = this.options.privateAddress;
    if (override) return (this.addresses = isIPv4(override) ? { 4: override } : { 6: override });
    const instance = JSON.parse(await this.imds("instance?api-version=2021-02-01")) as {
      network?: { interface?: Array<{ ipv4?: { ipAddress?: Array<{ privateIpAddress?: string }> }; ipv6?: { ipAddress?: Array<{ privateIpAddress?: string }> } }> };
    };
    const nic = instance.network?.interface?.[0];
    const v4 = nic?.ipv4?.ipAddress?.[0]?.privateIpAddress || undefined;
    const v6 = nic?.ipv6?.ipAddress?.[0]?.privateIpAddress || undefined;
    if (!v4 && !v6) throw new Error("the instance metadata names no private address of the first network interface");
    this.addresses = { ...(v4 && { 4: v4 }), ...(v6 && { 6: v6 }) };
    return this.addresses;
  }

  private async imds(path: string): Promise<string> {
    return (await withRetries(this.retry, () => send(this.fetch, "GET", `${this.imdsUrl}/${path}`, { headers: { Metadata: "true" } }))).text;
  }
}

function prefixOf(route: AzureRoute): string | undefined {
  const prefix = route.properties?.addressPrefix;
  return prefix ? normalizeCidr(prefix) : undefined;
}

function hopFor(cidr: string, own: OwnAddresses): string | undefined {
  return own[parseCidr(cidr).family];
}

function isOwnHop(route: AzureRoute, own: OwnAddresses): boolean {
  const target = route.properties?.nextHopIpAddress;
  return route.name.startsWith(NAME_PREFIX) && target !== undefined && (target === own[4] || target === own[6]);
}

export const azureRoutes: RouteProviderDescriptor = {
  name: "azure",
  section: "azure",
  flags: ["route-table"],
  usage: "--route-table /subscriptions/…/routeTables/NAME (repeatable)",
  configure(config: AgentConfig, flags: ProviderFlags): AgentConfig {
    const tables = flags.all("route-table").filter(Boolean);
    if (tables.length === 0 && !config.azure) flags.usage("set-provider azure needs --route-table /subscriptions/…/routeTables/NAME");
    return { ...config, provider: "azure", azure: { routeTables: tables.length ? tables : config.azure!.routeTables } };
  },
  create(config, _self, deps) {
    if (!config.azure) throw missingSection("azure", "azure", "azure.routeTables lists the location's route table ids");
    return new AzureRouteProvider({
      routeTables: config.azure.routeTables,
      privateAddress: config.privateAddress,
      imdsUrl: deps.azureImdsUrl,
      armUrl: deps.azureArmUrl,
      fetch: deps.fetch,
      retry: deps.retry,
    });
  },
};

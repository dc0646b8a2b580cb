// `oracle`: points the location's OCI route tables at this instance's private IP (a rule's
// networkEntityId), authenticated as the instance principal (oracle-signing.ts). OCI replaces a
// table's whole rule list, so every change is a read-modify-write guarded by the table's ETag
// (if-match; on 412 read again). Rules the agent writes say `sitelink <hostId>`: only a rule with that
// marker may be moved here; a rule for the CIDR without it is someone else's, left alone and
// reported. Only marked rules that point here are removed.
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import type { AgentConfig } from "../../contract/agent-config";
import type { RouteProvider } from "../types";
import { missingSection, type ProviderFlags, type RouteProviderDescriptor } from "./descriptor";
import { Failures, normalizeCidr } from "./failures";
import { CLOUD_RETRY, HttpError, send, withAuthRetries, withRetries, type Fetch, type HttpAnswer, type RetryPolicy } from "./http";
import { federationKeyId, newSessionKey, pemBody, signRequest, tokenExpiry } from "./oracle-signing";

export const OCI_IMDS_URL = "http://169.254.169.254/opc/v2";
const API = "/20160918";
const MARKER = "sitelink ";
/** Read-modify-write rounds of one table before the apply gives up (each 412 is another writer). */
const MAX_CONFLICTS = 5;
/** A session token is renewed this long before it expires (tokens live ~20 minutes). */
const TOKEN_MARGIN_MS = 5 * 60_000;

export interface OracleRouteProviderOptions {
  /** The location's route tables: the only ones ever touched. */
  routeTableIds: string[];
  /** @default the instance's region from the metadata service */
  region?: string;
  hostId: string;
  /** The config's private address override: the instance's private IP with this address is the next hop. @default the VNIC's primary one */
  privateAddress?: string;
  /** @default http://169.254.169.254/opc/v2 */
  imdsUrl?: string;
  /** @default https://auth.REGION.REALM-DOMAIN */
  authUrl?: string;
  /** @default https://iaas.REGION.REALM-DOMAIN */
  coreUrl?: string;
  fetch?: Fetch;
  retry?: RetryPolicy;
  now?: () => number;
}

export interface OciRouteRule {
  destination?: string;
  destinationType?: string;
  cidrBlock?: string;
  networkEntityId?: string;
  description?: string;
  routeType?: string;
}

interface Session {
  token: string;
  key: KeyObject;
  renewAt: number;
}

function destinationOf(rule: OciRouteRule): string | undefined {
  if (rule.destinationType !== undefined && rule.destinationType !== "CIDR_BLOCK") return undefined;
  const text = rule.destination ?? rule.cidrBlock;
  return text ? normalizeCidr(text) : undefined;
}

const isSitelinkRule = (rule: OciRouteRule) => (rule.description ?? "").startsWith(MARKER);

/**
 * The table's rules after pointing `desired` here and removing our own rules for `stale`; `changed`
 * false when nothing needs writing. OCI's own (`routeType` LOCAL) rules are not ours to send back.
 */
export function planRules(
  rules: OciRouteRule[],
  change: { desired: string[]; stale: string[]; privateIpId: string; hostId: string },
): { rules: OciRouteRule[]; changed: boolean; refused: Array<[cidr: string, reason: string]> } {
  let next = rules.filter((r) => r.routeType !== "LOCAL").map((r) => ({ ...r }));
  const refused: Array<[string, string]> = [];
  let changed = false;
  for (const cidr of change.desired) {
    const forCidr = next.filter((r) => destinationOf(r) === cidr);
    if (forCidr.some((r) => r.networkEntityId === change.privateIpId)) continue;
    const foreign = forCidr.find((r) => !isSitelinkRule(r));
    if (foreign) {
      refused.push([cidr, `its rule points at ${foreign.networkEntityId ?? "nothing"} and was not written by sitelink; left alone`]);
      continue;
    }
    const [ours, ...extra] = forCidr;
    const rule = { destination: cidr, destinationType: "CIDR_BLOCK", networkEntityId: change.privateIpId, description: `${MARKER}${change.hostId}` };
    next = next.filter((r) => !extra.includes(r)).map((r) => (r === ours ? { ...r, ...rule } : r));
    if (!ours) next.push(rule);
    changed = true;
  }
  for (const cidr of change.stale) {
    const kept = next.filter((r) => !(destinationOf(r) === cidr && isSitelinkRule(r) && r.networkEntityId === change.privateIpId));
    if (kept.length !== next.length) changed = true;
    next = kept;
  }
  return { rules: next, changed, refused };
}

export class OracleRouteProvider implements RouteProvider {
  readonly name = "oracle" as const;
  readonly table = "shared" as const;
  private endpoints: { auth: string; core: string } | undefined;
  private privateIpId: string | undefined;
  private session: Session | undefined;
  private current = new Set<string>();
  private pendingRemoval = new Set<string>();
  private readonly fetch: Fetch;
  private readonly imdsUrl: string;
  private readonly retry: RetryPolicy;
  private readonly now: () => number;

  constructor(private readonly options: OracleRouteProviderOptions) {
    this.fetch = options.fetch ?? fetch;
    this.imdsUrl = (options.imdsUrl ?? OCI_IMDS_URL).replace(/\/+$/, "");
    this.retry = options.retry ?? CLOUD_RETRY;
    this.now = options.now ?? Date.now;
  }

  async apply(cidrs: string[], opts: { previous: string[]; removeRoutes: boolean }): Promise<void> {
    const failures = new Failures(this.name);
    const desired = failures.validCidrs(cidrs).map(normalizeCidr);
    let privateIpId: string;
    try {
      privateIpId = await this.ownPrivateIp();
    } catch (error) {
      failures.add("cannot find this instance's private IP (metadata service, instance principal, privateIps)", error);
      this.current = new Set();
      return failures.throwIfAny();
    }
    const stale = [...new Set([...opts.previous.map(normalizeCidr), ...this.current, ...this.pendingRemoval])].filter((cidr) => !desired.includes(cidr));
    this.pendingRemoval = new Set();
    const applied = new Set(desired);
    for (const table of this.options.routeTableIds) {
      try {
        const refused = await this.updateTable(table, (rules) => planRules(rules, { desired, stale: opts.removeRoutes ? stale : [], privateIpId, hostId: this.options.hostId }));
        for (const [cidr, reason] of refused) {
          applied.delete(cidr);
          failures.add(`cannot point ${cidr} in ${table} at this host`, reason);
        }
      } catch (error) {
        desired.forEach((cidr) => applied.delete(cidr));
        if (opts.removeRoutes) stale.forEach((cidr) => this.pendingRemoval.add(cidr));
        failures.add(`cannot update route table ${table}`, error);
      }
    }
    this.current = applied;
    failures.throwIfAny();
  }

  applied(): string[] {
    return [...this.current];
  }

  /** Whether every table has exactly one rule per CIDR, pointing at this instance's private IP (one GET per table). */
  async inPlace(cidrs: string[]): Promise<boolean> {
    const privateIpId = await this.ownPrivateIp();
    for (const table of this.options.routeTableIds) {
      const { rules } = await this.readTable(table);
      for (const cidr of cidrs.map(normalizeCidr)) {
        const forCidr = rules.filter((r) => destinationOf(r) === cidr);
        if (forCidr.length !== 1 || forCidr[0]!.networkEntityId !== privateIpId) return false;
      }
    }
    return true;
  }

  /** Read, plan, write with if-match; again from the read when another writer came first (412). */
  private async updateTable(table: string, plan: (rules: OciRouteRule[]) => ReturnType<typeof planRules>): Promise<ReturnType<typeof planRules>["refused"]> {
    for (let round = 1; ; round++) {
      const { rules, etag } = await this.readTable(table);
      const planned = plan(rules);
      if (!planned.changed) return planned.refused;
      try {
        await this.oci("PUT", `${API}/routeTables/${table}`, { routeRules: planned.rules }, etag ? { "if-match": etag } : {});
        return planned.refused;
      } catch (error) {
        if (!(error instanceof HttpError && error.status === 412) || round >= MAX_CONFLICTS) throw error;
      }
    }
  }

  private async readTable(table: string): Promise<{ rules: OciRouteRule[]; etag: string | null }> {
    const answer = await this.oci("GET", `${API}/routeTables/${table}`);
    return { rules: (JSON.parse(answer.text) as { routeRules?: OciRouteRule[] }).routeRules ?? [], etag: answer.headers.get("etag") };
  }

  /** The OCID of the private IP rules point at: the VNIC's primary one, or the one with the configured address. */
  private async ownPrivateIp(): Promise<string> {
    if (this.privateIpId) return this.privateIpId;
    const vnics = JSON.parse(await this.imds("vnics/")) as Array<{ vnicId?: string }>;
    const vnicId = vnics[0]?.vnicId;
    if (!vnicId) throw new Error("the metadata service lists no VNIC");
    const ips = JSON.parse((await this.oci("GET", `${API}/privateIps?vnicId=${encodeURIComponent(vnicId)}`)).text) as Array<{ id?: string; ipAddress?: string; isPrimary?: boolean }>;
    const wanted = this.options.privateAddress;
    const ip = ips.find((p) => (wanted ? p.ipAddress === wanted : p.isPrimary));
    if (!ip?.id) throw new Error(`VNIC ${vnicId} has no ${wanted ? `private IP ${wanted}` : "primary private IP"}`);
    this.privateIpId = ip.id;
    return ip.id;
  }

  /** A core API call signed with the session key: retried on 429/5xx, and once with a new session on 401. */
  private async oci(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpAnswer> {
    const { core } = await this.resolveEndpoints();
    const url = `${core}${path}`;
    const text = body === undefined ? undefined : JSON.stringify(body);
    const call = async () => {
      const session = await this.currentSession();
      const signed = signRequest({ method, url, body: text }, `ST$${session.token}`, session.key, { now: new Date(this.now()) });
      return send(this.fetch, method, url, { headers: { ...headers, ...signed }, body: text });
    };
    return withAuthRetries(this.retry, () => (this.session = undefined), call);
  }

  /**
   * The session token and its key, renewed before the token expires. The instance's certificate
   * and key are read afresh each time: OCI rotates them. Secret: never logged.
   */
  private async currentSession(): Promise<Session> {
    if (this.session && this.now() < this.session.renewAt) return this.session;
    const { auth } = await this.resolveEndpoints();
    const [certPem, intermediatePem, keyPem] = await Promise.all([this.imds("identity/cert.pem"), this.imds("identity/intermediate.pem"), this.imds("identity/key.pem")]);
    const certificate = new X509Certificate(certPem);
    const instanceKey = createPrivateKey(keyPem);
    const { publicKey, privateKey } = await newSessionKey();
    const body = JSON.stringify({
      certificate: pemBody(certPem),
      publicKey: pemBody(publicKey.export({ type: "spki", format: "pem" }).toString()),
      intermediateCertificates: [pemBody(intermediatePem)],
    });
    const url = `${auth}/v1/x509`;
    const answer = await withRetries(this.retry, () =>
      send(this.fetch, "POST", url, { headers: signRequest({ method: "POST", url, body }, federationKeyId(certificate), instanceKey, { now: new Date(this.now()), host: false }), body }),
    );
    const token = (JSON.parse(answer.text) as { token?: unknown }).token;
    if (typeof token !== "string" || token === "") throw new Error("the federation endpoint's answer has no token");
    const now = this.now();
    const expires = tokenExpiry(token) ?? now + 10 * 60_000;
    this.session = { token, key: privateKey, renewAt: expires - Math.min(TOKEN_MARGIN_MS, (expires - now) / 2) };
    return this.session;
  }

  private async resolveEndpoints(): Promise<{ auth: string; core: string }> {
    if (this.endpoints) return this.endpoints;
    let { authUrl, coreUrl } = this.options;
    if (!authUrl || !coreUrl) {
      const info = JSON.parse(await this.imds("instance/regionInfo")) as { regionIdentifier?: string; realmDomainComponent?: string };
      const region = this.options.region ?? info.regionIdentifier;
      const domain = info.realmDomainComponent ?? "oraclecloud.com";
      if (!region) throw new Error("the metadata service names no region; set oracle.region");
      authUrl ??= `https://auth.${region}.${domain}`;
      coreUrl ??= `https://iaas.${region}.${domain}`;
    }
    this.endpoints = { auth: authUrl.replace(/\/+$/, ""), core: coreUrl.replace(/\/+$/, "") };
    return this.endpoints;
  }

  private async imds(path: string): Promise<string> {
    return (await withRetries(this.retry, () => send(this.fetch, "GET", `${this.imdsUrl}/${path}`, { headers: { Authorization: "Bearer Oracle" } }))).text;
  }
}

export const oracleRoutes: RouteProviderDescriptor = {
  name: "oracle",
  section: "oracle",
  flags: ["route-table", "region"],
  usage: "--route-table ocid1.routetable.… (repeatable) [--region R]",
  configure(config: AgentConfig, flags: ProviderFlags): AgentConfig {
    const tables = flags.all("route-table").filter(Boolean);
    if (tables.length === 0 && !config.oracle) flags.usage("set-provider oracle needs --route-table ocid1.routetable.…");
    const region = flags.get("region") ?? config.oracle?.region;
    return { ...config, provider: "oracle", oracle: { routeTableIds: tables.length ? tables : config.oracle!.routeTableIds, ...(region && { region }) } };
  },
  create(config, self, deps) {
    if (!config.oracle) throw missingSection("oracle", "oracle", "oracle.routeTableIds lists the location's route tables");
    return new OracleRouteProvider({
      ...config.oracle,
      hostId: self.hostId,
      privateAddress: config.privateAddress,
      imdsUrl: deps.ociImdsUrl,
      authUrl: deps.ociAuthUrl,
      coreUrl: deps.ociCoreUrl,
      fetch: deps.fetch,
      retry: deps.retry,
    });
  },
};

// `aws`: points the location's route tables at this host's network interface. Only the configured
// route tables are ever read or written. Pulumi creates each route (and ignores its target); the
// agent of the active host reads the tables (one DescribeRouteTables), creates a missing route and
// moves an existing one with ReplaceRoute only when it points at a link host's interface: one of
// `aws.linkInterfaceIds` (the location's hosts' interfaces), or, while the config does not list them,
// any network interface. A route to anything else (a gateway, a peering, a NAT or transit gateway,
// another interface when they are listed) is the operator's: refused by name, never written or deleted.
import type { EC2Client, EC2ClientConfig, Route } from "@aws-sdk/client-ec2";
import { parseCidr } from "../../contract/net";
import type { AgentConfig } from "../../contract/agent-config";
import type { RouteProvider } from "../types";
import { missingSection, type ProviderFlags, type RouteProviderDescriptor } from "./descriptor";
import { Failures, normalizeCidr } from "./failures";
import { request, type Fetch } from "./http";

/** Loaded on first use: the AWS SDK costs ~0.5 s of agent start-up, and only the active host needs it. */
const sdk = () => require("@aws-sdk/client-ec2") as typeof import("@aws-sdk/client-ec2");

export const IMDS_ENDPOINT = "http://169.254.169.254";
/**
 * Per attempt (the SDK makes up to 3): an EC2 endpoint that does not connect or answer must fail the
 * call, not hang the apply (the next one would wait behind it forever).
 */
export const EC2_TIMEOUTS_MS = { connection: 3_000, request: 10_000 };

/** An EC2 client with connection and request timeouts. */
export function createEc2Client(config: EC2ClientConfig, timeoutsMs: { connection: number; request: number } = EC2_TIMEOUTS_MS): EC2Client {
  // throwOnRequestTimeout: without it, a request past requestTimeout only logs a warning.
  const requestHandler = { connectionTimeout: timeoutsMs.connection, requestTimeout: timeoutsMs.request, throwOnRequestTimeout: true };
  return new (sdk().EC2Client)({ ...config, requestHandler });
}
const IMDS_TOKEN_TTL_SECONDS = "21600";

export interface AwsIdentity {
  region: string;
  instanceId: string;
  networkInterfaceId: string;
}

/** This instance's region, id and primary network interface, read through IMDSv2. */
export async function readImdsIdentity(endpoint: string = IMDS_ENDPOINT, fetchImpl: Fetch = fetch): Promise<AwsIdentity> {
  const base = endpoint.replace(/\/+$/, "");
  const token = await request(fetchImpl, "PUT", `${base}/latest/api/token`, { headers: { "x-aws-ec2-metadata-token-ttl-seconds": IMDS_TOKEN_TTL_SECONDS } });
  const get = async (path: string) => (await request(fetchImpl, "GET", `${base}/latest/meta-data/${path}`, { headers: { "x-aws-ec2-metadata-token": token } })).trim();
  const [region, instanceId, mac] = await Promise.all([get("placement/region"), get("instance-id"), get("mac")]);
  const networkInterfaceId = await get(`network/interfaces/macs/${mac}/interface-id`);
  if (!/^eni-[0-9a-f]+$/.test(networkInterfaceId)) throw new Error(`instance metadata gave "${networkInterfaceId}" as the network interface id`);
  return { region, instanceId, networkInterfaceId };
}

export interface AwsRouteProviderOptions {
  /** The location's route tables: the only ones ever touched. */
  routeTableIds: string[];
  /** The network interfaces of the location's hosts: the only targets a route is moved away from. @default any network interface */
  linkInterfaceIds?: string[];
  /** @default the instance's region from IMDS */
  region?: string;
  /** @default http://169.254.169.254 */
  imdsEndpoint?: string;
  fetch?: Fetch;
  /** @default a client for the region */
  ec2?: EC2Client;
}

export class AwsRouteProvider implements RouteProvider {
  readonly name = "aws" as const;
  readonly table = "shared" as const;
  private identity: AwsIdentity | undefined;
  private client: EC2Client | undefined;
  private current = new Set<string>();
  private pendingRemoval = new Set<string>();

  constructor(private readonly options: AwsRouteProviderOptions) {}

  async apply(cidrs: string[], opts: { previous: string[]; removeRoutes: boolean }): Promise<void> {
    const failures = new Failures(this.name);
    const desired = failures.validCidrs(cidrs).map(normalizeCidr);
    let ready: { identity: AwsIdentity; ec2: EC2Client };
    try {
      ready = await this.connect();
    } catch (error) {
      failures.add("cannot read this instance's identity from IMDSv2", error);
      this.current = new Set();
      return failures.throwIfAny();
    }
    const { identity, ec2 } = ready;
    const stale = [...new Set([...opts.previous.map(normalizeCidr), ...this.current, ...this.pendingRemoval])].filter((cidr) => !desired.includes(cidr));
    if (desired.length === 0 && !(opts.removeRoutes && stale.length > 0)) {
      this.current = new Set();
      return failures.throwIfAny();
    }
    let tables: Map<string, Route[]>;
    try {
      tables = await this.readTables(ec2);
    } catch (error) {
      stale.forEach((cidr) => this.pendingRemoval.add(cidr));
      this.current = new Set();
      failures.add(`cannot read route tables ${this.options.routeTableIds.join(", ")}`, error);
      return failures.throwIfAny();
    }
    const applied = new Set<string>();
    for (const cidr of desired) {
      let ok = true;
      for (const table of this.options.routeTableIds) {
        try {
          await this.pointHere(ec2, table, tables.get(table) ?? [], cidr, identity.networkInterfaceId);
        } catch (error) {
          ok = false;
          failures.add(`cannot point ${cidr} in ${table} at ${identity.networkInterfaceId}`, error);
        }
      }
      if (ok) applied.add(cidr);
    }
    this.pendingRemoval = new Set();
    if (opts.removeRoutes && stale.length > 0) await this.removeOwn(ec2, tables, stale, identity.networkInterfaceId, failures);
    this.current = applied;
    failures.throwIfAny();
  }

  applied(): string[] {
    return [...this.current];
  }

  /** Whether every CIDR points at this host's interface in every configured table (one DescribeRouteTables). */
  async inPlace(cidrs: string[]): Promise<boolean> {
    const { identity, ec2 } = await this.connect();
    const tables = (await ec2.send(new (sdk().DescribeRouteTablesCommand)({ RouteTableIds: this.options.routeTableIds }))).RouteTables ?? [];
    return this.options.routeTableIds.every((id) => {
      const routes = tables.find((t) => t.RouteTableId === id)?.Routes ?? [];
      return cidrs.every((cidr) => routes.some((r) => routeDestination(r) === normalizeCidr(cidr) && r.NetworkInterfaceId === identity.networkInterfaceId));
    });
  }

  private async connect(): Promise<{ identity: AwsIdentity; ec2: EC2Client }> {
    this.identity ??= await readImdsIdentity(this.options.imdsEndpoint, this.options.fetch);
    this.client ??= this.options.ec2 ?? createEc2Client({ region: this.options.region ?? this.identity.region });
    return { identity: this.identity, ec2: this.client };
  }

  /** The routes of each configured table (a table the API should not have returned is dropped). */
  private async readTables(ec2: EC2Client): Promise<Map<string, Route[]>> {
    const tables = (await ec2.send(new (sdk().DescribeRouteTablesCommand)({ RouteTableIds: this.options.routeTableIds }))).RouteTables ?? [];
    return new Map(tables.filter((t) => t.RouteTableId && this.options.routeTableIds.includes(t.RouteTableId)).map((t) => [t.RouteTableId!, t.Routes ?? []]));
  }

  /** Creates the route, or moves it here from a link host's interface; a route to anything else is refused. */
  private async pointHere(ec2: EC2Client, table: string, routes: Route[], cidr: string, eni: string): Promise<void> {
    const input = { RouteTableId: table, ...destination(cidr), NetworkInterfaceId: eni };
    const route = routes.find((r) => routeDestination(r) === cidr);
    if (!route) {
      await ec2.send(new (sdk().CreateRouteCommand)(input));
      return;
    }
    if (route.NetworkInterfaceId === eni) return;
    if (!this.isLinkTarget(route)) throw new Error(`its target (${routeTarget(route)}) is not a link host's interface; it is left alone`);
    await ec2.send(new (sdk().ReplaceRouteCommand)(input));
  }

  private isLinkTarget(route: Route): boolean {
    const target = route.NetworkInterfaceId;
    if (!target || !/^eni-[0-9a-f]+$/.test(target)) return false;
    return this.options.linkInterfaceIds ? this.options.linkInterfaceIds.includes(target) : true;
  }

  /** Deletes stale CIDRs, but only in routes that point at this host's interface right now. */
  private async removeOwn(ec2: EC2Client, tables: Map<string, Route[]>, stale: string[], eni: string, failures: Failures): Promise<void> {
    for (const [tableId, routes] of tables) {
      for (const cidr of stale) {
        const route = routes.find((r) => routeDestination(r) === cidr);
        if (!route || route.NetworkInterfaceId !== eni) continue;
        try {
          await ec2.send(new (sdk().DeleteRouteCommand)({ RouteTableId: tableId, ...destination(cidr) }));
        } catch (error) {
          if (errorName(error) === "InvalidRoute.NotFound") continue;
          this.pendingRemoval.add(cidr);
          failures.add(`cannot delete ${cidr} from ${tableId}`, error);
        }
      }
    }
  }
}

function destination(cidr: string): { DestinationCidrBlock: string } | { DestinationIpv6CidrBlock: string } {
  return parseCidr(cidr).family === 4 ? { DestinationCidrBlock: cidr } : { DestinationIpv6CidrBlock: cidr };
}

function routeDestination(route: Route): string | undefined {
  const text = route.DestinationCidrBlock ?? route.DestinationIpv6CidrBlock;
  return text ? normalizeCidr(text) : undefined;
}

function errorName(error: unknown): string | undefined {
  return error instanceof Error ? error.name : undefined;
}

/** What a route points at, as AWS names it (one of these is set). */
function routeTarget(route: Route): string {
  const target =
    route.GatewayId ?? route.NatGatewayId ?? route.TransitGatewayId ?? route.VpcPeeringConnectionId ?? route.InstanceId ?? route.NetworkInterfaceId ??
    route.EgressOnlyInternetGatewayId ?? route.CarrierGatewayId ?? route.LocalGatewayId ?? route.CoreNetworkArn;
  return target ?? "unknown";
}

export const awsRoutes: RouteProviderDescriptor = {
  name: "aws",
  section: "aws",
  flags: ["route-table", "region"],
  usage: "--route-table rtb-… (repeatable or comma-separated) [--region R]",
  configure(config: AgentConfig, flags: ProviderFlags): AgentConfig {
    const tables = flags.all("route-table").flatMap((v) => v.split(",")).filter(Boolean);
    if (tables.length === 0 && !config.aws) flags.usage("set-provider aws needs --route-table rtb-…");
    const region = flags.get("region") ?? config.aws?.region;
    const linkInterfaceIds = config.aws?.linkInterfaceIds;
    return { ...config, provider: "aws", aws: { routeTableIds: tables.length ? tables : config.aws!.routeTableIds, ...(region && { region }), ...(linkInterfaceIds && { linkInterfaceIds }) } };
  },
  create(config, _self, deps) {
    if (!config.aws) throw missingSection("aws", "aws", "aws.routeTableIds lists the location's route tables");
    const { routeTableIds, region, linkInterfaceIds } = config.aws;
    return new AwsRouteProvider({ routeTableIds, region, linkInterfaceIds, imdsEndpoint: deps.imdsEndpoint, ec2: deps.ec2, fetch: deps.fetch });
  },
};

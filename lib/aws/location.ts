// A location in an AWS VPC: link hosts (ENI + Elastic IP + instance), their firewall, identities and
// secrets, and the route table entries that send remote routes into the link.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { EC2_ASSUME_ROLE_POLICY, hostPolicy, s3ObjectArn, type AwsAccount } from "./iam";
import { cidrSlug, egressRule, hostCidr, ingressRule, LINK_PORTS } from "./firewall";
import { awsAccountOf, ubuntuAmi } from "./lookup";
import { type NodeSource } from "../bootstrap/host";
import { renderAgentConfig } from "../bootstrap/link-host";
import { renderAwsAgentBootstrap } from "./bootstrap";
import { addressRanges, describeHosts, publicAddressSources } from "../link/address-sources";
import { initialActive, Location, type CloudHostArgs, type LinkContext, type LinkHost } from "../link/location";
import type { StateServiceHandle, StateServiceRequest } from "../link/state-service";
import { AwsStateService } from "./state-service";
import { publishAgentBundle, userAgentSource, type AwsAgentSource } from "./agent-object";
import type { AgentPackage } from "../bootstrap/agent-source";
import { parseCidr } from "../../agent/contract/net";
import { hostId, hostSpecs, throwIfInvalid, type LocationSpec } from "../link/args";
import { validateAwsLocationArgs } from "./validate";

/** A link host of an AWS location. */
export type AwsHostArgs = CloudHostArgs;

export interface AwsLocationArgs {
  /** The VPC of the location (vpc-…). */
  vpcId: pulumi.Input<string>;
  /** A public subnet of that VPC (a route to an internet gateway) for the link hosts (subnet-…). */
  subnetId: pulumi.Input<string>;
  /**
   * Route tables that get an entry for every remote route of the connected locations (rtb-…); the
   * only route tables the hosts may change. Each route is named after its table, never after its
   * position, so adding, removing or reordering tables leaves the routes of the others alone:
   * - a list of plain ids (`["rtb-0a1…", "rtb-0b2…"]`): the id names the routes;
   * - a record of your own stable keys (letters, digits, `_`) when ids are Outputs:
   *   `{ public: publicTable.id, private: privateTable.id }`; the key names the routes, so keep it.
   */
  routeTableIds: string[] | Record<string, pulumi.Input<string>>;
  /** CIDRs of this location reachable through the link. */
  routes: string[];
  /**
   * The link hosts; more than one for failover.
   * @default [{ name: "a" }]
   */
  hosts?: AwsHostArgs[];
  /**
   * Instance type of the hosts.
   * @default "t3.small"
   */
  instanceType?: string;
  /**
   * Image of the hosts (must be Ubuntu 24.04 or compatible: the bootstrap uses apt and systemd).
   * When absent the newest Ubuntu 24.04 LTS image is looked up once; later images do not replace running hosts.
   * @default newest Canonical Ubuntu 24.04 LTS image
   */
  ami?: pulumi.Input<string>;
  /**
   * EC2 key pair for SSH (reachable only from the Link's `adminCidrs`).
   * @default no key pair
   */
  keyName?: pulumi.Input<string>;
  /**
   * Where hosts (and a state service here) get Node.js ≥ 20 when their image has none: `nodesource`
   * adds NodeSource's signed apt repository (Node.js 22); `preinstalled` adds none and stops the
   * bootstrap with a clear error unless the image has it. An image with Node.js ≥ 20 is used as is either way.
   * @default "nodesource"
   */
  nodeSource?: NodeSource;
  /**
   * An existing private S3 bucket (in this location's region) to publish the agent bundle in; the
   * location writes only the object `sitelink/agent/<sha256>/sitelink.js` there. Keep it private:
   * the hosts' roles are granted that one object, nobody else needs it.
   * @default a bucket of its own: no public access, bucket-owner-enforced, encrypted (SSE-S3)
   */
  agentBucket?: pulumi.Input<string>;
}

export const AWS_LOCATION_DEFAULTS = { instanceType: "t3.small", nodeSource: "nodesource" } as const;

/** `routeTableIds` as [key naming the routes, id] pairs. */
export function routeTableEntries(ids: AwsLocationArgs["routeTableIds"]): [string, pulumi.Input<string>][] {
  return Array.isArray(ids) ? ids.map((id) => [id, id]) : Object.entries(ids);
}

/** The resources of one link host. */
export interface AwsHostResources {
  host: LinkHost;
  networkInterface: aws.ec2.NetworkInterface;
  eip: aws.ec2.Eip;
  role?: aws.iam.Role;
  instance?: aws.ec2.Instance;
  /** The host URI (SecureString). */
  uriParameter?: aws.ssm.Parameter;
  /** The agent config, its /etc/sitelink/agent.json (String; no secret). */
  configParameter?: aws.ssm.Parameter;
}

export class AwsLocation extends Location {
  readonly spec: LocationSpec;
  /** Filled when a Link takes this location. */
  readonly hosts: AwsHostResources[] = [];
  securityGroup?: aws.ec2.SecurityGroup;
  /** The public addresses (/32) of the connected locations' hosts, the source of the link-port rules. */
  peerPrefixList?: aws.ec2.ManagedPrefixList;
  /** The route table entries (remote CIDR → this location's first active host). */
  readonly routeEntries: aws.ec2.Route[] = [];
  readonly vpcId: pulumi.Input<string>;
  readonly subnetId: pulumi.Input<string>;
  private readonly args: AwsLocationArgs;
  private published?: AwsAgentSource;
  /** The agent bundle's object, when this location published it (no `agentPackage`). */
  agentObject?: aws.s3.BucketObjectv2;
  /** The bucket made for it (no `agentBucket`). */
  agentBucket?: aws.s3.Bucket;

  constructor(name: string, args: AwsLocationArgs, opts?: pulumi.ComponentResourceOptions) {
    throwIfInvalid(`AwsLocation "${name}"`, validateAwsLocationArgs(name, args));
    super("sitelink:index:AwsLocation", name, {}, opts);
    this.args = args;
    this.vpcId = args.vpcId;
    this.subnetId = args.subnetId;
    this.spec = { name, cloud: "aws", routes: [...args.routes], hosts: hostSpecs(args) };
  }

  get nodeSource(): NodeSource {
    return this.args.nodeSource ?? AWS_LOCATION_DEFAULTS.nodeSource;
  }

  /** The link's state service on an instance of its own in this location's VPC, through this location's provider. */
  override createStateService(name: string, request: StateServiceRequest, opts: pulumi.ComponentResourceOptions): StateServiceHandle {
    const { settings, ...common } = request;
    return new AwsStateService(name, { ...common, ...settings, location: this }, { ...opts, provider: this.provider });
  }

  /**
   * Where this location's hosts (and a state service here) fetch the agent: the user's package, or
   * this library's bundle published once, on first use, in this location's bucket.
   */
  agentSource(agentPackage: AgentPackage | undefined): AwsAgentSource {
    if (agentPackage) return userAgentSource(agentPackage);
    if (!this.published) {
      const { source, object, bucket } = publishAgentBundle(this.spec.name, this.linkName ?? this.spec.name, this.args.agentBucket, this);
      this.published = source;
      this.agentObject = object;
      this.agentBucket = bucket;
    }
    return this.published;
  }

  /** The AWS provider this location's resources use (the state service placed here uses it too). */
  get provider(): pulumi.ProviderResource | undefined {
    return this.getProvider("aws:ec2/instance:Instance");
  }

  protected allocateHosts(link: string): LinkHost[] {
    const name = this.spec.name;
    const opts = { parent: this };
    this.securityGroup = new aws.ec2.SecurityGroup(
      `${name}-sg`,
      {
        vpcId: this.args.vpcId,
        description: `sitelink link ${link}, location ${name}: link hosts`,
        // Rules are separate resources (no inline rules, which would fight them); the provider
        // removes AWS's default allow-all egress rule when it creates the group.
        tags: { Name: `sitelink-${link}-${name}` },
      },
      opts,
    );
    for (const spec of this.spec.hosts) {
      const id = hostId(link, name, spec.name);
      // The host's network identity outlives its instance: routes point at the ENI, peers at the EIP.
      const networkInterface = new aws.ec2.NetworkInterface(
        `${name}-${spec.name}-eni`,
        {
          subnetId: this.args.subnetId,
          securityGroups: [this.securityGroup.id],
          // The host forwards traffic it neither sends nor receives for itself.
          sourceDestCheck: false,
          description: `sitelink host ${id}`,
          tags: { Name: `sitelink-${id}` },
        },
        opts,
      );
      const eip = new aws.ec2.Eip(`${name}-${spec.name}-eip`, { domain: "vpc", networkInterface: networkInterface.id, tags: { Name: `sitelink-${id}` } }, opts);
      this.hosts.push({
        networkInterface,
        eip,
        host: { ...spec, id, location: name, publicAddress: eip.publicIp, privateAddress: networkInterface.privateIp },
      });
    }
    return this.hosts.map((h) => h.host);
  }

  join(ctx: LinkContext): void {
    const sg = this.securityGroup;
    if (!sg) throw new Error(`location "${this.spec.name}" must be allocated before it joins`);
    const account = awsAccountOf(this);
    this.createFirewall(ctx, sg.id);
    const instanceType = this.args.instanceType ?? AWS_LOCATION_DEFAULTS.instanceType;
    const ami = this.args.ami ?? ubuntuAmi(this, instanceType);
    for (const h of this.hosts) this.createHost(ctx, h, { account, instanceType, ami });
    this.createRoutes(ctx);
    this.registerOutputs({ securityGroupId: sg.id, hosts: this.hosts.map((h) => ({ id: h.host.id, instanceId: h.instance?.id })) });
  }

  override cloudRoutes(): pulumi.Resource[] {
    return this.routeEntries;
  }

  override hostResources(): pulumi.CustomResource[] {
    return this.hosts.flatMap((h) => h.instance ?? []);
  }

  private createFirewall(ctx: LinkContext, sgId: pulumi.Output<string>) {
    const name = this.spec.name;
    const opts = { parent: this };
    if (ctx.peerHosts.length > 0) {
      // One list per location (prefix lists are regional, like the location's provider) and three
      // rules, however many peers. Its size counts against the group's rule quota: one entry per
      // peer address (peers behind one NAT share an entry; a list refuses a duplicate).
      const sources = publicAddressSources(ctx.peerHosts);
      const peers = new aws.ec2.ManagedPrefixList(
        `${name}-peers`,
        {
          name: `sitelink-${ctx.link}-${name}-peers`,
          addressFamily: "IPv4",
          maxEntries: sources.length,
          entries: addressRanges(sources).apply((ranges) => ranges.map((r) => ({ cidr: r.cidr, description: describeHosts(r.hostIds) }))),
          tags: { Name: `sitelink-${ctx.link}-${name}-peers` },
        },
        opts,
      );
      this.peerPrefixList = peers;
      for (const p of LINK_PORTS) {
        ingressRule(`${name}-in-${p.label}`, sgId, { protocol: p.protocol, port: p.port, prefixListId: peers.id, description: `${p.label} from the link hosts of the connected locations` }, opts);
      }
    }
    for (const own of this.hosts) {
      ingressRule(`${name}-in-check-${own.host.id}`, sgId, { protocol: "tcp", port: 9790, cidr: hostCidr(own.host.privateAddress), description: `host check from ${own.host.id}` }, opts);
    }
    // Site traffic on its way into the tunnels arrives from this location's own networks.
    this.spec.routes.forEach((route) => {
      ingressRule(`${name}-in-site-${cidrSlug(route)}`, sgId, { protocol: "all", cidr: route, description: `site traffic from ${route}` }, opts);
      // …and decapsulated traffic from the peers leaves towards them.
      egressRule(`${name}-out-site-${cidrSlug(route)}`, sgId, { protocol: "all", cidr: route, description: `site traffic to ${route}` }, opts);
    });
    ctx.adminCidrs.forEach((cidr) => {
      ingressRule(`${name}-in-ssh-${cidrSlug(cidr)}`, sgId, { protocol: "tcp", port: 22, cidr, description: `SSH from admin network ${cidr}` }, opts);
    });
    // Egress: the host only initiates IKE and host checks to peers the state service names, and
    // HTTPS/HTTP to AWS APIs and package mirrors; replies are admitted by the group's state tracking.
    for (const p of LINK_PORTS) egressRule(`${name}-out-${p.label}`, sgId, { protocol: p.protocol, port: p.port, cidr: "0.0.0.0/0", description: `${p.label} to link hosts` }, opts);
    egressRule(`${name}-out-https`, sgId, { protocol: "tcp", port: 443, cidr: "0.0.0.0/0", description: "AWS APIs, npm registry" }, opts);
    egressRule(`${name}-out-http`, sgId, { protocol: "tcp", port: 80, cidr: "0.0.0.0/0", description: "Ubuntu package mirrors" }, opts);
    if (ctx.stateService.port !== 443) {
      egressRule(`${name}-out-state`, sgId, { protocol: "tcp", port: ctx.stateService.port, cidr: ctx.stateService.cidr, description: "sitelink state service" }, opts);
    }
  }

  private createHost(
    ctx: LinkContext,
    h: AwsHostResources,
    o: { account: pulumi.Output<AwsAccount>; instanceType: string; ami: pulumi.Input<string> },
  ) {
    const name = `${this.spec.name}-${h.host.name}`;
    const opts = { parent: this };
    const prefix = `/sitelink/${ctx.link}/${this.spec.name}/${h.host.name}`;
    const names = { uri: `${prefix}/uri`, config: `${prefix}/config` };
    const agent = this.agentSource(ctx.agentPackage);
    h.uriParameter = new aws.ssm.Parameter(
      `${name}-uri`,
      { name: names.uri, type: "SecureString", value: ctx.hostUri(h.host.id), description: `sitelink host URI of ${h.host.id}` },
      opts,
    );
    const routeTableIds = pulumi.all(routeTableEntries(this.args.routeTableIds).map(([, id]) => id));
    const linkInterfaceIds = pulumi.all(this.hosts.map((other) => other.networkInterface.id));
    // What the host's refresh timer keeps it in step with: a change here reaches the running host
    // (config rewritten, agent restarted gracefully) without touching the instance.
    h.configParameter = new aws.ssm.Parameter(
      `${name}-config`,
      {
        name: names.config,
        type: "String",
        value: pulumi.all([o.account, routeTableIds, h.host.publicAddress, h.host.privateAddress, agent.delivery, linkInterfaceIds]).apply(([account, ids, publicAddress, privateAddress, delivery, interfaces]) =>
          renderAgentConfig({
            ...delivery,
            uriSources: [{ kind: "aws-ssm", parameter: names.uri, region: account.region }],
            provider: "aws",
            // A route is moved only from a host of this location, and only the connected locations' routes are written.
            aws: { routeTableIds: ids, region: account.region, linkInterfaceIds: interfaces },
            allowedRoutes: ctx.remoteRoutes,
            publicAddress,
            privateAddress,
          }),
        ),
        description: `sitelink agent config of ${h.host.id}`,
      },
      opts,
    );
    h.role = new aws.iam.Role(`${name}-role`, { assumeRolePolicy: JSON.stringify(EC2_ASSUME_ROLE_POLICY), description: `sitelink host ${h.host.id}` }, opts);
    const arns = pulumi.all([h.uriParameter.arn, h.configParameter.arn]);
    const policy = new aws.iam.RolePolicy(
      `${name}-policy`,
      {
        role: h.role.id,
        policy: pulumi
          .all([o.account, routeTableIds, arns, agent.object])
          .apply(([account, ids, [uri, config], object]) => JSON.stringify(hostPolicy(account, ids, { uri, config }, object && s3ObjectArn(account, object)))),
      },
      opts,
    );
    const profile = new aws.iam.InstanceProfile(`${name}-profile`, { role: h.role.name }, opts);
    // The stable bootstrap: only the region and the parameter names, which never change for this host.
    const userData = o.account.apply((account) => renderAwsAgentBootstrap({ region: account.region, parameters: names, nodeSource: this.nodeSource }));
    h.instance = new aws.ec2.Instance(
      name,
      {
        ami: o.ami,
        instanceType: o.instanceType,
        iamInstanceProfile: profile.name,
        primaryNetworkInterface: { networkInterfaceId: h.networkInterface.id },
        metadataOptions: { httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: 1 },
        rootBlockDevice: { encrypted: true, volumeType: "gp3" },
        keyName: this.args.keyName,
        userData,
        tags: { Name: `sitelink-${h.host.id}` },
      },
      {
        ...opts,
        // Its ENI can be attached to one instance only: the old one must go first (failover covers the gap).
        deleteBeforeReplace: true,
        // A user-data change would stop and start every host at once and still not apply (cloud-init
        // runs it once): config and package travel through the parameters instead, and a new
        // bootstrap reaches a host when it is replaced. A newer Ubuntu image must not replace a
        // running host either; pass `ami` to choose when.
        ignoreChanges: ["userData", ...(this.args.ami === undefined ? ["ami"] : [])],
        // First boot needs the internet (packages) through its Elastic IP, and reads its parameters:
        // address, grant and parameters must all be in place.
        dependsOn: [h.eip, policy, h.uriParameter, h.configParameter, ...(this.agentObject ? [this.agentObject] : [])],
      },
    );
  }

  private createRoutes(ctx: LinkContext) {
    const target = initialActive(this.hosts.map((h) => ({ ...h.host, eni: h.networkInterface })));
    for (const [key, routeTableId] of routeTableEntries(this.args.routeTableIds)) {
      for (const route of ctx.remoteRoutes) {
        const ipv6 = parseCidr(route).family === 6;
        this.routeEntries.push(
          new aws.ec2.Route(
            // Named by the table's key, never its position: removing another table renames nothing.
            `${this.spec.name}-route-${key}-${cidrSlug(route)}`,
            {
              routeTableId,
              ...(ipv6 ? { destinationIpv6CidrBlock: route } : { destinationCidrBlock: route }),
              networkInterfaceId: target.eni.id,
            },
            // Pulumi owns that the route exists; the active host's agent owns where it points.
            { parent: this, ignoreChanges: ["networkInterfaceId"] },
          ),
        );
      }
    }
  }
}

// A location in a GCP VPC network: link hosts (static internal + external address, instance with its
// own service account), their firewall and identities, and their host URIs in Secret Manager. No
// routes: on GCP the active host's agent creates them (see docs/components.md, "Routes on GCP").
import type * as gcp from "@pulumi/gcp";
import * as pulumi from "@pulumi/pulumi";
import { type NodeSource } from "../bootstrap/host";
import { renderAgentConfig } from "../bootstrap/link-host";
import { GCP_AGENT_ATTRIBUTES, renderGcpAgentBootstrap } from "./bootstrap";
import { cidrsByFamily, hostSources, ingressFirewall, publicAddressRanges, type IngressRule } from "./firewall";
import { CLOUD_PLATFORM_SCOPE, GCP_ROUTE_PERMISSIONS, SECRET_ACCESSOR_ROLE, serviceAccountMember } from "./iam";
import { GCP_ACCOUNT_ID_MAX, gcpName, gcpRoleId } from "./names";
import { Location, type CloudHostArgs, type LinkContext, type LinkHost } from "../link/location";
import type { StateServiceHandle, StateServiceRequest } from "../link/state-service";
import { GcpStateService } from "./state-service";
import { grantAgentRead, publishAgentBundle, userAgentSource, type GcpAgentSource } from "./agent-object";
import type { AgentPackage } from "../bootstrap/agent-source";
import { hostId, hostSpecs, throwIfInvalid, type LocationSpec } from "../link/args";
import { loadGcp } from "./peer";
import { gcpRegionOf, validateGcpLocationArgs } from "./validate";

/** A host of a GCP location: the same settings as on AWS. */
export type GcpHostArgs = CloudHostArgs;

export interface GcpLocationArgs {
  /** The VPC network: name or self-link. The agent's routes go into it. */
  network: pulumi.Input<string>;
  /** The subnetwork of the hosts (name or self-link), in the zone's region. */
  subnetwork: pulumi.Input<string>;
  /** Zone of the hosts, e.g. `us-central1-a`; the addresses are in its region. */
  zone: string;
  /**
   * Project of the network and of everything this location creates.
   * @default the provider's project
   */
  project?: string;
  /** CIDRs of this location reachable through the link. */
  routes: string[];
  /**
   * The link hosts; more than one for failover.
   * @default [{ name: "a" }]
   */
  hosts?: GcpHostArgs[];
  /**
   * Machine type of the hosts.
   * @default "e2-small"
   */
  machineType?: string;
  /**
   * Boot image of the hosts (Ubuntu 24.04 or compatible: the bootstrap uses apt and systemd).
   * @default "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"
   */
  image?: pulumi.Input<string>;
  /**
   * Where hosts (and a state service here) get Node.js ≥ 20 when their image has none (see AwsLocationArgs.nodeSource).
   * @default "nodesource"
   */
  nodeSource?: NodeSource;
}

export const GCP_LOCATION_DEFAULTS = {
  machineType: "e2-small",
  image: "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64",
  bootDiskType: "pd-balanced",
  nodeSource: "nodesource",
} as const;

/** The ports link hosts need from their peers, as GCP firewall `allows`. */
export const GCP_LINK_ALLOWS = [
  { protocol: "udp", ports: ["500", "4500"] },
  { protocol: "tcp", ports: ["9790"] },
];

/** The resources of one link host. */
export interface GcpHostResources {
  host: LinkHost;
  internalAddress: gcp.compute.Address;
  externalAddress: gcp.compute.Address;
  serviceAccount?: gcp.serviceaccount.Account;
  uriSecret?: gcp.secretmanager.Secret;
  instance?: gcp.compute.Instance;
}

export class GcpLocation extends Location {
  readonly spec: LocationSpec;
  /** Filled when a Link takes this location. */
  readonly hosts: GcpHostResources[] = [];
  readonly firewalls: gcp.compute.Firewall[] = [];
  /** The custom role of the agent's route calls, granted to each host's service account. */
  routeRole?: gcp.projects.IAMCustomRole;
  /** The network tag of this location's hosts, which the firewall rules target. */
  networkTag?: string;
  readonly network: pulumi.Input<string>;
  readonly subnetwork: pulumi.Input<string>;
  readonly zone: string;
  private readonly args: GcpLocationArgs;
  private published?: GcpAgentSource;
  /** The agent bundle's object, when this location published it (no `agentPackage`). */
  agentObject?: gcp.storage.BucketObject;

  constructor(name: string, args: GcpLocationArgs, opts?: pulumi.ComponentResourceOptions) {
    throwIfInvalid(`GcpLocation "${name}"`, validateGcpLocationArgs(name, args));
    loadGcp("GcpLocation"); // before anything is registered: a clear error when it is not installed
    super("sitelink:index:GcpLocation", name, {}, opts);
    this.args = args;
    this.network = args.network;
    this.subnetwork = args.subnetwork;
    this.zone = args.zone;
    this.spec = { name, cloud: "gcp", routes: [...args.routes], hosts: hostSpecs(args) };
  }

  /** The project given in the args, if any (resources without one use the provider's). */
  get projectArg(): string | undefined {
    return this.args.project;
  }

  get nodeSource(): NodeSource {
    return this.args.nodeSource ?? GCP_LOCATION_DEFAULTS.nodeSource;
  }

  /** Where this location's hosts (and a state service here) fetch the agent: the user's package, or this library's bundle published once, on first use. */
  agentSource(agentPackage: AgentPackage | undefined): GcpAgentSource {
    if (agentPackage) return userAgentSource(agentPackage);
    if (!this.published) {
      const { source, object } = publishAgentBundle(this.spec.name, this.linkName ?? this.spec.name, { project: this.args.project, location: gcpRegionOf(this.args.zone) }, this);
      this.published = source;
      this.agentObject = object;
    }
    return this.published;
  }

  /** The link's state service on an instance of its own in this location's network, through this location's provider. */
  override createStateService(name: string, request: StateServiceRequest, opts: pulumi.ComponentResourceOptions): StateServiceHandle {
    const { settings, ...common } = request;
    return new GcpStateService(name, { ...common, ...settings, location: this }, { ...opts, provider: this.provider });
  }

  /** The GCP provider this location's resources use (the state service placed here uses it too). */
  get provider(): pulumi.ProviderResource | undefined {
    return this.getProvider("gcp:compute/instance:Instance");
  }

  /** The project: given, or the provider's. */
  project(): pulumi.Output<string> {
    if (this.args.project) return pulumi.output(this.args.project);
    const gcp = loadGcp("GcpLocation");
    return gcp.organizations.getClientConfigOutput({ parent: this }).apply((c) => c.project);
  }

  protected allocateHosts(link: string): LinkHost[] {
    const gcp = loadGcp("GcpLocation");
    const name = this.spec.name;
    const region = gcpRegionOf(this.args.zone);
    // Room for the firewall rules' suffixes (`${tag}-site6`) within GCP's 63 characters.
    this.networkTag = gcpName(["sitelink", name], `${link}/${name}`, 56);
    // Explicit names: delete before create when one must be replaced.
    const opts = { parent: this, deleteBeforeReplace: true };
    for (const spec of this.spec.hosts) {
      const id = hostId(link, name, spec.name);
      const base = gcpName(["sitelink", name, spec.name], id, 56);
      // Fixed addresses outlive the instance: peers, firewall rules and topology keep pointing at them.
      const internalAddress = new gcp.compute.Address(
        `${name}-${spec.name}-internal`,
        { name: `${base}-int`, addressType: "INTERNAL", subnetwork: this.args.subnetwork, region, project: this.args.project, description: `sitelink host ${id}` },
        opts,
      );
      const externalAddress = new gcp.compute.Address(
        `${name}-${spec.name}-external`,
        { name: `${base}-ext`, addressType: "EXTERNAL", networkTier: "PREMIUM", region, project: this.args.project, description: `sitelink host ${id}` },
        opts,
      );
      this.hosts.push({
        internalAddress,
        externalAddress,
        host: { ...spec, id, location: name, publicAddress: externalAddress.address, privateAddress: internalAddress.address },
      });
    }
    return this.hosts.map((h) => h.host);
  }

  join(ctx: LinkContext): void {
    const gcp = loadGcp("GcpLocation");
    const tag = this.networkTag;
    if (tag === undefined) throw new Error(`location "${this.spec.name}" must be allocated before it joins`);
    const project = this.project();
    this.createFirewall(ctx, tag);
    this.routeRole = new gcp.projects.IAMCustomRole(
      `${this.spec.name}-route-role`,
      {
        project,
        roleId: gcpRoleId("sitelinkRoutes", `${ctx.link}/${this.spec.name}`),
        title: `sitelink routes (${ctx.link}/${this.spec.name})`,
        description: "The calls of the sitelink agent's gcp route provider: list, create and delete routes, wait for their operations",
        permissions: [...GCP_ROUTE_PERMISSIONS],
        stage: "GA",
      },
      { parent: this },
    );
    for (const h of this.hosts) this.createHost(ctx, h, { project, tag, role: this.routeRole });
    this.registerOutputs({ networkTag: tag, hosts: this.hosts.map((h) => ({ id: h.host.id, instanceId: h.instance?.id })) });
  }

  override hostResources(): pulumi.CustomResource[] {
    return this.hosts.flatMap((h) => h.instance ?? []);
  }

  /**
   * Ingress only: IKE, NAT-T and host checks from the peer hosts, host checks from this location's
   * own hosts, site traffic from this location's routes, SSH from the admin networks.
   */
  private createFirewall(ctx: LinkContext, tag: string) {
    const target = { network: this.args.network, project: this.args.project, tag };
    const opts = { parent: this };
    const rule = (suffix: string, description: string, allows: IngressRule["allows"], sources: pulumi.Input<pulumi.Input<string>[]>) =>
      this.firewalls.push(ingressFirewall(target, { resource: `${this.spec.name}-fw-${suffix}`, suffix, description, allows }, sources, opts));
    if (ctx.peerHosts.length > 0) {
      rule("link", `sitelink ${ctx.link}: IKE, NAT-T and host checks from the peer hosts`, GCP_LINK_ALLOWS, publicAddressRanges(ctx.peerHosts));
    }
    rule("check", `sitelink ${ctx.link}: host checks from the hosts of ${this.spec.name}`, [{ protocol: "tcp", ports: ["9790"] }], hostSources(this.hosts.map((h) => h.host.privateAddress)));
    for (const [family, ranges] of cidrsByFamily(this.spec.routes)) {
      rule(`site${family}`, `sitelink ${ctx.link}: site traffic into the tunnels`, [{ protocol: "all" }], ranges);
    }
    for (const [family, ranges] of cidrsByFamily(ctx.adminCidrs)) {
      rule(`ssh${family}`, `sitelink ${ctx.link}: SSH from the admin networks`, [{ protocol: "tcp", ports: ["22"] }], ranges);
    }
  }

  private createHost(ctx: LinkContext, h: GcpHostResources, o: { project: pulumi.Output<string>; tag: string; role: gcp.projects.IAMCustomRole }) {
    const gcp = loadGcp("GcpLocation");
    const name = `${this.spec.name}-${h.host.name}`;
    const opts = { parent: this };
    const id = h.host.id;
    h.serviceAccount = new gcp.serviceaccount.Account(
      `${name}-sa`,
      { accountId: gcpName(["sl", this.spec.name, h.host.name], id, GCP_ACCOUNT_ID_MAX), displayName: `sitelink host ${id}`, project: this.args.project },
      { ...opts, deleteBeforeReplace: true },
    );
    const member = h.serviceAccount.email.apply(serviceAccountMember);
    const secretId = `${gcpName(["sitelink", this.spec.name, h.host.name], id, 56)}-uri`;
    h.uriSecret = new gcp.secretmanager.Secret(
      `${name}-uri`,
      { secretId, project: this.args.project, replication: { auto: {} }, labels: { "sitelink-link": ctx.link } },
      { ...opts, deleteBeforeReplace: true },
    );
    const version = new gcp.secretmanager.SecretVersion(`${name}-uri-version`, { secret: h.uriSecret.id, secretData: ctx.hostUri(id) }, opts);
    const access = new gcp.secretmanager.SecretIamMember(
      `${name}-uri-access`,
      { project: h.uriSecret.project, secretId: h.uriSecret.secretId, role: SECRET_ACCESSOR_ROLE, member },
      opts,
    );
    // Routes have no per-network IAM: the project is the narrowest scope GCP offers.
    const routes = new gcp.projects.IAMMember(`${name}-routes`, { project: o.project, role: o.role.name, member }, opts);
    const agent = this.agentSource(ctx.agentPackage);
    const agentRead = grantAgentRead(name, agent, member, this);
    // The agent config travels as a metadata attribute, which changes in place: the host's refresh
    // timer rewrites agent.json and restarts the agent. No secret in it: the URI is read from Secret Manager.
    const config = pulumi.all([o.project, this.args.network, h.host.publicAddress, h.host.privateAddress, agent.delivery]).apply(([project, network, publicAddress, privateAddress, delivery]) =>
      renderAgentConfig({
        ...delivery,
        // `latest`: a new URI (new state service address) reaches the host at its next agent start.
        uriSources: [{ kind: "gcp-secret-manager", name: `projects/${project}/secrets/${secretId}/versions/latest` }],
        provider: "gcp",
        gcp: { network, project },
        // Only the connected locations' routes are ever created.
        allowedRoutes: ctx.remoteRoutes,
        publicAddress,
        privateAddress,
      }),
    );
    h.instance = new gcp.compute.Instance(
      name,
      {
        name: gcpName(["sitelink", this.spec.name, h.host.name], id),
        project: this.args.project,
        zone: this.args.zone,
        machineType: this.args.machineType ?? GCP_LOCATION_DEFAULTS.machineType,
        // The host forwards traffic it neither sends nor receives for itself.
        canIpForward: true,
        bootDisk: { initializeParams: { image: this.args.image ?? GCP_LOCATION_DEFAULTS.image, type: GCP_LOCATION_DEFAULTS.bootDiskType } },
        networkInterfaces: [{ subnetwork: this.args.subnetwork, networkIp: h.host.privateAddress, accessConfigs: [{ natIp: h.host.publicAddress, networkTier: "PREMIUM" }] }],
        serviceAccount: { email: h.serviceAccount.email, scopes: [CLOUD_PLATFORM_SCOPE] },
        shieldedInstanceConfig: { enableSecureBoot: true, enableVtpm: true, enableIntegrityMonitoring: true },
        tags: [o.tag],
        // In-place metadata, not `metadataStartupScript` (which replaces the instance on change). The
        // startup script names only the host's URI secret (to report a refused agent); the config, naming the agent, is its own attribute.
        metadata: {
          "startup-script": this.project().apply((project) => renderGcpAgentBootstrap({ project, uriSecret: secretId, nodeSource: this.nodeSource })),
          [GCP_AGENT_ATTRIBUTES.config]: config,
          "enable-oslogin": "TRUE",
          "block-project-ssh-keys": "TRUE",
        },
        allowStoppingForUpdate: true,
        labels: { "sitelink-link": ctx.link },
      },
      {
        ...opts,
        // Its addresses can be attached to one instance only: the old one must go first (failover covers the gap).
        deleteBeforeReplace: true,
        // The agent reads its URI and changes routes at start: secret, grants and role must be in place.
        dependsOn: [version, access, routes, h.externalAddress, ...agentRead, ...(this.agentObject ? [this.agentObject] : [])],
      },
    );
  }
}

// The state service of a link on a small instance of one of its GCP locations (never on a link
// host): the GCP twin of StateService. Keys and certificate are made here and reach the instance
// only through Secret Manager, readable by its own service account alone; the topology and the
// package spec travel the same way, so a new document or version never replaces the instance; the
// state lives on its own persistent disk.
import type * as gcp from "@pulumi/gcp";
import * as pulumi from "@pulumi/pulumi";
import { grantAgentRead } from "./agent-object";
import { renderGcpStateBootstrap } from "./bootstrap";
import { cidrsByFamily, ingressFirewall, publicAddressRanges } from "./firewall";
import { CLOUD_PLATFORM_SCOPE, SECRET_ACCESSOR_ROLE, serviceAccountMember } from "./iam";
import { GCP_LOCATION_DEFAULTS, type GcpLocation } from "./location";
import { GCP_ACCOUNT_ID_MAX, gcpName } from "./names";
import { loadGcp } from "./peer";
import { throwIfInvalid } from "../link/args";
import { certificateFingerprint, STATE_SERVICE_COMMON_DEFAULTS, stateCredentials, type StateServiceArgsBase, type StateServiceHandle } from "../link/state-service";
import { gcpRegionOf, validateGcpStateServiceArgs } from "./validate";

export interface GcpStateServiceArgs extends StateServiceArgsBase {
  /** The GCP location whose network, subnetwork, zone and provider the service uses. */
  location: GcpLocation;
  /**
   * @default "e2-micro"
   */
  machineType?: string;
  /**
   * @default "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"
   */
  image?: pulumi.Input<string>;
}

export const GCP_STATE_SERVICE_DEFAULTS = { machineType: "e2-micro", diskDeviceName: "sitelink-state" } as const;

export class GcpStateService extends pulumi.ComponentResource implements StateServiceHandle {
  readonly kind = "gcp";
  /** `https://ADDRESS:port`. */
  readonly url: pulumi.Output<string>;
  /** The static external address agents reach it at. */
  readonly address: pulumi.Output<string>;
  readonly port: number;
  /** SHA-256 fingerprint of its certificate (lower-case hex). */
  readonly fingerprint: pulumi.Output<string>;
  /** Base64 of 32 random bytes. Secret. */
  readonly masterKey: pulumi.Output<string>;
  readonly instance: gcp.compute.Instance;
  readonly disk: gcp.compute.Disk;

  constructor(name: string, args: GcpStateServiceArgs, opts?: pulumi.ComponentResourceOptions) {
    throwIfInvalid(`GcpStateService "${name}"`, validateGcpStateServiceArgs(args));
    const gcp = loadGcp("GcpStateService"); // before anything is registered: a clear error when it is not installed
    super("sitelink:index:GcpStateService", name, {}, opts);
    const parent = { parent: this };
    const named = { parent: this, deleteBeforeReplace: true };
    const location = args.location;
    const project = location.projectArg;
    const region = gcpRegionOf(location.zone);
    const port = args.port ?? STATE_SERVICE_COMMON_DEFAULTS.port;
    this.port = port;
    const base = gcpName(["sitelink", args.link, "state"], `${args.link}/state`, 50);

    // Addresses first: the certificate names the external one, the firewall and agents use it.
    const external = new gcp.compute.Address(`${name}-external`, { name: `${base}-ext`, addressType: "EXTERNAL", networkTier: "PREMIUM", region, project, description: `sitelink state service of ${args.link}` }, named);
    const internal = new gcp.compute.Address(`${name}-internal`, { name: `${base}-int`, addressType: "INTERNAL", subnetwork: location.subnetwork, region, project, description: `sitelink state service of ${args.link}` }, named);
    this.address = external.address;
    const { masterKey, tlsKey, cert } = stateCredentials(name, args.link, external.address, parent);
    this.masterKey = masterKey;
    this.fingerprint = cert.certPem.apply(certificateFingerprint);
    this.url = pulumi.interpolate`https://${external.address}:${port}`;

    const target = { network: location.network, project, tag: base };
    ingressFirewall(target, { resource: `${name}-fw-api`, suffix: "api", description: `sitelink ${args.link}: state service API from the link hosts`, allows: [{ protocol: "tcp", ports: [String(port)] }] }, publicAddressRanges(args.hosts), parent);
    for (const [family, ranges] of cidrsByFamily(args.adminCidrs ?? [])) {
      const admin = { resource: `${name}-fw-admin${family}`, suffix: `admin${family}`, description: `sitelink ${args.link}: state service API and SSH from the admin networks`, allows: [{ protocol: "tcp", ports: [String(port), "22"] }] };
      ingressFirewall(target, admin, ranges, parent);
    }

    const account = new gcp.serviceaccount.Account(`${name}-sa`, { accountId: gcpName(["sl", args.link, "state"], `${args.link}/state`, GCP_ACCOUNT_ID_MAX), displayName: `sitelink state service of ${args.link}`, project }, named);
    const member = account.email.apply(serviceAccountMember);
    const agent = location.agentSource(args.agentPackage);
    const files = { agent: agent.delivery.apply((d) => JSON.stringify(d)), topology: args.topology, tlsCert: cert.certPem, tlsKey: tlsKey.privateKeyPem, masterKey: this.masterKey };
    const secretIds = { agent: `${base}-agent`, topology: `${base}-topology`, tlsCert: `${base}-tls-cert`, tlsKey: `${base}-tls-key`, masterKey: `${base}-master-key` };
    const grants: pulumi.Resource[] = [];
    for (const [file, data] of Object.entries(files) as [keyof typeof files, pulumi.Input<string>][]) {
      const label = secretIds[file].slice(base.length + 1);
      const secret = new gcp.secretmanager.Secret(`${name}-${label}`, { secretId: secretIds[file], project, replication: { auto: {} }, labels: { "sitelink-link": args.link } }, named);
      const dependsOn = file === "topology" ? (args.topologyDependsOn ?? []) : [];
      grants.push(
        new gcp.secretmanager.SecretVersion(`${name}-${label}-version`, { secret: secret.id, secretData: data }, { ...parent, dependsOn }),
        new gcp.secretmanager.SecretIamMember(`${name}-${label}-access`, { project: secret.project, secretId: secret.secretId, role: SECRET_ACCESSOR_ROLE, member }, parent),
      );
    }

    this.disk = new gcp.compute.Disk(
      `${name}-data`,
      { name: `${base}-data`, project, zone: location.zone, size: args.volumeSize ?? STATE_SERVICE_COMMON_DEFAULTS.volumeSize, type: GCP_LOCATION_DEFAULTS.bootDiskType, labels: { "sitelink-link": args.link } },
      // Separate from the instance: replacing the instance keeps the state.
      named,
    );
    const script = location.project().apply((p) =>
      renderGcpStateBootstrap({ project: p, secrets: secretIds, diskDeviceName: GCP_STATE_SERVICE_DEFAULTS.diskDeviceName, port, nodeSource: location.nodeSource }),
    );
    this.instance = new gcp.compute.Instance(
      name,
      {
        name: `${base}-vm`,
        project,
        zone: location.zone,
        machineType: args.machineType ?? GCP_STATE_SERVICE_DEFAULTS.machineType,
        bootDisk: { initializeParams: { image: args.image ?? GCP_LOCATION_DEFAULTS.image, type: GCP_LOCATION_DEFAULTS.bootDiskType } },
        attachedDisks: [{ source: this.disk.id, deviceName: GCP_STATE_SERVICE_DEFAULTS.diskDeviceName }],
        networkInterfaces: [{ subnetwork: location.subnetwork, networkIp: internal.address, accessConfigs: [{ natIp: external.address, networkTier: "PREMIUM" }] }],
        serviceAccount: { email: account.email, scopes: [CLOUD_PLATFORM_SCOPE] },
        shieldedInstanceConfig: { enableSecureBoot: true, enableVtpm: true, enableIntegrityMonitoring: true },
        tags: [base],
        metadata: { "startup-script": script, "enable-oslogin": "TRUE", "block-project-ssh-keys": "TRUE" },
        allowStoppingForUpdate: true,
        labels: { "sitelink-link": args.link },
      },
      // Addresses and disk attach to one instance at a time: the old one goes first.
      { ...parent, deleteBeforeReplace: true, dependsOn: [...grants, ...grantAgentRead(name, agent, member, this), ...(location.agentObject ? [location.agentObject] : [])] },
    );
    this.registerOutputs({ url: this.url, fingerprint: this.fingerprint, address: this.address });
  }
}

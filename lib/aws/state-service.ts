// The state service of a link, run on a small instance of one of its AWS locations (never on a
// link host). Keys and certificate are made here; they reach the instance only through Parameter
// Store, readable by its role alone. The topology and the package spec are delivered the same way,
// so a new document or version never replaces the instance, and the state lives on its own EBS
// volume, which outlives the instance.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { cidrSlug, egressRule, ingressRule } from "./firewall";
import { EC2_ASSUME_ROLE_POLICY, s3ObjectArn, statePolicy } from "./iam";
import { awsAccountOf, ubuntuAmi } from "./lookup";
import type { AwsLocation } from "./location";
import { renderAwsStateBootstrap } from "./bootstrap";
import { describeHosts, distinctAddressSources, sourceNaming } from "../link/address-sources";
import { throwIfInvalid } from "../link/args";
import { certificateFingerprint, STATE_SERVICE_COMMON_DEFAULTS, stateCredentials, type StateServiceArgsBase, type StateServiceHandle } from "../link/state-service";
import { validateAwsStateServiceArgs } from "./validate";

export interface AwsStateServiceArgs extends StateServiceArgsBase {
  /** The AWS location whose VPC, subnet and provider the service uses. */
  location: AwsLocation;
  /**
   * @default "t3.micro"
   */
  instanceType?: string;
  /**
   * Image of the instance.
   * @default newest Canonical Ubuntu 24.04 LTS image (looked up once; later images do not replace the instance)
   */
  ami?: pulumi.Input<string>;
}

export const AWS_STATE_SERVICE_DEFAULTS = {
  instanceType: "t3.micro",
  ...STATE_SERVICE_COMMON_DEFAULTS,
} as const;

export class AwsStateService extends pulumi.ComponentResource implements StateServiceHandle {
  readonly kind = "aws";
  /** `https://EIP:port`. */
  readonly url: pulumi.Output<string>;
  /** The Elastic IP agents reach it at. */
  readonly address: pulumi.Output<string>;
  readonly port: number;
  /** SHA-256 fingerprint of its certificate (lower-case hex). */
  readonly fingerprint: pulumi.Output<string>;
  /** Base64 of 32 random bytes. Secret. */
  readonly masterKey: pulumi.Output<string>;
  readonly instance: aws.ec2.Instance;
  readonly volume: aws.ebs.Volume;

  constructor(name: string, args: AwsStateServiceArgs, opts?: pulumi.ComponentResourceOptions) {
    throwIfInvalid(`StateService "${name}"`, validateAwsStateServiceArgs(args));
    super("sitelink:index:StateService", name, {}, opts);
    const parent = { parent: this };
    const port = args.port ?? AWS_STATE_SERVICE_DEFAULTS.port;
    const instanceType = args.instanceType ?? AWS_STATE_SERVICE_DEFAULTS.instanceType;
    this.port = port;

    const sg = new aws.ec2.SecurityGroup(
      `${name}-sg`,
      { vpcId: args.location.vpcId, description: `sitelink link ${args.link}: state service`, tags: { Name: `sitelink-${args.link}-state` } },
      parent,
    );
    // Address first: the certificate names it, and first boot reaches the internet through it.
    const networkInterface = new aws.ec2.NetworkInterface(
      `${name}-eni`,
      { subnetId: args.location.subnetId, securityGroups: [sg.id], description: `sitelink state service of ${args.link}`, tags: { Name: `sitelink-${args.link}-state` } },
      parent,
    );
    const eip = new aws.ec2.Eip(`${name}-eip`, { domain: "vpc", networkInterface: networkInterface.id, tags: { Name: `sitelink-${args.link}-state` } }, parent);
    this.address = eip.publicIp;
    const { masterKey, tlsKey, cert } = stateCredentials(name, args.link, eip.publicIp, parent);
    this.masterKey = masterKey;
    this.fingerprint = cert.certPem.apply(certificateFingerprint);
    this.url = pulumi.interpolate`https://${eip.publicIp}:${port}`;

    const prefix = `/sitelink/${args.link}/state`;
    const agent = args.location.agentSource(args.agentPackage);
    const names = { agent: `${prefix}/agent`, topology: `${prefix}/topology`, tlsCert: `${prefix}/tls-cert`, tlsKey: `${prefix}/tls-key`, masterKey: `${prefix}/master-key` };
    const parameters = {
      agent: new aws.ssm.Parameter(
        `${name}-agent`,
        { name: names.agent, type: "String", value: agent.delivery.apply((d) => JSON.stringify(d)), description: `sitelink agent (source, SHA-256) of the state service of ${args.link}` },
        parent,
      ),
      topology: new aws.ssm.Parameter(
        `${name}-topology`,
        // The document has no secrets. Above 4 KB it needs the advanced tier (up to 8 KB).
        { name: names.topology, type: "String", tier: "Intelligent-Tiering", value: args.topology, description: `sitelink topology of link ${args.link}` },
        { ...parent, dependsOn: args.topologyDependsOn ?? [] },
      ),
      tlsCert: new aws.ssm.Parameter(`${name}-tls-cert-param`, { name: names.tlsCert, type: "String", value: cert.certPem }, parent),
      tlsKey: new aws.ssm.Parameter(`${name}-tls-key-param`, { name: names.tlsKey, type: "SecureString", value: tlsKey.privateKeyPem }, parent),
      masterKey: new aws.ssm.Parameter(`${name}-master-key-param`, { name: names.masterKey, type: "SecureString", value: this.masterKey }, parent),
    };

    // One rule per address: AWS refuses a second identical one.
    for (const source of distinctAddressSources(args.hosts)) {
      const { key, aliases } = sourceNaming(source);
      const rule = { protocol: "tcp" as const, port, cidr: source.cidr, description: describeHosts(source.hostIds) };
      ingressRule(`${name}-in-${key}`, sg.id, rule, { ...parent, aliases: aliases.map((alias) => ({ name: `${name}-in-${alias}` })) });
    }
    for (const cidr of args.adminCidrs ?? []) {
      ingressRule(`${name}-in-admin-${cidrSlug(cidr)}`, sg.id, { protocol: "tcp", port, cidr, description: `admin network ${cidr}` }, parent);
      ingressRule(`${name}-in-ssh-${cidrSlug(cidr)}`, sg.id, { protocol: "tcp", port: 22, cidr, description: `SSH from admin network ${cidr}` }, parent);
    }
    // Parameter Store, the npm registry and the snap store over HTTPS; Ubuntu mirrors over HTTP.
    egressRule(`${name}-out-https`, sg.id, { protocol: "tcp", port: 443, cidr: "0.0.0.0/0", description: "AWS APIs, npm registry, snap store" }, parent);
    egressRule(`${name}-out-http`, sg.id, { protocol: "tcp", port: 80, cidr: "0.0.0.0/0", description: "Ubuntu package mirrors" }, parent);

    const account = awsAccountOf(this);
    const role = new aws.iam.Role(`${name}-role`, { assumeRolePolicy: JSON.stringify(EC2_ASSUME_ROLE_POLICY), description: `sitelink state service of ${args.link}` }, parent);
    const arns = pulumi.all([pulumi.all(Object.values(parameters).map((p) => p.arn)), pulumi.all([parameters.tlsKey.arn, parameters.masterKey.arn])]);
    const policy = new aws.iam.RolePolicy(
      `${name}-policy`,
      { role: role.id, policy: pulumi.all([account, arns, agent.object]).apply(([a, [read, secure], object]) => JSON.stringify(statePolicy(a, { read, secure }, object && s3ObjectArn(a, object)))) },
      parent,
    );
    const profile = new aws.iam.InstanceProfile(`${name}-profile`, { role: role.name }, parent);

    const subnet = aws.ec2.getSubnetOutput({ id: args.location.subnetId }, parent);
    this.volume = new aws.ebs.Volume(
      `${name}-data`,
      { availabilityZone: subnet.availabilityZone, size: args.volumeSize ?? AWS_STATE_SERVICE_DEFAULTS.volumeSize, type: "gp3", encrypted: true, tags: { Name: `sitelink-${args.link}-state-data` } },
      parent,
    );
    // The stable bootstrap: region, volume, port and parameter names; the agent comes from its parameter.
    const userData = pulumi
      .all([account, this.volume.id])
      .apply(([a, volumeId]) => renderAwsStateBootstrap({ region: a.region, volumeId, port, parameters: names, nodeSource: args.location.nodeSource }));
    this.instance = new aws.ec2.Instance(
      name,
      {
        ami: args.ami ?? ubuntuAmi(this, instanceType),
        instanceType,
        primaryNetworkInterface: { networkInterfaceId: networkInterface.id },
        iamInstanceProfile: profile.name,
        metadataOptions: { httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: 1 },
        rootBlockDevice: { encrypted: true, volumeType: "gp3" },
        userData,
        // cloud-init runs user data once: a new bootstrap (another port, a new template) replaces
        // this one instance, which keeps its address, keys and volume; agents keep their tunnels meanwhile.
        userDataReplaceOnChange: true,
        tags: { Name: `sitelink-${args.link}-state` },
      },
      // Interface and volume attach to one instance at a time: the old one goes first.
      {
        ...parent,
        deleteBeforeReplace: true,
        ignoreChanges: args.ami === undefined ? ["ami"] : [],
        dependsOn: [eip, policy, ...Object.values(parameters), ...(args.location.agentObject ? [args.location.agentObject] : [])],
      },
    );
    new aws.ec2.VolumeAttachment(
      `${name}-data-attach`,
      { instanceId: this.instance.id, volumeId: this.volume.id, deviceName: "/dev/sdf", stopInstanceBeforeDetaching: true },
      parent,
    );
    this.registerOutputs({ url: this.url, fingerprint: this.fingerprint, address: this.address });
  }
}

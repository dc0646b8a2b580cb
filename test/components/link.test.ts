// The AWS components under Pulumi mocks: exact resources, inputs, options, outputs and secrets.
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { agentConfigSchema } from "../../agent/contract/agent-config";
import { deriveHostSecret, sha256Hex } from "../../agent/contract/signing";
import { parseHostUri } from "../../agent/contract/uri";
import { parseTopology } from "../../agent/contract/topology";
import {
  ACCOUNT_ID,
  AMI_ID,
  CERT_PEM,
  MASTER_KEY_BASE64,
  captured,
  dependsOnUrns,
  TLS_KEY_PEM,
  invokes,
  isSecretValue,
  named,
  one,
  options,
  optionsOf,
  plain,
  resolve,
  resources,
  settle,
  setupMocks,
  valueOf,
} from "./harness";

type Lib = typeof import("../../lib/index.js");
type Aws = typeof import("@pulumi/aws");
let lib: Lib;
let aws: Aws;

beforeAll(async () => {
  await setupMocks();
  lib = await import("../../lib/index.js");
  aws = await import("@pulumi/aws");
});

const VPC = "vpc-0123456789abcdef0";
const SUBNET = "subnet-0123456789abcdef0";
const rtb = (n: number) => `rtb-${String(n).padStart(17, "0")}`;

/** A two-location link: `${p}-east` (hosts a:2, b:1; 2 route tables) and `${p}-west` (one host). */
function twoLocations(p: string, extra: Partial<import("../../lib/index").LinkArgs> = {}) {
  const east = new lib.AwsLocation(`${p}-east`, {
    vpcId: VPC,
    subnetId: SUBNET,
    routeTableIds: [rtb(1), rtb(2)],
    routes: ["10.0.0.0/16"],
    hosts: [{ name: "a", priority: 2 }, { name: "b" }],
  }, captured());
  const west = new lib.AwsLocation(`${p}-west`, { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(3)], routes: ["10.1.0.0/16", "10.2.0.0/16"] }, captured());
  const link = new lib.Link(p, { locations: [east, west], stateService: { location: `${p}-east` }, ...extra }, captured());
  return { east, west, link };
}

function policyOf(name: string) {
  const policy = one(name, "aws:iam/rolePolicy:RolePolicy").inputs.policy;
  return JSON.parse(String(policy)) as { Statement: { Sid: string; Action: unknown; Resource: unknown; Condition?: unknown }[] };
}

const PARAMETER = "aws:ssm/parameter:Parameter";
const ROUTE = "aws:ec2/route:Route";
const INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule";
const EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule";
const PREFIX_LIST = "aws:ec2/managedPrefixList:ManagedPrefixList";
const BUCKET = "aws:s3/bucket:Bucket";
const OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2";
/** The agent bundle's object key in a location's bucket (by its SHA-256). */
const bundleKey = () => `sitelink/agent/${lib.agentBundle().sha256}/sitelink.js`;

/** The value of a parameter as the mocks saw it (the provider marks every parameter value secret). */
const parameterValue = (name: string) => (one(name, PARAMETER).inputs.value as { value: string }).value;

describe("Link with its own state service", () => {
  it("creates exactly the resources of two locations and a state service", async () => {
    twoLocations("cnt");
    await settle();
    const byType = (prefix: string) => {
      const counts: Record<string, number> = {};
      for (const r of named(prefix)) counts[r.type] = (counts[r.type] ?? 0) + 1;
      return counts;
    };
    expect(byType("cnt-east")).toEqual({
      "sitelink:index:AwsLocation": 1,
      "aws:ec2/securityGroup:SecurityGroup": 1,
      "aws:ec2/networkInterface:NetworkInterface": 2,
      "aws:ec2/eip:Eip": 2,
      // URI and config of each host
      [PARAMETER]: 4,
      "aws:iam/role:Role": 2,
      "aws:iam/rolePolicy:RolePolicy": 2,
      "aws:iam/instanceProfile:InstanceProfile": 2,
      "aws:ec2/instance:Instance": 2,
      // the peer hosts' addresses
      [PREFIX_LIST]: 1,
      // 3 ports from the prefix list + 2 own hosts (host checks) + 1 site route
      [INGRESS]: 6,
      // ike, natt, check, https, http, state + 1 site route
      [EGRESS]: 7,
      // 2 route tables × 2 remote routes
      [ROUTE]: 4,
      // the agent bundle: a private bucket (public access blocked, owner-enforced, encrypted) and its object
      [BUCKET]: 1,
      "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": 1,
      "aws:s3/bucketOwnershipControls:BucketOwnershipControls": 1,
      "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": 1,
      [OBJECT]: 1,
    });
    expect(byType("cnt-state")).toEqual({
      "sitelink:index:StateService": 1,
      "random:index/randomBytes:RandomBytes": 1,
      "tls:index/privateKey:PrivateKey": 1,
      "tls:index/selfSignedCert:SelfSignedCert": 1,
      "aws:ec2/networkInterface:NetworkInterface": 1,
      "aws:ec2/eip:Eip": 1,
      // agent (source, SHA-256), topology, TLS certificate, TLS key, master key
      [PARAMETER]: 5,
      "aws:ec2/securityGroup:SecurityGroup": 1,
      // 3 link hosts
      [INGRESS]: 3,
      [EGRESS]: 2,
      "aws:iam/role:Role": 1,
      "aws:iam/rolePolicy:RolePolicy": 1,
      "aws:iam/instanceProfile:InstanceProfile": 1,
      "aws:ebs/volume:Volume": 1,
      "aws:ec2/instance:Instance": 1,
      "aws:ec2/volumeAttachment:VolumeAttachment": 1,
    });
  });

  it("admits IKE, NAT-T and host checks only from the peer hosts (one prefix list), host checks from its own hosts, every rule on the location's own group", async () => {
    const { east, west, link } = twoLocations("sg");
    const hosts = await valueOf(link.hosts);
    await settle();
    const addr = (id: string, which: "publicAddress" | "privateAddress") => `${hosts.find((h) => h.id === id)![which]}/32`;
    const peers = await valueOf(east.peerPrefixList!.id);
    expect(one("sg-east-peers", PREFIX_LIST).inputs).toEqual({
      name: "sitelink-sg-sg-east-peers",
      addressFamily: "IPv4",
      // Exactly the peers: the list's size counts against the group's rule quota.
      maxEntries: 1,
      entries: [{ cidr: addr("sg.sg-west.a", "publicAddress"), description: "link host sg.sg-west.a" }],
      tags: { Name: "sitelink-sg-sg-east-peers" },
    });
    expect(one("sg-west-peers", PREFIX_LIST).inputs).toMatchObject({
      maxEntries: 2,
      entries: [
        { cidr: addr("sg.sg-east.a", "publicAddress"), description: "link host sg.sg-east.a" },
        { cidr: addr("sg.sg-east.b", "publicAddress"), description: "link host sg.sg-east.b" },
      ],
    });
    const ingress = named("sg-east-in", INGRESS).map((r) => ({
      name: r.name,
      ipProtocol: r.inputs.ipProtocol,
      fromPort: r.inputs.fromPort,
      toPort: r.inputs.toPort,
      cidrIpv4: r.inputs.cidrIpv4,
      prefixListId: r.inputs.prefixListId,
    }));
    ingress.sort((a, b) => a.name.localeCompare(b.name));
    expect(ingress).toEqual([
      { name: "sg-east-in-check", ipProtocol: "tcp", fromPort: 9790, toPort: 9790, cidrIpv4: undefined, prefixListId: peers },
      { name: "sg-east-in-check-sg.sg-east.a", ipProtocol: "tcp", fromPort: 9790, toPort: 9790, cidrIpv4: addr("sg.sg-east.a", "privateAddress"), prefixListId: undefined },
      { name: "sg-east-in-check-sg.sg-east.b", ipProtocol: "tcp", fromPort: 9790, toPort: 9790, cidrIpv4: addr("sg.sg-east.b", "privateAddress"), prefixListId: undefined },
      { name: "sg-east-in-ike", ipProtocol: "udp", fromPort: 500, toPort: 500, cidrIpv4: undefined, prefixListId: peers },
      { name: "sg-east-in-natt", ipProtocol: "udp", fromPort: 4500, toPort: 4500, cidrIpv4: undefined, prefixListId: peers },
      { name: "sg-east-in-site-10.0.0.0-16", ipProtocol: "-1", fromPort: undefined, toPort: undefined, cidrIpv4: "10.0.0.0/16", prefixListId: undefined },
    ]);
    // Every rule hangs off its location's own group (and the two groups differ), and nothing is open to the internet.
    const eastSg = await valueOf(east.securityGroup!.id);
    const westSg = await valueOf(west.securityGroup!.id);
    expect(eastSg).not.toBe(westSg);
    const rules = (prefix: string) => [...named(prefix, INGRESS), ...named(prefix, EGRESS)];
    expect(rules("sg-east-")).toHaveLength(13);
    for (const r of rules("sg-east-")) expect(r.inputs.securityGroupId, r.name).toBe(eastSg);
    for (const r of rules("sg-west-")) expect(r.inputs.securityGroupId, r.name).toBe(westSg);
    for (const h of ["a", "b"]) expect(one(`sg-east-${h}-eni`).inputs.securityGroups).toEqual([eastSg]);
    expect(named("sg-east-in").every((r) => r.inputs.cidrIpv4 !== "0.0.0.0/0")).toBe(true);
    const egress = named("sg-east-out", EGRESS)
      .map((r) => [r.name, r.inputs.ipProtocol, r.inputs.fromPort, r.inputs.cidrIpv4])
      .sort((a, b) => String(a[0]).localeCompare(String(b[0])));
    const stateAddress = (await valueOf(link.stateUrl)).replace(/^https:\/\/(.*):9443$/, "$1");
    expect(egress).toEqual([
      ["sg-east-out-check", "tcp", 9790, "0.0.0.0/0"],
      ["sg-east-out-http", "tcp", 80, "0.0.0.0/0"],
      ["sg-east-out-https", "tcp", 443, "0.0.0.0/0"],
      ["sg-east-out-ike", "udp", 500, "0.0.0.0/0"],
      ["sg-east-out-natt", "udp", 4500, "0.0.0.0/0"],
      ["sg-east-out-site-10.0.0.0-16", "-1", undefined, "10.0.0.0/16"],
      ["sg-east-out-state", "tcp", 9443, `${stateAddress}/32`],
    ]);
  });

  it("opens SSH and the state port only to the admin networks given", async () => {
    twoLocations("adm", { adminCidrs: ["192.0.2.0/24"] });
    await settle();
    const ssh = named("adm-", INGRESS).filter((r) => r.inputs.fromPort === 22);
    expect(ssh.map((r) => [r.name, r.inputs.cidrIpv4])).toEqual([
      ["adm-east-in-ssh-192.0.2.0-24", "192.0.2.0/24"],
      ["adm-west-in-ssh-192.0.2.0-24", "192.0.2.0/24"],
      ["adm-state-in-ssh-192.0.2.0-24", "192.0.2.0/24"],
    ]);
    expect(one("adm-state-in-admin-192.0.2.0-24").inputs).toMatchObject({ ipProtocol: "tcp", fromPort: 9443, toPort: 9443, cidrIpv4: "192.0.2.0/24" });
    // Without adminCidrs there is no SSH rule at all.
    twoLocations("noadm");
    await settle();
    expect(named("noadm-", INGRESS).filter((r) => r.inputs.fromPort === 22)).toEqual([]);
  });

  it("lets each host change only its own location's route tables, read only its own parameters and its location's agent object", async () => {
    twoLocations("iam");
    await settle();
    const arn = (host: string, p: string) => `arn:aws:ssm:us-east-1:${ACCOUNT_ID}:parameter/sitelink/iam/${host}/${p}`;
    expect(policyOf("iam-east-a-policy").Statement).toEqual([
      {
        Sid: "OwnRouteTables",
        Effect: "Allow",
        Action: ["ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute"],
        Resource: [`arn:aws:ec2:us-east-1:${ACCOUNT_ID}:route-table/${rtb(1)}`, `arn:aws:ec2:us-east-1:${ACCOUNT_ID}:route-table/${rtb(2)}`],
      },
      { Sid: "Describe", Effect: "Allow", Action: ["ec2:DescribeRouteTables"], Resource: "*" },
      { Sid: "OwnParametersRead", Effect: "Allow", Action: "ssm:GetParameter", Resource: ["uri", "config"].map((p) => arn("iam-east/a", p)) },
      {
        Sid: "OwnHostUriDecrypt",
        Effect: "Allow",
        Action: "kms:Decrypt",
        Resource: `arn:aws:kms:us-east-1:${ACCOUNT_ID}:key/*`,
        Condition: {
          StringEquals: { "kms:ViaService": "ssm.us-east-1.amazonaws.com", "kms:EncryptionContext:PARAMETER_ARN": [arn("iam-east/a", "uri")] },
        },
      },
      // Exactly the agent bundle's object in its location's bucket: no listing, no other key, no other bucket.
      { Sid: "AgentBundle", Effect: "Allow", Action: "s3:GetObject", Resource: `arn:aws:s3:::${one("iam-east-agent", BUCKET).id!}/${bundleKey()}` },
    ]);
    expect(policyOf("iam-east-b-policy").Statement[2]!.Resource).toEqual(["uri", "config"].map((p) => arn("iam-east/b", p)));
    expect(policyOf("iam-east-b-policy").Statement[4]!.Resource).toBe(`arn:aws:s3:::${one("iam-east-agent", BUCKET).id!}/${bundleKey()}`);
    expect(policyOf("iam-west-a-policy").Statement[4]!.Resource).toBe(`arn:aws:s3:::${one("iam-west-agent", BUCKET).id!}/${bundleKey()}`);
    // No bucket policy: the roles' grants are the only way in.
    expect(resources.filter((r) => r.type === "aws:s3/bucketPolicy:BucketPolicy")).toEqual([]);
    expect(policyOf("iam-west-a-policy").Statement[0]!.Resource).toEqual([`arn:aws:ec2:us-east-1:${ACCOUNT_ID}:route-table/${rtb(3)}`]);
    const assume = JSON.parse(String(one("iam-east-a-role").inputs.assumeRolePolicy));
    expect(assume.Statement).toEqual([{ Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" }]);
  });

  it("points every remote route of every route table at the highest-priority host, and lets the agent own the target", async () => {
    const { east } = twoLocations("rt");
    await settle();
    const eniA = await valueOf(east.hosts[0]!.networkInterface.id);
    const routes = named("rt-east-route", ROUTE).map((r) => [r.name, r.inputs.routeTableId, r.inputs.destinationCidrBlock, r.inputs.networkInterfaceId]);
    expect(routes).toEqual([
      [`rt-east-route-${rtb(1)}-10.1.0.0-16`, rtb(1), "10.1.0.0/16", eniA],
      [`rt-east-route-${rtb(1)}-10.2.0.0-16`, rtb(1), "10.2.0.0/16", eniA],
      [`rt-east-route-${rtb(2)}-10.1.0.0-16`, rtb(2), "10.1.0.0/16", eniA],
      [`rt-east-route-${rtb(2)}-10.2.0.0-16`, rtb(2), "10.2.0.0/16", eniA],
    ]);
    expect(named("rt-west-route").map((r) => [r.inputs.routeTableId, r.inputs.destinationCidrBlock])).toEqual([[rtb(3), "10.0.0.0/16"]]);
    for (const r of named("rt-", ROUTE)) {
      expect(optionsOf(r.name, ROUTE).opts.ignoreChanges).toEqual(["networkInterfaceId"]);
    }
  });

  it("names routes by their table, never its position: removing or reordering a table renames no other route", async () => {
    const peer = (p: string) => new lib.AwsLocation(`${p}-w`, { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(9)], routes: ["10.1.0.0/16"] });
    const programs = {
      both: [rtb(1), rtb(2)],
      swapped: [rtb(2), rtb(1)],
      second: [rtb(2)],
    };
    for (const [p, ids] of Object.entries(programs)) {
      const e = new lib.AwsLocation(`${p}-e`, { vpcId: VPC, subnetId: SUBNET, routeTableIds: ids, routes: ["10.0.0.0/16"] });
      new lib.Link(p, { locations: [e, peer(p)], stateService: { location: `${p}-w` } });
    }
    // Outputs as ids: the record's keys name the routes, whatever the order of the record.
    const table = (n: number) => pulumi.output(rtb(n));
    const keyed = { keyed: { public: table(1), private: table(2) }, rekeyed: { private: table(2) } };
    for (const [p, ids] of Object.entries(keyed)) {
      const e = new lib.AwsLocation(`${p}-e`, { vpcId: VPC, subnetId: SUBNET, routeTableIds: ids, routes: ["10.0.0.0/16"] });
      new lib.Link(p, { locations: [e, peer(p)], stateService: { location: `${p}-w` } });
    }
    await settle();
    // A route's name (its URN), without the location prefix, against the table it is in.
    const routes = (p: string) => Object.fromEntries(named(`${p}-e-route`, ROUTE).map((r) => [r.name.slice(`${p}-e`.length), r.inputs.routeTableId]));
    const both = { [`-route-${rtb(1)}-10.1.0.0-16`]: rtb(1), [`-route-${rtb(2)}-10.1.0.0-16`]: rtb(2) };
    expect(routes("both")).toEqual(both);
    expect(routes("swapped")).toEqual(both);
    expect(routes("second")).toEqual({ [`-route-${rtb(2)}-10.1.0.0-16`]: rtb(2) });
    expect(routes("keyed")).toEqual({ "-route-public-10.1.0.0-16": rtb(1), "-route-private-10.1.0.0-16": rtb(2) });
    expect(routes("rekeyed")).toEqual({ "-route-private-10.1.0.0-16": rtb(2) });
    // The agent and the policy get the ids, whichever form named them.
    expect(policyOf("keyed-e-a-policy").Statement[0]!.Resource).toEqual([rtb(1), rtb(2)].map((id) => `arn:aws:ec2:us-east-1:${ACCOUNT_ID}:route-table/${id}`));
    expect(JSON.parse(parameterValue("keyed-e-a-config")).aws.routeTableIds).toEqual([rtb(1), rtb(2)]);
    // An Output in the list form has no name to give its routes: refused, naming the field and the fix.
    expect(() => new lib.AwsLocation("outl-e", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [table(1)] as unknown as string[], routes: ["10.0.0.0/16"] })).toThrow(
      'invalid arguments for AwsLocation "outl-e":\n  routeTableIds[0]: an Output cannot name routes (its value is unknown when they are declared): pass routeTableIds as a record of stable keys, e.g. { private: table.id }',
    );
  });

  it("builds hosts as forwarding instances on a persistent interface, IMDSv2 only, encrypted, Ubuntu by lookup", async () => {
    const { east } = twoLocations("inst");
    await settle();
    const eni = one("inst-east-a-eni").inputs;
    expect(eni).toMatchObject({ subnetId: SUBNET, sourceDestCheck: false });
    expect(one("inst-east-a-eip").inputs).toMatchObject({ domain: "vpc", networkInterface: await valueOf(east.hosts[0]!.networkInterface.id) });
    const instance = one("inst-east-a", "aws:ec2/instance:Instance").inputs;
    expect(instance).toMatchObject({
      ami: AMI_ID,
      instanceType: "t3.small",
      iamInstanceProfile: "inst-east-a-profile-profile",
      primaryNetworkInterface: { networkInterfaceId: await valueOf(east.hosts[0]!.networkInterface.id) },
      metadataOptions: { httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: 1 },
      rootBlockDevice: { encrypted: true, volumeType: "gp3" },
    });
    // User data is never replaced nor updated in place (a stop/start of every host): it is the stable bootstrap.
    expect(instance.userDataReplaceOnChange).toBeUndefined();
    const opts = optionsOf("inst-east-a", "aws:ec2/instance:Instance").opts;
    expect(opts.deleteBeforeReplace).toBe(true);
    expect(opts.ignoreChanges).toEqual(["userData", "ami"]);
    const deps = await Promise.all((opts.dependsOn as pulumi.Resource[]).map((d) => valueOf(d.urn)));
    // First boot reads its parameters and fetches the agent bundle: both in place first.
    expect(deps.map((u) => u.split("::").at(-1))).toEqual(["inst-east-a-eip", "inst-east-a-policy", "inst-east-a-uri", "inst-east-a-config", "inst-east-agent"]);
    const amiLookup = invokes.find((i) => i.token === "aws:ec2/getAmi:getAmi")!.inputs;
    expect(amiLookup).toMatchObject({
      owners: ["099720109477"],
      mostRecent: true,
      filters: [
        { name: "name", values: ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"] },
        { name: "virtualization-type", values: ["hvm"] },
      ],
    });
  });

  it("uses a given AMI, instance type and Node.js source, and then lets AMI changes through", async () => {
    const loc = new lib.AwsLocation(
      "ami-east",
      { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(1)], routes: ["10.0.0.0/16"], ami: "ami-00000000000000001", instanceType: "c7g.large", nodeSource: "preinstalled" },
      captured(),
    );
    const other = new lib.AwsLocation("ami-west", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(2)], routes: ["10.1.0.0/16"] });
    new lib.Link("ami", { locations: [loc, other], stateService: { location: "ami-east" } });
    await settle();
    expect(one("ami-east-a", "aws:ec2/instance:Instance").inputs).toMatchObject({ ami: "ami-00000000000000001", instanceType: "c7g.large" });
    expect(optionsOf("ami-east-a", "aws:ec2/instance:Instance").opts.ignoreChanges).toEqual(["userData"]);
    // No third-party repository on these hosts, nor on the state service placed in their location.
    for (const name of ["ami-east-a", "ami-state"]) {
      const userData = String(one(name, "aws:ec2/instance:Instance").inputs.userData);
      expect(userData).toContain("nodeSource preinstalled adds no repository");
      expect(userData).not.toContain("deb.nodesource.com");
    }
    expect(String(one("ami-west-a", "aws:ec2/instance:Instance").inputs.userData)).toContain("https://deb.nodesource.com/node_22.x nodistro main");
  });

  it("keeps the per-host config (naming the agent and its SHA-256) in a String parameter the host refreshes from, and no secret anywhere in plain inputs", async () => {
    const { link } = twoLocations("sec");
    const hosts = await valueOf(link.hosts);
    await settle();
    const host = hosts.find((h) => h.id === "sec.sec-east.a")!;
    expect(one("sec-east-a-config", PARAMETER).inputs).toMatchObject({ name: "/sitelink/sec/sec-east/a/config", type: "String", description: "sitelink agent config of sec.sec-east.a" });
    const config = parameterValue("sec-east-a-config");
    // Exactly the agent's config, through its own schema (defaults written out), pretty as the CLI writes it.
    const expected = agentConfigSchema.parse({
      agentSource: `s3://${one("sec-east-agent", BUCKET).id!}/${bundleKey()}`,
      agentSha256: lib.agentBundle().sha256,
      uriSources: [{ kind: "aws-ssm", parameter: "/sitelink/sec/sec-east/a/uri", region: "us-east-1" }],
      provider: "aws",
      aws: { routeTableIds: [rtb(1), rtb(2)], region: "us-east-1", linkInterfaceIds: [one("sec-east-a-eni").id!, one("sec-east-b-eni").id!] },
      allowedRoutes: ["10.1.0.0/16", "10.2.0.0/16"],
      publicAddress: host.publicAddress,
      privateAddress: host.privateAddress,
    });
    expect(config).toBe(JSON.stringify(expected, null, 2));
    expect(named("sec-east-a-package")).toEqual([]);

    // The user data is the stable bootstrap: parameter names and region, nothing that changes with the program.
    const userData = String(one("sec-east-a", "aws:ec2/instance:Instance").inputs.userData);
    expect(userData).toBe(lib.renderAgentBootstrap({ region: "us-east-1", parameters: { config: "/sitelink/sec/sec-east/a/config", uri: "/sitelink/sec/sec-east/a/uri" } }));
    for (const changing of [host.publicAddress, host.privateAddress, rtb(1), "sitelink@", lib.agentBundle().sha256]) expect(userData).not.toContain(changing);

    const masterKey = Buffer.from(MASTER_KEY_BASE64, "base64");
    const hostSecret = deriveHostSecret(masterKey, "sec.sec-east.a");
    const uriParameter = one("sec-east-a-uri").inputs;
    expect(uriParameter.type).toBe("SecureString");
    expect(isSecretValue(uriParameter.value)).toBe(true);
    const uri = parseHostUri(String((uriParameter.value as { value: string }).value));
    const stateUrl = new URL(await valueOf(link.stateUrl));
    expect(uri).toEqual({ hostId: "sec.sec-east.a", secret: hostSecret, endpoints: [{ host: stateUrl.hostname, port: 9443 }], fingerprints: [await valueOf(link.fingerprint)] });

    // No secret in the String parameters nor in any other plain input.
    const secrets = [MASTER_KEY_BASE64, hostSecret, "sitelink://", "TESTKEYMATERIAL"];
    for (const p of ["sec-east-a-config", "sec-state-agent", "sec-state-topology"]) {
      for (const secret of secrets) expect(parameterValue(p)).not.toContain(secret);
    }
    const everythingPlain = JSON.stringify(named("sec").map((r) => plain(r.inputs)));
    for (const secret of secrets) expect(everythingPlain).not.toContain(secret);
    // …while the secrets did reach the state service's secure parameters.
    expect(one("sec-state-master-key-param").inputs).toMatchObject({ type: "SecureString", name: "/sitelink/sec/state/master-key" });
    expect(parameterValue("sec-state-master-key-param")).toBe(MASTER_KEY_BASE64);
    expect(one("sec-state-tls-key-param").inputs).toMatchObject({ type: "SecureString", value: { value: TLS_KEY_PEM } });
  });

  it("runs the state service on its own instance with a persistent volume, its port open to link hosts only", async () => {
    const { link } = twoLocations("st");
    const hosts = await valueOf(link.hosts);
    await settle();
    const state = link.stateService!;
    const address = await valueOf(state.address);
    expect(await valueOf(link.stateUrl)).toBe(`https://${address}:9443`);
    expect(one("st-state-tls-cert").inputs).toMatchObject({ ipAddresses: [address], validityPeriodHours: 87600, allowedUses: ["digital_signature", "key_encipherment", "server_auth"] });
    expect(one("st-state-tls-key").inputs).toMatchObject({ algorithm: "ECDSA", ecdsaCurve: "P256" });
    expect(one("st-state-master-key").inputs).toMatchObject({ length: 32 });
    const ingress = named("st-state-in", INGRESS).map((r) => [r.inputs.ipProtocol, r.inputs.fromPort, r.inputs.cidrIpv4]);
    expect(ingress).toEqual(hosts.map((h) => ["tcp", 9443, `${h.publicAddress}/32`]));
    const stateSg = one("st-state-sg", "aws:ec2/securityGroup:SecurityGroup").id;
    for (const r of [...named("st-state-in", INGRESS), ...named("st-state-out", EGRESS)]) expect(r.inputs.securityGroupId, r.name).toBe(stateSg);
    const instance = one("st-state", "aws:ec2/instance:Instance").inputs;
    expect(instance).toMatchObject({
      instanceType: "t3.micro",
      primaryNetworkInterface: { networkInterfaceId: one("st-state-eni").id },
      metadataOptions: { httpTokens: "required" },
      rootBlockDevice: { encrypted: true },
      // One instance: a new bootstrap replaces it (address, keys and volume stay) rather than stopping it for nothing.
      userDataReplaceOnChange: true,
    });
    expect(one("st-state-eni").inputs).toMatchObject({ subnetId: SUBNET });
    expect(one("st-state-eip").inputs).toMatchObject({ domain: "vpc", networkInterface: one("st-state-eni").id });
    expect(optionsOf("st-state", "aws:ec2/instance:Instance").opts).toMatchObject({ deleteBeforeReplace: true, ignoreChanges: ["ami"] });
    expect(one("st-state-data").inputs).toMatchObject({ availabilityZone: "us-east-1a", size: 8, type: "gp3", encrypted: true });
    const volumeId = await valueOf(state.volume.id);
    expect(one("st-state-data-attach").inputs).toMatchObject({ volumeId, instanceId: await valueOf(state.instance.id), deviceName: "/dev/sdf" });
    const userData = String(instance.userData);
    expect(userData).toContain(`volume_id='${volumeId.replace("-", "")}'`);
    expect(userData).toContain("ExecStart=/usr/local/bin/sitelink state serve --topology /etc/sitelink/topology.json --data /var/lib/sitelink-state");
    // Topology and agent travel through Parameter Store and never through user data: a new document or version does not touch the instance.
    const topology = one("st-state-topology").inputs;
    expect(topology).toMatchObject({ name: "/sitelink/st/state/topology", type: "String" });
    const objectKey = bundleKey();
    const agent = { agentSource: `s3://${one("st-east-agent", BUCKET).id!}/${objectKey}`, agentSha256: lib.agentBundle().sha256 };
    expect(one("st-state-agent").inputs).toMatchObject({ name: "/sitelink/st/state/agent", type: "String", value: { value: JSON.stringify(agent) } });
    expect(userData).not.toContain(String((topology.value as { value: string }).value));
    expect(userData).not.toContain(hosts[0]!.privateAddress);
    expect(userData).not.toContain("sitelink@");
    expect(userData).not.toContain(agent.agentSha256);
    const statePolicy = policyOf("st-state-policy");
    const arn = (p: string) => `arn:aws:ssm:us-east-1:${ACCOUNT_ID}:parameter/sitelink/st/state/${p}`;
    expect(statePolicy.Statement.map((s) => [s.Sid, s.Action])).toEqual([
      ["StateFilesRead", "ssm:GetParameter"],
      ["StateKeysDecrypt", "kms:Decrypt"],
      ["AgentBundle", "s3:GetObject"],
    ]);
    expect(statePolicy.Statement[0]!.Resource).toEqual(["agent", "topology", "tls-cert", "tls-key", "master-key"].map(arn));
    // The bundle its location published for its hosts: exactly that object.
    expect(statePolicy.Statement[2]!.Resource).toBe(`arn:aws:s3:::${one("st-east-agent", BUCKET).id!}/${objectKey}`);
    expect((statePolicy.Statement[1]!.Condition as { StringEquals: Record<string, unknown> }).StringEquals["kms:EncryptionContext:PARAMETER_ARN"]).toEqual(["tls-key", "master-key"].map(arn));
  });

  it("publishes the topology only after the routes Pulumi creates exist, so no agent creates one first", async () => {
    const { east, west } = twoLocations("ord");
    await settle();
    const routes = await Promise.all([...east.routeEntries, ...west.routeEntries].map((r) => valueOf(r.urn)));
    expect(routes).toHaveLength(5);
    expect(await dependsOnUrns(optionsOf("ord-state-topology", PARAMETER).opts.dependsOn)).toEqual(routes);
    // …and only the topology waits: keys and agent do not.
    expect(optionsOf("ord-state-agent", PARAMETER).opts.dependsOn).toBeUndefined();
  });

  it("renders the topology document, compact, from the hosts' addresses, and the outputs with initial roles", async () => {
    const { link } = twoLocations("top", { cipher: { ike: "aes256-sha256-x25519", force: true } });
    const hosts = await valueOf(link.hosts);
    expect(hosts.map((h) => [h.id, h.location, h.name, h.priority, h.role])).toEqual([
      ["top.top-east.a", "top-east", "a", 2, "active"],
      ["top.top-east.b", "top-east", "b", 1, "standby"],
      ["top.top-west.a", "top-west", "a", 1, "active"],
    ]);
    const text = await valueOf(link.topology);
    const doc = parseTopology(JSON.parse(text));
    // Compact: the parameter holds at most 8 KB.
    expect(text).toBe(JSON.stringify(JSON.parse(text)));
    const [east, west] = doc.links[0]!.locations;
    expect(doc.links[0]!.name).toBe("top");
    expect(doc.links[0]!.cipher).toEqual({ ike: "aes256-sha256-x25519", esp: "aes128gcm128-x25519", force: true });
    expect(east!.hosts.map((h) => [h.id, h.priority, h.publicAddress, h.privateAddress])).toEqual(
      hosts.filter((h) => h.location === "top-east").map((h) => [h.id, h.priority, h.publicAddress, h.privateAddress]),
    );
    expect(west!.routes).toEqual(["10.1.0.0/16", "10.2.0.0/16"]);
    await settle();
    expect(parameterValue("top-state-topology")).toBe(text);
  });

  it("marks the master key secret and the fingerprint as the certificate's", async () => {
    const { link } = twoLocations("out");
    expect((await resolve(link.stateService!.masterKey)).secret).toBe(true);
    const fp = await resolve(link.fingerprint);
    expect(fp.value).toBe(new (await import("node:crypto")).X509Certificate(CERT_PEM).fingerprint256.replaceAll(":", "").toLowerCase());
    expect(fp.value).toBe(sha256Hex(Buffer.from(CERT_PEM.split("\n").filter((l) => !l.startsWith("-----")).join(""), "base64")));
    expect((await resolve(link.hosts)).secret).toBe(false);
  });

  it("parents every child to its component (URN type chains)", async () => {
    const { east, link } = twoLocations("par");
    expect(await valueOf(east.routeEntries[0]!.urn)).toBe(`urn:pulumi:stack::project::sitelink:index:AwsLocation$aws:ec2/route:Route::par-east-route-${rtb(1)}-10.1.0.0-16`);
    expect(await valueOf(east.hosts[0]!.instance!.urn)).toBe("urn:pulumi:stack::project::sitelink:index:AwsLocation$aws:ec2/instance:Instance::par-east-a");
    // (the mock monitor chains only the parent's own type)
    expect(await valueOf(link.stateService!.urn)).toBe("urn:pulumi:stack::project::sitelink:index:Link$sitelink:index:StateService::par-state");
    expect(await valueOf(link.stateService!.instance.urn)).toBe("urn:pulumi:stack::project::sitelink:index:StateService$aws:ec2/instance:Instance::par-state");
    await settle();
    const children = options.filter((o) => o.name.startsWith("par-") && o.type.startsWith("aws:"));
    expect(children.length).toBeGreaterThan(0);
    for (const c of children) expect(["sitelink:index:AwsLocation", "sitelink:index:StateService"]).toContain(c.parentType);
  });
});

describe("validation at construction", () => {
  it("throws every AwsLocation problem before registering anything", async () => {
    expect(() => new lib.AwsLocation("bad-loc", { vpcId: "vpc-1", subnetId: SUBNET, routeTableIds: ["rtb-x"], routes: ["10.0.0.1/16"] })).toThrow(
      'invalid arguments for AwsLocation "bad-loc":\n  vpcId: must be a VPC id (vpc-…)\n  routeTableIds[0]: must be a route table id (rtb-…)\n  routes[0]: "10.0.0.1/16" has host bits set (did you mean 10.0.0.0/16?)',
    );
    await settle();
    expect(named("bad-loc")).toEqual([]);
  });

  it("throws every Link problem before the link or any location child is registered", async () => {
    const a = new lib.AwsLocation("badl-a", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(1)], routes: ["10.0.0.0/16"] });
    const b = new lib.AwsLocation("badl-b", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(2)], routes: ["10.0.128.0/17"] });
    expect(() => new lib.Link("badl", { locations: [a, b], stateService: { location: "nowhere" } })).toThrow(
      'invalid arguments for Link "badl":\n  stateService.location: "nowhere" is not a location of this link (locations: badl-a, badl-b)\n' +
        '  locations[1].routes[0]: 10.0.128.0/17 overlaps 10.0.0.0/16 of location "badl-a" (locations[0].routes[0])',
    );
    await settle();
    // Only the two (empty) location components exist: no link, no cloud resource.
    expect(named("badl").map((r) => r.type)).toEqual(["sitelink:index:AwsLocation", "sitelink:index:AwsLocation"]);
    // A location taken by one link cannot join another.
    const c = new lib.AwsLocation("badl-c", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(3)], routes: ["10.3.0.0/16"] });
    const d = new lib.AwsLocation("badl-d", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(4)], routes: ["10.4.0.0/16"] });
    new lib.Link("badl-one", { locations: [c, d], stateService: { location: "badl-c" } });
    const e = new lib.AwsLocation("badl-e", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(5)], routes: ["10.5.0.0/16"] });
    expect(() => new lib.Link("badl-two", { locations: [c, e], stateService: { location: "badl-e" } })).toThrow('locations[0]: location "badl-c" already belongs to link "badl-one"');
  });

  it("throws every StateService problem before registering anything, like the other components", async () => {
    const loc = new lib.AwsLocation("bads-a", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(1)], routes: ["10.0.0.0/16"] });
    const gcpLike = { spec: { name: "g", cloud: "gcp", routes: [], hosts: [] } } as unknown as import("../../lib/index").AwsLocation;
    expect(
      () => new lib.StateService("bads-state", { link: "", location: gcpLike, hosts: [], topology: "{}", agentPackage: { npmSpec: "x y", sha256: "a".repeat(64) }, port: 0, volumeSize: 1.5, adminCidrs: ["10.0.0.1/8"], instanceType: "big" }),
    ).toThrow(
      'invalid arguments for StateService "bads-state":\n' +
        "  link: must be the link's name\n" +
        "  agentPackage.npmSpec: must be an npm spec without spaces or quotes\n" +
        '  adminCidrs[0]: "10.0.0.1/8" has host bits set (did you mean 10.0.0.0/8?)\n' +
        "  port: Too small: expected number to be >=1\n" +
        "  volumeSize: Invalid input: expected int, received number\n" +
        "  location: must be an AwsLocation\n" +
        "  instanceType: must be an EC2 instance type such as t3.small",
    );
    expect(() => new lib.StateService("bads-x", { link: "l", location: loc, hosts: [], topology: "{}", extra: 1 } as never)).toThrow('invalid arguments for StateService "bads-x":\n  (args): Unrecognized key: "extra"');
    await settle();
    expect(named("bads-state")).toEqual([]);
    expect(named("bads-x")).toEqual([]);
  });
});

describe("providers, external state service, three locations", () => {
  it("creates each location's resources with its own provider, and the state service with its location's", async () => {
    const east = new aws.Provider("prov-east", { region: "us-east-1" });
    const west = new aws.Provider("prov-west", { region: "us-west-2" });
    const a = new lib.AwsLocation("prv-a", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(1)], routes: ["10.0.0.0/16"] }, { provider: east });
    const b = new lib.AwsLocation("prv-b", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(2)], routes: ["10.1.0.0/16"] }, { provider: west });
    new lib.Link("prv", { locations: [a, b], stateService: { location: "prv-b" } });
    await settle();
    const providerOf = (name: string) => one(name).provider?.split("::")[3];
    expect(providerOf("prv-a-a")).toBe("prov-east");
    expect(providerOf(`prv-a-route-${rtb(1)}-10.1.0.0-16`)).toBe("prov-east");
    // Prefix lists are regional: each location's in its own region.
    expect(providerOf("prv-a-peers")).toBe("prov-east");
    expect(providerOf("prv-b-peers")).toBe("prov-west");
    expect(providerOf("prv-b-a")).toBe("prov-west");
    expect(one("prv-state", "aws:ec2/instance:Instance").provider?.split("::")[3]).toBe("prov-west");
    // Region-specific ARNs and config follow the provider.
    expect(policyOf("prv-b-a-policy").Statement[0]!.Resource).toEqual([`arn:aws:ec2:us-west-2:${ACCOUNT_ID}:route-table/${rtb(2)}`]);
    expect(JSON.parse(parameterValue("prv-b-a-config")).aws.region).toBe("us-west-2");
    expect(String(one("prv-b-a", "aws:ec2/instance:Instance").inputs.userData)).toContain("aws ssm get-parameter --region 'us-west-2'");
  });

  it("uses an external state service: no instance, URIs pointing at it", async () => {
    const fingerprint = "AB:".repeat(31) + "AB";
    const a = new lib.AwsLocation("ext-a", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(1)], routes: ["10.0.0.0/16"] });
    const b = new lib.AwsLocation("ext-b", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(2)], routes: ["10.1.0.0/16"] });
    const masterKey = pulumi.secret(Buffer.alloc(32, 9).toString("base64"));
    const link = new lib.Link("ext", { locations: [a, b], stateService: { url: "https://state.example.com:8443", fingerprint, masterKey } });
    expect(link.stateService).toBeUndefined();
    expect(await valueOf(link.fingerprint)).toBe("ab".repeat(32));
    await settle();
    expect(named("ext-state")).toEqual([]);
    const uri = parseHostUri(parameterValue("ext-a-a-uri"));
    expect(uri).toEqual({
      hostId: "ext.ext-a.a",
      secret: deriveHostSecret(Buffer.alloc(32, 9), "ext.ext-a.a"),
      endpoints: [{ host: "state.example.com", port: 8443 }],
      fingerprints: ["ab".repeat(32)],
    });
    expect(one("ext-a-out-state").inputs).toMatchObject({ fromPort: 8443, cidrIpv4: "0.0.0.0/0" });
  });

  it("links three locations in a full mesh, or only the listed pairs", async () => {
    const mk = (p: string, n: number) => new lib.AwsLocation(`${p}-${n}`, { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(n)], routes: [`10.${n}.0.0/16`] });
    const tri = new lib.Link("tri", { locations: [mk("tri", 1), mk("tri", 2), mk("tri", 3)], stateService: { location: "tri-1" } });
    const hub = new lib.Link("hub", { locations: [mk("hub", 1), mk("hub", 2), mk("hub", 3)], stateService: { location: "hub-1" }, connections: [["hub-1", "hub-2"], ["hub-1", "hub-3"]] });
    await Promise.all([valueOf(tri.hosts), valueOf(hub.hosts)]);
    await settle();
    const routes = (p: string) => named(p, ROUTE).map((r) => `${r.name.split("-route-")[0]}→${String(r.inputs.destinationCidrBlock)}`);
    expect(routes("tri-")).toEqual(["tri-1→10.2.0.0/16", "tri-1→10.3.0.0/16", "tri-2→10.1.0.0/16", "tri-2→10.3.0.0/16", "tri-3→10.1.0.0/16", "tri-3→10.2.0.0/16"]);
    expect(routes("hub-")).toEqual(["hub-1→10.2.0.0/16", "hub-1→10.3.0.0/16", "hub-2→10.1.0.0/16", "hub-3→10.1.0.0/16"]);
    // Spokes admit only the hub's host; the hub admits both spokes'.
    const peers = (name: string) => (one(name, PREFIX_LIST).inputs.entries as { description: string }[]).map((e) => e.description);
    expect(peers("hub-2-peers")).toEqual(["link host hub.hub-1.a"]);
    expect(peers("hub-3-peers")).toEqual(["link host hub.hub-1.a"]);
    expect(peers("hub-1-peers")).toEqual(["link host hub.hub-2.a", "link host hub.hub-3.a"]);
    expect(peers("tri-1-peers")).toEqual(["link host tri.tri-2.a", "link host tri.tri-3.a"]);
  });

  it("routes IPv6 CIDRs as IPv6 destinations and rules; every host forwards IPv6, so the bootstrap does not depend on the routes", async () => {
    const a = new lib.AwsLocation("six-a", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(1)], routes: ["10.0.0.0/16", "fd00:1::/64"] });
    const b = new lib.AwsLocation("six-b", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(2)], routes: ["10.1.0.0/16"] });
    new lib.Link("six", { locations: [a, b], stateService: { location: "six-a" } });
    await settle();
    expect(named("six-b-route").map((r) => [r.inputs.destinationCidrBlock, r.inputs.destinationIpv6CidrBlock])).toEqual([
      ["10.0.0.0/16", undefined],
      [undefined, "fd00:1::/64"],
    ]);
    expect(one("six-a-in-site-fd00-1---64").inputs).toMatchObject({ ipProtocol: "-1", cidrIpv6: "fd00:1::/64" });
    expect(one("six-a-in-site-fd00-1---64").inputs.cidrIpv4).toBeUndefined();
    for (const host of ["six-a-a", "six-b-a"]) {
      expect(String(one(host, "aws:ec2/instance:Instance").inputs.userData)).toContain("net.ipv6.conf.all.forwarding = 1");
    }
  });

  it("counts resources exactly: linear in locations and routes, plus the route entries (remote routes × route tables per location)", async () => {
    const cases = [
      { n: 2, r: 1, t: 1 },
      { n: 3, r: 1, t: 1 },
      { n: 3, r: 2, t: 3 },
      { n: 5, r: 1, t: 2 },
      { n: 5, r: 3, t: 1 },
    ];
    for (const { n, r, t } of cases) {
      const p = `lin${n}x${r}x${t}`;
      const locs = Array.from({ length: n }, (_, i) =>
        new lib.AwsLocation(`${p}-${i}`, {
          vpcId: VPC,
          subnetId: SUBNET,
          routeTableIds: Array.from({ length: t }, (_, k) => rtb(i * 10 + k + 1)),
          routes: Array.from({ length: r }, (_, k) => `10.${i}.${k * 16}.0/20`),
        }),
      );
      new lib.Link(p, { locations: locs, stateService: { location: `${p}-0` } });
    }
    await settle();
    const count = (p: string, type?: string) => resources.filter((x) => (x.name.startsWith(`${p}-`) || x.name === p) && (type === undefined || x.type === type)).length;
    for (const { n, r, t } of cases) {
      const p = `lin${n}x${r}x${t}`;
      // Per location (one host): component, sg, eni, eip, 2 parameters, role, policy, profile,
      // instance = 10; host check from itself 1; site in + out per route 2r; 6 egress; the peer
      // prefix list and its 3 rules = 4; the agent bundle's bucket, its 3 settings and its object = 5;
      // and its host's rule at the state service 1: 27 + 2r. Fixed: the link 1 and the state service's 20.
      expect(count(p) - count(p, ROUTE), p).toBe(1 + 20 + n * (27 + 2 * r));
      // Route entries: each location routes the other locations' routes in each of its tables.
      expect(count(p, ROUTE), p).toBe(n * (n - 1) * r * t);
    }
  });
});

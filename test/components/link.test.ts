// The AWS components under Pulumi mocks: exact resources, inputs, options, outputs and secrets.
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { agentConfigSchema } from "../../agent/host/config";
import { deriveHostSecret, sha256Hex } from "../../agent/signing";
import { parseHostUri } from "../../agent/uri";
import { parseTopology } from "../../lib/topology";
import {
  ACCOUNT_ID,
  AMI_ID,
  CERT_PEM,
  MASTER_KEY_BASE64,
  captured,
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
      "aws:ssm/parameter:Parameter": 2,
      "aws:iam/role:Role": 2,
      "aws:iam/rolePolicy:RolePolicy": 2,
      "aws:iam/instanceProfile:InstanceProfile": 2,
      "aws:ec2/instance:Instance": 2,
      // 1 peer host × 3 ports + 2 own hosts (host checks) + 1 site route
      "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": 6,
      // ike, natt, check, https, http, state + 1 site route
      "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": 7,
      // 2 route tables × 2 remote routes
      "aws:ec2/route:Route": 4,
    });
    expect(byType("cnt-state")).toEqual({
      "sitelink:index:StateService": 1,
      "random:index/randomBytes:RandomBytes": 1,
      "tls:index/privateKey:PrivateKey": 1,
      "tls:index/selfSignedCert:SelfSignedCert": 1,
      "aws:ec2/networkInterface:NetworkInterface": 1,
      "aws:ec2/eip:Eip": 1,
      "aws:ssm/parameter:Parameter": 4,
      "aws:ec2/securityGroup:SecurityGroup": 1,
      // 3 link hosts
      "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": 3,
      "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": 2,
      "aws:iam/role:Role": 1,
      "aws:iam/rolePolicy:RolePolicy": 1,
      "aws:iam/instanceProfile:InstanceProfile": 1,
      "aws:ebs/volume:Volume": 1,
      "aws:ec2/instance:Instance": 1,
      "aws:ec2/volumeAttachment:VolumeAttachment": 1,
    });
  });

  it("admits IKE, NAT-T and host checks only from the peer hosts, host checks from its own hosts", async () => {
    const { link } = twoLocations("sg");
    const hosts = await valueOf(link.hosts);
    await settle();
    const addr = (id: string, which: "publicAddress" | "privateAddress") => `${hosts.find((h) => h.id === id)![which]}/32`;
    const ingress = named("sg-east-in", "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule").map((r) => ({
      name: r.name,
      ipProtocol: r.inputs.ipProtocol,
      fromPort: r.inputs.fromPort,
      toPort: r.inputs.toPort,
      cidrIpv4: r.inputs.cidrIpv4,
    }));
    ingress.sort((a, b) => a.name.localeCompare(b.name));
    expect(ingress).toEqual([
      { name: "sg-east-in-check-sg.sg-east.a", ipProtocol: "tcp", fromPort: 9790, toPort: 9790, cidrIpv4: addr("sg.sg-east.a", "privateAddress") },
      { name: "sg-east-in-check-sg.sg-east.b", ipProtocol: "tcp", fromPort: 9790, toPort: 9790, cidrIpv4: addr("sg.sg-east.b", "privateAddress") },
      { name: "sg-east-in-check-sg.sg-west.a", ipProtocol: "tcp", fromPort: 9790, toPort: 9790, cidrIpv4: addr("sg.sg-west.a", "publicAddress") },
      { name: "sg-east-in-ike-sg.sg-west.a", ipProtocol: "udp", fromPort: 500, toPort: 500, cidrIpv4: addr("sg.sg-west.a", "publicAddress") },
      { name: "sg-east-in-natt-sg.sg-west.a", ipProtocol: "udp", fromPort: 4500, toPort: 4500, cidrIpv4: addr("sg.sg-west.a", "publicAddress") },
      { name: "sg-east-in-site-10.0.0.0-16", ipProtocol: "-1", fromPort: undefined, toPort: undefined, cidrIpv4: "10.0.0.0/16" },
    ]);
    // Every rule hangs off the location's own group, and nothing is open to the internet.
    const sgId = await valueOf((await import("@pulumi/pulumi")).output(one("sg-east-sg").inputs.vpcId));
    expect(sgId).toBe(VPC);
    expect(named("sg-east-in").every((r) => r.inputs.cidrIpv4 !== "0.0.0.0/0")).toBe(true);
    const egress = named("sg-east-out", "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
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
    const ssh = named("adm-", "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule").filter((r) => r.inputs.fromPort === 22);
    expect(ssh.map((r) => [r.name, r.inputs.cidrIpv4])).toEqual([
      ["adm-east-in-ssh-192.0.2.0-24", "192.0.2.0/24"],
      ["adm-west-in-ssh-192.0.2.0-24", "192.0.2.0/24"],
      ["adm-state-in-ssh-192.0.2.0-24", "192.0.2.0/24"],
    ]);
    expect(one("adm-state-in-admin-192.0.2.0-24").inputs).toMatchObject({ ipProtocol: "tcp", fromPort: 9443, toPort: 9443, cidrIpv4: "192.0.2.0/24" });
    // Without adminCidrs there is no SSH rule at all.
    twoLocations("noadm");
    await settle();
    expect(named("noadm-", "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule").filter((r) => r.inputs.fromPort === 22)).toEqual([]);
  });

  it("lets each host change only its own location's route tables and read only its own URI", async () => {
    twoLocations("iam");
    await settle();
    const policy = policyOf("iam-east-a-policy");
    expect(policy.Statement).toEqual([
      {
        Sid: "OwnRouteTables",
        Effect: "Allow",
        Action: ["ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute"],
        Resource: [`arn:aws:ec2:us-east-1:${ACCOUNT_ID}:route-table/${rtb(1)}`, `arn:aws:ec2:us-east-1:${ACCOUNT_ID}:route-table/${rtb(2)}`],
      },
      { Sid: "Describe", Effect: "Allow", Action: ["ec2:DescribeRouteTables"], Resource: "*" },
      { Sid: "OwnHostUriRead", Effect: "Allow", Action: "ssm:GetParameter", Resource: [`arn:aws:ssm:us-east-1:${ACCOUNT_ID}:parameter/sitelink/iam/iam-east/a/uri`] },
      {
        Sid: "OwnHostUriDecrypt",
        Effect: "Allow",
        Action: "kms:Decrypt",
        Resource: `arn:aws:kms:us-east-1:${ACCOUNT_ID}:key/*`,
        Condition: {
          StringEquals: {
            "kms:ViaService": "ssm.us-east-1.amazonaws.com",
            "kms:EncryptionContext:PARAMETER_ARN": [`arn:aws:ssm:us-east-1:${ACCOUNT_ID}:parameter/sitelink/iam/iam-east/a/uri`],
          },
        },
      },
    ]);
    expect(policyOf("iam-west-a-policy").Statement[0]!.Resource).toEqual([`arn:aws:ec2:us-east-1:${ACCOUNT_ID}:route-table/${rtb(3)}`]);
    const assume = JSON.parse(String(one("iam-east-a-role").inputs.assumeRolePolicy));
    expect(assume.Statement).toEqual([{ Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" }]);
  });

  it("points every remote route of every route table at the highest-priority host, and lets the agent own the target", async () => {
    const { east } = twoLocations("rt");
    await settle();
    const eniA = await valueOf(east.hosts[0]!.networkInterface.id);
    const routes = named("rt-east-route", "aws:ec2/route:Route").map((r) => [r.name, r.inputs.routeTableId, r.inputs.destinationCidrBlock, r.inputs.networkInterfaceId]);
    expect(routes).toEqual([
      ["rt-east-route-0-10.1.0.0-16", rtb(1), "10.1.0.0/16", eniA],
      ["rt-east-route-0-10.2.0.0-16", rtb(1), "10.2.0.0/16", eniA],
      ["rt-east-route-1-10.1.0.0-16", rtb(2), "10.1.0.0/16", eniA],
      ["rt-east-route-1-10.2.0.0-16", rtb(2), "10.2.0.0/16", eniA],
    ]);
    expect(named("rt-west-route").map((r) => [r.inputs.routeTableId, r.inputs.destinationCidrBlock])).toEqual([[rtb(3), "10.0.0.0/16"]]);
    for (const r of named("rt-", "aws:ec2/route:Route")) {
      expect(optionsOf(r.name, "aws:ec2/route:Route").opts.ignoreChanges).toEqual(["networkInterfaceId"]);
    }
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
    const opts = optionsOf("inst-east-a", "aws:ec2/instance:Instance").opts;
    expect(opts.deleteBeforeReplace).toBe(true);
    expect(opts.ignoreChanges).toEqual(["ami"]);
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

  it("uses a given AMI and instance type, and then lets AMI changes through", async () => {
    const loc = new lib.AwsLocation("ami-east", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(1)], routes: ["10.0.0.0/16"], ami: "ami-00000000000000001", instanceType: "c7g.large" }, captured());
    const other = new lib.AwsLocation("ami-west", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(2)], routes: ["10.1.0.0/16"] });
    new lib.Link("ami", { locations: [loc, other], stateService: { location: "ami-west" } });
    await settle();
    expect(one("ami-east-a", "aws:ec2/instance:Instance").inputs).toMatchObject({ ami: "ami-00000000000000001", instanceType: "c7g.large" });
    expect(optionsOf("ami-east-a", "aws:ec2/instance:Instance").opts.ignoreChanges).toEqual([]);
  });

  it("renders a bootstrap with the agent config and no secret, and keeps every secret out of plain inputs", async () => {
    const { link } = twoLocations("sec");
    const hosts = await valueOf(link.hosts);
    await settle();
    const userData = String(one("sec-east-a", "aws:ec2/instance:Instance").inputs.userData);
    expect(userData).toContain("apt-get install -y -q strongswan-charon strongswan-starter strongswan-swanctl libstrongswan-standard-plugins libcharon-extra-plugins nodejs npm");
    expect(userData).toContain(`npm install --global --no-fund --no-audit 'sitelink@`);
    expect(userData).toContain("systemctl enable --now sitelink-agent.service");
    const json = /cat > "\$root\/etc\/sitelink\/agent.json.tmp" <<'SITELINK_EOF'\n([\s\S]*?)\nSITELINK_EOF/.exec(userData)![1]!;
    const config = agentConfigSchema.parse(JSON.parse(json));
    expect(config).toMatchObject({
      uris: [],
      uriSources: [{ kind: "aws-ssm", parameter: "/sitelink/sec/sec-east/a/uri", region: "us-east-1" }],
      provider: "aws",
      aws: { routeTableIds: [rtb(1), rtb(2)], region: "us-east-1" },
      publicAddress: hosts.find((h) => h.id === "sec.sec-east.a")!.publicAddress,
      privateAddress: hosts.find((h) => h.id === "sec.sec-east.a")!.privateAddress,
    });

    const masterKey = Buffer.from(MASTER_KEY_BASE64, "base64");
    const hostSecret = deriveHostSecret(masterKey, "sec.sec-east.a");
    const uriParameter = one("sec-east-a-uri").inputs;
    expect(uriParameter.type).toBe("SecureString");
    expect(isSecretValue(uriParameter.value)).toBe(true);
    const uri = parseHostUri(String((uriParameter.value as { value: string }).value));
    const stateUrl = new URL(await valueOf(link.stateUrl));
    expect(uri).toEqual({ hostId: "sec.sec-east.a", secret: hostSecret, endpoints: [{ host: stateUrl.hostname, port: 9443 }], fingerprints: [await valueOf(link.fingerprint)] });

    const everythingPlain = JSON.stringify(named("sec").map((r) => plain(r.inputs)));
    for (const secret of [MASTER_KEY_BASE64, hostSecret, "sitelink://", "TESTKEYMATERIAL"]) expect(everythingPlain).not.toContain(secret);
    // …while the secrets did reach the state service's secure parameters.
    expect(one("sec-state-master-key-param").inputs).toMatchObject({ type: "SecureString", name: "/sitelink/sec/state/master-key" });
    expect((one("sec-state-master-key-param").inputs.value as { value: string }).value).toBe(MASTER_KEY_BASE64);
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
    const ingress = named("st-state-in", "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule").map((r) => [r.inputs.ipProtocol, r.inputs.fromPort, r.inputs.cidrIpv4]);
    expect(ingress).toEqual(hosts.map((h) => ["tcp", 9443, `${h.publicAddress}/32`]));
    const instance = one("st-state", "aws:ec2/instance:Instance").inputs;
    expect(instance).toMatchObject({
      instanceType: "t3.micro",
      primaryNetworkInterface: { networkInterfaceId: one("st-state-eni").id },
      metadataOptions: { httpTokens: "required" },
      rootBlockDevice: { encrypted: true },
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
    // The topology travels through Parameter Store and never through user data: a new document does not touch the instance.
    const topology = one("st-state-topology").inputs;
    expect(topology).toMatchObject({ name: "/sitelink/st/state/topology", type: "String" });
    // (the provider marks every parameter value secret; this one holds no secret)
    expect(userData).not.toContain(String((topology.value as { value: string }).value));
    expect(userData).not.toContain(hosts[0]!.privateAddress);
    const statePolicy = policyOf("st-state-policy");
    expect(statePolicy.Statement.map((s) => [s.Sid, s.Action])).toEqual([
      ["StateFilesRead", "ssm:GetParameter"],
      ["StateFilesDecrypt", "kms:Decrypt"],
    ]);
    expect(statePolicy.Statement[0]!.Resource).toEqual(["topology", "tls-cert", "tls-key", "master-key"].map((p) => `arn:aws:ssm:us-east-1:${ACCOUNT_ID}:parameter/sitelink/st/state/${p}`));
  });

  it("renders the topology document from the hosts' addresses, and the outputs with initial roles", async () => {
    const { link } = twoLocations("top", { cipher: { ike: "aes256-sha256-x25519", force: true } });
    const hosts = await valueOf(link.hosts);
    expect(hosts.map((h) => [h.id, h.location, h.name, h.priority, h.role])).toEqual([
      ["top.top-east.a", "top-east", "a", 2, "active"],
      ["top.top-east.b", "top-east", "b", 1, "standby"],
      ["top.top-west.a", "top-west", "a", 1, "active"],
    ]);
    const doc = parseTopology(JSON.parse(await valueOf(link.topology)));
    const [east, west] = doc.links[0]!.locations;
    expect(doc.links[0]!.name).toBe("top");
    expect(doc.links[0]!.cipher).toEqual({ ike: "aes256-sha256-x25519", esp: "aes128gcm128-x25519", force: true });
    expect(east!.hosts.map((h) => [h.id, h.priority, h.publicAddress, h.privateAddress])).toEqual(
      hosts.filter((h) => h.location === "top-east").map((h) => [h.id, h.priority, h.publicAddress, h.privateAddress]),
    );
    expect(west!.routes).toEqual(["10.1.0.0/16", "10.2.0.0/16"]);
    await settle();
    expect((one("top-state-topology").inputs.value as { value: string }).value).toBe(await valueOf(link.topology));
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
    expect(await valueOf(east.routeEntries[0]!.urn)).toBe("urn:pulumi:stack::project::sitelink:index:AwsLocation$aws:ec2/route:Route::par-east-route-0-10.1.0.0-16");
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
    expect(providerOf("prv-a-route-0-10.1.0.0-16")).toBe("prov-east");
    expect(providerOf("prv-b-a")).toBe("prov-west");
    expect(one("prv-state", "aws:ec2/instance:Instance").provider?.split("::")[3]).toBe("prov-west");
    // Region-specific ARNs and config follow the provider.
    expect(policyOf("prv-b-a-policy").Statement[0]!.Resource).toEqual([`arn:aws:ec2:us-west-2:${ACCOUNT_ID}:route-table/${rtb(2)}`]);
    expect(String(one("prv-b-a", "aws:ec2/instance:Instance").inputs.userData)).toContain('"region": "us-west-2"');
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
    const uri = parseHostUri(String((one("ext-a-a-uri").inputs.value as { value: string }).value));
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
    new lib.Link("tri", { locations: [mk("tri", 1), mk("tri", 2), mk("tri", 3)], stateService: { location: "tri-1" } });
    new lib.Link("hub", { locations: [mk("hub", 1), mk("hub", 2), mk("hub", 3)], stateService: { location: "hub-1" }, connections: [["hub-1", "hub-2"], ["hub-1", "hub-3"]] });
    await settle();
    const routes = (p: string) => named(p, "aws:ec2/route:Route").map((r) => `${r.name.split("-route-")[0]}→${String(r.inputs.destinationCidrBlock)}`);
    expect(routes("tri-")).toEqual(["tri-1→10.2.0.0/16", "tri-1→10.3.0.0/16", "tri-2→10.1.0.0/16", "tri-2→10.3.0.0/16", "tri-3→10.1.0.0/16", "tri-3→10.2.0.0/16"]);
    expect(routes("hub-")).toEqual(["hub-1→10.2.0.0/16", "hub-1→10.3.0.0/16", "hub-2→10.1.0.0/16", "hub-3→10.1.0.0/16"]);
    // Spokes admit only the hub's host.
    expect(named("hub-2-in-ike").map((r) => r.name)).toEqual(["hub-2-in-ike-hub.hub-1.a"]);
    expect(named("hub-1-in-ike").map((r) => r.name)).toEqual(["hub-1-in-ike-hub.hub-2.a", "hub-1-in-ike-hub.hub-3.a"]);
  });

  it("routes IPv6 CIDRs as IPv6 destinations and rules, and forwards IPv6 on the hosts that need it", async () => {
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

  it("counts resources exactly: fixed + linear per location + per connected pair (peer rules, route entries)", async () => {
    const count = (p: string, locations: number) => {
      const locs = Array.from({ length: locations }, (_, i) =>
        new lib.AwsLocation(`${p}-${i}`, { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(i + 1)], routes: [`10.${i}.0.0/16`] }),
      );
      new lib.Link(p, { locations: locs, stateService: { location: `${p}-0` } });
    };
    const sizes = [2, 3, 4, 6];
    sizes.forEach((n) => count(`lin${n}`, n));
    await settle();
    const totals = sizes.map((n) => resources.filter((r) => r.name.startsWith(`lin${n}-`) || r.name === `lin${n}`).length);
    // One host per location. Per location: component, sg, eni, eip, uri, role, policy, profile, instance,
    // check from itself, site in + out, 6 egress = 18, and its rule at the state service = 19.
    // Per connected pair, each side: 3 ingress rules + 1 route. Fixed: the link and 19 of the state service.
    expect(totals).toEqual(sizes.map((n) => 1 + 19 + n * 19 + n * (n - 1) * 4));
  });
});

// The boot lab's Pulumi program: an AWS link rendered by the real components under Pulumi mocks that
// answer with lab-realistic values (each Elastic IP and interface address is the instance's address
// on the lab bridge, real keys and a real certificate for the state service, real random bytes),
// and what a `pulumi up` would leave in the cloud taken from the mocked resources' inputs: each
// instance's user data, every SSM parameter (the mocks see secrets in plain text) and the agent
// bundle's S3 object. The Pulumi runtime keeps its mocks on `global`: one render per process.
import { execFileSync } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";

/** The engine's marker of a secret in the inputs the mocks see (@pulumi/pulumi runtime/rpc). */
const SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

export const LAB_REGION = "eu-west-1";
const ACCOUNT_ID = "123456789012";

export interface LabLocation {
  name: string;
  /** The site networks behind it (its `routes`). */
  routes: string[];
  routeTableId: string;
}

export interface RenderedInstance {
  /** The resource name of the instance: `<link>-state` or `<location>-<host>`. */
  resource: string;
  role: "state" | "host";
  location: string;
  /** host id `link.location.host` (hosts only). */
  hostId?: string;
  instanceId: string;
  networkInterfaceId: string;
  address: string;
  userData: string;
}

export interface RenderedLink {
  link: string;
  region: string;
  instances: RenderedInstance[];
  parameters: { name: string; type: "String" | "SecureString"; value: string }[];
  objects: { bucket: string; key: string; body: Buffer }[];
  /** The route table entries Pulumi creates (remote CIDR → the location's first host's interface). */
  routes: { routeTableId: string; destination: string; networkInterfaceId: string }[];
  locations: LabLocation[];
}

interface Recorded {
  type: string;
  name: string;
  id: string;
  inputs: Record<string, unknown>;
  state: Record<string, unknown>;
}

/** Inputs with secrets unwrapped (the lab plays the cloud, which receives them in plain text). */
function unwrap(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(unwrap);
  if (typeof value !== "object" || value === null) return value;
  const record = value as Record<string, unknown>;
  if (record[SIG_KEY] === SECRET_SIG) return unwrap(record.value);
  // An asset (the agent bundle's FileAsset): its path is a promise, read in collect().
  if (record.__pulumiAsset === true) return value;
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, unwrap(v)]));
}

const hex17 = () => randomBytes(9).toString("hex").slice(0, 17);

/** A self-signed certificate for `key` naming `ipAddresses`, as the tls provider's SelfSignedCert would make it. */
function selfSignedCert(keyPem: string, commonName: string, ipAddresses: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), "slboot-cert-"));
  try {
    writeFileSync(join(dir, "key.pem"), keyPem, { mode: 0o600 });
    execFileSync("openssl", [
      "req", "-x509", "-key", join(dir, "key.pem"), "-subj", `/CN=${commonName}`, "-days", "2",
      "-addext", `subjectAltName=${ipAddresses.map((a) => `IP:${a}`).join(",")}`, "-out", join(dir, "cert.pem"),
    ], { stdio: "ignore" });
    return readFileSync(join(dir, "cert.pem"), "utf8");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Renders link `link` of `locations` (one host "a" each, the state service in the first) with
 * `addressOf(resource)` giving the lab address of `<link>-state` and `<location>-a`.
 */
export async function renderLabLink(link: string, locations: LabLocation[], addressOf: (resource: string) => string): Promise<RenderedLink> {
  const recorded: Recorded[] = [];
  const mocks: pulumi.runtime.Mocks = {
    newResource(args) {
      const inputs = unwrap(args.inputs) as Record<string, unknown>;
      const base = args.name.replace(/-(eni|eip)$/, "");
      const ids: Record<string, () => [string, Record<string, unknown>]> = {
        "aws:ec2/eip:Eip": () => [`eipalloc-${hex17()}`, { publicIp: addressOf(base), allocationId: `eipalloc-${hex17()}` }],
        "aws:ec2/networkInterface:NetworkInterface": () => [`eni-${hex17()}`, { privateIp: addressOf(base) }],
        "aws:ec2/instance:Instance": () => [`i-${hex17()}`, {}],
        "aws:ebs/volume:Volume": () => [`vol-${hex17()}`, {}],
        "aws:ec2/securityGroup:SecurityGroup": () => [`sg-${hex17()}`, {}],
        "aws:ec2/managedPrefixList:ManagedPrefixList": () => [`pl-${hex17()}`, { arn: `arn:aws:ec2:${LAB_REGION}:${ACCOUNT_ID}:prefix-list/${args.name}` }],
        "aws:s3/bucket:Bucket": () => {
          const bucket = `${String(inputs.bucketPrefix ?? "bucket-")}${randomBytes(6).toString("hex")}`;
          return [bucket, { bucket, arn: `arn:aws:s3:::${bucket}` }];
        },
        "aws:s3/bucketObjectv2:BucketObjectv2": () => [String(inputs.key), {}],
        "aws:ssm/parameter:Parameter": () => [String(inputs.name), { arn: `arn:aws:ssm:${LAB_REGION}:${ACCOUNT_ID}:parameter${String(inputs.name)}` }],
        "aws:iam/role:Role": () => [`${args.name}-id`, { name: `${args.name}-role`, arn: `arn:aws:iam::${ACCOUNT_ID}:role/${args.name}` }],
        "aws:iam/instanceProfile:InstanceProfile": () => [`${args.name}-id`, { name: `${args.name}-profile` }],
        "random:index/randomBytes:RandomBytes": () => {
          const bytes = randomBytes(Number(inputs.length ?? 32));
          return [args.name, { base64: bytes.toString("base64"), hex: bytes.toString("hex") }];
        },
        "tls:index/privateKey:PrivateKey": () => {
          const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
          return [args.name, { privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }), publicKeyPem: publicKey.export({ type: "spki", format: "pem" }) }];
        },
        "tls:index/selfSignedCert:SelfSignedCert": () => {
          const subject = inputs.subject as { commonName?: string } | undefined;
          return [args.name, { certPem: selfSignedCert(String(inputs.privateKeyPem), subject?.commonName ?? "sitelink", inputs.ipAddresses as string[]) }];
        },
      };
      const [id, extra] = ids[args.type]?.() ?? [`${args.name}-id`, {}];
      const state = { ...inputs, ...extra };
      recorded.push({ type: args.type, name: args.name, id, inputs, state });
      return { id, state };
    },
    call(args) {
      const inputs = args.inputs as Record<string, unknown>;
      switch (args.token) {
        case "aws:index/getCallerIdentity:getCallerIdentity":
          return { accountId: ACCOUNT_ID, arn: `arn:aws:iam::${ACCOUNT_ID}:user/boot-lab`, userId: "AIDBOOTLAB", id: ACCOUNT_ID };
        case "aws:index/getRegion:getRegion":
          return { region: LAB_REGION, name: LAB_REGION, id: LAB_REGION, endpoint: `ec2.${LAB_REGION}.amazonaws.com`, description: LAB_REGION };
        case "aws:index/getPartition:getPartition":
          return { partition: "aws", dnsSuffix: "amazonaws.com", id: "aws" };
        case "aws:ec2/getAmi:getAmi":
          return { id: "ami-0b0071ab0000000b0", imageId: "ami-0b0071ab0000000b0" };
        case "aws:ec2/getSubnet:getSubnet":
          return { id: inputs.id, availabilityZone: `${LAB_REGION}a` };
        default:
          return inputs;
      }
    },
  };
  await pulumi.runtime.setMocks(mocks, "boot-lab", "lab", false);
  // After the mocks: the components register with the mocked engine.
  const lib = await import("../../lib/index.js");
  const awsLocations = locations.map(
    (l) => new lib.AwsLocation(l.name, { vpcId: "vpc-0b0071ab000000001", subnetId: "subnet-0b0071ab000000001", routeTableIds: [l.routeTableId], routes: l.routes }),
  );
  new lib.Link(link, { locations: awsLocations, stateService: { location: locations[0]!.name } });

  // Every registration reaches the mocks once its inputs resolve: wait until the three instances are there and nothing new arrives.
  const expected = locations.length + 1;
  let quiet = 0;
  let seen = -1;
  for (let round = 0; round < 20_000 && quiet < 200; round++) {
    await new Promise((resolve) => setImmediate(resolve));
    const instances = recorded.filter((r) => r.type === "aws:ec2/instance:Instance").length;
    if (recorded.length === seen && instances === expected) quiet++;
    else quiet = 0;
    seen = recorded.length;
  }
  return collect(link, locations, recorded);
}

async function collect(link: string, locations: LabLocation[], recorded: Recorded[]): Promise<RenderedLink> {
  const of = (type: string) => recorded.filter((r) => r.type === type);
  const eniOf = (resource: string) => {
    const eni = recorded.find((r) => r.type === "aws:ec2/networkInterface:NetworkInterface" && r.name === `${resource}-eni`);
    if (!eni) throw new Error(`no network interface ${resource}-eni was rendered`);
    return eni;
  };
  const instances = of("aws:ec2/instance:Instance").map((r): RenderedInstance => {
    const state = r.name === `${link}-state`;
    const location = state ? locations[0]!.name : locations.find((l) => r.name.startsWith(`${l.name}-`))?.name;
    if (!location) throw new Error(`instance ${r.name} belongs to no location of the lab`);
    const eni = eniOf(r.name);
    return {
      resource: r.name,
      role: state ? "state" : "host",
      location,
      ...(!state && { hostId: `${link}.${location}.${r.name.slice(location.length + 1)}` }),
      instanceId: r.id,
      networkInterfaceId: eni.id,
      address: String(eni.state.privateIp),
      userData: String(r.inputs.userData),
    };
  });
  if (instances.length !== locations.length + 1) throw new Error(`expected ${locations.length + 1} instances, the components rendered ${instances.length}`);
  const parameters = of("aws:ssm/parameter:Parameter").map((r) => ({ name: String(r.inputs.name), type: r.inputs.type as "String" | "SecureString", value: String(r.inputs.value) }));
  const objects = await Promise.all(of("aws:s3/bucketObjectv2:BucketObjectv2").map(async (r) => {
    const source = r.inputs.source as { path?: Promise<string> | string } | undefined;
    const path = source?.path === undefined ? undefined : await source.path;
    const body = typeof path === "string" ? readFileSync(path) : typeof r.inputs.content === "string" ? Buffer.from(r.inputs.content) : undefined;
    if (!body) throw new Error(`S3 object ${r.name} has neither a file source nor content`);
    return { bucket: String(r.inputs.bucket), key: String(r.inputs.key), body };
  }));
  const routes = of("aws:ec2/route:Route").map((r) => ({ routeTableId: String(r.inputs.routeTableId), destination: String(r.inputs.destinationCidrBlock), networkInterfaceId: String(r.inputs.networkInterfaceId) }));
  return { link, region: LAB_REGION, instances, parameters, objects, routes, locations };
}

// Pulumi mocks for the component tests: records every resource (inputs, provider, options via a
// stack transformation) and every invoke, and answers with plausible cloud values.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";

/** How the engine wraps a secret value in the inputs the mocks see. */
const SECRET_SIG = "4dabf18193072939515e22adb298388d";

export interface Recorded {
  type: string;
  name: string;
  urn: string;
  inputs: Record<string, unknown>;
  provider?: string;
  /** The id the mocks answered. */
  id?: string;
}

export interface RecordedOptions {
  type: string;
  name: string;
  parentType?: string;
  opts: pulumi.CustomResourceOptions & pulumi.ComponentResourceOptions;
}

/** 32 fixed bytes standing in for the master key the random provider would make. */
export const MASTER_KEY_BASE64 = Buffer.alloc(32, 7).toString("base64");
export const ACCOUNT_ID = "123456789012";
export const AMI_ID = "ami-0a1b2c3d4e5f60718";
export const TLS_KEY_PEM = "-----BEGIN PRIVATE KEY-----\nTESTKEYMATERIALdoNotLeak0123456789\n-----END PRIVATE KEY-----\n";

/** A real self-signed certificate, so the fingerprint the components compute can be checked. */
export const CERT_PEM = (() => {
  const dir = mkdtempSync(join(tmpdir(), "sitelink-cert-"));
  try {
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=test", "-days", "1", "-keyout", join(dir, "k"), "-out", join(dir, "c")], { stdio: "ignore" });
    return readFileSync(join(dir, "c"), "utf8");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
})();

export const resources: Recorded[] = [];
export const options: RecordedOptions[] = [];
export const invokes: { token: string; inputs: Record<string, unknown>; provider?: string }[] = [];
const providerRegions = new Map<string, string>();
const providerProjects = new Map<string, string>();
/** The project of GCP resources made without a provider that names one. */
export const GCP_PROJECT = "sitelink-test";
let counter = 0;
/** In preview, cloud-computed values (addresses, ARNs, generated keys) are unknown, as in `pulumi preview`. */
let previewing = false;

function next(): number {
  counter += 1;
  return counter;
}

function hexId(prefix: string): string {
  return `${prefix}-${next().toString(16).padStart(17, "0")}`;
}

function providerProject(provider: string | undefined): string {
  const urn = provider?.split("::").slice(0, -1).join("::");
  return (urn ? providerProjects.get(urn) : undefined) ?? GCP_PROJECT;
}

function providerRegion(provider: string | undefined): string {
  const urn = provider?.split("::").slice(0, -1).join("::");
  return (urn ? providerRegions.get(urn) : undefined) ?? "us-east-1";
}

const mocks: pulumi.runtime.Mocks = {
  newResource(args) {
    const record: Recorded = { type: args.type, name: args.name, urn: `${args.type}::${args.name}`, inputs: args.inputs as Record<string, unknown>, provider: args.provider };
    resources.push(record);
    const result = previewing ? { id: undefined, state: args.inputs } : answer(args);
    record.id = result.id ?? undefined;
    return result;
  },
  call(args) {
    const inputs = args.inputs as Record<string, unknown>;
    invokes.push({ token: args.token, inputs, provider: args.provider });
    switch (args.token) {
      case "aws:index/getCallerIdentity:getCallerIdentity":
        return { accountId: ACCOUNT_ID, arn: `arn:aws:iam::${ACCOUNT_ID}:user/test`, userId: "AIDTEST", id: ACCOUNT_ID };
      case "aws:index/getRegion:getRegion": {
        const region = providerRegion(args.provider);
        return { region, name: region, id: region, endpoint: `ec2.${region}.amazonaws.com`, description: region };
      }
      case "aws:ec2/getAmi:getAmi":
        return { id: AMI_ID, imageId: AMI_ID };
      case "gcp:organizations/getClientConfig:getClientConfig":
        return { id: "client", project: providerProject(args.provider), region: "us-central1", zone: "us-central1-a", accessToken: "" };
      case "aws:ec2/getSubnet:getSubnet":
        return { id: inputs.id, availabilityZone: `${providerRegion(args.provider)}a` };
      default:
        return inputs;
    }
  },
};

function answer(args: pulumi.runtime.MockResourceArgs): pulumi.runtime.MockResourceResult {
  const inputs = args.inputs as Record<string, unknown>;
  const region = providerRegion(args.provider);
  const n = next();
  switch (args.type) {
    case "pulumi:providers:aws":
      providerRegions.set(`urn:pulumi:stack::project::pulumi:providers:aws::${args.name}`, String(inputs.region));
      return { id: `provider-${args.name}`, state: inputs };
    case "pulumi:providers:gcp":
      providerProjects.set(`urn:pulumi:stack::project::pulumi:providers:gcp::${args.name}`, String(inputs.project));
      return { id: `provider-${args.name}`, state: inputs };
    case "gcp:compute/address:Address": {
      const project = String(inputs.project ?? providerProject(args.provider));
      const address = inputs.addressType === "INTERNAL" ? `10.240.${Math.floor(n / 250)}.${n % 250}` : `198.51.100.${n % 250}`;
      return { id: `projects/${project}/regions/${String(inputs.region)}/addresses/${String(inputs.name)}`, state: { ...inputs, project, address } };
    }
    case "gcp:serviceaccount/account:Account": {
      const project = String(inputs.project ?? providerProject(args.provider));
      const email = `${String(inputs.accountId)}@${project}.iam.gserviceaccount.com`;
      return { id: `projects/${project}/serviceAccounts/${email}`, state: { ...inputs, project, email, name: `projects/${project}/serviceAccounts/${email}` } };
    }
    case "gcp:secretmanager/secret:Secret": {
      const project = String(inputs.project ?? providerProject(args.provider));
      return { id: `projects/${project}/secrets/${String(inputs.secretId)}`, state: { ...inputs, project, name: `projects/100200300/secrets/${String(inputs.secretId)}` } };
    }
    case "gcp:projects/iAMCustomRole:IAMCustomRole":
      return { id: `projects/${String(inputs.project)}/roles/${String(inputs.roleId)}`, state: { ...inputs, name: `projects/${String(inputs.project)}/roles/${String(inputs.roleId)}` } };
    case "gcp:compute/network:Network":
    case "gcp:compute/subnetwork:Subnetwork": {
      const project = String(inputs.project ?? providerProject(args.provider));
      const path = args.type.endsWith("Network") ? `global/networks/${args.name}` : `regions/${String(inputs.region)}/subnetworks/${args.name}`;
      return { id: `projects/${project}/${path}`, state: { ...inputs, name: args.name, selfLink: `https://www.googleapis.com/compute/v1/projects/${project}/${path}` } };
    }
    case "aws:ec2/eip:Eip":
      return { id: hexId("eipalloc"), state: { ...inputs, publicIp: `203.0.113.${n % 250}`, allocationId: hexId("eipalloc") } };
    case "aws:ec2/networkInterface:NetworkInterface":
      return { id: hexId("eni"), state: { ...inputs, privateIp: `10.250.${Math.floor(n / 250)}.${n % 250}` } };
    case "aws:ssm/parameter:Parameter":
      return { id: String(inputs.name), state: { ...inputs, arn: `arn:aws:ssm:${region}:${ACCOUNT_ID}:parameter${String(inputs.name)}` } };
    case "aws:iam/role:Role":
      return { id: `${args.name}-id`, state: { ...inputs, name: `${args.name}-role`, arn: `arn:aws:iam::${ACCOUNT_ID}:role/${args.name}` } };
    case "aws:iam/instanceProfile:InstanceProfile":
      return { id: `${args.name}-id`, state: { ...inputs, name: `${args.name}-profile` } };
    case "aws:ec2/instance:Instance":
      return { id: hexId("i"), state: { ...inputs, privateIp: `10.251.0.${n % 250}` } };
    case "aws:ebs/volume:Volume":
      return { id: hexId("vol"), state: inputs };
    case "aws:ec2/securityGroup:SecurityGroup":
      return { id: hexId("sg"), state: inputs };
    case "aws:ec2/managedPrefixList:ManagedPrefixList":
      return { id: hexId("pl"), state: { ...inputs, arn: `arn:aws:ec2:${region}:${ACCOUNT_ID}:prefix-list/${args.name}` } };
    case "random:index/randomBytes:RandomBytes":
      return { id: args.name, state: { ...inputs, base64: MASTER_KEY_BASE64, hex: Buffer.from(MASTER_KEY_BASE64, "base64").toString("hex") } };
    case "tls:index/privateKey:PrivateKey":
      return { id: args.name, state: { ...inputs, privateKeyPem: TLS_KEY_PEM, publicKeyPem: "public" } };
    case "tls:index/selfSignedCert:SelfSignedCert":
      return { id: args.name, state: { ...inputs, certPem: CERT_PEM } };
    case "aws:s3/bucket:Bucket": {
      // The provider names a bucket from its prefix.
      const bucket = `${String(inputs.bucketPrefix ?? `${args.name}-`)}${n.toString(16).padStart(8, "0")}`;
      return { id: bucket, state: { ...inputs, bucket, arn: `arn:aws:s3:::${bucket}` } };
    }
    case "gcp:storage/bucket:Bucket": {
      const name = String(inputs.name ?? `${args.name}-${n.toString(16).padStart(8, "0")}`);
      return { id: name, state: { ...inputs, name } };
    }
    case "aws:ec2/vpc:Vpc":
      return { id: hexId("vpc"), state: inputs };
    case "aws:ec2/subnet:Subnet":
      return { id: hexId("subnet"), state: inputs };
    case "aws:ec2/routeTable:RouteTable":
      return { id: hexId("rtb"), state: inputs };
    default:
      return { id: `${args.name}-id`, state: inputs };
  }
}

/**
 * Sets the mocks; import the components after this. A Link's readiness check is off (the stack
 * config a runner without access to the state service would set): the mocked hosts have addresses
 * no test may send to. A test of the check turns it on with the Link's `readiness.wait`.
 */
export async function setupMocks(opts: { preview?: boolean } = {}): Promise<void> {
  previewing = opts.preview ?? false;
  await pulumi.runtime.setMocks(mocks, "project", "stack", previewing);
  pulumi.runtime.setConfig("sitelink:waitForReadiness", "false");
}

/** Records the options of every child of the component it is given to (the mocks never see options). */
export const capture: pulumi.ResourceTransformation = (t) => {
  options.push({ type: t.type, name: t.name, parentType: (t.opts.parent as { __pulumiType?: string } | undefined)?.__pulumiType, opts: t.opts });
  return undefined;
};

/** Component options that record the children's options. */
export function captured<T extends pulumi.ComponentResourceOptions>(opts?: T): T {
  return { ...opts, transformations: [capture] } as T;
}

/** The value of an Output, and whether it is secret. */
export async function resolve<T>(output: pulumi.Output<T>): Promise<{ value: T; secret: boolean }> {
  const value = await new Promise<T>((ok) => output.apply((v) => ok(v)));
  const secret = await pulumi.isSecret(output);
  return { value, secret };
}

export async function valueOf<T>(output: pulumi.Output<T>): Promise<T> {
  return (await resolve(output)).value;
}

/** The URNs of the resources a `dependsOn` option names (a list, or an Input of one). */
export async function dependsOnUrns(dependsOn: pulumi.CustomResourceOptions["dependsOn"]): Promise<string[]> {
  const resolved = (await valueOf(pulumi.output(dependsOn ?? []))) as unknown as pulumi.Resource[];
  return Promise.all(resolved.map((r) => valueOf(r.urn)));
}

/** Lets every pending registration reach the mocks. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

export function isSecretValue(value: unknown): value is { value: unknown } {
  return typeof value === "object" && value !== null && (value as Record<string, unknown>)[SECRET_SIG] === "1b47061264138c4ac30d75fd1eb44270";
}

/** Inputs with every secret replaced by "[secret]": what would be stored or shown in plain text. */
export function plain(value: unknown): unknown {
  if (isSecretValue(value)) return "[secret]";
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === "object" && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

/** Resources whose name starts with `prefix` (each test uses its own names). */
export function named(prefix: string, type?: string): Recorded[] {
  return resources.filter((r) => r.name.startsWith(prefix) && (type === undefined || r.type === type));
}

export function one(name: string, type?: string): Recorded {
  const found = resources.filter((r) => r.name === name && (type === undefined || r.type === type));
  if (found.length !== 1) throw new Error(`expected one resource named ${name}, found ${found.length}`);
  return found[0]!;
}

export function optionsOf(name: string, type: string): RecordedOptions {
  const found = options.filter((o) => o.name === name && o.type === type);
  if (found.length !== 1) throw new Error(`expected options of one ${type} ${name}, found ${found.length}`);
  return found[0]!;
}

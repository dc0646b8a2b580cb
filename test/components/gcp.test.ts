// GcpLocation under Pulumi mocks, alone and in a mixed AWS + GCP link: exact resources, inputs,
// options, IAM scope, firewall sources and secrets.
import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { agentConfigSchema } from "../../agent/contract/agent-config";
import { deriveHostSecret } from "../../agent/contract/signing";
import { parseHostUri } from "../../agent/contract/uri";
import { parseTopology } from "../../agent/contract/topology";
import { GCP_PROJECT, MASTER_KEY_BASE64, captured, dependsOnUrns, isSecretValue, named, one, options, optionsOf, plain, resources, settle, setupMocks, valueOf } from "./harness";

type Lib = typeof import("../../lib/index.js");
type Gcp = typeof import("@pulumi/gcp");
let lib: Lib;
let gcp: Gcp;

beforeAll(async () => {
  await setupMocks();
  lib = await import("../../lib/index.js");
  gcp = await import("@pulumi/gcp");
});

const VPC = "vpc-0123456789abcdef0";
const SUBNET = "subnet-0123456789abcdef0";
const RTB = "rtb-00000000000000001";
const hash8 = (key: string) => createHash("sha256").update(key).digest("hex").slice(0, 8);
const T = {
  address: "gcp:compute/address:Address",
  firewall: "gcp:compute/firewall:Firewall",
  instance: "gcp:compute/instance:Instance",
  account: "gcp:serviceaccount/account:Account",
  secret: "gcp:secretmanager/secret:Secret",
  version: "gcp:secretmanager/secretVersion:SecretVersion",
  secretAccess: "gcp:secretmanager/secretIamMember:SecretIamMember",
  projectMember: "gcp:projects/iAMMember:IAMMember",
  role: "gcp:projects/iAMCustomRole:IAMCustomRole",
  bucket: "gcp:storage/bucket:Bucket",
  object: "gcp:storage/bucketObject:BucketObject",
  bucketMember: "gcp:storage/bucketIAMMember:BucketIAMMember",
} as const;

/** `${p}-g`: GCP, hosts a:2 and b:1, 10.0.0.0/16; `${p}-w`: AWS, one host, 10.1.0.0/16, runs the state service. */
function mixed(p: string, extra: Partial<import("../../lib/index").LinkArgs> = {}, gcpArgs: Partial<import("../../lib/index").GcpLocationArgs> = {}) {
  const g = new lib.GcpLocation(
    `${p}-g`,
    { network: "net-a", subnetwork: "sub-a", zone: "us-central1-a", routes: ["10.0.0.0/16"], hosts: [{ name: "a", priority: 2 }, { name: "b" }], ...gcpArgs },
    captured(),
  );
  const w = new lib.AwsLocation(`${p}-w`, { vpcId: VPC, subnetId: SUBNET, routeTableIds: [RTB], routes: ["10.1.0.0/16"] }, captured());
  const link = new lib.Link(p, { locations: [g, w], stateService: { location: `${p}-w` }, ...extra }, captured());
  return { g, w, link };
}

/** A metadata attribute of an instance. */
function attribute(instance: string, key: string): string {
  return String((one(instance, T.instance).inputs.metadata as Record<string, string>)[key]);
}

async function hostsOf(link: { hosts: pulumi.Output<{ id: string; publicAddress: string; privateAddress: string }[]> }) {
  const hosts = await valueOf(link.hosts);
  return (id: string) => hosts.find((h) => h.id === id)!;
}

describe("GcpLocation in a mixed AWS + GCP link", () => {
  it("creates exactly these resources per GCP location, and no route", async () => {
    mixed("cnt");
    await settle();
    const counts: Record<string, number> = {};
    for (const r of named("cnt-g")) counts[r.type] = (counts[r.type] ?? 0) + 1;
    expect(counts).toEqual({
      "sitelink:index:GcpLocation": 1,
      [T.address]: 4,
      // link (peers), check (own hosts), site
      [T.firewall]: 3,
      [T.role]: 1,
      [T.account]: 2,
      [T.secret]: 2,
      [T.version]: 2,
      [T.secretAccess]: 2,
      [T.projectMember]: 2,
      [T.instance]: 2,
      // The agent bundle: the location's bucket, its object, each host's read of that object.
      [T.bucket]: 1,
      [T.object]: 1,
      [T.bucketMember]: 2,
    });
    // Routes on GCP belong to the agent.
    expect(resources.filter((r) => r.type.startsWith("gcp:compute/route"))).toEqual([]);
  });

  it("gives every host a static internal and external address in the zone's region", async () => {
    const { g } = mixed("adr");
    await settle();
    const base = `sitelink-adr-g-a-${hash8("adr.adr-g.a")}`;
    expect(one("adr-g-a-internal").inputs).toEqual({ name: `${base}-int`, addressType: "INTERNAL", subnetwork: "sub-a", region: "us-central1", description: "sitelink host adr.adr-g.a" });
    expect(one("adr-g-a-external").inputs).toEqual({ name: `${base}-ext`, addressType: "EXTERNAL", networkTier: "PREMIUM", region: "us-central1", description: "sitelink host adr.adr-g.a" });
    expect(await valueOf(g.hosts[0]!.host.publicAddress)).toBe(await valueOf(g.hosts[0]!.externalAddress.address));
    expect(await valueOf(g.hosts[1]!.host.privateAddress)).toBe(await valueOf(g.hosts[1]!.internalAddress.address));
    expect(optionsOf("adr-g-a-external", T.address).opts.deleteBeforeReplace).toBe(true);
  });

  it("admits IKE, NAT-T and host checks only from the peer hosts, host checks from its own hosts, by network tag", async () => {
    const { g, link } = mixed("fw");
    const host = await hostsOf(link);
    await settle();
    const tag = `sitelink-fw-g-${hash8("fw/fw-g")}`;
    expect(g.networkTag).toBe(tag);
    const rules = named("fw-g-fw", T.firewall).map((r) => ({ resource: r.name, ...r.inputs }));
    // (registration order is the engine's; the order of definition is link, check, site)
    const order = ["fw-g-fw-link", "fw-g-fw-check", "fw-g-fw-site"];
    rules.sort((a, b) => order.indexOf(a.resource) - order.indexOf(b.resource));
    expect(rules).toEqual([
      {
        resource: "fw-g-fw-link",
        name: `${tag}-link`,
        network: "net-a",
        direction: "INGRESS",
        allows: [{ protocol: "udp", ports: ["500", "4500"] }, { protocol: "tcp", ports: ["9790"] }],
        sourceRanges: [`${host("fw.fw-w.a").publicAddress}/32`],
        targetTags: [tag],
        description: "sitelink fw: IKE, NAT-T and host checks from the peer hosts",
      },
      {
        resource: "fw-g-fw-check",
        name: `${tag}-check`,
        network: "net-a",
        direction: "INGRESS",
        allows: [{ protocol: "tcp", ports: ["9790"] }],
        sourceRanges: [`${host("fw.fw-g.a").privateAddress}/32`, `${host("fw.fw-g.b").privateAddress}/32`],
        targetTags: [tag],
        description: "sitelink fw: host checks from the hosts of fw-g",
      },
      {
        resource: "fw-g-fw-site",
        name: `${tag}-site`,
        network: "net-a",
        direction: "INGRESS",
        allows: [{ protocol: "all" }],
        sourceRanges: ["10.0.0.0/16"],
        targetTags: [tag],
        description: "sitelink fw: site traffic into the tunnels",
      },
    ]);
    // Every host carries the tag, and only it.
    for (const h of ["fw-g-a", "fw-g-b"]) expect(one(h, T.instance).inputs.tags).toEqual([tag]);
    // The AWS side admits the GCP hosts' external addresses, through its peer prefix list.
    expect(one("fw-w-peers", "aws:ec2/managedPrefixList:ManagedPrefixList").inputs).toMatchObject({
      maxEntries: 2,
      entries: [
        { cidr: `${host("fw.fw-g.a").publicAddress}/32`, description: "link host fw.fw-g.a" },
        { cidr: `${host("fw.fw-g.b").publicAddress}/32`, description: "link host fw.fw-g.b" },
      ],
    });
    expect(one("fw-w-in-ike").inputs).toMatchObject({ ipProtocol: "udp", fromPort: 500, prefixListId: one("fw-w-peers").id });
  });

  it("opens SSH to the admin networks only, one rule per address family", async () => {
    mixed("ssh", { adminCidrs: ["192.0.2.0/24", "2001:db8::/32"] });
    await settle();
    const ssh = named("ssh-g-fw-ssh", T.firewall).map((r) => [r.name, r.inputs.allows, r.inputs.sourceRanges]);
    expect(ssh).toEqual([
      ["ssh-g-fw-ssh", [{ protocol: "tcp", ports: ["22"] }], ["192.0.2.0/24"]],
      ["ssh-g-fw-ssh6", [{ protocol: "tcp", ports: ["22"] }], ["2001:db8::/32"]],
    ]);
    mixed("nossh");
    await settle();
    expect(named("nossh-g-fw-ssh")).toEqual([]);
  });

  it("grants the route calls through a custom role at project level, and each host's URI to its own service account only", async () => {
    mixed("iam");
    await settle();
    const roleId = `sitelinkRoutes_${hash8("iam/iam-g")}`;
    expect(one("iam-g-route-role", T.role).inputs).toEqual({
      project: GCP_PROJECT,
      roleId,
      title: "sitelink routes (iam/iam-g)",
      description: "The calls of the sitelink agent's gcp route provider: list, create and delete routes, wait for their operations",
      permissions: ["compute.routes.list", "compute.routes.create", "compute.routes.delete", "compute.networks.updatePolicy", "compute.instances.use", "compute.globalOperations.get"],
      stage: "GA",
    });
    const email = (host: string) => `sl-iam-g-${host}-${hash8(`iam.iam-g.${host}`)}@${GCP_PROJECT}.iam.gserviceaccount.com`;
    expect(one("iam-g-a-sa", T.account).inputs).toEqual({ accountId: `sl-iam-g-a-${hash8("iam.iam-g.a")}`, displayName: "sitelink host iam.iam-g.a" });
    expect(named("iam-g", T.projectMember).map((r) => [r.name, r.inputs])).toEqual([
      ["iam-g-a-routes", { project: GCP_PROJECT, role: `projects/${GCP_PROJECT}/roles/${roleId}`, member: `serviceAccount:${email("a")}` }],
      ["iam-g-b-routes", { project: GCP_PROJECT, role: `projects/${GCP_PROJECT}/roles/${roleId}`, member: `serviceAccount:${email("b")}` }],
    ]);
    const secretId = (host: string) => `sitelink-iam-g-${host}-${hash8(`iam.iam-g.${host}`)}-uri`;
    expect(named("iam-g", T.secretAccess).map((r) => [r.name, r.inputs])).toEqual([
      ["iam-g-a-uri-access", { project: GCP_PROJECT, secretId: secretId("a"), role: "roles/secretmanager.secretAccessor", member: `serviceAccount:${email("a")}` }],
      ["iam-g-b-uri-access", { project: GCP_PROJECT, secretId: secretId("b"), role: "roles/secretmanager.secretAccessor", member: `serviceAccount:${email("b")}` }],
    ]);
    // The agent bundle: a private bucket of the location, one object named by its SHA-256, and each
    // host's account reading that object alone (objectViewer on the bucket, narrowed by an IAM condition).
    const sha256 = lib.agentBundle().sha256;
    const key = `sitelink/agent/${sha256}/sitelink.js`;
    expect(one("iam-g-agent", T.bucket).inputs).toEqual({ location: "us-central1", uniformBucketLevelAccess: true, publicAccessPrevention: "enforced", forceDestroy: true, labels: { "sitelink-link": "iam" } });
    const bucket = one("iam-g-agent", T.bucket).id!;
    expect(one("iam-g-agent", T.object).inputs).toMatchObject({ bucket, name: key, contentType: "application/javascript" });
    const condition = { title: "sitelink-agent-bundle", description: "this sitelink agent bundle only", expression: `resource.name == "projects/_/buckets/${bucket}/objects/${key}"` };
    expect(named("iam-g", T.bucketMember).map((r) => [r.name, r.inputs])).toEqual([
      ["iam-g-a-agent-read", { bucket, role: "roles/storage.objectViewer", member: `serviceAccount:${email("a")}`, condition }],
      ["iam-g-b-agent-read", { bucket, role: "roles/storage.objectViewer", member: `serviceAccount:${email("b")}`, condition }],
    ]);
    // No other IAM of any kind (no project-wide secret or storage access, no predefined roles but these).
    const iamTypes = new Set(named("iam-g").map((r) => r.type).filter((t) => /iam|Iam|IAM/.test(t)));
    expect([...iamTypes].sort()).toEqual([T.role, T.projectMember, T.secretAccess, T.bucketMember].sort());
  });

  it("builds hosts as forwarding shielded Ubuntu instances with their own service account and fixed addresses", async () => {
    const { g } = mixed("inst");
    await settle();
    const instance = one("inst-g-a", T.instance).inputs;
    expect(instance).toEqual({
      name: `sitelink-inst-g-a-${hash8("inst.inst-g.a")}`,
      zone: "us-central1-a",
      machineType: "e2-small",
      canIpForward: true,
      bootDisk: { initializeParams: { image: "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64", type: "pd-balanced" } },
      networkInterfaces: [
        { subnetwork: "sub-a", networkIp: await valueOf(g.hosts[0]!.internalAddress.address), accessConfigs: [{ natIp: await valueOf(g.hosts[0]!.externalAddress.address), networkTier: "PREMIUM" }] },
      ],
      serviceAccount: { email: `sl-inst-g-a-${hash8("inst.inst-g.a")}@${GCP_PROJECT}.iam.gserviceaccount.com`, scopes: ["https://www.googleapis.com/auth/cloud-platform"] },
      shieldedInstanceConfig: { enableSecureBoot: true, enableVtpm: true, enableIntegrityMonitoring: true },
      tags: [g.networkTag],
      metadata: {
        "startup-script": lib.renderGcpAgentBootstrap({ project: GCP_PROJECT, uriSecret: `sitelink-inst-g-a-${hash8("inst.inst-g.a")}-uri` }),
        "sitelink-agent-config": expect.any(String),
        "enable-oslogin": "TRUE",
        "block-project-ssh-keys": "TRUE",
      },
      allowStoppingForUpdate: true,
      labels: { "sitelink-link": "inst" },
    });
    const opts = optionsOf("inst-g-a", T.instance).opts;
    expect(opts.deleteBeforeReplace).toBe(true);
    const deps = await Promise.all((opts.dependsOn as pulumi.Resource[]).map((d) => valueOf(d.urn)));
    // Its first boot reads its URI, changes routes and fetches the agent bundle: all in place first.
    expect(deps.map((u) => u.split("::").at(-1))).toEqual(["inst-g-a-uri-version", "inst-g-a-uri-access", "inst-g-a-routes", "inst-g-a-external", "inst-g-a-agent-read", "inst-g-agent"]);
  });

  it("uses a given project, machine type and image", async () => {
    mixed("own", {}, { project: "other-project-1", machineType: "n2-standard-2", image: "projects/my-images/global/images/sitelink-1" });
    await settle();
    expect(one("own-g-a", T.instance).inputs).toMatchObject({ project: "other-project-1", machineType: "n2-standard-2", bootDisk: { initializeParams: { image: "projects/my-images/global/images/sitelink-1" } } });
    expect(one("own-g-route-role", T.role).inputs.project).toBe("other-project-1");
    expect(one("own-g-fw-link", T.firewall).inputs.project).toBe("other-project-1");
    expect(JSON.parse(attribute("own-g-a", "sitelink-agent-config")).gcp.project).toBe("other-project-1");
  });

  it("gives every host the stable startup script naming only its URI secret, its config (naming the agent) as a metadata attribute, and keeps every secret out of plain inputs", async () => {
    const { link } = mixed("sec");
    const host = await hostsOf(link);
    await settle();
    // The startup script is the stable bootstrap: nothing of the host but the name of its URI secret (to report a refused agent), nothing of the agent's version.
    const secretId = `sitelink-sec-g-a-${hash8("sec.sec-g.a")}-uri`;
    const scripts = ["sec-g-a", "sec-g-b"].map((h) => attribute(h, "startup-script"));
    expect(scripts[0]).toBe(lib.renderGcpAgentBootstrap({ project: GCP_PROJECT, uriSecret: secretId }));
    expect(scripts[1]).toBe(lib.renderGcpAgentBootstrap({ project: GCP_PROJECT, uriSecret: `sitelink-sec-g-b-${hash8("sec.sec-g.b")}-uri` }));
    for (const changing of [host("sec.sec-g.a").publicAddress, "sitelink@", lib.agentBundle().sha256]) expect(scripts[0]).not.toContain(changing);
    expect(one("sec-g-a-uri", T.secret).inputs).toEqual({ secretId, replication: { auto: {} }, labels: { "sitelink-link": "sec" } });
    // The config attribute: exactly the agent's config, which metadata updates change in place.
    const config = attribute("sec-g-a", "sitelink-agent-config");
    const bundle = lib.agentBundle();
    const expected = agentConfigSchema.parse({
      agentSource: `gs://${one("sec-g-agent", T.bucket).id!}/sitelink/agent/${bundle.sha256}/sitelink.js`,
      agentSha256: bundle.sha256,
      uriSources: [{ kind: "gcp-secret-manager", name: `projects/${GCP_PROJECT}/secrets/${secretId}/versions/latest` }],
      provider: "gcp",
      gcp: { network: "net-a", project: GCP_PROJECT },
      allowedRoutes: ["10.1.0.0/16"],
      publicAddress: host("sec.sec-g.a").publicAddress,
      privateAddress: host("sec.sec-g.a").privateAddress,
    });
    expect(config).toBe(JSON.stringify(expected, null, 2));
    expect(expected.gcp!.priority).toBe(900);
    // The config names the agent: no attribute of its own.
    expect(Object.keys(one("sec-g-a", T.instance).inputs.metadata as object).sort()).toEqual(["block-project-ssh-keys", "enable-oslogin", "sitelink-agent-config", "startup-script"]);
    const version = one("sec-g-a-uri-version", T.version).inputs;
    expect(version.secret).toBe(`projects/${GCP_PROJECT}/secrets/${secretId}`);
    expect(isSecretValue(version.secretData)).toBe(true);
    const uri = parseHostUri(String((version.secretData as { value: string }).value));
    const hostSecret = deriveHostSecret(Buffer.from(MASTER_KEY_BASE64, "base64"), "sec.sec-g.a");
    expect(uri).toEqual({ hostId: "sec.sec-g.a", secret: hostSecret, endpoints: [{ host: new URL(await valueOf(link.stateUrl)).hostname, port: 9443 }], fingerprints: [await valueOf(link.fingerprint)] });
    const everythingPlain = JSON.stringify(named("sec").map((r) => plain(r.inputs)));
    for (const secret of [MASTER_KEY_BASE64, hostSecret, "sitelink://"]) {
      expect(everythingPlain).not.toContain(secret);
      expect(config).not.toContain(secret);
    }
  });

  it("puts both clouds' hosts in the topology, and points the AWS routes at its active host", async () => {
    const { w, link } = mixed("top");
    const hosts = await valueOf(link.hosts);
    expect(hosts.map((h) => [h.id, h.role])).toEqual([
      ["top.top-g.a", "active"],
      ["top.top-g.b", "standby"],
      ["top.top-w.a", "active"],
    ]);
    const doc = parseTopology(JSON.parse(await valueOf(link.topology)));
    expect(doc.links[0]!.locations.map((l) => [l.name, l.routes, l.hosts.map((h) => h.publicAddress)])).toEqual([
      ["top-g", ["10.0.0.0/16"], [hosts[0]!.publicAddress, hosts[1]!.publicAddress]],
      ["top-w", ["10.1.0.0/16"], [hosts[2]!.publicAddress]],
    ]);
    await settle();
    expect(named("top-w-route").map((r) => [r.inputs.destinationCidrBlock, r.inputs.networkInterfaceId])).toEqual([["10.0.0.0/16", await valueOf(w.hosts[0]!.networkInterface.id)]]);
  });

  it("uses the location's GCP provider for all its resources and lookups", async () => {
    const provider = new gcp.Provider("prov-gcp", { project: "provider-proj-1" });
    const g = new lib.GcpLocation("pg-g", { network: "net-a", subnetwork: "sub-a", zone: "europe-west1-b", routes: ["10.0.0.0/16"] }, { provider });
    const w = new lib.AwsLocation("pg-w", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [RTB], routes: ["10.1.0.0/16"] });
    new lib.Link("pg", { locations: [g, w], stateService: { location: "pg-w" } });
    await settle();
    for (const r of named("pg-g").filter((r) => r.type.startsWith("gcp:"))) expect(r.provider?.split("::")[3]).toBe("prov-gcp");
    expect(one("pg-g-a-routes", T.projectMember).inputs).toMatchObject({ project: "provider-proj-1", role: `projects/provider-proj-1/roles/sitelinkRoutes_${hash8("pg/pg-g")}` });
    expect(one("pg-g-a-internal").inputs.region).toBe("europe-west1");
  });

  it("parents every child to the GcpLocation", async () => {
    const { g } = mixed("par");
    expect(await valueOf(g.hosts[0]!.instance!.urn)).toBe("urn:pulumi:stack::project::sitelink:index:GcpLocation$gcp:compute/instance:Instance::par-g-a");
    await settle();
    const children = options.filter((o) => o.name.startsWith("par-g-"));
    expect(children).toHaveLength(named("par-g-").length);
    for (const c of children) expect(c.parentType).toBe("sitelink:index:GcpLocation");
  });

  it("keeps every GCP name valid and within GCP's limits, also for the longest link and location names", async () => {
    const link = "l".repeat(30);
    const location = `g${"x".repeat(62)}`;
    const g = new lib.GcpLocation(location, { network: "n", subnetwork: "s", zone: "us-central1-a", routes: ["10.0.0.0/16", "fd00::/64"], hosts: [{ name: "h".repeat(30) }] });
    const w = new lib.AwsLocation("long-w", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [RTB], routes: ["10.1.0.0/16"] });
    new lib.Link(link, { locations: [g, w], stateService: { location }, adminCidrs: ["192.0.2.0/24", "2001:db8::/32"] });
    await settle();
    const ours = resources.filter((r) => r.type.startsWith("gcp:") && (r.name.startsWith(location) || r.name.startsWith(`${link}-state`)));
    const label = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
    const names = ours.filter((r) => [T.address, T.firewall, T.instance, "gcp:compute/disk:Disk"].includes(r.type as never)).map((r) => String(r.inputs.name));
    // 2 addresses + instance of the host; link, check, site, site6, ssh, ssh6 rules; the state service's 2 addresses, api, admin, admin6, disk, instance.
    expect(names).toHaveLength(16);
    for (const n of [...names, g.networkTag!]) expect(n).toMatch(label);
    for (const r of ours.filter((r) => r.type === T.account)) expect(String(r.inputs.accountId)).toMatch(/^[a-z][-a-z0-9]{4,28}[a-z0-9]$/);
    for (const r of ours.filter((r) => r.type === T.secret)) expect(String(r.inputs.secretId)).toMatch(/^[a-zA-Z0-9_-]{1,255}$/);
    for (const r of ours.filter((r) => r.type === T.role)) expect(String(r.inputs.roleId)).toMatch(/^[a-zA-Z0-9_.]{3,64}$/);
  });

  it("counts resources exactly: per GCP location, nothing per GCP peer, route entries only on AWS", async () => {
    const sizes = [1, 2, 3, 5];
    for (const n of sizes) {
      const p = `lin${n}`;
      const gs = Array.from({ length: n }, (_, i) => new lib.GcpLocation(`${p}-g${i}`, { network: "net-a", subnetwork: "sub-a", zone: "us-central1-a", routes: [`10.${i + 10}.0.0/16`] }));
      const w = new lib.AwsLocation(`${p}-w`, { vpcId: VPC, subnetId: SUBNET, routeTableIds: [RTB], routes: ["10.1.0.0/16"] });
      new lib.Link(p, { locations: [...gs, w], stateService: { location: `${p}-w` } });
    }
    await settle();
    const totals = sizes.map((n) => resources.filter((r) => r.name.startsWith(`lin${n}-`) || r.name === `lin${n}`).length);
    // Fixed: link 1 + state service 20 + the AWS location 29 (see link.test.ts; its peer prefix list,
    // 3 rules and the agent bucket, its 3 settings and object included). Per GCP location (one host):
    // component, 2 addresses, 3 firewalls, role, account, secret, version, access, project member,
    // instance = 13, agent bucket, object and the host's read of it = 3, and its rule at the state
    // service. Per GCP location the AWS side adds one route (and an entry of its prefix list).
    expect(totals).toEqual(sizes.map((n) => 1 + 20 + 29 + n * 17 + n));
  });
});

describe("GcpLocation validation", () => {
  it("throws every problem, naming the field, before registering anything", async () => {
    expect(
      () =>
        new lib.GcpLocation("bad-g", {
          network: "Net_A",
          subnetwork: "projects/p/regions/us-east1/subnetworks/sub",
          zone: "us-central1-a",
          project: "P",
          machineType: "E2 small",
          routes: ["10.0.0.1/16"],
          hosts: [{ name: "a" }, { name: "a" }],
        }),
    ).toThrow(
      'invalid arguments for GcpLocation "bad-g":\n' +
        "  network: must be a VPC network name or self-link (projects/P/global/networks/N)\n" +
        "  project: must be a GCP project id (6-30 of a-z 0-9 -, starting with a letter)\n" +
        "  machineType: must be a GCP machine type such as e2-small\n" +
        "  subnetwork: is in region us-east1, but the hosts' zone us-central1-a is in us-central1\n" +
        '  routes[0]: "10.0.0.1/16" has host bits set (did you mean 10.0.0.0/16?)\n' +
        '  hosts[1].name: duplicate host name in this location "a" (first at hosts[0].name)',
    );
    expect(() => new lib.GcpLocation("bad-z", { network: "projects/p/global/networks/n", subnetwork: "sub", zone: "us-central1", routes: ["10.0.0.0/16"] })).toThrow(
      'invalid arguments for GcpLocation "bad-z":\n  zone: must be a GCP zone such as us-central1-a',
    );
    await settle();
    expect(named("bad-")).toEqual([]);
  });

  it("accepts names, self-links and Outputs for network and subnetwork", () => {
    const ok = { zone: "us-central1-a", routes: ["10.0.0.0/16"] };
    expect(lib.validateGcpLocationArgs("x", { ...ok, network: "https://www.googleapis.com/compute/v1/projects/p-1/global/networks/n", subnetwork: "projects/p-1/regions/us-central1/subnetworks/s" })).toEqual([]);
    expect(lib.validateGcpLocationArgs("x", { ...ok, network: pulumi.output("n"), subnetwork: pulumi.output("s") })).toEqual([]);
    expect(lib.validateGcpLocationArgs("x", { ...ok, network: "n" })).toEqual([{ path: "subnetwork", message: "must be a subnetwork name or self-link (projects/P/regions/R/subnetworks/S)" }]);
  });

  it("refuses state service settings of the other cloud, naming the field", () => {
    const g = new lib.GcpLocation("sgc-g", { network: "n", subnetwork: "s", zone: "us-central1-a", routes: ["10.0.0.0/16"] });
    const w = new lib.AwsLocation("sgc-w", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [RTB], routes: ["10.1.0.0/16"] });
    expect(() => new lib.Link("sgc", { locations: [g, w], stateService: { location: "sgc-g", instanceType: "t3.micro", machineType: "e2-small" } })).toThrow(
      'invalid arguments for Link "sgc":\n  stateService.instanceType: applies to AWS locations only; "sgc-g" is a GCP location',
    );
    expect(lib.validateLinkArgs("sgc2", { locations: [g, w], stateService: { location: "sgc-w", image: "img", machineType: "E2" } })).toEqual([
      { path: "stateService.machineType", message: "must be a GCP machine type such as e2-micro" },
      { path: "stateService.machineType", message: 'applies to GCP locations only; "sgc-w" is an AWS location' },
      { path: "stateService.image", message: 'applies to GCP locations only; "sgc-w" is an AWS location' },
    ]);
  });
});

describe("the state service in a GCP location", () => {
  /** `${p}-g` (GCP, runs the state service) and `${p}-w` (AWS). */
  function gcpState(p: string, extra: Partial<import("../../lib/index").LinkArgs> = {}) {
    const g = new lib.GcpLocation(`${p}-g`, { network: "net-a", subnetwork: "sub-a", zone: "us-central1-a", routes: ["10.0.0.0/16"] }, captured());
    const w = new lib.AwsLocation(`${p}-w`, { vpcId: VPC, subnetId: SUBNET, routeTableIds: [RTB], routes: ["10.1.0.0/16"], hosts: [{ name: "a" }, { name: "b" }] }, captured());
    const link = new lib.Link(p, { locations: [g, w], stateService: { location: `${p}-g` }, ...extra }, captured());
    return { g, w, link };
  }

  it("creates exactly its resources, in the location's network, and none of the AWS state service", async () => {
    const { link } = gcpState("gst", { adminCidrs: ["192.0.2.0/24"] });
    expect(link.stateService).toBeUndefined();
    expect(link.gcpStateService).toBeDefined();
    await settle();
    const counts: Record<string, number> = {};
    for (const r of named("gst-state")) counts[r.type] = (counts[r.type] ?? 0) + 1;
    expect(counts).toEqual({
      "sitelink:index:GcpStateService": 1,
      "random:index/randomBytes:RandomBytes": 1,
      "tls:index/privateKey:PrivateKey": 1,
      "tls:index/selfSignedCert:SelfSignedCert": 1,
      [T.address]: 2,
      // api (link hosts), admin
      [T.firewall]: 2,
      [T.account]: 1,
      // agent (source, SHA-256), topology, TLS certificate, TLS key, master key
      [T.secret]: 5,
      [T.version]: 5,
      [T.secretAccess]: 5,
      // its read of the location's agent bundle (published once by the location, for its hosts too)
      [T.bucketMember]: 1,
      "gcp:compute/disk:Disk": 1,
      [T.instance]: 1,
    });
  });

  it("admits its port only from the link hosts (and the admin networks), and grants its secrets to its own account only", async () => {
    const { link } = gcpState("gsf", { adminCidrs: ["192.0.2.0/24"] });
    const hosts = await valueOf(link.hosts);
    await settle();
    const base = `sitelink-gsf-state-${hash8("gsf/state")}`;
    expect(one("gsf-state-fw-api", T.firewall).inputs).toEqual({
      name: `${base}-api`,
      network: "net-a",
      direction: "INGRESS",
      allows: [{ protocol: "tcp", ports: ["9443"] }],
      sourceRanges: hosts.map((h) => `${h.publicAddress}/32`),
      targetTags: [base],
      description: "sitelink gsf: state service API from the link hosts",
    });
    expect(one("gsf-state-fw-admin", T.firewall).inputs).toMatchObject({ allows: [{ protocol: "tcp", ports: ["9443", "22"] }], sourceRanges: ["192.0.2.0/24"], targetTags: [base] });
    expect(one("gsf-state", T.instance).inputs.tags).toEqual([base]);
    const email = `sl-gsf-state-${hash8("gsf/state")}@${GCP_PROJECT}.iam.gserviceaccount.com`;
    expect(named("gsf-state", T.secretAccess).map((r) => [r.inputs.secretId, r.inputs.role, r.inputs.member])).toEqual(
      ["agent", "topology", "tls-cert", "tls-key", "master-key"].map((f) => [`${base}-${f}`, "roles/secretmanager.secretAccessor", `serviceAccount:${email}`]),
    );
    const bucket = one("gsf-g-agent", T.bucket).id!;
    const key = `sitelink/agent/${lib.agentBundle().sha256}/sitelink.js`;
    expect(named("gsf-state", T.bucketMember).map((r) => [r.name, r.inputs])).toEqual([
      [
        "gsf-state-agent-read",
        {
          bucket,
          role: "roles/storage.objectViewer",
          member: `serviceAccount:${email}`,
          condition: { title: "sitelink-agent-bundle", description: "this sitelink agent bundle only", expression: `resource.name == "projects/_/buckets/${bucket}/objects/${key}"` },
        },
      ],
    ]);
    expect(named("gsf-state", T.projectMember)).toEqual([]);
  });

  it("delivers keys and topology through Secret Manager only, and runs on its own disk", async () => {
    const { w, link } = gcpState("gsk");
    const topology = await valueOf(link.topology);
    const state = link.gcpStateService!;
    const address = await valueOf(state.address);
    await settle();
    const base = `sitelink-gsk-state-${hash8("gsk/state")}`;
    const data = (file: string) => one(`gsk-state-${file}-version`, T.version).inputs.secretData;
    expect(isSecretValue(data("master-key")) && isSecretValue(data("tls-key"))).toBe(true);
    expect((data("master-key") as { value: string }).value).toBe(MASTER_KEY_BASE64);
    expect((data("topology") as { value: string }).value).toBe(topology);
    const bundle = lib.agentBundle();
    expect(JSON.parse((data("agent") as { value: string }).value)).toEqual({ agentSource: `gs://${one("gsk-g-agent", T.bucket).id!}/sitelink/agent/${bundle.sha256}/sitelink.js`, agentSha256: bundle.sha256 });
    // The topology is published only after the AWS routes exist (the agent would create them otherwise).
    const awsRoutes = await Promise.all(w.routeEntries.map((r) => valueOf(r.urn)));
    expect(awsRoutes).toHaveLength(1);
    expect(await dependsOnUrns(optionsOf("gsk-state-topology-version", T.version).opts.dependsOn)).toEqual(awsRoutes);
    expect(await dependsOnUrns(optionsOf("gsk-state-tls-key-version", T.version).opts.dependsOn)).toEqual([]);
    expect(one("gsk-state-tls-cert", "tls:index/selfSignedCert:SelfSignedCert").inputs).toMatchObject({ ipAddresses: [address] });
    expect(await valueOf(link.stateUrl)).toBe(`https://${address}:9443`);
    expect(one("gsk-state-data", "gcp:compute/disk:Disk").inputs).toEqual({ name: `${base}-data`, zone: "us-central1-a", size: 8, type: "pd-balanced", labels: { "sitelink-link": "gsk" } });
    const instance = one("gsk-state", T.instance).inputs;
    expect(instance).toMatchObject({
      name: `${base}-vm`,
      machineType: "e2-micro",
      attachedDisks: [{ source: one("gsk-state-data").id, deviceName: "sitelink-state" }],
      networkInterfaces: [{ subnetwork: "sub-a", networkIp: expect.stringMatching(/^10\.240\./), accessConfigs: [{ natIp: address, networkTier: "PREMIUM" }] }],
      serviceAccount: { email: `sl-gsk-state-${hash8("gsk/state")}@${GCP_PROJECT}.iam.gserviceaccount.com`, scopes: ["https://www.googleapis.com/auth/cloud-platform"] },
      shieldedInstanceConfig: { enableSecureBoot: true, enableVtpm: true, enableIntegrityMonitoring: true },
    });
    expect(optionsOf("gsk-state", T.instance).opts.deleteBeforeReplace).toBe(true);
    const script = String((instance.metadata as Record<string, string>)["startup-script"]);
    expect(script).toContain(`gcloud secrets versions access latest --project '${GCP_PROJECT}' --secret "$name"`);
    expect(script).toContain(`fetch '${base}-topology' /etc/sitelink/topology.json 0644`);
    expect(script).toContain(`fetch '${base}-agent' /etc/sitelink/agent-source.json 0644 install_agent`);
    // A new topology or version is a new secret version, never a new startup script.
    expect(script).not.toContain(hosts0(topology));
    expect(script).not.toContain("sitelink@");
    expect(script).not.toContain(bundle.sha256);
    const everythingPlain = JSON.stringify(named("gsk").map((r) => plain(r.inputs)));
    for (const secret of [MASTER_KEY_BASE64, "sitelink://", "TESTKEYMATERIAL"]) expect(everythingPlain).not.toContain(secret);
  });

  it("throws every GcpStateService problem before registering anything", async () => {
    const w = new lib.AwsLocation("bgs-w", { vpcId: VPC, subnetId: SUBNET, routeTableIds: [RTB], routes: ["10.1.0.0/16"] });
    expect(
      () =>
        new lib.GcpStateService("bgs-state", {
          link: "bgs",
          location: w as unknown as import("../../lib/index").GcpLocation,
          hosts: [{} as never],
          topology: "{}",
          agentPackage: "sitelink@1.0.0" as never,
          port: 70000,
          machineType: "E2 micro",
        }),
    ).toThrow(
      'invalid arguments for GcpStateService "bgs-state":\n' +
        "  hosts[0]: must be a link host (from a location)\n" +
        "  agentPackage: must be { url, sha256 } or { npmSpec, sha256 }: a package given without its SHA-256 cannot be verified on the hosts\n" +
        "  port: Too big: expected number to be <=65535\n" +
        "  location: must be a GcpLocation\n" +
        "  machineType: must be a GCP machine type such as e2-micro",
    );
    await settle();
    expect(named("bgs-state")).toEqual([]);
  });

  it("points every host URI at it, and the AWS hosts' egress at its address", async () => {
    const { link } = gcpState("gsu");
    const address = await valueOf(link.gcpStateService!.address);
    await settle();
    const uri = parseHostUri(String((one("gsu-w-a-uri").inputs.value as { value: string }).value));
    expect(uri.endpoints).toEqual([{ host: address, port: 9443 }]);
    expect(uri.fingerprints).toEqual([await valueOf(link.fingerprint)]);
    const gcpUri = parseHostUri(String((one("gsu-g-a-uri-version", T.version).inputs.secretData as { value: string }).value));
    expect(gcpUri.endpoints).toEqual([{ host: address, port: 9443 }]);
    expect(one("gsu-w-out-state").inputs).toMatchObject({ fromPort: 9443, cidrIpv4: `${address}/32` });
    expect(await valueOf(link.gcpStateService!.urn)).toBe("urn:pulumi:stack::project::sitelink:index:Link$sitelink:index:GcpStateService::gsu-state");
  });
});

/** The first host address in a topology document (it must not leak into the startup script). */
function hosts0(topology: string): string {
  return String(JSON.parse(topology).links[0].locations[0].hosts[0].publicAddress);
}

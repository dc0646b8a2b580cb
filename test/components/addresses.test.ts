// Host addresses in the firewalls and the topology under Pulumi mocks: hosts behind one NAT share a
// source (a cloud refuses two identical rules), IPv6 public addresses are refused where the other end
// has IPv4 only, and address clashes fail at construction or, for Outputs, with our own message.
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { parseTopology } from "../../agent/contract/topology";
import { captured, named, one, optionsOf, settle, setupMocks, valueOf } from "./harness";

type Lib = typeof import("../../lib/index.js");
let lib: Lib;
let sources: typeof import("../../lib/link/address-sources.js");

beforeAll(async () => {
  await setupMocks();
  lib = await import("../../lib/index.js");
  sources = await import("../../lib/link/address-sources.js");
});

const VPC = "vpc-0123456789abcdef0";
const SUBNET = "subnet-0123456789abcdef0";
const rtb = (n: number) => `rtb-${String(n).padStart(17, "0")}`;
const INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule";
const PREFIX_LIST = "aws:ec2/managedPrefixList:ManagedPrefixList";
const FIREWALL = "gcp:compute/firewall:Firewall";
const NAT = "198.51.100.50";
const state = { url: "https://198.18.0.2:9443", fingerprint: "cd".repeat(32), masterKey: pulumi.secret(Buffer.alloc(32, 5).toString("base64")) };

type Address = pulumi.Input<string>;
const office = (name: string, hosts: [Address, Address][], routes = ["10.20.0.0/16"]) =>
  new lib.ManualLocation(name, { routes, hosts: hosts.map(([publicAddress, privateAddress], i) => ({ name: String.fromCharCode(97 + i), publicAddress, privateAddress })) });
const awsEast = (p: string) => new lib.AwsLocation(`${p}-east`, { vpcId: VPC, subnetId: SUBNET, routeTableIds: [rtb(1)], routes: ["10.0.0.0/16"] });
const gcpEast = (p: string) => new lib.GcpLocation(`${p}-east`, { network: "net-a", subnetwork: "sub-a", zone: "us-central1-a", routes: ["10.0.0.0/16"] });

/** Why an Output failed (its value never arrives). */
async function failureOf(output: pulumi.Output<unknown>): Promise<string> {
  const promise = (output as unknown as { promise(): Promise<unknown> }).promise();
  return promise.then(
    (value) => `resolved to ${JSON.stringify(value)}`,
    (error: Error) => error.message,
  );
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Runs `body`, collecting the rejections nothing handles (a failed Output feeding a resource). */
async function collectingRejections(body: () => Promise<void>): Promise<string[]> {
  const errors: string[] = [];
  const onError = (e: unknown) => errors.push(e instanceof Error ? e.message : String(e));
  process.on("unhandledRejection", onError);
  try {
    await body();
    for (let i = 0; i < 5; i++) await settle();
  } finally {
    process.off("unhandledRejection", onError);
  }
  return errors;
}

describe("hosts of one location behind one NAT", () => {
  it("get one state service rule and one prefix list entry for their address (AWS); a host with an address of its own keeps its rule's name", async () => {
    const east = awsEast("nat");
    const solo = office("nat-solo", [["192.0.2.20", "10.40.0.10"]], ["10.40.0.0/16"]);
    const link = new lib.Link("nat", { locations: [east, office("nat-office", [[NAT, "10.20.0.10"], [NAT, "10.20.0.11"]]), solo], stateService: { location: "nat-east" } }, captured());
    const hosts = await valueOf(link.hosts);
    await settle();
    const eastAddress = hosts.find((h) => h.id === "nat.nat-east.a")!.publicAddress;
    const stateSg = one("nat-state-sg", "aws:ec2/securityGroup:SecurityGroup").id;
    const rule = (cidr: string, description: string) => ({ securityGroupId: stateSg, ipProtocol: "tcp", fromPort: 9443, toPort: 9443, cidrIpv4: cidr, description });
    const rules = named("nat-state-in-", INGRESS)
      .map((r) => ({ name: r.name, aliases: optionsOf(r.name, INGRESS).opts.aliases, ...r.inputs }))
      .sort((a, b) => a.name.localeCompare(b.name));
    // Shared, the rule is named after the address; alone, after its host; each form aliases the
    // other, so a host joining or leaving the address renames the rule in place, never a second
    // identical rule (which AWS refuses) before the old one goes. A cloud address is never shared.
    expect(rules).toEqual([
      { name: `nat-state-in-${NAT}`, aliases: [{ name: "nat-state-in-nat.nat-office.a" }, { name: "nat-state-in-nat.nat-office.b" }], ...rule(`${NAT}/32`, "link host nat.nat-office.a and 1 more behind the same address") },
      { name: "nat-state-in-nat.nat-east.a", aliases: [], ...rule(`${eastAddress}/32`, "link host nat.nat-east.a") },
      { name: "nat-state-in-nat.nat-solo.a", aliases: [{ name: "nat-state-in-192.0.2.20" }], ...rule("192.0.2.20/32", "link host nat.nat-solo.a") },
    ]);
    expect(one("nat-east-peers", PREFIX_LIST).inputs).toEqual({
      name: "sitelink-nat-nat-east-peers",
      addressFamily: "IPv4",
      maxEntries: 2,
      entries: [
        { cidr: `${NAT}/32`, description: "link host nat.nat-office.a and 1 more behind the same address" },
        { cidr: "192.0.2.20/32", description: "link host nat.nat-solo.a" },
      ],
      tags: { Name: "sitelink-nat-nat-east-peers" },
    });
    // The rest of the location is as with one host per address: three link-port rules on the list.
    expect(named("nat-east-in-", INGRESS).map((r) => r.name).sort()).toEqual(["nat-east-in-check", "nat-east-in-check-nat.nat-east.a", "nat-east-in-ike", "nat-east-in-natt", "nat-east-in-site-10.0.0.0-16"]);
    // Both hosts are in the topology with the one address.
    const topology = parseTopology(JSON.parse(await valueOf(link.topology)));
    expect(topology.links[0]!.locations[1]!.hosts.map((h) => [h.id, h.publicAddress, h.privateAddress])).toEqual([
      ["nat.nat-office.a", NAT, "10.20.0.10"],
      ["nat.nat-office.b", NAT, "10.20.0.11"],
    ]);
  });

  it("are one source range of the GCP link rule and of the GCP state service's rule", async () => {
    const east = gcpEast("gnat");
    const link = new lib.Link("gnat", { locations: [east, office("gnat-office", [[NAT, "10.20.0.10"], [NAT, "10.20.0.11"]])], stateService: { location: "gnat-east" } });
    const hosts = await valueOf(link.hosts);
    await settle();
    const eastAddress = hosts.find((h) => h.id === "gnat.gnat-east.a")!.publicAddress;
    expect(named("gnat-", FIREWALL).map((r) => [r.name, r.inputs.sourceRanges]).sort()).toEqual([
      ["gnat-east-fw-check", [`${hosts.find((h) => h.id === "gnat.gnat-east.a")!.privateAddress}/32`]],
      ["gnat-east-fw-link", [`${NAT}/32`]],
      ["gnat-east-fw-site", ["10.0.0.0/16"]],
      ["gnat-state-fw-api", [`${eastAddress}/32`, `${NAT}/32`]],
    ]);
  });

  it("given as Outputs share a prefix list entry once resolved; a rule of their own per host fails naming both, not AWS", async () => {
    const east = awsEast("onat");
    const errors = await collectingRejections(async () => {
      new lib.Link("onat", { locations: [east, office("onat-office", [[pulumi.output(NAT), "10.20.0.10"], [pulumi.output(NAT), "10.20.0.11"]])], stateService: { location: "onat-east" } });
    });
    // Not known at construction: the list has room for both, and holds the address once.
    expect(one("onat-east-peers", PREFIX_LIST).inputs).toMatchObject({
      maxEntries: 2,
      entries: [{ cidr: `${NAT}/32`, description: "link host onat.onat-office.a and 1 more behind the same address" }],
    });
    const message = `hosts onat.onat-office.a and onat.onat-office.b share the public address ${NAT}, which was not known when the firewall rules were declared: give a shared address as a plain string, not an Output`;
    expect(named("onat-state-in-", INGRESS).map((r) => r.name).sort()).toEqual(["onat-state-in-onat.onat-east.a", "onat-state-in-onat.onat-office.a"]);
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.every((e) => e.includes(message)), errors.join("\n")).toBe(true);
  });

  it("merges what is known at construction, keeps the rest apart until it resolves, and describes every source", async () => {
    const host = (id: string, address: pulumi.Input<string>) => ({
      id,
      name: id,
      location: "l",
      priority: 1,
      timeout: 5,
      backoff: 10,
      publicAddress: pulumi.output(address),
      privateAddress: pulumi.output("10.0.0.1"),
      ...(typeof address === "string" ? { known: { publicAddress: address } } : {}),
    });
    const errors = await collectingRejections(async () => {
      const hosts = [host("a", NAT), host("b", "192.0.2.1"), host("c", NAT), host("d", pulumi.output("192.0.2.1")), host("e", pulumi.output("2001:db8::10"))];
      const list = sources.publicAddressSources(hosts);
      expect(list.map((s) => s.hostIds)).toEqual([["a", "c"], ["b"], ["d"], ["e"]]);
      expect(await valueOf(list[0]!.cidr)).toBe(`${NAT}/32`);
      expect(await failureOf(list[3]!.cidr)).toBe('host e: public address "2001:db8::10" is not an IPv4 address; cloud locations and the link\'s own state service reach link hosts over IPv4 only');
      expect(await valueOf(sources.addressRanges(list.slice(0, 3)))).toEqual([
        { cidr: `${NAT}/32`, hostIds: ["a", "c"] },
        { cidr: "192.0.2.1/32", hostIds: ["b", "d"] },
      ]);
      const distinct = sources.distinctAddressSources(hosts.slice(0, 4));
      expect(await valueOf(distinct[1]!.cidr)).toBe("192.0.2.1/32");
      expect(await failureOf(distinct[2]!.cidr)).toBe(
        "hosts b and d share the public address 192.0.2.1, which was not known when the firewall rules were declared: give a shared address as a plain string, not an Output",
      );
    });
    // Failed Outputs that nothing awaits surface as unhandled rejections: only ours.
    expect(new Set(errors)).toEqual(new Set([
      'host e: public address "2001:db8::10" is not an IPv4 address; cloud locations and the link\'s own state service reach link hosts over IPv4 only',
      "hosts b and d share the public address 192.0.2.1, which was not known when the firewall rules were declared: give a shared address as a plain string, not an Output",
    ]));
    // The longest host id (128 characters) still fits AWS's 255-character descriptions.
    expect(sources.describeHosts(["h".repeat(128), "x", "y"])).toHaveLength(173);
  });
});

describe("IPv6 public addresses", () => {
  it("are refused, naming the field, where a connected location or the link's own state service has IPv4 only", async () => {
    const east = awsEast("six");
    const v6 = office("six-office", [["2001:DB8::10", "10.20.0.10"]]);
    expect(() => new lib.Link("six", { locations: [east, v6], stateService: { location: "six-east" } })).toThrow(
      'invalid arguments for Link "six":\n' +
        '  locations[1].hosts[0].publicAddress: 2001:db8::10 is an IPv6 address, but connected location "six-east" (AWS) has IPv4 addresses only: IKE needs both ends in one address family\n' +
        '  locations[1].hosts[0].publicAddress: 2001:db8::10 is an IPv6 address, but the link\'s own state service (in "six-east") has an IPv4 address and admits hosts by their public address: give the IPv4 address the host reaches the internet from, or use a state service run elsewhere ({ url, fingerprint, masterKey })',
    );
    const g = gcpEast("sixg");
    const v6g = office("sixg-office", [["2001:db8::10", "10.20.0.10"]]);
    expect(() => new lib.Link("sixg", { locations: [g, v6g], stateService: state })).toThrow(
      'invalid arguments for Link "sixg":\n  locations[1].hosts[0].publicAddress: 2001:db8::10 is an IPv6 address, but connected location "sixg-east" (GCP) has IPv4 addresses only: IKE needs both ends in one address family',
    );
    await settle();
    // Only the location components exist: no link, no cloud resource.
    expect(named("six").map((r) => r.type).sort()).toEqual(["sitelink:index:AwsLocation", "sitelink:index:GcpLocation", "sitelink:index:ManualLocation", "sitelink:index:ManualLocation"]);
  });

  it("are taken between on-prem locations with a state service run elsewhere, also in a link with a cloud location they are not connected to", async () => {
    const east = awsEast("v6ok");
    const a = office("v6ok-a", [["2001:db8::10", "10.20.0.10"]]);
    const b = office("v6ok-b", [["2001:db8:1::10", "10.30.0.10"]], ["10.30.0.0/16"]);
    const c = office("v6ok-c", [["192.0.2.10", "10.40.0.10"]], ["10.40.0.0/16"]);
    const link = new lib.Link("v6ok", { locations: [east, a, b, c], stateService: state, connections: [["v6ok-a", "v6ok-b"], ["v6ok-east", "v6ok-c"]] });
    const topology = parseTopology(JSON.parse(await valueOf(link.topology)));
    expect(topology.links[0]!.locations.slice(1, 3).map((l) => l.hosts[0]!.publicAddress)).toEqual(["2001:db8::10", "2001:db8:1::10"]);
    await settle();
    expect(one("v6ok-east-peers", PREFIX_LIST).inputs).toMatchObject({ addressFamily: "IPv4", maxEntries: 1, entries: [{ cidr: "192.0.2.10/32", description: "link host v6ok.v6ok-c.a" }] });
  });
});

describe("address clashes", () => {
  it("are refused at construction, naming the argument fields: a public address of two locations, a private address twice in one", async () => {
    const a = office("clash-a", [[NAT, "10.20.0.10"]]);
    const b = office("clash-b", [[NAT, "10.30.0.10"]], ["10.30.0.0/16"]);
    expect(() => new lib.Link("clash", { locations: [a, b], stateService: state })).toThrow(
      'invalid arguments for Link "clash":\n  locations[1].hosts[0].publicAddress: 198.51.100.50 is also the public address of a host of another location (locations[0].hosts[0].publicAddress)',
    );
    expect(() => office("clash-c", [["198.51.100.1", "10.20.0.10"], ["198.51.100.2", "10.20.0.10"]])).toThrow(
      'invalid arguments for ManualLocation "clash-c":\n  hosts[1].privateAddress: duplicate private address in this location "10.20.0.10" (first at hosts[0].privateAddress)',
    );
    expect(() =>
      new lib.SshLocation("clash-d", {
        routes: ["10.20.0.0/16"],
        kernel: { device: "eth0" },
        hosts: ["a", "b"].map((name) => ({ name, publicAddress: NAT, privateAddress: "10.20.0.10", connection: { user: "admin", privateKey: "k", hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKey" } })),
      }),
    ).toThrow('invalid arguments for SshLocation "clash-d":\n  hosts[1].privateAddress: duplicate private address in this location "10.20.0.10" (first at hosts[0].privateAddress)');
    await settle();
    expect(named("clash").map((r) => r.type)).toEqual(["sitelink:index:ManualLocation", "sitelink:index:ManualLocation"]);
  });

  it("known only at deployment fail in our words, naming the hosts", async () => {
    let link!: InstanceType<Lib["Link"]>;
    const errors = await collectingRejections(async () => {
      const a = office("late-a", [[pulumi.output(NAT), "10.20.0.10"]]);
      const b = office("late-b", [[NAT, pulumi.output("10.30.0.10")], ["198.51.100.7", pulumi.output("10.30.0.10")]], ["10.30.0.0/16"]);
      link = new lib.Link("late", { locations: [a, b], stateService: state });
    });
    const message =
      'Link "late": the host addresses known at deployment clash:\n' +
      "  host late.late-b.a publicAddress: 198.51.100.50 is also the public address of a host of another location (host late.late-a.a publicAddress)\n" +
      '  host late.late-b.b privateAddress: duplicate private address in this location "10.30.0.10" (first at host late.late-b.a privateAddress)';
    // (Pulumi prefixes where it met the failure, e.g. `error serializing property "outputs": `.)
    expect(await failureOf(link.topology)).toMatch(new RegExp(`${escape(message)}$`));
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.every((e) => e.endsWith(message)), errors.join("\n")).toBe(true);
  });
});

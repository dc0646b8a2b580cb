// Every validation rule of the components' arguments, with its exact message and field path.
import { describe, expect, it } from "vitest";
import { validateAwsLocationArgs, validateAwsStateServiceArgs as validateStateServiceArgs } from "../aws/validate";
import { validateGcpStateServiceArgs } from "../gcp/validate";
import { ArgsError, hostId, hostSpecs, throwIfInvalid, type LocationLike } from "./args";
import { validateLinkArgs } from "./validate";

const VPC = "vpc-0123456789abcdef0";
const SUBNET = "subnet-01234567";
const RTB = "rtb-0123456789abcdef0";
const good = { vpcId: VPC, subnetId: SUBNET, routeTableIds: [RTB], routes: ["10.0.0.0/16"] };

const location = (name: string, routes: string[], hosts = [{ name: "a" }], linkName?: string): LocationLike => ({
  spec: { name, cloud: "aws", routes, hosts: hostSpecs({ hosts }) },
  ...(linkName ? { linkName } : {}),
});
const two = [location("east", ["10.0.0.0/16"]), location("west", ["10.1.0.0/16"])];

describe("validateAwsLocationArgs", () => {
  it("accepts good args, Outputs and Promises for the pass-through ids", () => {
    expect(validateAwsLocationArgs("east", good)).toEqual([]);
    const output = { apply: () => undefined };
    expect(validateAwsLocationArgs("east", { ...good, vpcId: output, subnetId: Promise.resolve("x"), routeTableIds: { private: output, public: RTB }, ami: output, nodeSource: "preinstalled" })).toEqual([]);
  });

  it("takes route tables as plain ids or as a record of keys, never an Output in the list (it could not name its routes)", () => {
    const output = { apply: () => undefined };
    expect(validateAwsLocationArgs("east", { ...good, routeTableIds: [RTB, output] })).toEqual([
      {
        path: "routeTableIds[1]",
        message: "an Output cannot name routes (its value is unknown when they are declared): pass routeTableIds as a record of stable keys, e.g. { private: table.id }",
      },
    ]);
    expect(validateAwsLocationArgs("east", { ...good, routeTableIds: { "pri-vate": RTB, public: "rtb-x", again: RTB, ok_1: output } })).toEqual([
      { path: "routeTableIds.pri-vate", message: "must be a key of 1-63 letters, digits or _ (it names the routes of this table)" },
      { path: "routeTableIds.public", message: "must be a route table id (rtb-…)" },
      { path: "routeTableIds.again", message: `duplicate route table id "${RTB}"` },
    ]);
    expect(validateAwsLocationArgs("east", { ...good, routeTableIds: {} })).toEqual([{ path: "routeTableIds", message: "at least one route table id is needed" }]);
    for (const bad of [RTB, output, undefined]) {
      expect(validateAwsLocationArgs("east", { ...good, routeTableIds: bad })).toEqual([
        { path: "routeTableIds", message: "must be a list of route table ids (rtb-…) or a record of keys to ids ({ private: table.id })" },
      ]);
    }
    expect(validateAwsLocationArgs("east", { ...good, nodeSource: "apt" })).toEqual([{ path: "nodeSource", message: 'Invalid option: expected one of "nodesource"|"preinstalled"' }]);
  });

  it("reports every problem at once, each naming its field", () => {
    expect(
      validateAwsLocationArgs("East_1", {
        vpcId: "vpc-12",
        subnetId: "sub",
        routeTableIds: [],
        routes: ["10.0.0.1/16", "10.0.0.0/8", "x"],
        hosts: [{ name: "a", priority: 0 }, { name: "a" }, { name: "B", timeout: 0, backoff: -1 }],
        instanceType: "big",
        ami: "ami-1",
        keyName: "",
      }),
    ).toEqual([
      { path: "vpcId", message: "must be a VPC id (vpc-…)" },
      { path: "subnetId", message: "must be a subnet id (subnet-…)" },
      { path: "routeTableIds", message: "at least one route table id is needed" },
      { path: "instanceType", message: "must be an EC2 instance type such as t3.small" },
      { path: "ami", message: "must be an AMI id (ami-…)" },
      { path: "keyName", message: "must be a key pair name" },
      { path: "name", message: "location name must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'" },
      { path: "routes[0]", message: '"10.0.0.1/16" has host bits set (did you mean 10.0.0.0/16?)' },
      { path: "routes[2]", message: '"x" is not a CIDR (expected address/prefix, e.g. 10.0.0.0/16)' },
      { path: "hosts[0].priority", message: "Too small: expected number to be >=1" },
      { path: "hosts[2].name", message: "host name must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'" },
      { path: "hosts[2].timeout", message: "Too small: expected number to be >=1" },
      { path: "hosts[2].backoff", message: "Too small: expected number to be >=0" },
      { path: "hosts[1].name", message: 'duplicate host name in this location "a" (first at hosts[0].name)' },
    ]);
  });

  it("refuses duplicate route tables, no routes, no hosts, overlapping routes", () => {
    expect(validateAwsLocationArgs("east", { ...good, routeTableIds: [RTB, RTB], routes: [], hosts: [] })).toEqual([
      { path: "routeTableIds[1]", message: `duplicate route table id "${RTB}"` },
      { path: "routes", message: "a location needs at least one route" },
      { path: "hosts", message: "a location needs at least one host" },
    ]);
    expect(validateAwsLocationArgs("east", { ...good, routes: ["10.0.0.0/16", "10.0.128.0/17"] })).toEqual([
      { path: "routes[1]", message: "10.0.128.0/17 overlaps 10.0.0.0/16 in the same location (routes[0])" },
    ]);
  });

  it("refuses a missing argument object with a message, not a crash", () => {
    expect(validateAwsLocationArgs("east", undefined)).toEqual([
      { path: "", message: "Invalid input: expected object, received undefined" },
      { path: "routes", message: "Invalid input: expected array, received undefined" },
    ]);
  });

  it("defaults to one host named a with the topology defaults", () => {
    expect(hostSpecs({})).toEqual([{ name: "a", priority: 1, timeout: 5, backoff: 10 }]);
  });
});

describe("validateLinkArgs", () => {
  it("accepts a good link, owned or external state service", () => {
    expect(validateLinkArgs("corp", { locations: two, stateService: { location: "east" } })).toEqual([]);
    expect(validateLinkArgs("corp", { locations: two, stateService: { url: "https://state.example.com:8443", fingerprint: "AB:".repeat(31) + "AB", masterKey: "k" } })).toEqual([]);
  });

  it("reports every link-level problem at once, with argument paths (also inside messages)", () => {
    expect(
      validateLinkArgs("Corp", {
        locations: [location("a", ["10.0.0.0/16"]), location("a", ["10.0.1.0/24"]), {}],
        stateService: { location: "zz" },
        connections: [["a", "q"], ["a", "a"]],
        cipher: { ike: "des" },
        timing: { heartbeat: 0 },
        agentPackage: { npmSpec: "x y", sha256: "a".repeat(64) },
        adminCidrs: ["1.2.3.4/8"],
      }),
    ).toEqual([
      { path: "locations[2]", message: "must be a sitelink location (e.g. an AwsLocation)" },
      { path: "agentPackage.npmSpec", message: "must be an npm spec without spaces or quotes" },
      { path: "adminCidrs[0]", message: '"1.2.3.4/8" has host bits set (did you mean 1.0.0.0/8?)' },
      { path: "stateService.location", message: '"zz" is not a location of this link (locations: a, a)' },
      { path: "name", message: "link name must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'" },
      {
        path: "cipher.ike",
        message:
          'Invalid option: expected one of "aes128-sha256-x25519"|"aes256-sha256-x25519"|"aes128gcm16-prfsha256-x25519"|"aes256gcm16-prfsha384-x25519"|"aes256-sha384-ecp384"|"aes128-sha256-modp2048"|"aes256-sha256-modp2048"',
      },
      { path: "timing.heartbeat", message: "Too small: expected number to be >=0.2" },
      { path: "locations[1].name", message: 'duplicate location name "a" (first at locations[0].name)' },
      { path: "locations[1].routes[0]", message: '10.0.1.0/24 overlaps 10.0.0.0/16 of location "a" (locations[0].routes[0])' },
      { path: "connections[0][1]", message: 'unknown location "q"' },
      { path: "connections[1]", message: 'a location cannot connect to itself ("a")' },
    ]);
  });

  it("needs two locations and a state service", () => {
    expect(validateLinkArgs("corp", { locations: [two[0]] })).toEqual([
      { path: "stateService", message: "must be { location } (run by this link) or { url, fingerprint, masterKey } (run elsewhere)" },
      { path: "locations", message: "a link needs at least two locations" },
    ]);
    expect(validateLinkArgs("corp", undefined)).toEqual([{ path: "", message: "Invalid input: expected object, received undefined" }]);
  });

  it("checks the owned state service settings", () => {
    expect(validateLinkArgs("corp", { locations: two, stateService: { location: "east", port: 0, volumeSize: 0, instanceType: "x", extra: 1 } })).toEqual([
      { path: "stateService.instanceType", message: "must be an EC2 instance type such as t3.small" },
      { path: "stateService.port", message: "Too small: expected number to be >=1" },
      { path: "stateService.volumeSize", message: "must be at least 1 GiB" },
      { path: "stateService", message: 'Unrecognized key: "extra"' },
    ]);
  });

  it("checks the external state service settings", () => {
    expect(validateLinkArgs("corp", { locations: two, stateService: { url: "http://x/y", fingerprint: "zz", masterKey: "" } })).toEqual([
      { path: "stateService.url", message: "must be https://host[:port] (no path)" },
      { path: "stateService.fingerprint", message: "must be the SHA-256 fingerprint of the state service certificate (64 hex digits)" },
      { path: "stateService.masterKey", message: "must be the master key (a secret)" },
    ]);
  });

  it("refuses host ids over 128 characters and a location already in another link", () => {
    const long = location("a".repeat(63), ["10.0.0.0/16"], [{ name: "b".repeat(63) }]);
    const taken = location("b", ["10.1.0.0/16"], [{ name: "a" }], "other");
    const id = hostId("corp", "a".repeat(63), "b".repeat(63));
    expect(validateLinkArgs("corp", { locations: [long, taken], stateService: { location: "b" } })).toEqual([
      { path: "locations[0].hosts[0].name", message: `host id "${id}" is 132 characters; link, location and host names together must fit in 128` },
      { path: "locations[1]", message: 'location "b" already belongs to link "other"' },
    ]);
  });
});

describe("ArgsError", () => {
  it("lists every issue under the component's name", () => {
    expect(() => throwIfInvalid('Link "corp"', [{ path: "a.b", message: "bad" }, { path: "", message: "worse" }])).toThrow(
      new ArgsError('Link "corp"', [{ path: "a.b", message: "bad" }, { path: "", message: "worse" }]),
    );
    expect(new ArgsError("X", [{ path: "a.b", message: "bad" }, { path: "", message: "worse" }]).message).toBe("invalid arguments for X:\n  a.b: bad\n  (args): worse");
    expect(() => throwIfInvalid("X", [])).not.toThrow();
  });
});

describe("validateStateServiceArgs and validateGcpStateServiceArgs", () => {
  const aws = location("east", ["10.0.0.0/16"]);
  const gcp: LocationLike = { spec: { ...aws.spec, cloud: "gcp" } };
  const common = { link: "corp", hosts: [{ id: "corp.east.a" }], topology: "{}", agentPackage: { npmSpec: "sitelink@1.0.0", sha256: "a".repeat(64) } };

  it("accepts what the Link passes, with or without the optional settings", () => {
    expect(validateStateServiceArgs({ ...common, location: aws })).toEqual([]);
    expect(validateStateServiceArgs({ ...common, location: aws, adminCidrs: ["192.0.2.0/24"], instanceType: "t3.micro", port: 9443, volumeSize: 8, ami: undefined, topologyDependsOn: Promise.resolve([]) })).toEqual([]);
    expect(validateGcpStateServiceArgs({ ...common, location: gcp, machineType: "e2-micro", image: "projects/p/global/images/i" })).toEqual([]);
  });

  it("reports every problem, naming the field, and refuses the other cloud's location and settings", () => {
    expect(validateStateServiceArgs({ ...common, location: gcp, topology: 7, volumeSize: 0, machineType: "e2-micro" })).toEqual([
      { path: "topology", message: "must be the topology document (JSON)" },
      { path: "volumeSize", message: "must be at least 1 GiB" },
      { path: "location", message: "must be an AwsLocation" },
      { path: "", message: 'Unrecognized key: "machineType"' },
    ]);
    expect(validateGcpStateServiceArgs({ ...common, location: aws, ami: "ami-12345678" })).toEqual([
      { path: "location", message: "must be a GcpLocation" },
      { path: "", message: 'Unrecognized key: "ami"' },
    ]);
    expect(validateGcpStateServiceArgs(undefined)).toEqual([{ path: "", message: "Invalid input: expected object, received undefined" }]);
  });
});

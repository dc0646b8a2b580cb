// Builds the example program under Pulumi mocks: two VPCs in two regions, joined by the link.
import { beforeAll, describe, expect, it } from "vitest";
import { named, one, resources, settle, setupMocks, valueOf } from "../../test/components/harness";

type Program = typeof import("./index.js");
let program: Program;

beforeAll(async () => {
  await setupMocks();
  program = await import("./index.js");
  await valueOf(program.hosts);
  await settle();
});

describe("examples/aws-two-vpcs", () => {
  it("creates VPC-A 10.0.0.0/16 in us-east-1 and VPC-B 10.1.0.0/16 in us-west-2, each through its own provider", () => {
    const region = (name: string) => one(name).provider?.split("::")[3];
    expect(one("vpc-a-vpc").inputs.cidrBlock).toBe("10.0.0.0/16");
    expect(one("vpc-b-vpc").inputs.cidrBlock).toBe("10.1.0.0/16");
    expect(region("vpc-a-vpc")).toBe("us-east-1");
    expect(region("vpc-b-vpc")).toBe("us-west-2");
    expect(one("vpc-a-public", "aws:ec2/subnet:Subnet").inputs).toMatchObject({ cidrBlock: "10.0.0.0/24", availabilityZone: "us-east-1a" });
    expect(one("vpc-b-private", "aws:ec2/subnet:Subnet").inputs).toMatchObject({ cidrBlock: "10.1.1.0/24", availabilityZone: "us-west-2a" });
  });

  it("routes each VPC's remote CIDR from both its route tables to its priority-2 host, in its own region", async () => {
    const routes = named("vpc-a-route", "aws:ec2/route:Route");
    // Named by the tables' keys: a table added or removed later renames no other route.
    expect(routes.map((r) => [r.name, r.inputs.routeTableId, r.inputs.destinationCidrBlock])).toEqual([
      ["vpc-a-route-public-10.1.0.0-16", one("vpc-a-public", "aws:ec2/routeTable:RouteTable").id, "10.1.0.0/16"],
      ["vpc-a-route-private-10.1.0.0-16", one("vpc-a-private", "aws:ec2/routeTable:RouteTable").id, "10.1.0.0/16"],
    ]);
    expect(named("vpc-b-route", "aws:ec2/route:Route").map((r) => r.inputs.destinationCidrBlock)).toEqual(["10.0.0.0/16", "10.0.0.0/16"]);
    expect(routes.every((r) => r.provider?.split("::")[3] === "us-east-1")).toBe(true);
    const hosts = await valueOf(program.hosts);
    expect(hosts.map((h) => [h.id, h.role])).toEqual([
      ["seed.vpc-a.a", "active"],
      ["seed.vpc-a.b", "standby"],
      ["seed.vpc-b.a", "active"],
      ["seed.vpc-b.b", "standby"],
    ]);
  });

  it("runs the state service in VPC-A's public subnet and exports its URL and fingerprint", async () => {
    const state = one("seed-state", "aws:ec2/instance:Instance");
    expect(state.provider?.split("::")[3]).toBe("us-east-1");
    expect(one("seed-state-eni").inputs.subnetId).toBe(one("vpc-a-public", "aws:ec2/subnet:Subnet").id);
    expect(await valueOf(program.stateUrl)).toMatch(/^https:\/\/203\.0\.113\.\d+:9443$/);
    expect(await valueOf(program.fingerprint)).toMatch(/^[0-9a-f]{64}$/);
    expect(resources.filter((r) => r.type === "aws:ec2/instance:Instance")).toHaveLength(5);
  });
});

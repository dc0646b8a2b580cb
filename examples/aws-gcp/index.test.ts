// Builds the mixed example program under Pulumi mocks: a GCP network and an AWS VPC joined by the link.
import { beforeAll, describe, expect, it } from "vitest";
import { named, one, resources, settle, setupMocks, valueOf } from "../../test/components/harness";

type Program = typeof import("./index.js");
let program: Program;

beforeAll(async () => {
  process.env.PULUMI_CONFIG = JSON.stringify({ "project:gcpProject": "seed-project-1" });
  await setupMocks();
  program = await import("./index.js");
  await valueOf(program.linkHosts);
  await settle();
});

const HOSTS_SUBNET = "https://www.googleapis.com/compute/v1/projects/seed-project-1/regions/us-central1/subnetworks/vpc-a-hosts";
const providerOf = (name: string, type?: string) => one(name, type).provider?.split("::")[3];

describe("examples/aws-gcp", () => {
  it("creates GCP VPC-A (10.0.0.0/16 subnetworks, us-central1) and AWS VPC-B 10.1.0.0/16 in us-west-2", () => {
    expect(one("gcp", "pulumi:providers:gcp").inputs).toMatchObject({ project: "seed-project-1", region: "us-central1" });
    expect(one("vpc-a-network").inputs).toMatchObject({ autoCreateSubnetworks: false });
    expect(one("vpc-a-hosts").inputs).toMatchObject({ ipCidrRange: "10.0.0.0/24", region: "us-central1" });
    expect(one("vpc-a-workloads").inputs).toMatchObject({ ipCidrRange: "10.0.1.0/24", region: "us-central1" });
    expect(providerOf("vpc-a-network")).toBe("gcp");
    expect(one("vpc-b-vpc").inputs.cidrBlock).toBe("10.1.0.0/16");
    expect(providerOf("vpc-b-vpc")).toBe("us-west-2");
  });

  it("puts VPC-A's hosts on the hosts subnetwork in us-central1-a, and creates no GCP route", () => {
    for (const h of ["a", "b"]) {
      const instance = one(`vpc-a-${h}`, "gcp:compute/instance:Instance");
      expect(instance.provider?.split("::")[3]).toBe("gcp");
      expect(instance.inputs).toMatchObject({ zone: "us-central1-a", canIpForward: true, networkInterfaces: [{ subnetwork: HOSTS_SUBNET }] });
      const config = JSON.parse(String((instance.inputs.metadata as Record<string, string>)["sitelink-agent-config"]));
      expect(config.gcp).toEqual({ network: "https://www.googleapis.com/compute/v1/projects/seed-project-1/global/networks/vpc-a-network", project: "seed-project-1", priority: 900 });
    }
    expect(resources.filter((r) => r.type === "gcp:compute/route:Route")).toEqual([]);
  });

  it("routes VPC-A's CIDR from both VPC-B route tables to VPC-B's priority-2 host, and runs the state service in VPC-A", async () => {
    expect(named("vpc-b-route", "aws:ec2/route:Route").map((r) => [r.name, r.inputs.routeTableId, r.inputs.destinationCidrBlock])).toEqual([
      ["vpc-b-route-public-10.0.0.0-16", one("vpc-b-public", "aws:ec2/routeTable:RouteTable").id, "10.0.0.0/16"],
      ["vpc-b-route-private-10.0.0.0-16", one("vpc-b-private", "aws:ec2/routeTable:RouteTable").id, "10.0.0.0/16"],
    ]);
    const hosts = await valueOf(program.linkHosts);
    expect(hosts.map((h) => [h.id, h.role])).toEqual([
      ["seed.vpc-a.a", "active"],
      ["seed.vpc-a.b", "standby"],
      ["seed.vpc-b.a", "active"],
      ["seed.vpc-b.b", "standby"],
    ]);
    const state = one("seed-state", "gcp:compute/instance:Instance");
    expect(state.provider?.split("::")[3]).toBe("gcp");
    expect(state.inputs).toMatchObject({ zone: "us-central1-a", networkInterfaces: [{ subnetwork: HOSTS_SUBNET }] });
    expect(resources.filter((r) => r.type === "aws:ec2/instance:Instance").map((r) => r.name)).toEqual(["vpc-b-a", "vpc-b-b"]);
    expect(await valueOf(program.stateUrl)).toMatch(/^https:\/\/198\.51\.100\.\d+:9443$/);
    // VPC-A admits IKE only from VPC-B's two hosts.
    expect(one("vpc-a-fw-link").inputs.sourceRanges).toEqual(hosts.filter((h) => h.location === "vpc-b").map((h) => `${h.publicAddress}/32`));
  });
});

// `pulumi preview`: addresses, ARNs and keys are unknown until the cloud makes them. The components
// must declare the same resources without them, and never fail on an unknown value.
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { named, resources, settle, setupMocks } from "./harness";

type Lib = typeof import("../../lib/index.js");
let lib: Lib;

beforeAll(async () => {
  await setupMocks({ preview: true });
  lib = await import("../../lib/index.js");
});

describe("preview with unknown cloud values", () => {
  it("declares every resource, leaving values that depend on unknown addresses unknown", async () => {
    const errors: unknown[] = [];
    const onError = (e: unknown) => errors.push(e);
    process.on("unhandledRejection", onError);
    const mk = (name: string, n: number) =>
      new lib.AwsLocation(name, { vpcId: "vpc-0123456789abcdef0", subnetId: "subnet-0123456789abcdef0", routeTableIds: [`rtb-${String(n).padStart(17, "0")}`], routes: [`10.${n}.0.0/16`] });
    new lib.Link("pv", { locations: [mk("pv-a", 1), mk("pv-b", 2)], stateService: { location: "pv-a" } });
    for (let i = 0; i < 5; i++) await settle();
    process.off("unhandledRejection", onError);
    expect(errors).toEqual([]);
    // Same count as with known values: 1 + 20 + 2 × 29 + 2 routes (see link.test.ts; the agent bucket, its settings and object included).
    expect(resources.filter((r) => r.name === "pv" || r.name.startsWith("pv-"))).toHaveLength(1 + 20 + 2 * 29 + 2);
    // The user data is known already: it holds nothing that depends on what the cloud makes. The
    // config needs the Elastic IP, the topology every address, the peer list the peers': unknown for now.
    const userData = named("pv-a-a").find((r) => r.type === "aws:ec2/instance:Instance")!.inputs.userData;
    expect(pulumi.isUnknown(userData)).toBe(false);
    expect(String(userData)).toContain("--name \"$name\"");
    expect(pulumi.isUnknown(named("pv-a-a-config")[0]!.inputs.value)).toBe(true);
    expect(pulumi.isUnknown(named("pv-state-topology")[0]!.inputs.value)).toBe(true);
    expect(pulumi.isUnknown(named("pv-a-route")[0]!.inputs.networkInterfaceId)).toBe(true);
    // (each address listed once, so the entries are known once every address is)
    expect(pulumi.isUnknown(named("pv-a-peers")[0]!.inputs.entries)).toBe(true);
    expect(named("pv-a-route").map((r) => r.inputs.destinationCidrBlock)).toEqual(["10.2.0.0/16"]);
  });
});

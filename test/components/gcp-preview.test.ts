// `pulumi preview` of a mixed link whose state service runs on GCP: addresses, emails and keys are
// unknown until the cloud makes them; the GCP components must declare the same resources without them.
import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { named, one, resources, settle, setupMocks } from "./harness";

type Lib = typeof import("../../lib/index.js");
let lib: Lib;

beforeAll(async () => {
  await setupMocks({ preview: true });
  lib = await import("../../lib/index.js");
});

describe("GCP preview with unknown cloud values", () => {
  it("declares every resource, leaving values that depend on unknown addresses unknown", async () => {
    const errors: unknown[] = [];
    const onError = (e: unknown) => errors.push(e);
    process.on("unhandledRejection", onError);
    const g = new lib.GcpLocation("gpv-g", { network: "net-a", subnetwork: "sub-a", zone: "us-central1-a", project: "proj-123", routes: ["10.0.0.0/16"] });
    const w = new lib.AwsLocation("gpv-w", { vpcId: "vpc-0123456789abcdef0", subnetId: "subnet-0123456789abcdef0", routeTableIds: ["rtb-00000000000000001"], routes: ["10.1.0.0/16"] });
    new lib.Link("gpv", { locations: [g, w], stateService: { location: "gpv-g" } });
    for (let i = 0; i < 5; i++) await settle();
    process.off("unhandledRejection", onError);
    expect(errors).toEqual([]);
    // As with known values: link 1, GCP state service 26 (+1 rule per link host: none, one rule holds all;
    // its read of the agent bundle included), the GCP location 16 (agent bucket, object and the host's
    // read included), the AWS location 28 (no state rule on AWS; agent bucket, 3 settings, object; no package parameter) + 1 route.
    expect(resources.filter((r) => r.name === "gpv" || r.name.startsWith("gpv-"))).toHaveLength(1 + 26 + 16 + 28 + 1);
    // The startup script is known (it names only the host's URI secret); the config attribute needs the addresses, the peer rule every peer address: unknown for now.
    const metadata = one("gpv-g-a", "gcp:compute/instance:Instance").inputs.metadata as Record<string, unknown>;
    expect(metadata["startup-script"]).toBe(lib.renderGcpAgentBootstrap({ project: "proj-123", uriSecret: `sitelink-gpv-g-a-${createHash("sha256").update("gpv.gpv-g.a").digest("hex").slice(0, 8)}-uri` }));
    expect(pulumi.isUnknown(metadata["sitelink-agent-config"])).toBe(true);
    expect(metadata["enable-oslogin"]).toBe("TRUE");
    // (each address listed once, so the list is known once every address is)
    expect(pulumi.isUnknown(one("gpv-g-fw-link").inputs.sourceRanges)).toBe(true);
    expect(named("gpv-g", "gcp:compute/route:Route")).toEqual([]);
  });
});

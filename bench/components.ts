// Component construction time against the number of locations, under Pulumi mocks (no cloud).
// Each location has two hosts and one route table; the link is a full mesh.
// Run: npx tsx bench/components.ts [sizes…]   (default 2 5 10 20)
// The Pulumi runtime's own cost per resource (stack capture, serialization) dominates; the baseline
// line measures it with plain resources so the per-resource figures can be compared on any machine.
import { performance } from "node:perf_hooks";
import { resources, settle, setupMocks, valueOf } from "../test/components/harness";

async function main() {
  const sizes = process.argv.slice(2).map(Number).filter((n) => n >= 2);
  await setupMocks();
  const lib = await import("../lib/index.js");
  const aws = await import("@pulumi/aws");
  const baselineStart = performance.now();
  for (let i = 0; i < 300; i++) new aws.ec2.SecurityGroup(`baseline-${i}`, { vpcId: "vpc-0123456789abcdef0" });
  await quiesce();
  const baselineMs = performance.now() - baselineStart;
  console.log(`baseline: 300 plain resources registered in ${baselineMs.toFixed(1)} ms (${(baselineMs / 300).toFixed(2)} ms/resource)`);
  console.log("locations  hosts  resources  construct_ms  registered_ms  ms/resource");
  for (const n of sizes.length > 0 ? sizes : [2, 5, 10, 20]) {
    const prefix = `b${n}`;
    const before = resources.length;
    const start = performance.now();
    const locations = Array.from({ length: n }, (_, i) =>
      new lib.AwsLocation(`${prefix}-l${i}`, {
        vpcId: "vpc-0123456789abcdef0",
        subnetId: "subnet-0123456789abcdef0",
        routeTableIds: [`rtb-${String(i).padStart(17, "0")}`],
        routes: [`10.${i}.0.0/16`],
        hosts: [{ name: "a", priority: 2 }, { name: "b" }],
      }),
    );
    const link = new lib.Link(prefix, { locations, stateService: { location: `${prefix}-l0` } });
    const constructed = performance.now();
    await valueOf(link.hosts);
    await valueOf(link.topology);
    const count = await quiesce();
    const registered = performance.now();
    console.log(
      [String(n).padStart(9), String(n * 2).padStart(6), String(count - before).padStart(10), (constructed - start).toFixed(1).padStart(13), (registered - start).toFixed(1).padStart(14), ((registered - start) / (count - before)).toFixed(2).padStart(12)].join(" "),
    );
  }
}

/** Registrations trail the outputs: waits until the count of registered resources stops moving. */
async function quiesce(): Promise<number> {
  let count = -1;
  while (count !== resources.length) {
    count = resources.length;
    await settle();
  }
  return count;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

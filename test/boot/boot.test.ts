// The boot lab with the link the components render (link-lab.ts): three Debian instances run the
// exact user data under real cloud-init and systemd against the fake cloud, come up ready, carry
// site traffic through the tunnel and refuse a tampered agent. Root only: skipped, saying so, otherwise.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exec } from "./instance";
import { LinkLab, labProblemSeen, labReadiness, sitePing, SITE_ADDRESS, tamperAgent, type Readiness, type TamperEvidence } from "./link-lab";

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn("boot lab (test/boot/boot.test.ts) skipped: it needs root (debootstrap, systemd-nspawn, network namespaces, mounts)");

describe.skipIf(!isRoot)("boot lab: an AWS link from the rendered user data", () => {
  const ll = new LinkLab((line) => console.log(`[boot lab] ${line}`));
  let readiness: Readiness;

  beforeAll(async () => {
    await ll.start();
    readiness = await ll.phase("readiness", () => labReadiness(ll));
    if (!readiness.ready) console.log(await ll.diagnostics());
  }, 900_000);

  afterAll(async () => {
    for (const p of ll.phases) console.log(`[boot lab] phase ${p.name}: ${p.seconds} s`);
    for (const m of ll.machines) console.log(`[boot lab] ${m.rendered.resource}: cloud-init ${m.cloudInit?.status} at ${m.cloudInit?.seconds} s, ready at ${m.readySeconds ?? "-"} s`);
    await ll.cleanup();
  }, 120_000);

  it("runs cloud-init to done with no failed unit on every instance", async () => {
    expect(ll.machines.map((m) => [m.rendered.resource, m.cloudInit?.status])).toEqual(ll.machines.map((m) => [m.rendered.resource, "done"]));
    expect(await ll.failedUnits()).toEqual(Object.fromEntries(ll.machines.map((m) => [m.rendered.resource, []])));
  });

  it("comes up ready: every agent reaches the state service, one active host per location, tunnels up", () => {
    expect(readiness.notReady).toEqual({});
    expect(readiness.ready).toBe(true);
  });

  it("read its parameters and agent from the fake cloud through the AWS CLI and SDK, and moved no route it does not own", () => {
    const cloud = ll.cloud!;
    for (const m of ll.machines) {
      const ops = new Set(cloud.requests.filter((r) => r.remote === m.instance.address && r.status === 200).map((r) => `${r.service} ${r.operation ?? ""}`.trim()));
      expect(ops).toContain("ssm GetParameter");
      expect(ops).toContain("s3");
    }
    // Every SecureString was read with decryption; nothing was refused.
    expect(cloud.requests.filter((r) => r.service === "ssm" && r.status !== 200)).toEqual([]);
    const tables = Object.fromEntries([...cloud.routeTables].map(([id, routes]) => [id, routes.map((r) => r.networkInterfaceId)]));
    for (const m of ll.hosts) {
      const table = ll.rendered!.locations.find((l) => l.name === m.rendered.location)!.routeTableId;
      expect(tables[table]).toEqual([m.rendered.networkInterfaceId]);
    }
  });

  it("keeps V8's code cache of the agent in /var/cache/sitelink, root-only, under the unit's sandbox", async () => {
    for (const m of ll.hosts) {
      const listing = async () => (await exec(m.instance, ["sh", "-c", "stat -c '%a %U' /var/cache/sitelink && ls /var/cache/sitelink"])).stdout;
      await expect.poll(listing, { timeout: 30_000 }).toMatch(/^700 root\nsitelink-[0-9a-f]{16}-v\d+\.\d+\.\d+-\w+\.v8cache\n$/);
    }
  });

  it("carries a ping between the sites through the tunnel", async () => {
    const ping = await sitePing(ll, "loc-a-a", "loc-b-a");
    expect(ping.route).toMatch(/dev ipsec0/);
    expect(ping.ok, ping.output).toBe(true);
    expect(ping.output).toMatch(new RegExp(`from ${SITE_ADDRESS["loc-b"]!.replaceAll(".", "\\.")}`));
  });

  describe("a tampered agent object", () => {
    let tamper: TamperEvidence;
    beforeAll(async () => {
      tamper = await ll.phase("tamper", () => tamperAgent(ll, "loc-b-a"));
    }, 120_000);

    it("is refused: install-status.json and the host's log name the mismatch", () => {
      const message = `agent integrity mismatch: expected ${tamper.expected} got ${tamper.got}`;
      expect(JSON.parse(tamper.installStatus)).toMatchObject({ ok: false, kind: "integrity" });
      expect(tamper.installStatus).toContain(message);
      expect(tamper.refreshLog).toContain(`sitelink: ${message}`);
    });

    it("leaves the running agent as it was, which reports the problem", () => {
      expect(tamper.bundleAfter).toBe(tamper.bundleBefore);
      expect(tamper.agentPidAfter).toBe(tamper.agentPidBefore);
      expect(tamper.agentActive).toBe("active");
      expect(tamper.statusProblem).toMatchObject({ kind: "integrity" });
    });

    it("is shown by the state service's operator status, which the readiness check reads", async () => {
      expect(await labProblemSeen(ll, ll.machine("loc-b-a").rendered.hostId!)).toMatchObject({ kind: "integrity", message: expect.stringContaining("agent integrity mismatch") });
    });
  });
});

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runAgentCli } from "./cli";
import { ACTIVE_STATUS_LINE } from "../contract/status";
import { writeStatus, type AgentStatus } from "./status";
import { agentVersion } from "../contract/version";

const SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQ";
const FP = "ab".repeat(32);
const URI_A = `sitelink://a1:${SECRET}@198.18.0.1:9443,198.18.0.2?fp=${FP}`;
const URI_A2 = `sitelink://a1:${SECRET}x@198.18.0.3:9443?fp=${FP}`;

let dir: string;
let config: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "sl-cli-"));
  config = join(dir, "agent.json");
});
afterEach(() => rm(dir, { recursive: true, force: true }));

async function cli(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runAgentCli(["--config", config, ...argv], { out: (t) => out.push(t), err: (t) => err.push(t) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

const saved = async () => JSON.parse(await readFile(config, "utf8"));

describe("sitelink CLI", () => {
  it("add-uri stores the URI (0600) and prints it with the secret masked", async () => {
    const r = await cli("add-uri", URI_A);
    expect(r).toMatchObject({ code: 0, err: expect.stringContaining("warning: a host URI on the command line is visible to other users") });
    expect(r.out).toBe(`added sitelink://a1:****@198.18.0.1:9443,198.18.0.2:9443?fp=${FP}`);
    expect((await saved()).uris).toEqual([URI_A]);
    expect((await stat(config)).mode & 0o777).toBe(0o600);
  });

  it("add-uri for the same host replaces the old URI", async () => {
    await cli("add-uri", URI_A);
    await cli("add-uri", URI_A2);
    expect((await saved()).uris).toEqual([URI_A2]);
  });

  it("add-uri refuses a bad URI without echoing the secret (exit 1)", async () => {
    const r = await cli("add-uri", `sitelink://a1:${SECRET}@198.18.0.1`);
    expect(r.code).toBe(1);
    expect(r.err).toContain("fp (SHA-256 fingerprint of the state service certificate) is required");
    expect(r.err).not.toContain(SECRET);
  });

  it("list shows URIs masked; remove-uri by host id or URI", async () => {
    expect((await cli("list")).out).toBe("no host URIs");
    await cli("add-uri", URI_A);
    await cli("add-uri", URI_A.replace("a1:", "b1:"));
    const list = await cli("list");
    expect(list.out.split("\n")).toEqual([
      `sitelink://a1:****@198.18.0.1:9443,198.18.0.2:9443?fp=${FP}`,
      `sitelink://b1:****@198.18.0.1:9443,198.18.0.2:9443?fp=${FP}`,
    ]);
    expect(list.out).not.toContain(SECRET);
    expect(await cli("remove-uri", "a1")).toMatchObject({ code: 0, out: 'removed the host URI of "a1"' });
    expect(await cli("remove-uri", URI_A.replace("a1:", "b1:"))).toMatchObject({ code: 0 });
    expect((await saved()).uris).toEqual([]);
    const missing = await cli("remove-uri", "zz");
    expect(missing).toMatchObject({ code: 1, err: 'sitelink: no host URI for host "zz"' });
  });

  it("set-provider aws with route tables and region", async () => {
    const r = await cli("set-provider", "aws", "--route-table", "rtb-0a1", "--route-table=rtb-0b2,rtb-0c3", "--region", "eu-west-1");
    expect(r).toMatchObject({ code: 0, out: "provider aws" });
    expect(await saved()).toMatchObject({ provider: "aws", aws: { routeTableIds: ["rtb-0a1", "rtb-0b2", "rtb-0c3"], region: "eu-west-1" } });
  });

  it("set-provider names the bad value's field and keeps the file", async () => {
    await cli("set-provider", "kernel", "--device", "eth0");
    const r = await cli("set-provider", "aws", "--route-table", "vpc-123");
    expect(r.code).toBe(1);
    expect(r.err).toContain("aws.routeTableIds.0: must be a route table id");
    expect((await saved()).provider).toBe("kernel");
  });

  it("set-provider: missing required flags, unknown provider, flag of another provider → usage (exit 2)", async () => {
    expect(await cli("set-provider", "aws")).toMatchObject({ code: 2, err: expect.stringContaining("set-provider aws needs --route-table") });
    expect(await cli("set-provider", "azure")).toMatchObject({ code: 2, err: expect.stringContaining("set-provider azure needs --route-table") });
    expect(await cli("set-provider", "oracle", "--region", "eu-frankfurt-1")).toMatchObject({ code: 2, err: expect.stringContaining("set-provider oracle needs --route-table") });
    expect(await cli("set-provider", "oracle", "--route-table", "rtb-0a1")).toMatchObject({ code: 1, err: expect.stringContaining("oracle.routeTableIds.0: must be a route table OCID") });
    // The provider is named before its flags are judged.
    expect(await cli("set-provider", "bogus", "--path", "/etc/sitelink/routes")).toMatchObject({ code: 2, err: expect.stringContaining('unknown provider "bogus" (expected aws|gcp|azure|oracle|kernel|file|none|lab)') });
    expect(await cli("set-provider", "kernel")).toMatchObject({ code: 2, err: expect.stringContaining("set-provider kernel needs --device DEV or --via ADDRESS") });
    expect(await cli("set-provider", "kernel", "--via", "notanip")).toMatchObject({ code: 1, err: expect.stringContaining("kernel.via: must be an IP address") });
    expect(await cli("set-provider", "file", "--path", "routes.txt")).toMatchObject({ code: 1, err: expect.stringContaining("file.path: must be an absolute path") });
    expect(await cli("set-provider", "gcp", "--network", "n", "--route-table", "rtb-1")).toMatchObject({
      code: 2,
      err: expect.stringContaining("unknown flag --route-table for set-provider"),
    });
  });

  it("set-provider azure and oracle with route tables (repeatable) and region", async () => {
    const rt = (name: string) => `/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Network/routeTables/${name}`;
    expect(await cli("set-provider", "azure", "--route-table", rt("a"), "--route-table", rt("b"))).toMatchObject({ code: 0, out: "provider azure" });
    expect(await saved()).toMatchObject({ provider: "azure", azure: { routeTables: [rt("a"), rt("b")] } });
    const ocid = "ocid1.routetable.oc1.eu-frankfurt-1.aaaa";
    expect(await cli("set-provider", "oracle", "--route-table", ocid, "--region", "eu-frankfurt-1")).toMatchObject({ code: 0, out: "provider oracle" });
    expect(await saved()).toMatchObject({ provider: "oracle", oracle: { routeTableIds: [ocid], region: "eu-frankfurt-1" } });
  });

  it("set-provider gcp, file, lab, kernel, none", async () => {
    expect((await cli("set-provider", "gcp", "--network", "vpc-a", "--project", "p1", "--priority", "800")).code).toBe(0);
    expect(await saved()).toMatchObject({ provider: "gcp", gcp: { network: "vpc-a", project: "p1", priority: 800 } });
    expect(await cli("set-provider", "file", "--path", "/etc/sitelink/routes")).toEqual({ code: 0, out: "provider file", err: "" });
    // Outside what the packaged unit may write: saved, with a warning saying what to change.
    expect(await cli("set-provider", "file", "--path", "/var/lib/sitelink/routes")).toEqual({
      code: 0,
      out: "provider file",
      err: "sitelink: warning: the packaged unit lets the agent write only under /etc/sitelink/ and /run/: for /var/lib/sitelink/routes, add ReadWritePaths=/var/lib/sitelink (systemctl edit sitelink-agent)",
    });
    expect(await saved()).toMatchObject({ provider: "file", file: { path: "/var/lib/sitelink/routes" } });
    // Kept when later calls leave --path out.
    expect((await cli("set-provider", "kernel", "--via", "10.1.0.1")).code).toBe(0);
    expect(await cli("set-provider", "kernel")).toMatchObject({ code: 0 });
    expect((await cli("set-provider", "lab", "--namespace", "slab-r1", "--via", "10.1.0.11")).code).toBe(0);
    expect(await saved()).toMatchObject({ provider: "lab", lab: { namespace: "slab-r1", via: "10.1.0.11" } });
    expect((await cli("set-provider", "kernel", "--via", "10.1.0.1")).code).toBe(0);
    expect(await saved()).toMatchObject({ provider: "kernel", kernel: { via: "10.1.0.1" } });
    expect((await cli("set-provider", "lab", "--via", "not-an-address")).err).toContain("lab.via: must be an IP address");
    expect((await cli("set-provider", "none")).code).toBe(0);
    expect((await saved()).provider).toBe("none");
  });

  it.each([
    ["firewall", "firewall"],
    ["remove-routes", "removeRoutes"],
    ["host-check", "hostCheck"],
  ])("%s-on / -off toggle %s", async (cmd, key) => {
    expect(await cli(`${cmd}-off`)).toMatchObject({ code: 0 });
    expect((await saved())[key]).toBe(false);
    expect(await cli(`${cmd}-on`)).toMatchObject({ code: 0, out: `${cmd} on` });
    expect((await saved())[key]).toBe(true);
    expect(await cli(`${cmd}-on`)).toMatchObject({ code: 0, out: `${cmd} on` });
    expect((await saved())[key]).toBe(true);
  });

  it("set-mtu N and set-mtu off", async () => {
    expect(await cli("set-mtu", "1400")).toMatchObject({ code: 0, out: "mtu 1400" });
    expect((await saved()).mtu).toBe(1400);
    expect((await cli("set-mtu", "100")).err).toContain("mtu:");
    expect(await cli("set-mtu", "off")).toMatchObject({ code: 0 });
    expect((await saved()).mtu).toBeUndefined();
    expect(await cli("set-mtu", "big")).toMatchObject({ code: 2, err: expect.stringContaining('"big" is not a number') });
  });

  it("unknown command, unknown flag, missing and extra arguments are usage errors (exit 2)", async () => {
    expect(await cli("frobnicate")).toMatchObject({ code: 2, err: expect.stringContaining('unknown command "frobnicate"') });
    expect(await cli("list", "--verbose")).toMatchObject({ code: 2, err: expect.stringContaining("unknown flag --verbose") });
    expect(await cli("add-uri")).toMatchObject({ code: 2, err: expect.stringContaining("add-uri needs URI") });
    expect(await cli("list", "extra")).toMatchObject({ code: 2, err: expect.stringContaining('unexpected argument to list: "extra"') });
    expect(await cli("set-mtu", "--config")).toMatchObject({ code: 2, err: expect.stringContaining("--config needs a value") });
    const none = await runAgentCli([], { out: () => {}, err: () => {} });
    expect(none).toBe(2);
  });

  it("--help prints usage and exits 0; version prints the package version", async () => {
    const help = await cli("--help");
    expect(help.code).toBe(0);
    expect(help.out).toContain("add-uri URI");
    expect(await cli("version")).toMatchObject({ code: 0, out: agentVersion() });
    expect(agentVersion()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("a config that cannot be written is reported with its path and the reason, not as an internal error", async () => {
    // sysfs takes no new directories, even from root.
    const err: string[] = [];
    const code = await runAgentCli(["--config", "/sys/sitelink-cli-test/agent.json", "firewall-on"], { out: () => {}, err: (t) => void err.push(t) });
    expect(code).toBe(1);
    expect(err).toEqual([expect.stringMatching(/^sitelink: \/sys\/sitelink-cli-test\/agent\.json: cannot write: E[A-Z]+ \(/)]);
  });

  it("a broken config file is reported with its field, and not rewritten", async () => {
    await cli("firewall-on");
    const { writeFile } = await import("node:fs/promises");
    await writeFile(config, JSON.stringify({ firewall: "yes" }));
    const r = await cli("host-check-off");
    expect(r.code).toBe(1);
    expect(r.err).toContain("firewall:");
    expect(await readFile(config, "utf8")).toBe(JSON.stringify({ firewall: "yes" }));
  });

  it("status prints the running agent's tables; without a status file it says so", async () => {
    const statusPath = join(dir, "status.json");
    expect(await cli("status", "--status", statusPath)).toMatchObject({ code: 1, err: expect.stringContaining("is the agent running") });
    const now = Date.now();
    const status: AgentStatus = {
      pid: process.pid,
      hostId: "a1",
      agentVersion: "0.1.0",
      updatedAt: now,
      stateService: { endpoint: "198.18.0.1:9443", reachable: true, lastContact: now - 1500 },
      link: "corp",
      location: "east",
      role: "active",
      activeHost: "a1",
      generation: 12,
      appliedGeneration: 12,
      peers: [{ location: "west", activeHost: "w1" }],
      tunnels: [{ location: "west", state: "up", peerHost: "w1", since: now - 60_000 }],
      hostChecks: [{ target: "a2", reachable: true, rttMs: 0.42, failures: 0, ageMs: 100 }],
      routes: { provider: "lab", applied: ["10.2.0.0/16"] },
    };
    await writeStatus(statusPath, status);
    expect((await readFile(statusPath, "utf8")).split("\n").map((l) => l.trim().replace(/,$/, ""))).toContain(ACTIVE_STATUS_LINE);
    const r = await cli("status", "--status", statusPath);
    expect(r.code).toBe(0);
    const lines = r.out.split("\n");
    expect(lines).toContain("role                active");
    expect(lines.find((l) => l.startsWith("last state contact"))).toMatch(/1\.\ds ago/);
    expect(lines.find((l) => l.startsWith("west"))).toMatch(/^west\s+w1\s+up\s+w1\s+60s ago$/);
    expect(lines.find((l) => l.startsWith("a2"))).toMatch(/^a2\s+yes\s+0\.4 ms\s+0$/);
    expect(lines.find((l) => l.startsWith("10.2.0.0/16"))).toMatch(/^10\.2\.0\.0\/16\s+lab$/);
    expect(r.err).toBe("");
    const json = await cli("status", "--status", statusPath, "--json");
    expect(JSON.parse(json.out)).toEqual(status);
    // A status file whose agent is gone is flagged as stale.
    const gone = spawnSync(process.execPath, ["-e", ""]).pid!;
    await writeStatus(statusPath, { ...status, pid: gone });
    expect((await cli("status", "--status", statusPath)).err).toBe(`sitelink: the agent (pid ${gone}) is not running: this status is stale`);
  });
});

// Builds the example program under Pulumi mocks: a VPC and an office host installed over SSH; and
// its config checks (each in a fresh module graph, as `pulumi up` loads the program once).
import { beforeAll, describe, expect, it, vi } from "vitest";
import { isSecretValue, named, one, plain, settle, setupMocks, valueOf } from "../../test/components/harness";

type Program = typeof import("./index.js");
let program: Program;
const KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nEXAMPLEKEYdoNotLeak\n-----END OPENSSH PRIVATE KEY-----\n";
const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleOfficeHostKey";
/** What `pulumi config set` would give the program (the key set with --secret). */
const CONFIG = {
  "project:officePublicAddress": "198.18.5.1",
  "project:officePrivateAddress": "10.20.0.2",
  "project:officeSshUser": "admin",
  "project:officeRouteMode": "file",
  "project:officeSshKey": KEY,
  "project:officeSshHostKey": HOST_KEY,
};

function configure(config: Record<string, string>): void {
  process.env.PULUMI_CONFIG = JSON.stringify(config);
  process.env.PULUMI_CONFIG_SECRET_KEYS = JSON.stringify(["project:officeSshKey"]);
}

/** Loads the program anew with `config`; resolves to the error it throws, if any. */
async function loadWith(config: Record<string, string>): Promise<Error | undefined> {
  configure(config);
  // A fresh module graph runs the program anew; the runtime keeps its config on `global`, so set it there too.
  vi.resetModules();
  (await import("@pulumi/pulumi")).runtime.setAllConfig(config, ["project:officeSshKey"]);
  try {
    await import("./index.js");
    return undefined;
  } catch (error) {
    return error as Error;
  }
}

beforeAll(async () => {
  configure(CONFIG);
  await setupMocks();
  program = await import("./index.js");
  await valueOf(program.hosts);
  await settle();
});

describe("examples/aws-office", () => {
  it("links the VPC's two hosts and the office host, the state service in the VPC", async () => {
    expect((await valueOf(program.hosts)).map((h) => [h.id, h.publicAddress === "198.18.5.1", h.role])).toEqual([
      ["corp.vpc.a", false, "active"],
      ["corp.vpc.b", false, "standby"],
      ["corp.office.gw", true, "active"],
    ]);
    expect(await valueOf(program.stateUrl)).toMatch(/^https:\/\/203\.0\.113\.\d+:9443$/);
    expect(named("vpc-route", "aws:ec2/route:Route").map((r) => r.inputs.destinationCidrBlock)).toEqual(["10.20.0.0/16", "10.20.0.0/16"]);
  });

  it("admits the office's public address to the VPC hosts on the link ports only", () => {
    // The VPC's list of peer link hosts is the office host alone, and only the link ports admit it.
    const peers = one("vpc-peers", "aws:ec2/managedPrefixList:ManagedPrefixList");
    expect(peers.inputs.entries).toEqual([{ cidr: "198.18.5.1/32", description: "link host corp.office.gw" }]);
    const fromPeers = named("vpc-in-").filter((r) => r.inputs.prefixListId === peers.id);
    expect(fromPeers.map((r) => [r.name, r.inputs.ipProtocol, r.inputs.fromPort, r.inputs.toPort])).toEqual([
      ["vpc-in-ike", "udp", 500, 500],
      ["vpc-in-natt", "udp", 4500, 4500],
      ["vpc-in-check", "tcp", 9790, 9790],
    ]);
    expect(named("vpc-in-").filter((r) => r.inputs.cidrIpv4 === "198.18.5.1/32")).toEqual([]);
  });

  it("installs the office host over SSH in IPsec-router mode, the key and URI secret", () => {
    const install = one("office-gw-install", "command:remote:Command").inputs;
    if (!isSecretValue(install.stdin) || !isSecretValue(install.connection)) throw new Error("stdin and connection must be secret");
    const config = JSON.parse(String(install.stdin.value));
    expect(config).toMatchObject({ provider: "file", file: { path: "/etc/sitelink/routes" }, publicAddress: "198.18.5.1", privateAddress: "10.20.0.2" });
    expect(install.connection.value).toEqual({ host: "198.18.5.1", port: 22, user: "admin", privateKey: KEY, hostKey: HOST_KEY, dialErrorLimit: 10, perDialTimeout: 15 });
    expect(install.create).toBe('sudo -n bash "$HOME/.sitelink-install.sh"');
    expect(one("office-gw-script", "command:remote:CopyToRemote").inputs.remotePath).toBe(".sitelink-install.sh");
    const text = JSON.stringify(named("office").map((r) => plain(r.inputs)));
    expect(text).not.toContain("EXAMPLEKEYdoNotLeak");
    expect(text).not.toContain("sitelink://");
    expect(one("office-gw-uninstall", "command:remote:Command").inputs.delete).toMatch(/^sudo -n bash -c '#!\/bin\/bash\n# sitelink link host uninstall/);
  });

  it("refuses a route mode it does not know, and kernel mode without the office uplink", async () => {
    expect((await loadWith({ ...CONFIG, "project:officeRouteMode": "bgp" }))?.message).toMatch(/officeRouteMode.*bgp/);
    expect((await loadWith({ ...CONFIG, "project:officeRouteMode": "kernel" }))?.message).toMatch(/Missing required configuration variable 'project:officeUplink'/);
    expect(await loadWith({ ...CONFIG, "project:officeRouteMode": "kernel", "project:officeUplink": "enp1s0" })).toBeUndefined();
  });
});

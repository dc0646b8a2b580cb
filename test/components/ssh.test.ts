// SshLocation and ManualLocation under Pulumi mocks: exact commands, triggers, stdin-only secrets,
// delete commands, options, outputs and validation.
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { agentConfigSchema } from "../../agent/host/config";
import { deriveHostSecret, sha256Hex } from "../../agent/signing";
import { parseHostUri } from "../../agent/uri";
import { quote } from "../../lib/bootstrap";
import { renderSshInstall, renderSshUninstall } from "../../lib/ssh-install";
import { captured, isSecretValue, named, one, optionsOf, plain, resolve, settle, setupMocks, valueOf } from "./harness";

type Lib = typeof import("../../lib/index.js");
let lib: Lib;

beforeAll(async () => {
  await setupMocks();
  lib = await import("../../lib/index.js");
});

const MASTER = Buffer.alloc(32, 5);
const FP = "cd".repeat(32);
const KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nSSHKEYdoNotLeak0123\n-----END OPENSSH PRIVATE KEY-----\n";
const state = { url: "https://198.18.0.2:9443", fingerprint: FP, masterKey: pulumi.secret(MASTER.toString("base64")) };
const COMMAND = "command:remote:Command";

const sshHost = (name: string, n: number, extra: Record<string, unknown> = {}) => ({
  name,
  publicAddress: `198.18.1.${n}`,
  privateAddress: `10.20.0.${n}`,
  connection: { user: "admin", privateKey: pulumi.secret(KEY) },
  ...extra,
});

/** An SSH office (`${p}-office`) and a manual data center (`${p}-dc`) joined by a link. */
function officeLink(p: string, office: Partial<import("../../lib/index").SshLocationArgs> = {}) {
  const kernel = office.routeMode === "file" ? {} : { kernel: { device: "eth0" } };
  const ssh = new lib.SshLocation(`${p}-office`, { routes: ["10.20.0.0/16"], hosts: [sshHost("a", 10, { priority: 2 }), sshHost("b", 11)], ...kernel, ...office }, captured());
  const dc = new lib.ManualLocation(`${p}-dc`, { routes: ["10.30.0.0/16", "10.31.0.0/16"], hosts: [{ name: "a", publicAddress: "198.18.2.10", privateAddress: "10.30.0.10" }] }, captured());
  const link = new lib.Link(p, { locations: [ssh, dc], stateService: state, agentPackage: "sitelink@9.9.9" });
  return { ssh, dc, link };
}

const secretValue = <T = unknown>(v: unknown): T => {
  if (!isSecretValue(v)) throw new Error("expected a secret input");
  return v.value as T;
};
const secretText = (v: unknown) => String(secretValue(v));
type Connection = { host: string; user: string; port: number; privateKey: string };

describe("SshLocation", () => {
  it("creates exactly an install and an uninstall command per host, parented to the location", async () => {
    officeLink("cnt");
    await settle();
    expect(named("cnt-office").map((r) => `${r.type} ${r.name}`).sort()).toEqual([
      `${COMMAND} cnt-office-a-install`,
      `${COMMAND} cnt-office-a-uninstall`,
      `${COMMAND} cnt-office-b-install`,
      `${COMMAND} cnt-office-b-uninstall`,
      "sitelink:index:SshLocation cnt-office",
    ]);
    expect(named("cnt-office-a-install")[0]!.urn).toBe(`${COMMAND}::cnt-office-a-install`);
    expect(optionsOf("cnt-office-a-install", COMMAND).parentType).toBe("sitelink:index:SshLocation");
    // A manual location declares hosts only.
    expect(named("cnt-dc").map((r) => r.type)).toEqual(["sitelink:index:ManualLocation"]);
  });

  it("runs the rendered install script through sudo, the config on stdin only, triggered by hashes", async () => {
    officeLink("ins");
    await settle();
    const install = one("ins-office-a-install", COMMAND).inputs;
    const script = renderSshInstall({ agentPackage: "sitelink@9.9.9", ipv6: false });
    expect(install.create).toBe(`sudo -n bash -c ${quote(script)} sitelink-install`);
    expect(install.delete).toBeUndefined();
    expect(install.update).toBeUndefined();
    const config = secretText(install.stdin);
    const uriText = JSON.parse(config).uris[0];
    // The agent's schema output: defaults written out, as the cloud bootstrap writes them.
    expect(JSON.parse(config)).toEqual(
      agentConfigSchema.parse({ uris: [uriText], provider: "kernel", kernel: { device: "eth0" }, firewall: false, publicAddress: "198.18.1.10", privateAddress: "10.20.0.10" }),
    );
    const uri = parseHostUri(uriText);
    expect(uri).toEqual({ hostId: "ins.ins-office.a", secret: deriveHostSecret(MASTER, "ins.ins-office.a"), endpoints: [{ host: "198.18.0.2", port: 9443 }], fingerprints: [FP] });
    // Hashes only; secret as a whole, since one hashes the secret config.
    expect(secretValue(install.triggers)).toEqual([sha256Hex(script), sha256Hex(config)]);
    // The connection holds the key: secret as a whole.
    expect(secretValue(install.connection)).toEqual({ host: "198.18.1.10", user: "admin", port: 22, privateKey: KEY });
    expect(optionsOf("ins-office-a-install", COMMAND).opts).toMatchObject({ additionalSecretOutputs: ["stdin"] });
    expect(optionsOf("ins-office-a-install", COMMAND).opts.dependsOn).toEqual([expect.objectContaining({ __name: "ins-office-a-uninstall" })]);
    // Host b gets its own URI.
    const b = JSON.parse(secretText(one("ins-office-b-install", COMMAND).inputs.stdin));
    expect(parseHostUri(b.uris[0]).hostId).toBe("ins.ins-office.b");
  });

  it("keeps every secret out of plain inputs: host secrets, URIs and the SSH key", async () => {
    officeLink("sec");
    await settle();
    const text = JSON.stringify(named("sec-").map((r) => plain(r.inputs)));
    for (const id of ["sec.sec-office.a", "sec.sec-office.b", "sec.sec-dc.a"]) expect(text).not.toContain(deriveHostSecret(MASTER, id));
    expect(text).not.toContain("sitelink://");
    expect(text).not.toContain("SSHKEYdoNotLeak0123");
  });

  it("uninstalls through a delete-only command, replaced delete-first", async () => {
    officeLink("del");
    await settle();
    const uninstall = one("del-office-a-uninstall", COMMAND).inputs;
    expect(uninstall.create).toBeUndefined();
    expect(uninstall.delete).toBe(`sudo -n bash -c ${quote(renderSshUninstall())} sitelink-uninstall`);
    expect(uninstall.stdin).toBeUndefined();
    expect(uninstall.triggers).toBeUndefined();
    expect(optionsOf("del-office-a-uninstall", COMMAND).opts.deleteBeforeReplace).toBe(true);
  });

  it("IPsec-router mode writes routes to a file; no sudo when asked; own SSH host and port", async () => {
    officeLink("fil", {
      routeMode: "file",
      routesFile: "/run/sitelink/routes.txt",
      sudo: false,
      firewall: true,
      hosts: [sshHost("a", 10, { connection: { host: "bastion.example.net", user: "root", port: 2222, privateKey: KEY } })],
    });
    await settle();
    const install = one("fil-office-a-install", COMMAND).inputs;
    expect(install.create).toBe(`bash -c ${quote(renderSshInstall({ agentPackage: "sitelink@9.9.9", ipv6: false }))} sitelink-install`);
    expect(JSON.parse(secretText(install.stdin))).toMatchObject({ provider: "file", file: { path: "/run/sitelink/routes.txt" }, firewall: true });
    // A plain-string key is made secret all the same.
    expect(secretValue<Connection>(install.connection)).toEqual({ host: "bastion.example.net", user: "root", port: 2222, privateKey: KEY });
    expect(one("fil-office-a-uninstall", COMMAND).inputs.delete).toBe(`bash -c ${quote(renderSshUninstall())} sitelink-uninstall`);
    expect(JSON.parse(secretText(one("cnt-office-a-install", COMMAND).inputs.stdin)).file).toBeUndefined();
  });

  it("forwards IPv6 when a route of the link is IPv6", async () => {
    const ssh = new lib.SshLocation("six-office", { routes: ["fd00:20::/48"], hosts: [sshHost("a", 10)], kernel: { via: "fd00:20::1" } });
    const dc = new lib.ManualLocation("six-dc", { routes: ["10.30.0.0/16"], hosts: [{ name: "a", publicAddress: "198.18.2.10", privateAddress: "10.30.0.10" }] });
    new lib.Link("six", { locations: [ssh, dc], stateService: state, agentPackage: "sitelink@9.9.9" });
    await settle();
    expect(one("six-office-a-install", COMMAND).inputs.create).toBe(`sudo -n bash -c ${quote(renderSshInstall({ agentPackage: "sitelink@9.9.9", ipv6: true }))} sitelink-install`);
  });

  it("puts the given addresses into the link's topology and host list", async () => {
    const { link } = officeLink("top");
    const doc = JSON.parse(await valueOf(link.topology));
    expect(doc.links[0].locations.map((l: { name: string; hosts: { id: string; publicAddress: string; privateAddress: string }[] }) => [l.name, l.hosts.map((h) => [h.id, h.publicAddress, h.privateAddress])])).toEqual([
      ["top-office", [["top.top-office.a", "198.18.1.10", "10.20.0.10"], ["top.top-office.b", "198.18.1.11", "10.20.0.11"]]],
      ["top-dc", [["top.top-dc.a", "198.18.2.10", "10.30.0.10"]]],
    ]);
    expect((await valueOf(link.hosts)).map((h) => [h.id, h.role])).toEqual([
      ["top.top-office.a", "active"],
      ["top.top-office.b", "standby"],
      ["top.top-dc.a", "active"],
    ]);
  });
});

describe("ManualLocation", () => {
  it("outputs each host's URI, by name, as a secret", async () => {
    const { dc } = officeLink("man");
    const { value, secret } = await resolve(dc.uris);
    expect(secret).toBe(true);
    expect(Object.keys(value)).toEqual(["a"]);
    expect(parseHostUri(value.a!)).toEqual({ hostId: "man.man-dc.a", secret: deriveHostSecret(MASTER, "man.man-dc.a"), endpoints: [{ host: "198.18.0.2", port: 9443 }], fingerprints: [FP] });
  });

  it("says when its URIs are asked for before a Link takes it", () => {
    const dc = new lib.ManualLocation("early-dc", { routes: ["10.30.0.0/16"], hosts: [{ name: "a", publicAddress: "198.18.2.10", privateAddress: "10.30.0.10" }] });
    expect(() => dc.uris).toThrow('ManualLocation "early-dc": uris are known once a Link takes the location');
  });
});

describe("validation", () => {
  it("lists every bad SshLocation field at once, before registering anything", async () => {
    const bad = {
      routes: ["10.20.0.0/33"],
      hosts: [
        { name: "a", publicAddress: "not-an-ip", privateAddress: "10.20.0.300", connection: { user: "Bad User", privateKey: "", port: 70000 } },
        { name: "a", publicAddress: "198.18.1.1", privateAddress: "10.20.0.1", connection: { user: "admin", privateKey: KEY } },
      ],
      routeMode: "bgp",
      routesFile: "/var/routes",
    };
    let error: unknown;
    try {
      new lib.SshLocation("val-office", bad as never);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(lib.ArgsError);
    const issues = (error as InstanceType<Lib["ArgsError"]>).issues;
    expect(issues.map((i) => i.path)).toEqual([
      "hosts[0].publicAddress",
      "hosts[0].privateAddress",
      "hosts[0].connection.user",
      "hosts[0].connection.privateKey",
      "hosts[0].connection.port",
      "routeMode",
      "routesFile",
      "routesFile",
      "routes[0]",
      "hosts[1].name",
    ]);
    expect(issues[0]!.message).toBe("must be an IP address (where peers reach the host; behind NAT, the router's public address)");
    expect(issues[4]!.message).toBe("must be a port (1-65535)");
    expect(issues[6]!.message).toBe("must be a file under /etc/sitelink/ or /run/sitelink/ (the only places the agent's unit may write)");
    expect(issues[7]!.message).toBe('is only used with routeMode "file"');
    // The key is never quoted back.
    expect((error as Error).message).not.toContain("SSHKEYdoNotLeak0123");
    await settle();
    expect(named("val-office")).toEqual([]);
  });

  it("needs the kernel next hop in kernel mode, and only there", () => {
    const base = { routes: ["10.0.0.0/16"], hosts: [sshHost("a", 10)] };
    expect(lib.validateSshLocationArgs("x", base)).toEqual([
      { path: "kernel", message: 'routeMode "kernel" needs kernel.device or kernel.via (where the routes of the remote networks point, e.g. the internet-facing interface)' },
    ]);
    expect(lib.validateSshLocationArgs("x", { ...base, kernel: { via: "10.0.0.300", device: "a very long name" } }).map((i) => `${i.path}: ${i.message}`)).toEqual([
      "kernel.device: must be a network interface name (1-15 characters)",
      "kernel.via: must be an IP address",
    ]);
    expect(lib.validateSshLocationArgs("x", { ...base, routeMode: "file", kernel: { device: "eth0" } })).toEqual([{ path: "kernel", message: 'is only used with routeMode "kernel"' }]);
    expect(lib.validateSshLocationArgs("x", { ...base, kernel: { via: "10.0.0.1" } })).toEqual([]);
  });

  it("needs at least one host, with addresses, for both kinds", () => {
    expect(lib.validateSshLocationArgs("x", { routes: ["10.0.0.0/16"], hosts: [], routeMode: "file" })).toEqual([{ path: "hosts", message: "a location needs at least one host" }]);
    expect(lib.validateManualLocationArgs("x", { routes: ["10.0.0.0/16"], hosts: [{ name: "a" }] }).map((i) => i.path)).toEqual(["hosts[0].publicAddress", "hosts[0].privateAddress"]);
    expect(lib.validateManualLocationArgs("x", { routes: ["10.0.0.0/16"], hosts: [{ name: "a", publicAddress: pulumi.output("198.18.0.1"), privateAddress: "10.0.0.1" }] })).toEqual([]);
  });

  it("refuses to run the state service in an on-prem location", () => {
    const ssh = new lib.SshLocation("st-office", { routes: ["10.20.0.0/16"], hosts: [sshHost("a", 10)], kernel: { device: "eth0" } });
    const dc = new lib.ManualLocation("st-dc", { routes: ["10.30.0.0/16"], hosts: [{ name: "a", publicAddress: "198.18.2.10", privateAddress: "10.30.0.10" }] });
    expect(() => new lib.Link("st", { locations: [ssh, dc], stateService: { location: "st-office" } })).toThrow('stateService.location: "st-office" is not an AWS location');
  });
});

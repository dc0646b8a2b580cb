// SshLocation and ManualLocation under Pulumi mocks: exact commands, copies, triggers (what re-runs
// the install and what uninstalls), stdin-only secrets, host key pinning, options, outputs and validation.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { agentConfigSchema } from "../../agent/contract/agent-config";
import { deriveHostSecret, sha256Hex } from "../../agent/contract/signing";
import { parseHostUri } from "../../agent/contract/uri";
import { renderSshInstall, renderSshUninstall, sshInstallCommand, sshUninstallCommand } from "../../lib/onprem/install";
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
const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheOfficeHost0000000000000000";
const state = { url: "https://198.18.0.2:9443", fingerprint: FP, masterKey: pulumi.secret(MASTER.toString("base64")) };
const COMMAND = "command:remote:Command";
const COPY = "command:remote:CopyToRemote";
/** What @pulumi/command's SDK adds to every connection. */
const DIAL_DEFAULTS = { dialErrorLimit: 10, perDialTimeout: 15 };

/** A package the user names, with its integrity; `npm:` tells the installer to `npm pack` it. */
const PKG = { npmSpec: "sitelink@9.9.9", sha256: "9".repeat(64) };
const PKG_AGENT = { agentSource: "npm:sitelink@9.9.9", agentSha256: PKG.sha256 };

const sshHost = (name: string, n: number, extra: Record<string, unknown> = {}) => ({
  name,
  publicAddress: `198.18.1.${n}`,
  privateAddress: `10.20.0.${n}`,
  connection: { user: "admin", privateKey: pulumi.secret(KEY), hostKey: HOST_KEY },
  ...extra,
});

/** An SSH office (`${p}-office`) and a manual data center (`${p}-dc`) joined by a link. */
function officeLink(p: string, office: Partial<import("../../lib/index").SshLocationArgs> = {}) {
  const kernel = office.routeMode === "file" ? {} : { kernel: { device: "eth0" } };
  const ssh = new lib.SshLocation(`${p}-office`, { routes: ["10.20.0.0/16"], hosts: [sshHost("a", 10, { priority: 2 }), sshHost("b", 11)], ...kernel, ...office }, captured());
  const dc = new lib.ManualLocation(`${p}-dc`, { routes: ["10.30.0.0/16", "10.31.0.0/16"], hosts: [{ name: "a", publicAddress: "198.18.2.10", privateAddress: "10.30.0.10" }] }, captured());
  const link = new lib.Link(p, { locations: [ssh, dc], stateService: state, agentPackage: PKG });
  return { ssh, dc, link };
}

const secretValue = <T = unknown>(v: unknown): T => {
  if (!isSecretValue(v)) throw new Error("expected a secret input");
  return v.value as T;
};
const secretText = (v: unknown) => String(secretValue(v));
const assetText = (v: unknown) => (v as pulumi.asset.StringAsset).text;
const dependsOnNames = (name: string, type: string) => (optionsOf(name, type).opts.dependsOn as unknown as { __name: string }[]).map((r) => r.__name);
const KERNEL_UNINSTALL = renderSshUninstall({ kernelRoutes: { cidrs: ["10.30.0.0/16", "10.31.0.0/16"], device: "eth0" } });

describe("SshLocation", () => {
  it("creates exactly a script copy, an install and an uninstall per host, parented to the location", async () => {
    officeLink("cnt");
    await settle();
    expect(named("cnt-office").map((r) => `${r.type} ${r.name}`).sort()).toEqual([
      `${COMMAND} cnt-office-a-install`,
      `${COMMAND} cnt-office-a-uninstall`,
      `${COMMAND} cnt-office-b-install`,
      `${COMMAND} cnt-office-b-uninstall`,
      `${COPY} cnt-office-a-script`,
      `${COPY} cnt-office-b-script`,
      "sitelink:index:SshLocation cnt-office",
    ]);
    for (const [name, type] of [["cnt-office-a-install", COMMAND], ["cnt-office-a-uninstall", COMMAND], ["cnt-office-a-script", COPY]] as const) {
      expect(optionsOf(name, type).parentType).toBe("sitelink:index:SshLocation");
    }
    // A manual location declares hosts only.
    expect(named("cnt-dc").map((r) => r.type)).toEqual(["sitelink:index:ManualLocation"]);
  });

  it("copies the install script over SFTP into the SSH user's home, replaced only when the host moves", async () => {
    officeLink("cpy");
    await settle();
    const copy = one("cpy-office-a-script", COPY).inputs;
    expect(await assetText(copy.source)).toBe(renderSshInstall({ agent: PKG_AGENT, ipv6: false }));
    expect(copy.remotePath).toBe(".sitelink-install.sh");
    expect(copy.triggers).toEqual(["198.18.1.10", 22, "admin"]);
    expect(secretValue(copy.connection)).toEqual({ host: "198.18.1.10", user: "admin", port: 22, privateKey: KEY, hostKey: HOST_KEY, ...DIAL_DEFAULTS });
    // After the uninstall: on a move to the same machine, its cleanup must not remove the new copy.
    expect(dependsOnNames("cpy-office-a-script", COPY)).toEqual(["cpy-office-a-uninstall"]);
  });

  it("runs the staged script through sudo, the config on stdin only, re-run by hashes and moves only", async () => {
    officeLink("ins");
    await settle();
    const install = one("ins-office-a-install", COMMAND).inputs;
    const script = renderSshInstall({ agent: PKG_AGENT, ipv6: false });
    expect(install.create).toBe(sshInstallCommand(true));
    expect(install.create).toBe('sudo -n bash "$HOME/.sitelink-install.sh"');
    // A change that is no trigger (key, host key, bastion) runs only a login.
    expect(install.update).toBe("true");
    expect(install.delete).toBeUndefined();
    expect(install.addPreviousOutputInEnv).toBe(false);
    const config = secretText(install.stdin);
    const uriText = JSON.parse(config).uris[0];
    // The agent's schema output: defaults written out, as the cloud bootstrap writes them.
    expect(JSON.parse(config)).toEqual(
      agentConfigSchema.parse({ uris: [uriText], provider: "kernel", kernel: { device: "eth0" }, firewall: false, allowedRoutes: ["10.30.0.0/16", "10.31.0.0/16"], publicAddress: "198.18.1.10", privateAddress: "10.20.0.10" }),
    );
    const uri = parseHostUri(uriText);
    expect(uri).toEqual({ hostId: "ins.ins-office.a", secret: deriveHostSecret(MASTER, "ins.ins-office.a"), endpoints: [{ host: "198.18.0.2", port: 9443 }], fingerprints: [FP] });
    // Hashes and where the host is, never the config or a key; secret as a whole, since one hashes the secret config.
    expect(secretValue(install.triggers)).toEqual([sha256Hex(script), sha256Hex(config), "198.18.1.10", 22, "admin"]);
    expect(secretValue(install.connection)).toEqual({ host: "198.18.1.10", user: "admin", port: 22, privateKey: KEY, hostKey: HOST_KEY, ...DIAL_DEFAULTS });
    const opts = optionsOf("ins-office-a-install", COMMAND).opts;
    expect(opts.additionalSecretOutputs).toEqual(["stdin", "connection"]);
    // The SDK's own rule: a changed trigger replaces the command, which runs create again.
    expect(opts.replaceOnChanges).toEqual(["triggers[*]"]);
    expect(dependsOnNames("ins-office-a-install", COMMAND)).toEqual(["ins-office-a-uninstall", "ins-office-a-script"]);
    // Host b gets its own URI.
    const b = JSON.parse(secretText(one("ins-office-b-install", COMMAND).inputs.stdin));
    expect(parseHostUri(b.uris[0]).hostId).toBe("ins.ins-office.b");
  });

  it("keeps every secret out of plain inputs: host secrets, URIs and the SSH keys", async () => {
    officeLink("sec", { hosts: [sshHost("a", 10, { connection: { ...sshHost("a", 10).connection, proxy: { host: "198.18.9.1", user: "jump", privateKey: "PROXYKEYdoNotLeak", hostKey: HOST_KEY } } })] });
    await settle();
    const text = JSON.stringify(named("sec-").map((r) => plain(r.inputs)));
    for (const id of ["sec.sec-office.a", "sec.sec-dc.a"]) expect(text).not.toContain(deriveHostSecret(MASTER, id));
    expect(text).not.toContain("sitelink://");
    expect(text).not.toContain("SSHKEYdoNotLeak0123");
    expect(text).not.toContain("PROXYKEYdoNotLeak");
    // Nor in what gets copied to the host.
    expect(await assetText(one("sec-office-a-script", COPY).inputs.source)).not.toContain("sitelink://");
  });

  it("uninstalls through a delete-only command, replaced delete-first when the host moves, never on a key change", async () => {
    officeLink("del");
    await settle();
    const uninstall = one("del-office-a-uninstall", COMMAND).inputs;
    expect(uninstall.create).toBeUndefined();
    expect(uninstall.update).toBeUndefined();
    // Kernel mode: the routes of the connected locations go with the agent.
    expect(uninstall.delete).toBe(sshUninstallCommand(KERNEL_UNINSTALL, true));
    expect(String(uninstall.delete)).toMatch(/^sudo -n bash -c '#!\/bin\/bash\n# sitelink link host uninstall[^]*' sitelink-uninstall && rm -f "\$HOME\/.sitelink-install.sh" "\$HOME\/.sitelink-agent"$/);
    expect(uninstall.stdin).toBeUndefined();
    expect(uninstall.addPreviousOutputInEnv).toBe(false);
    expect(uninstall.triggers).toEqual(["198.18.1.10", 22, "admin"]);
    expect(optionsOf("del-office-a-uninstall", COMMAND).opts.deleteBeforeReplace).toBe(true);
  });

  it("a new key, host key or bastion changes no trigger; a new SSH host, port or user changes them all", async () => {
    const triggers = async (p: string) => {
      await settle();
      return {
        install: secretValue<unknown[]>(one(`${p}-office-a-install`, COMMAND).inputs.triggers),
        uninstall: one(`${p}-office-a-uninstall`, COMMAND).inputs.triggers as unknown[],
        script: one(`${p}-office-a-script`, COPY).inputs.triggers as unknown[],
      };
    };
    // Same link name, so the same URIs and config: only the connection differs.
    const host = (connection: Record<string, unknown>) => [sshHost("a", 10, { connection: { ...sshHost("a", 10).connection, ...connection } })];
    const build = (p: string, connection: Record<string, unknown>) => {
      const ssh = new lib.SshLocation(`${p}-office`, { routes: ["10.20.0.0/16"], kernel: { device: "eth0" }, hosts: host(connection) });
      const dc = new lib.ManualLocation(`${p}-dc`, { routes: ["10.30.0.0/16"], hosts: [{ name: "a", publicAddress: "198.18.2.10", privateAddress: "10.30.0.10" }] });
      return new lib.Link(p, { locations: [ssh, dc], stateService: state, agentPackage: PKG });
    };
    build("rot", {});
    const before = await triggers("rot");
    // Resource names differ by link name, so compare what does not depend on it: everything but the config hash.
    const withoutConfig = (t: Awaited<ReturnType<typeof triggers>>) => ({ ...t, install: [t.install[0], ...t.install.slice(2)] });
    build("rok", { privateKey: pulumi.secret(KEY.replace("0123", "4567")), hostKey: HOST_KEY.replace("0000", "1111"), proxy: { host: "198.18.9.1", user: "jump", privateKey: KEY, hostKey: HOST_KEY } });
    expect(withoutConfig(await triggers("rok"))).toEqual(withoutConfig(before));
    for (const [p, change, index] of [["rmh", { host: "10.99.0.2" }, 0], ["rmp", { port: 2222 }, 1], ["rmu", { user: "root" }, 2]] as const) {
      build(p, change);
      const moved = await triggers(p);
      const value = Object.values(change)[0];
      expect(moved.uninstall).toEqual(before.uninstall.map((v, i) => (i === index ? value : v)));
      expect(moved.script).toEqual(moved.uninstall);
      expect(moved.install.slice(2)).toEqual(moved.uninstall);
    }
  });

  it("passes the host key and a bastion through to @pulumi/command, the bastion's key secret too", async () => {
    const proxy = { host: "bastion.example.net", user: "jump", port: 2200, privateKey: "PROXYKEY", hostKey: HOST_KEY };
    officeLink("bas", { hosts: [sshHost("a", 10, { connection: { ...sshHost("a", 10).connection, host: "10.20.0.10", proxy } })] });
    await settle();
    const connection = secretValue<Record<string, unknown>>(one("bas-office-a-install", COMMAND).inputs.connection);
    expect(connection).toEqual({ host: "10.20.0.10", user: "admin", port: 22, privateKey: KEY, hostKey: HOST_KEY, proxy: { ...proxy, ...DIAL_DEFAULTS }, ...DIAL_DEFAULTS });
    expect(secretValue(one("bas-office-a-script", COPY).inputs.connection)).toEqual(connection);
    expect(secretValue(one("bas-office-a-uninstall", COMMAND).inputs.connection)).toEqual(connection);
  });

  it("copies a local agent tarball next to the script; the script checks its hash, so a new tarball re-runs the install", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sl-tarball-"));
    try {
      const tarball = join(dir, "sitelink-9.9.9.tgz");
      writeFileSync(tarball, "tarball bytes");
      officeLink("tgz", { agentTarball: tarball });
      await settle();
      const script = renderSshInstall({ agent: { staged: true, agentSha256: sha256Hex("tarball bytes") }, ipv6: false });
      expect(await assetText(one("tgz-office-a-script", COPY).inputs.source)).toBe(script);
      expect(script).toContain(`"agentSha256":"${sha256Hex("tarball bytes")}"`);
      const pkg = one("tgz-office-a-package", COPY).inputs;
      expect(await (pkg.source as pulumi.asset.FileAsset).path).toBe(tarball);
      expect(pkg.remotePath).toBe(".sitelink-agent");
      expect(pkg.triggers).toEqual(["198.18.1.10", 22, "admin"]);
      expect(dependsOnNames("tgz-office-a-package", COPY)).toEqual(["tgz-office-a-uninstall"]);
      expect(dependsOnNames("tgz-office-a-install", COMMAND)).toEqual(["tgz-office-a-uninstall", "tgz-office-a-script", "tgz-office-a-package"]);
      expect(secretValue<unknown[]>(one("tgz-office-a-install", COMMAND).inputs.triggers)[0]).toBe(sha256Hex(script));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("by default copies this library's agent bundle next to the script, which the installer verifies against its SHA-256", async () => {
    const ssh = new lib.SshLocation("bdl-office", { routes: ["10.20.0.0/16"], kernel: { device: "eth0" }, hosts: [sshHost("a", 10)] }, captured());
    const dc = new lib.ManualLocation("bdl-dc", { routes: ["10.30.0.0/16"], hosts: [{ name: "a", publicAddress: "198.18.2.10", privateAddress: "10.30.0.10" }] });
    new lib.Link("bdl", { locations: [ssh, dc], stateService: state });
    await settle();
    const bundle = lib.agentBundle();
    const script = renderSshInstall({ agent: { staged: true, agentSha256: bundle.sha256 }, ipv6: false });
    expect(await assetText(one("bdl-office-a-script", COPY).inputs.source)).toBe(script);
    const copy = one("bdl-office-a-package", COPY).inputs;
    expect(await (copy.source as pulumi.asset.FileAsset).path).toBe(bundle.path);
    expect(copy.remotePath).toBe(".sitelink-agent");
    expect(dependsOnNames("bdl-office-a-install", COMMAND)).toEqual(["bdl-office-a-uninstall", "bdl-office-a-script", "bdl-office-a-package"]);
    // A new library version is a new bundle: a new script hash, so the install runs again.
    expect(secretValue<unknown[]>(one("bdl-office-a-install", COMMAND).inputs.triggers)[0]).toBe(sha256Hex(script));
  });

  it("IPsec-router mode writes routes to a file and removes no routes; no sudo when asked; own SSH host and port", async () => {
    officeLink("fil", {
      routeMode: "file",
      routesFile: "/run/sitelink/routes.txt",
      sudo: false,
      firewall: true,
      hosts: [sshHost("a", 10, { connection: { host: "office.example.net", user: "root", port: 2222, privateKey: KEY, hostKey: HOST_KEY } })],
    });
    await settle();
    const install = one("fil-office-a-install", COMMAND).inputs;
    expect(install.create).toBe('bash "$HOME/.sitelink-install.sh"');
    expect(JSON.parse(secretText(install.stdin))).toMatchObject({ provider: "file", file: { path: "/run/sitelink/routes.txt" }, firewall: true });
    // A plain-string key is made secret all the same.
    expect(secretValue(install.connection)).toEqual({ host: "office.example.net", user: "root", port: 2222, privateKey: KEY, hostKey: HOST_KEY, ...DIAL_DEFAULTS });
    expect(one("fil-office-a-uninstall", COMMAND).inputs.delete).toBe(sshUninstallCommand(renderSshUninstall(), false));
    expect(one("fil-office-a-uninstall", COMMAND).inputs.triggers).toEqual(["office.example.net", 2222, "root"]);
  });

  it("forwards IPv6 when a route of the link is IPv6", async () => {
    const ssh = new lib.SshLocation("six-office", { routes: ["fd00:20::/48"], hosts: [sshHost("a", 10)], kernel: { via: "fd00:20::1" } });
    const dc = new lib.ManualLocation("six-dc", { routes: ["10.30.0.0/16"], hosts: [{ name: "a", publicAddress: "198.18.2.10", privateAddress: "10.30.0.10" }] });
    new lib.Link("six", { locations: [ssh, dc], stateService: state, agentPackage: PKG });
    await settle();
    expect(await assetText(one("six-office-a-script", COPY).inputs.source)).toBe(renderSshInstall({ agent: PKG_AGENT, ipv6: true }));
    expect(one("six-office-a-uninstall", COMMAND).inputs.delete).toBe(sshUninstallCommand(renderSshUninstall({ kernelRoutes: { cidrs: ["10.30.0.0/16"], via: "fd00:20::1" } }), true));
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
        { name: "a", publicAddress: "198.18.1.1", privateAddress: "10.20.0.1", connection: { user: "admin", privateKey: KEY, hostKey: `198.18.1.1 ${HOST_KEY}` } },
      ],
      routeMode: "bgp",
      routesFile: "/var/routes",
      agentTarball: "/nonexistent/sitelink.tgz",
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
      "hosts[0].connection.hostKey",
      "hosts[0].connection.port",
      "hosts[1].connection.hostKey",
      "routeMode",
      "routesFile",
      "agentTarball",
      "routesFile",
      "routes[0]",
      "hosts[1].name",
    ]);
    const message = (path: string) => issues.filter((i) => i.path === path).map((i) => i.message);
    expect(message("hosts[0].publicAddress")).toEqual(["must be an IP address (where peers reach the host; behind NAT, the router's public address)"]);
    expect(message("hosts[0].connection.port")).toEqual(["must be a port (1-65535)"]);
    // A known_hosts line (host name first) is not a key line.
    expect(message("hosts[1].connection.hostKey")).toEqual(["must be the host's SSH public key, `<type> <base64>` as in /etc/ssh/ssh_host_ed25519_key.pub (required: it stops a man in the middle)"]);
    expect(message("routesFile")).toEqual(["must be a file under /etc/sitelink/ or /run/sitelink/ (the only places the agent's unit may write)", 'is only used with routeMode "file"']);
    expect(message("agentTarball")).toEqual(["must be the path of a local file (a package tarball made by `npm pack`)"]);
    // The key is never quoted back.
    expect((error as Error).message).not.toContain("SSHKEYdoNotLeak0123");
    await settle();
    expect(named("val-office")).toEqual([]);
  });

  it("checks a bastion like the host itself", () => {
    const base = { routes: ["10.0.0.0/16"], kernel: { device: "eth0" } };
    const proxied = (proxy: Record<string, unknown>) => ({ ...base, hosts: [sshHost("a", 10, { connection: { ...sshHost("a", 10).connection, proxy } })] });
    expect(lib.validateSshLocationArgs("x", proxied({ host: "198.18.9.1", user: "jump", privateKey: KEY, hostKey: HOST_KEY, port: 2200 }))).toEqual([]);
    expect(lib.validateSshLocationArgs("x", proxied({ user: "jump", privateKey: KEY, port: 0 })).map((i) => i.path)).toEqual([
      "hosts[0].connection.proxy.host",
      "hosts[0].connection.proxy.hostKey",
      "hosts[0].connection.proxy.port",
    ]);
  });

  it("takes host keys of every OpenSSH type, with or without a comment, and Outputs as they are", () => {
    const ok = (hostKey: unknown) => lib.validateSshLocationArgs("x", { routes: ["10.0.0.0/16"], kernel: { device: "eth0" }, hosts: [sshHost("a", 10, { connection: { user: "admin", privateKey: KEY, hostKey } })] });
    for (const key of [HOST_KEY, `${HOST_KEY} root@office\n`, "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY=", "ssh-rsa AAAAB3NzaC1yc2E=", pulumi.output(HOST_KEY)]) {
      expect(ok(key)).toEqual([]);
    }
    for (const key of ["", "AAAAC3NzaC1lZDI1NTE5", "ssh-dss AAAAB3NzaC1kc3M=", "ssh-ed25519 !!!"]) expect(ok(key).map((i) => i.path)).toEqual(["hosts[0].connection.hostKey"]);
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
    expect(() => new lib.Link("st", { locations: [ssh, dc], stateService: { location: "st-office" } })).toThrow('stateService.location: "st-office" is not an AWS location nor a GCP location');
  });
});

// The SSH install and uninstall scripts run for real, in a temporary root with stubbed apt-get,
// systemctl, sysctl, ip and iptables, and an npm stub that installs the real bundled agent: staged
// as CopyToRemote stages them, run by the command lines SshLocation gives @pulumi/command. Checked:
// the files they leave, their modes, the config handed over on stdin (never echoed), a staged
// package checked against its hash, a working agent reading the config, and a clean uninstall.
import { CHARON_RESTART_CALLS, expectCleanBash } from "../support/shell";
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentConfigSchema } from "../../agent/contract/agent-config";
import { sha256Hex } from "../../agent/contract/signing";
import { CHARON_TUNING, HOST_PACKAGES, SITELINK_BIN, SITELINK_DIR } from "../../lib/bootstrap/host";
import { renderSshInstall, renderSshUninstall, SSH_STAGED_FILES } from "../../lib/onprem/install";
import { HostFixture, REPO, type HostRoot } from "./fixture";

const { version } = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string };
const SECRET = "c2l0ZWxpbmstdGVzdC1zZWNyZXQtZG8tbm90LWxlYWs";
const URI = `sitelink://corp.office.a:${SECRET}@198.18.0.1:9443?fp=${"ab".repeat(32)}`;
// No charon at this socket: the uninstall's teardown must never reach a charon of this machine.
const NO_CHARON = "/run/sitelink-test-no-charon.vici";
const CONFIG = JSON.stringify(
  { uris: [URI], provider: "file", file: { path: "/etc/sitelink/routes" }, firewall: false, publicAddress: "198.18.0.10", privateAddress: "10.20.0.10", viciSocket: NO_CHARON },
  null,
  2,
);

let host: HostFixture;
beforeAll(() => {
  host = HostFixture.create();
}, 120_000);
afterAll(() => host?.cleanup());

const mode = (path: string) => (statSync(path).mode & 0o7777).toString(8);
/** Whether anything is at `path`, a dangling link included. */
const present = (path: string) => {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
};
/** Installs `script` with what SshLocation stages beside it: by default this library's bundle. */
const installed = (h: HostRoot, script: string, config = CONFIG, staged: Buffer | undefined = host.bundle) => {
  const result = host.install(h, script, host.stubs(h.root), config, staged);
  expect(result.status, result.stderr).toBe(0);
};

// Each test unpacks and hashes the real 4 MiB bundle several times: ~25 s on a busy 2-core machine.
describe("SSH install script", { timeout: 90_000 }, () => {
  // This library's bundle, copied beside the script (the default); a copied package tarball (agentTarball); a package the user names (agentPackage).
  let script: string;
  let fromTarball: string;
  let fromRegistry: string;
  beforeAll(() => {
    script = renderSshInstall({ agent: { staged: true, agentSha256: sha256Hex(host.bundle) }, ipv6: false });
    fromTarball = renderSshInstall({ agent: { staged: true, agentSha256: sha256Hex(host.tarball) }, ipv6: false });
    fromRegistry = renderSshInstall({ agent: { agentSource: "npm:sitelink@1.2.3", agentSha256: sha256Hex(host.tarball) }, ipv6: false });
  });
  const uninstall = renderSshUninstall({ kernelRoutes: { cidrs: ["10.30.0.0/16", "fd00:30::/48"], device: "eth0" } });

  it("is valid bash and clean under shellcheck, and so is the uninstall script", () => {
    for (const text of [script, fromTarball, fromRegistry, renderSshUninstall(), uninstall]) expectCleanBash(text);
  });

  it("writes the stdin config 0600, installs packages and the packaged unit, restarts the agent, and echoes nothing secret", () => {
    const h = host.hostRoot();
    const s = host.stubs(h.root);
    const result = host.install(h, script, s, CONFIG, host.bundle);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.calls).toEqual([
      "apt-get update -q",
      `apt-get install -y -q ${HOST_PACKAGES.join(" ")}`,
      // The installer: the copied bundle, verified, and its unit put in place (this node is new enough); no registry.
      "systemctl daemon-reload",
      `sysctl --load ${h.root}/etc/sysctl.d/90-sitelink.conf`,
      ...CHARON_RESTART_CALLS,
      "systemctl enable sitelink-agent.service",
      "systemctl restart sitelink-agent.service",
    ]);
    expect(`${result.stdout}${result.stderr}${readFileSync(s.log, "utf8")}`).not.toContain(SECRET);
    expect(mode(join(h.root, "etc/sitelink"))).toBe("700");
    expect(mode(join(h.root, "etc/sitelink/agent.json"))).toBe("600");
    expect(readFileSync(join(h.root, "etc/sitelink/agent.json"), "utf8")).toBe(CONFIG);
    expect(existsSync(join(h.root, "etc/sitelink/agent.json.tmp"))).toBe(false);
    expect(readFileSync(join(h.root, "etc/sysctl.d/90-sitelink.conf"), "utf8")).toBe("net.ipv4.ip_forward = 1\n");
    expect(readFileSync(join(h.root, "etc/strongswan.d/sitelink.conf"), "utf8")).toBe(`${CHARON_TUNING}\n`);
    expect(readFileSync(join(h.root, "etc/systemd/system/sitelink-agent.service"), "utf8")).toBe(readFileSync(join(REPO, "agent/host/sitelink-agent.service"), "utf8"));
  });

  it("leaves a working agent: the installed sitelink reads the config it wrote", () => {
    const h = host.hostRoot();
    installed(h, script);
    const sitelink = (...args: string[]) => spawnSync(host.sitelink(h), ["--config", join(h.root, "etc/sitelink/agent.json"), ...args], { cwd: host.work, encoding: "utf8" });
    expect(sitelink("version")).toMatchObject({ status: 0, stdout: `${version}\n` });
    const list = sitelink("list");
    expect(list.status).toBe(0);
    expect(list.stdout).toBe(`sitelink://corp.office.a:****@198.18.0.1:9443?fp=${"ab".repeat(32)}\n`);
    expect(agentConfigSchema.parse(JSON.parse(readFileSync(join(h.root, "etc/sitelink/agent.json"), "utf8")))).toMatchObject({ provider: "file", file: { path: "/etc/sitelink/routes" }, uris: [URI] });
  });

  it("installs a staged package tarball: root's own 0600 copy, verified, its bundle taken out; no registry", () => {
    const h = host.hostRoot();
    const s = host.stubs(h.root);
    const result = host.install(h, fromTarball, s, CONFIG, host.tarball);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.calls.some((c) => c.startsWith("npm"))).toBe(false);
    expect(mode(join(h.root, "var/cache/sitelink"))).toBe("700");
    expect(mode(join(h.root, "var/cache/sitelink/agent"))).toBe("600");
    expect(readFileSync(join(h.root, "var/cache/sitelink/agent"))).toEqual(host.tarball);
    expect(readFileSync(host.sitelink(h))).toEqual(host.bundle);
  });

  it("installs a package the user names from the registry, verified against its SHA-256", () => {
    const h = host.hostRoot();
    const s = host.stubs(h.root);
    const result = host.install(h, fromRegistry, s, CONFIG);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.calls).toContain("npm pack --loglevel=error sitelink@1.2.3");
    expect(readFileSync(host.sitelink(h))).toEqual(host.bundle);
  });

  it("refuses a staged agent that does not match its hash, installing nothing from it and trying once", () => {
    const h = host.hostRoot();
    const s = host.stubs(h.root);
    const tampered = Buffer.concat([host.bundle, Buffer.from("!")]);
    const result = host.install(h, script, s, CONFIG, tampered);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(`sitelink: agent integrity mismatch: expected ${sha256Hex(host.bundle)} got ${sha256Hex(tampered)} (/var/cache/sitelink/agent)\n`);
    expect(result.calls.some((c) => /^(npm|systemctl)/.test(c))).toBe(false);
    expect(present(host.sitelink(h))).toBe(false);
    expect(JSON.parse(readFileSync(join(h.root, "etc/sitelink/install-status.json"), "utf8"))).toEqual({
      ok: false,
      kind: "integrity",
      message: `agent integrity mismatch: expected ${sha256Hex(host.bundle)} got ${sha256Hex(tampered)} (/var/cache/sitelink/agent)`,
    });
    // The refusal keeps the config directory private.
    expect(mode(join(h.root, "etc/sitelink"))).toBe("700");
  });

  it("upgrades in place: a second run replaces the config and restarts the agent", () => {
    const h = host.hostRoot();
    installed(h, script);
    const next = CONFIG.replace('"provider": "file"', '"provider": "kernel"');
    const again = host.install(h, renderSshInstall({ agent: { agentSource: "npm:sitelink@1.2.4", agentSha256: sha256Hex(host.tarball) }, ipv6: true }), host.stubs(h.root), next);
    expect(again.status).toBe(0);
    expect(again.calls).toContain("npm pack --loglevel=error sitelink@1.2.4");
    expect(again.calls.at(-1)).toBe("systemctl restart sitelink-agent.service");
    expect(readFileSync(join(h.root, "etc/sitelink/agent.json"), "utf8")).toBe(next);
    expect(readFileSync(join(h.root, "etc/sysctl.d/90-sitelink.conf"), "utf8")).toBe("net.ipv4.ip_forward = 1\nnet.ipv6.conf.all.forwarding = 1\nnet.ipv6.conf.all.accept_ra = 2\n");
  });

  it("refuses to run without a config on stdin, before touching packages", () => {
    const h = host.hostRoot();
    const s = host.stubs(h.root);
    const result = host.install(h, script, s, "");
    expect(result.status).toBe(1);
    expect(result.stderr).toBe("sitelink: no agent config on standard input\n");
    expect(result.calls).toEqual([]);
    expect(existsSync(join(h.root, "etc/sitelink/agent.json.tmp"))).toBe(false);
  });

  it("uninstalls cleanly: agent stopped, torn down, its routes and files gone; charon left running", () => {
    const h = host.hostRoot();
    installed(h, fromTarball, CONFIG, host.tarball);
    const ours = [
      ...["etc/sitelink", "etc/systemd/system/sitelink-agent.service", "etc/strongswan.d/sitelink.conf", "etc/sysctl.d/90-sitelink.conf", "var/cache/sitelink", SITELINK_DIR, SITELINK_BIN].map((f) => join(h.root, f)),
      ...Object.values(SSH_STAGED_FILES).map((n) => join(h.home, n)),
    ];
    expect(ours.filter(present)).toEqual(ours);
    // Something of the host's own beside ours stays.
    writeFileSync(join(h.root, "etc/sysctl.d/99-local.conf"), "vm.swappiness = 10\n");
    writeFileSync(join(h.home, "notes.txt"), "mine\n");
    const s = host.stubs(h.root);
    const result = host.uninstall(h, uninstall, s);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    // The real agent's teardown ran (no charon at its socket: nothing loaded; firewall and MSS clamp never used).
    expect(result.stdout).toBe("unloaded 0 connection(s) and 0 secret(s)\n");
    expect(result.calls).toEqual([
      "systemctl disable --now sitelink-agent.service",
      "ip route del 10.30.0.0/16 dev eth0",
      "ip route del fd00:30::/48 dev eth0",
      "systemctl daemon-reload",
    ]);
    expect(result.calls.some((c) => /strongswan|charon|apt-get/.test(c))).toBe(false);
    expect(ours.filter(present)).toEqual([]);
    expect(readFileSync(join(h.root, "etc/sysctl.d/99-local.conf"), "utf8")).toBe("vm.swappiness = 10\n");
    expect(readFileSync(join(h.home, "notes.txt"), "utf8")).toBe("mine\n");
  });

  /** `iptables -S` of a host where both chains are loaded: `-w -t TABLE -S`. */
  const LISTS_OUR_CHAINS = `if [ "$4" = -S ]; then if [ "$3" = filter ]; then printf '%s\\n' '-P INPUT ACCEPT' '-N SITELINK' '-A INPUT -j SITELINK'; else printf '%s\\n' '-N SITELINK-MSS' '-A FORWARD -j SITELINK-MSS' '-A OUTPUT -j SITELINK-MSS'; fi; fi;`;

  it("removes the firewall and MSS chains the config turned on", () => {
    const h = host.hostRoot();
    installed(h, script, JSON.stringify({ ...JSON.parse(CONFIG), firewall: true, mtu: 1400 }));
    const s = host.stubs(h.root, { iptables: `${LISTS_OUR_CHAINS} exit 0`, ip6tables: `${LISTS_OUR_CHAINS} exit 0` });
    const result = host.uninstall(h, renderSshUninstall(), s);
    expect(result.status).toBe(0);
    // Each table listed once, every jump the listing shows deleted, then each chain flushed and
    // deleted, in both families; nothing else.
    const chains = result.calls.filter((c) => /^ip6?tables /.test(c));
    for (const tool of ["iptables", "ip6tables"]) {
      expect(chains.filter((c) => c.startsWith(`${tool} `))).toEqual([
        `${tool} -w -t filter -S`,
        `${tool} -w -t filter -D INPUT -j SITELINK`,
        `${tool} -w -t filter -F SITELINK`,
        `${tool} -w -t filter -X SITELINK`,
        `${tool} -w -t mangle -S`,
        `${tool} -w -t mangle -D FORWARD -j SITELINK-MSS`,
        `${tool} -w -t mangle -D OUTPUT -j SITELINK-MSS`,
        `${tool} -w -t mangle -F SITELINK-MSS`,
        `${tool} -w -t mangle -X SITELINK-MSS`,
      ]);
    }
  });

  it("finishes the uninstall when a part of the teardown fails, and says so", () => {
    const h = host.hostRoot();
    installed(h, script, JSON.stringify({ ...JSON.parse(CONFIG), firewall: true }));
    const s = host.stubs(h.root, { iptables: `${LISTS_OUR_CHAINS} [ "$4" = -F ] && { echo "iptables: Resource busy" >&2; exit 4; }; exit 0` });
    const result = host.uninstall(h, renderSshUninstall(), s);
    expect(result.status).toBe(0);
    expect(result.stderr).toBe("sitelink: firewall: cannot delete the IPv4 chain SITELINK: iptables: Resource busy\nsitelink: teardown incomplete (see above)\n");
    expect(existsSync(join(h.root, "etc/sitelink"))).toBe(false);
  });

  it("uninstalls what is left even when the agent is already gone", () => {
    const h = host.hostRoot();
    const s = host.stubs(h.root, { systemctl: `if [ "$1" = disable ]; then exit 5; fi` });
    const result = host.uninstall(h, renderSshUninstall(), s);
    expect(result.status).toBe(0);
    expect(result.calls).toContain("systemctl daemon-reload");
  });
});

// The SSH install and uninstall scripts run for real, in a temporary root with stubbed apt-get,
// systemctl and sysctl, and an npm stub that installs the real bundled agent: the files they leave,
// their modes, the config handed over on stdin (never echoed), and a working agent reading it.
import { expectCleanBash } from "../support/shell";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentConfigSchema } from "../../agent/host/config";
import { CHARON_TUNING, HOST_PACKAGES } from "../../lib/bootstrap";
import { renderSshInstall, renderSshUninstall } from "../../lib/ssh-install";
import { HostFixture, REPO } from "./fixture";

const { version } = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string };
const SECRET = "c2l0ZWxpbmstdGVzdC1zZWNyZXQtZG8tbm90LWxlYWs";
const URI = `sitelink://corp.office.a:${SECRET}@198.18.0.1:9443?fp=${"ab".repeat(32)}`;
const CONFIG = JSON.stringify(
  { uris: [URI], provider: "file", file: { path: "/etc/sitelink/routes" }, firewall: false, publicAddress: "198.18.0.10", privateAddress: "10.20.0.10" },
  null,
  2,
);

let host: HostFixture;
beforeAll(() => {
  host = HostFixture.create();
}, 120_000);
afterAll(() => host?.cleanup());

const stubs = (root: string, overrides?: Record<string, string>) => host.stubs(root, overrides);
const run = (...args: Parameters<HostFixture["run"]>) => host.run(...args);
const hostRoot = () => host.hostRoot();

const mode = (path: string) => (statSync(path).mode & 0o7777).toString(8);

describe("SSH install script", () => {
  const script = renderSshInstall({ agentPackage: "sitelink@1.2.3", ipv6: false });

  it("is valid bash and clean under shellcheck, and so is the uninstall script", () => {
    for (const text of [script, renderSshUninstall()]) expectCleanBash(text);
  });

  it("writes the stdin config 0600, installs packages and the packaged unit, restarts the agent, and echoes nothing secret", () => {
    const root = hostRoot();
    const s = stubs(root);
    const result = run(script, root, s, CONFIG);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.calls).toEqual([
      "apt-get update -q",
      `apt-get install -y -q ${HOST_PACKAGES.join(" ")}`,
      "npm install --global --no-fund --no-audit sitelink@1.2.3",
      `sysctl --load ${root}/etc/sysctl.d/90-sitelink.conf`,
      "npm root --global",
      "systemctl daemon-reload",
      "systemctl enable --now strongswan-starter.service",
      "systemctl enable sitelink-agent.service",
      "systemctl restart sitelink-agent.service",
    ]);
    expect(`${result.stdout}${result.stderr}${readFileSync(s.log, "utf8")}`).not.toContain(SECRET);
    expect(mode(join(root, "etc/sitelink"))).toBe("700");
    expect(mode(join(root, "etc/sitelink/agent.json"))).toBe("600");
    expect(readFileSync(join(root, "etc/sitelink/agent.json"), "utf8")).toBe(CONFIG);
    expect(existsSync(join(root, "etc/sitelink/agent.json.tmp"))).toBe(false);
    expect(readFileSync(join(root, "etc/sysctl.d/90-sitelink.conf"), "utf8")).toBe("net.ipv4.ip_forward = 1\n");
    expect(readFileSync(join(root, "etc/strongswan.d/sitelink.conf"), "utf8")).toBe(`${CHARON_TUNING}\n`);
    expect(readFileSync(join(root, "etc/systemd/system/sitelink-agent.service"), "utf8")).toBe(readFileSync(join(REPO, "agent/host/sitelink-agent.service"), "utf8"));
  });

  it("leaves a working agent: the installed sitelink reads the config it wrote", () => {
    const root = hostRoot();
    run(script, root, stubs(root), CONFIG);
    const sitelink = (...args: string[]) => spawnSync(join(root, "usr/local/bin/sitelink"), ["--config", join(root, "etc/sitelink/agent.json"), ...args], { cwd: host.work, encoding: "utf8" });
    expect(sitelink("version")).toMatchObject({ status: 0, stdout: `${version}\n` });
    const list = sitelink("list");
    expect(list.status).toBe(0);
    expect(list.stdout).toBe(`sitelink://corp.office.a:****@198.18.0.1:9443?fp=${"ab".repeat(32)}\n`);
    expect(agentConfigSchema.parse(JSON.parse(readFileSync(join(root, "etc/sitelink/agent.json"), "utf8")))).toMatchObject({ provider: "file", file: { path: "/etc/sitelink/routes" }, uris: [URI] });
  });

  it("upgrades in place: a second run replaces the config and restarts the agent", () => {
    const root = hostRoot();
    run(script, root, stubs(root), CONFIG);
    const next = CONFIG.replace('"provider": "file"', '"provider": "kernel"');
    const s = stubs(root);
    const again = run(renderSshInstall({ agentPackage: "sitelink@1.2.4", ipv6: true }), root, s, next);
    expect(again.status).toBe(0);
    expect(again.calls).toContain("npm install --global --no-fund --no-audit sitelink@1.2.4");
    expect(again.calls.at(-1)).toBe("systemctl restart sitelink-agent.service");
    expect(readFileSync(join(root, "etc/sitelink/agent.json"), "utf8")).toBe(next);
    expect(readFileSync(join(root, "etc/sysctl.d/90-sitelink.conf"), "utf8")).toBe("net.ipv4.ip_forward = 1\nnet.ipv6.conf.all.forwarding = 1\nnet.ipv6.conf.all.accept_ra = 2\n");
  });

  it("refuses to run without a config on stdin, before touching packages", () => {
    const root = hostRoot();
    const s = stubs(root);
    const result = run(script, root, s, "");
    expect(result.status).toBe(1);
    expect(result.stderr).toBe("sitelink: no agent config on standard input\n");
    expect(result.calls).toEqual([]);
    expect(existsSync(join(root, "etc/sitelink/agent.json.tmp"))).toBe(false);
  });

  it("uninstalls cleanly: agent stopped, its files gone, strongSwan kept and restarted", () => {
    const root = hostRoot();
    run(script, root, stubs(root), CONFIG);
    // Something of the host's own beside ours stays.
    writeFileSync(join(root, "etc/sysctl.d/99-local.conf"), "vm.swappiness = 10\n");
    const s = stubs(root);
    const result = run(renderSshUninstall(), root, s, "", "sitelink-uninstall");
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.calls).toEqual([
      "systemctl disable --now sitelink-agent.service",
      "systemctl daemon-reload",
      "systemctl try-restart strongswan-starter.service",
      "npm uninstall --global --no-fund --no-audit sitelink",
    ]);
    for (const f of ["etc/sitelink", "etc/systemd/system/sitelink-agent.service", "etc/strongswan.d/sitelink.conf", "etc/sysctl.d/90-sitelink.conf", "usr/local/bin/sitelink"]) {
      expect(existsSync(join(root, f)), f).toBe(false);
    }
    expect(readFileSync(join(root, "etc/sysctl.d/99-local.conf"), "utf8")).toBe("vm.swappiness = 10\n");
    expect(result.calls.some((c) => c.startsWith("apt-get"))).toBe(false);
  });

  it("uninstalls what is left even when the agent is already gone", () => {
    const root = hostRoot();
    const s = stubs(root, { systemctl: `if [ "$1" = disable ]; then exit 5; fi`, npm: "exit 1" });
    const result = run(renderSshUninstall(), root, s, "", "sitelink-uninstall");
    expect(result.status).toBe(0);
    expect(result.calls).toContain("systemctl daemon-reload");
  });
});

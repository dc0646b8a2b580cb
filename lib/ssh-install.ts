// Pure renderers of the scripts SshLocation runs on existing hosts over SSH: the install (or
// upgrade) script, which does what the cloud bootstrap does but takes the agent config — host URI
// inside — on its standard input, and the uninstall script. Neither script holds a secret, so both
// can sit in plain Pulumi state; every path is under $SITELINK_ROOT so tests run them in a temp root.
import { DEFAULT_CONFIG_PATH } from "../agent/host/config";
import { CHARON_TUNING, HOST_PACKAGES, installPackagedUnit, installPackages, installSitelink, PACKAGED_UNITS, quote, script, section, writeFile } from "./bootstrap";

export interface SshInstallOptions {
  /** npm spec or tarball URL of the sitelink package. */
  agentPackage: string;
  /** Also forward IPv6 (when the link has IPv6 routes). */
  ipv6: boolean;
}

/** Files an install leaves on the host besides the packages; the uninstall removes exactly these. */
export const SSH_INSTALLED_FILES = {
  sysctl: "/etc/sysctl.d/90-sitelink.conf",
  charon: "/etc/strongswan.d/sitelink.conf",
  unit: "/etc/systemd/system/sitelink-agent.service",
  configDir: "/etc/sitelink",
} as const;

/**
 * Installs or upgrades strongSwan and the agent, then (re)starts the agent. Reads the agent config
 * JSON on stdin (first, before any other command could consume stdin) and writes it 0600; the
 * config is never echoed. Idempotent: running it again with a new config or package upgrades in place.
 */
export function renderSshInstall(opts: SshInstallOptions): string {
  const f = SSH_INSTALLED_FILES;
  const sysctl = ["net.ipv4.ip_forward = 1", ...(opts.ipv6 ? ["net.ipv6.conf.all.forwarding = 1", "net.ipv6.conf.all.accept_ra = 2"] : [])];
  const config = `"$root${DEFAULT_CONFIG_PATH}"`;
  const tmp = `"$root${DEFAULT_CONFIG_PATH}.tmp"`;
  return script("sitelink link host install over SSH. Holds no secret: the agent config (with the host URI) arrives on stdin.", [
    section("Agent config from stdin, 0600 from the first byte, replaced atomically.", [
      `install -d -m 0700 "$root${f.configDir}"`,
      `(umask 077 && cat > ${tmp})`,
      `if [ ! -s ${tmp} ]; then rm -f ${tmp}; echo "sitelink: no agent config on standard input" >&2; exit 1; fi`,
      `chmod 0600 ${tmp}`,
      `mv -f ${tmp} ${config}`,
    ]),
    installPackages(HOST_PACKAGES),
    installSitelink(opts.agentPackage),
    section("IP forwarding: the host routes site traffic into its tunnels.", [writeFile(f.sysctl, "0644", sysctl.join("\n")), `sysctl --load "$root${f.sysctl}"`]),
    section("IKE retransmits: strongSwan's defaults take ~165 s to give up on a dead peer; ~5.5 s here.", [
      `install -d -m 0755 "$root/etc/strongswan.d"`,
      writeFile(f.charon, "0644", CHARON_TUNING),
    ]),
    section("The agent's unit comes with the package; a restart picks up a new config or version.", [
      installPackagedUnit(PACKAGED_UNITS.agent, "sitelink-agent.service"),
      "systemctl daemon-reload",
      "systemctl enable --now strongswan-starter.service",
      "systemctl enable sitelink-agent.service",
      "systemctl restart sitelink-agent.service",
    ]),
  ]);
}

/**
 * Stops and removes the agent: unit, config (with the host URI), charon tuning, sysctl drop-in and
 * the npm package. strongSwan and Node.js stay installed (other software on an existing host may
 * use them); charon is restarted so the link's tunnels, loaded only in its memory, go away.
 */
export function renderSshUninstall(): string {
  const f = SSH_INSTALLED_FILES;
  return [
    "#!/bin/bash",
    "# sitelink link host uninstall over SSH (rendered by the sitelink Pulumi components).",
    "set -uo pipefail",
    `root="${"$"}{SITELINK_ROOT:-}"`,
    "# The agent tells the state service it goes offline when stopped: another location host takes over.",
    "systemctl disable --now sitelink-agent.service || true",
    `rm -f "$root${f.unit}" "$root${f.charon}" "$root${f.sysctl}"`,
    `rm -rf "$root${f.configDir}"`,
    "systemctl daemon-reload",
    "systemctl try-restart strongswan-starter.service || true",
    "npm uninstall --global --no-fund --no-audit sitelink || true",
    "",
  ].join("\n");
}

/**
 * The command line SSH runs for a script: the script as one quoted argument of `bash -c` (the
 * login shell only unquotes it), `name` as its $0, through `sudo -n` unless connecting as root.
 */
export function remoteCommand(scriptText: string, name: string, sudo: boolean): string {
  return `${sudo ? "sudo -n " : ""}bash -c ${quote(scriptText)} ${name}`;
}

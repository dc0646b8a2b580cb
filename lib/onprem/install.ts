// Pure renderers of what SshLocation runs on existing hosts over SSH: the install (or upgrade)
// script, which does what the cloud bootstrap does but takes the agent config — host URI inside —
// on its standard input, the uninstall script, and the command lines that run them. Neither script
// holds a secret, so both can sit in plain Pulumi state; every path is under $SITELINK_ROOT so
// tests run them in a temp root.
import { DEFAULT_CONFIG_PATH } from "../../agent/contract/agent-config";
import { HOST_PACKAGES, HOST_TUNING_FILES, hostTuning, installSitelink, SITELINK_BIN, SITELINK_BUNDLE, SITELINK_DIR, START_CHARON } from "../bootstrap/host";
import type { AgentDelivery } from "../bootstrap/agent-source";
import { installPackages, quote, script, section, writeFile } from "../bootstrap/shell";

export interface SshInstallOptions {
  /**
   * The agent: `staged`, a file copied next to the script (SSH_STAGED_FILES.agent: this library's
   * bundle or an `agentTarball`) with its SHA-256; or where the host fetches it (a user's package).
   * Either way the installer verifies the SHA-256 before installing.
   */
  agent: { staged: true; agentSha256: string } | (AgentDelivery & { staged?: false });
  /** Also forward IPv6 (when the link has IPv6 routes). */
  ipv6: boolean;
}

export interface SshUninstallOptions {
  /** kernel route mode: the remote CIDRs the agent pointed at `device`/`via`, deleted only while they still point there. */
  kernelRoutes?: { cidrs: string[]; device?: string; via?: string };
}

/** Files an install leaves on the host besides the packages and the installer's (SITELINK_DIR, SITELINK_BIN); the uninstall removes exactly these. */
export const SSH_INSTALLED_FILES = {
  ...HOST_TUNING_FILES,
  unit: "/etc/systemd/system/sitelink-agent.service",
  configDir: "/etc/sitelink",
  /** Root's copy of a staged agent, and the file naming it for the installer. */
  packageDir: "/var/cache/sitelink",
} as const;

/**
 * What SshLocation copies over SFTP before the install runs, relative to the SSH user's home
 * directory (where SFTP starts): never a fixed name under /tmp, where another local user could
 * plant a file or a symlink first. Nothing secret: the config only ever travels on stdin.
 */
export const SSH_STAGED_FILES = {
  script: ".sitelink-install.sh",
  agent: ".sitelink-agent",
} as const;

/**
 * Installs or upgrades strongSwan and the agent, then (re)starts the agent. Reads the agent config
 * JSON on stdin (first, before any other command could consume stdin) and writes it 0600; the
 * config is never echoed. Idempotent: running it again with a new config or package upgrades in place.
 * Run as `bash <path>` (sshInstallCommand): a staged package is found next to the script ($0).
 */
export function renderSshInstall(opts: SshInstallOptions): string {
  const f = SSH_INSTALLED_FILES;
  const config = `"$root${DEFAULT_CONFIG_PATH}"`;
  const tmp = `"$root${DEFAULT_CONFIG_PATH}.tmp"`;
  const staged = `${f.packageDir}/agent`;
  const spec = `${f.packageDir}/agent.json`;
  const delivery: AgentDelivery = opts.agent.staged ? { agentSource: staged, agentSha256: opts.agent.agentSha256 } : { agentSource: opts.agent.agentSource, agentSha256: opts.agent.agentSha256 };
  return script("sitelink link host install over SSH. Holds no secret: the agent config (with the host URI) arrives on stdin.", [
    section("Agent config from stdin, 0600 from the first byte, replaced atomically.", [
      `install -d -m 0700 "$root${f.configDir}"`,
      `(umask 077 && cat > ${tmp})`,
      `if [ ! -s ${tmp} ]; then rm -f ${tmp}; echo "sitelink: no agent config on standard input" >&2; exit 1; fi`,
      `chmod 0600 ${tmp}`,
      `mv -f ${tmp} ${config}`,
    ]),
    installPackages(HOST_PACKAGES),
    section("Which agent to install, and its SHA-256 (the installer verifies it before use).", [
      `install -d -m 0700 "$root${f.packageDir}"`,
      ...(opts.agent.staged ? ["# Copied over SFTP into the SSH user's home: root takes its own copy.", `install -m 0600 "$(dirname -- "$0")/${SSH_STAGED_FILES.agent}" "$root${staged}"`] : []),
      writeFile(spec, "0600", JSON.stringify(delivery)),
    ]),
    installSitelink(spec, !opts.agent.staged),
    ...hostTuning(opts.ipv6, ""),
    section("The installer put the agent's unit in place; a restart picks up a new config or version.", [
      ...START_CHARON,
      "systemctl enable sitelink-agent.service",
      "systemctl restart sitelink-agent.service",
    ]),
  ]);
}

/**
 * Stops and removes the agent. The stop is graceful (another host of the location takes over);
 * `sitelink teardown` then unloads the agent's own tunnels from charon and its iptables chains —
 * charon keeps running, so other strongSwan tunnels on a shared host stay up. In kernel route mode
 * the remote routes go too. Then the unit, config (with the host URI), charon tuning, sysctl
 * drop-in, package copy and the installed agent. strongSwan and Node.js stay installed (other
 * software on an existing host may use them).
 */
export function renderSshUninstall(opts: SshUninstallOptions = {}): string {
  const f = SSH_INSTALLED_FILES;
  const k = opts.kernelRoutes;
  const bundle = SITELINK_BUNDLE;
  const hop = k ? [...(k.via ? ["via", quote(k.via)] : []), ...(k.device ? ["dev", quote(k.device)] : [])].join(" ") : "";
  return [
    "#!/bin/bash",
    "# sitelink link host uninstall over SSH (rendered by the sitelink Pulumi components).",
    "set -uo pipefail",
    `root="${"$"}{SITELINK_ROOT:-}"`,
    "# The agent tells the state service it goes offline when stopped: another location host takes over.",
    "systemctl disable --now sitelink-agent.service || true",
    // The bundle itself rather than the link to it, which points outside $root in a test.
    `if [ -x "$root${bundle}" ]; then "$root${bundle}" --config "$root${DEFAULT_CONFIG_PATH}" teardown || echo "sitelink: teardown incomplete (see above)" >&2; fi`,
    ...(k && k.cidrs.length > 0
      ? ["# Routes the agent added, each only while it still points where the agent pointed it.", ...k.cidrs.map((cidr) => `ip route del ${quote(cidr)} ${hop} 2>/dev/null || true`)]
      : []),
    `rm -f "$root${f.unit}" "$root${f.charon}" "$root${f.sysctl}" "$root${SITELINK_BIN}"`,
    `rm -rf "$root${f.configDir}" "$root${f.packageDir}" "$root${SITELINK_DIR}"`,
    "systemctl daemon-reload",
    "",
  ].join("\n");
}

/**
 * The install's command line: the staged script from the SSH user's home ($HOME expanded by the
 * login shell, before sudo), through `sudo -n` unless connecting as root.
 */
export function sshInstallCommand(sudo: boolean): string {
  return `${sudo ? "sudo -n " : ""}bash "$HOME/${SSH_STAGED_FILES.script}"`;
}

/**
 * The uninstall's command line: inline (`bash -c`, the script one quoted argument), as a staged
 * script may be gone by delete time; then the SSH user removes what was staged in its home.
 */
export function sshUninstallCommand(scriptText: string, sudo: boolean): string {
  const staged = Object.values(SSH_STAGED_FILES).map((name) => `"$HOME/${name}"`).join(" ");
  return `${sudo ? "sudo -n " : ""}bash -c ${quote(scriptText)} sitelink-uninstall && rm -f ${staged}`;
}

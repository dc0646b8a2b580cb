// Pure renderers of the cloud-init user data (bash scripts) of link hosts and of the state service
// host. No secret ever goes into them: hosts read their URI, and the state host its keys, from the
// cloud's secret store at run time. Every path is under $SITELINK_ROOT (empty on a real host) so a
// test can run the script in a temporary root with stubbed system commands.
import { agentConfigSchema, DEFAULT_CONFIG_PATH, type AgentConfigInput } from "../agent/host/config";

/** Ubuntu packages of a link host. strongswan-starter runs charon (with its VICI socket) at boot. */
export const HOST_PACKAGES = [
  "strongswan-charon",
  "strongswan-starter",
  "strongswan-swanctl",
  "libstrongswan-standard-plugins",
  "libcharon-extra-plugins",
  "nodejs",
  "npm",
] as const;

/** Ubuntu packages of the state service host (the AWS CLI comes from its snap: Ubuntu 24.04 has no apt package). */
export const STATE_PACKAGES = ["nodejs", "npm"] as const;

/** Where the units live inside the installed npm package (shipped with it: one source of truth). */
export const PACKAGED_UNITS = {
  agent: "agent/host/sitelink-agent.service",
  state: "agent/state/sitelink-state.service",
} as const;

/**
 * Files on the state service host. The packaged unit runs the service as a systemd dynamic user that
 * reads the topology where the unit expects it and keeps its data in its StateDirectory (which for a
 * dynamic user lives under /var/lib/private); the keys stay root-only and reach the service as
 * systemd credentials, readable by it alone.
 */
export const STATE_FILES = {
  topology: "/etc/sitelink/topology.json",
  credentials: "/etc/sitelink/credentials",
  masterKey: "/etc/sitelink/credentials/master.key",
  tlsKey: "/etc/sitelink/credentials/tls.key",
  tlsCert: "/etc/sitelink/credentials/tls.crt",
  data: "/var/lib/sitelink-state",
  dataMount: "/var/lib/private/sitelink-state",
  fetchScript: "/usr/local/lib/sitelink/fetch-state-files",
} as const;

/** charon settings of a link host (top level of strongswan.conf; Ubuntu includes strongswan.d/*.conf). */
export const CHARON_TUNING = "charon {\n  retransmit_timeout = 0.5\n  retransmit_base = 1.4\n  retransmit_tries = 3\n}";

/** The binary npm installs globally with Ubuntu's node (prefix /usr/local), as the packaged units expect. */
export const SITELINK_BIN = "/usr/local/bin/sitelink";

/** How often the state host re-reads its files from Parameter Store (the topology changes with `pulumi up`). */
export const STATE_FILES_REFRESH_SECONDS = 30;

export interface AgentBootstrapOptions {
  /** npm spec or tarball URL of the sitelink package. */
  agentPackage: string;
  /** The agent config written to /etc/sitelink/agent.json (validated here; must hold no URI). */
  config: AgentConfigInput;
  /** Also forward IPv6 (when the link has IPv6 routes). */
  ipv6: boolean;
}

/** User data of a link host: packages, IP forwarding, agent config, the agent unit. */
export function renderAgentBootstrap(opts: AgentBootstrapOptions): string {
  const config = agentConfigSchema.parse(opts.config);
  if (config.uris.length > 0) throw new Error("config.uris: a bootstrap must not carry host URIs (they hold the host secret); use uriSources");
  const sysctl = ["net.ipv4.ip_forward = 1", ...(opts.ipv6 ? ["net.ipv6.conf.all.forwarding = 1", "net.ipv6.conf.all.accept_ra = 2"] : [])];
  return script("sitelink link host bootstrap. Holds no secret: the agent reads its host URI from the secret store at start.", [
    installPackages(HOST_PACKAGES),
    installSitelink(opts.agentPackage),
    section("IP forwarding: the host routes site traffic into its tunnels.", [
      writeFile("/etc/sysctl.d/90-sitelink.conf", "0644", sysctl.join("\n")),
      `sysctl --load "$root/etc/sysctl.d/90-sitelink.conf"`,
    ]),
    section("IKE retransmits: strongSwan's defaults take ~165 s to give up on a dead peer; ~5.5 s here.", [
      `install -d -m 0755 "$root/etc/strongswan.d"`,
      writeFile("/etc/strongswan.d/sitelink.conf", "0644", CHARON_TUNING),
    ]),
    section("Agent config (no secret inside; 0600 all the same, as the agent's CLI keeps it).", [
      `install -d -m 0700 "$root/etc/sitelink"`,
      writeFile(DEFAULT_CONFIG_PATH, "0600", JSON.stringify(config, null, 2)),
    ]),
    section("The agent's unit comes with the package.", [
      installPackagedUnit(PACKAGED_UNITS.agent, "sitelink-agent.service"),
      "systemctl daemon-reload",
      "systemctl enable --now strongswan-starter.service",
      "systemctl enable --now sitelink-agent.service",
    ]),
  ]);
}

export interface GcpAgentBootstrapOptions {
  agentPackage: string;
  ipv6: boolean;
  /** The Secret Manager version holding the host URI (projects/P/secrets/S/versions/V). */
  uriSecretVersion: string;
  /** The VPC network (name or self-link) whose routes the agent owns, and its project. */
  network: string;
  project: string;
  publicAddress: string;
  privateAddress: string;
}

/**
 * The startup script of a GCP link host: the same bootstrap, its config naming the Secret Manager
 * version to read the host URI from and the network whose routes it manages. GCE runs a startup
 * script at every boot; every step is idempotent, so a reboot also applies a changed script.
 */
export function renderGcpAgentBootstrap(opts: GcpAgentBootstrapOptions): string {
  return renderAgentBootstrap({
    agentPackage: opts.agentPackage,
    ipv6: opts.ipv6,
    config: {
      uriSources: [{ kind: "gcp-secret-manager", name: opts.uriSecretVersion }],
      provider: "gcp",
      gcp: { network: opts.network, project: opts.project },
      publicAddress: opts.publicAddress,
      privateAddress: opts.privateAddress,
    },
  });
}

export interface StateBootstrapOptions {
  agentPackage: string;
  /** Region of the Parameter Store parameters. */
  region: string;
  /** Parameter names: topology and TLS certificate (String), master key and TLS key (SecureString). */
  parameters: { topology: string; tlsCert: string; masterKey: string; tlsKey: string };
  /** The EBS volume holding the state (vol-…), mounted at /var/lib/sitelink. */
  volumeId: string;
  port: number;
}

/** What differs between clouds in the state host's bootstrap: its secret store, CLI and data disk. */
interface StateHostCloud {
  /** "Parameter Store", "Secret Manager". */
  store: string;
  /** The kind of item read: "parameter", "secret". */
  item: string;
  /** The store's CLI ("AWS CLI"), and the line installing it. */
  cli: string;
  cliSetup: string;
  /** The data disk: how it is named in the section title, the shell variable naming it, where it shows up. */
  disk: { kind: string; variable: string; candidates: string; missing: string };
  /** Prints the value of the item "$name" (a bash command line). */
  readCommand: string;
  dropIn: string;
  /** The fetch script's items: topology, TLS certificate, TLS key, master key. */
  items: { topology: string; tlsCert: string; masterKey: string; tlsKey: string };
}

/** User data of the AWS state service host: packages, data volume, files kept current from Parameter Store, the service unit. */
export function renderStateBootstrap(opts: StateBootstrapOptions): string {
  return renderStateHostBootstrap(opts, {
    store: "Parameter Store",
    item: "parameter",
    cli: "AWS CLI",
    cliSetup: "retry snap install aws-cli --classic",
    disk: {
      kind: "EBS volume",
      variable: `volume_id=${quote(opts.volumeId.replace("-", ""))}`,
      candidates: `"$root/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_$volume_id" "$root/dev/xvdf"`,
      missing: `data volume ${"$"}{volume_id} never appeared`,
    },
    readCommand: `aws ssm get-parameter --region ${quote(opts.region)} --name "$name" --with-decryption --query Parameter.Value --output text`,
    dropIn: "10-sitelink-aws.conf",
    items: opts.parameters,
  });
}

export interface GcpStateBootstrapOptions {
  agentPackage: string;
  /** Project of the secrets. */
  project: string;
  /** Secret Manager secret ids (their `latest` version is read). */
  secrets: { topology: string; tlsCert: string; masterKey: string; tlsKey: string };
  /** `deviceName` of the attached persistent disk holding the state. */
  diskDeviceName: string;
  port: number;
}

/**
 * Startup script of the GCP state service host: the AWS bootstrap with Secret Manager (through the
 * gcloud CLI, a snap that Ubuntu's GCE images ship) and a persistent disk. It runs at every boot;
 * every step is idempotent.
 */
export function renderGcpStateBootstrap(opts: GcpStateBootstrapOptions): string {
  return renderStateHostBootstrap(opts, {
    store: "Secret Manager",
    item: "secret",
    cli: "gcloud CLI",
    cliSetup: "retry snap install google-cloud-cli --classic",
    disk: {
      kind: "persistent disk",
      variable: `device_name=${quote(opts.diskDeviceName)}`,
      // The guest environment's udev link, and the kernel's own name for the same disk.
      candidates: `"$root/dev/disk/by-id/google-$device_name" "$root/dev/disk/by-id/scsi-0Google_PersistentDisk_$device_name"`,
      missing: `data disk ${"$"}{device_name} never appeared`,
    },
    readCommand: `gcloud secrets versions access latest --project ${quote(opts.project)} --secret "$name"`,
    dropIn: "10-sitelink-gcp.conf",
    items: opts.secrets,
  });
}

function renderStateHostBootstrap(opts: { agentPackage: string; port: number }, cloud: StateHostCloud): string {
  const f = STATE_FILES;
  const serve = [
    `${SITELINK_BIN} state serve`,
    `--topology ${f.topology}`,
    `--data ${f.data}`,
    // %d: the service's credentials directory.
    "--tls-cert %d/tls.crt",
    "--tls-key %d/tls.key",
    "--master-key-file %d/master.key",
    `--listen 0.0.0.0:${opts.port}`,
  ].join(" ");
  // Overrides only what this deployment decides (keys, port, ordering); the packaged unit keeps
  // restart policy, user and hardening. No `state init`: the keys come from Pulumi.
  const dropIn = [
    "[Unit]",
    "Wants=sitelink-state-files.service",
    "After=sitelink-state-files.service",
    `RequiresMountsFor=${f.dataMount}`,
    "",
    "[Service]",
    `LoadCredential=master.key:${f.masterKey}`,
    `LoadCredential=tls.key:${f.tlsKey}`,
    `LoadCredential=tls.crt:${f.tlsCert}`,
    "ExecStartPre=",
    "ExecStart=",
    `ExecStart=${serve}`,
  ].join("\n");
  const fetchUnit = ["[Unit]", `Description=sitelink: refresh the state service's files from ${cloud.store}`, "After=network-online.target", "Wants=network-online.target", "", "[Service]", "Type=oneshot", `ExecStart=${f.fetchScript}`].join("\n");
  const fetchTimer = ["[Unit]", "Description=sitelink: refresh the state service's files", "", "[Timer]", "OnBootSec=0", `OnUnitActiveSec=${STATE_FILES_REFRESH_SECONDS}s`, "", "[Install]", "WantedBy=timers.target"].join("\n");
  return script(`sitelink state service bootstrap. Holds no secret: the host reads its keys from ${cloud.store}.`, [
    installPackages(STATE_PACKAGES),
    cloud.cliSetup,
    installSitelink(opts.agentPackage),
    section(`State data on its own ${cloud.disk.kind}, so replacing the instance keeps it.`, [
      cloud.disk.variable,
      `device=""`,
      "for _ in $(seq 1 150); do",
      `  for candidate in ${cloud.disk.candidates}; do`,
      `    if [ -b "$candidate" ]; then device="$candidate"; break 2; fi`,
      "  done",
      "  sleep 2",
      "done",
      `if [ -z "$device" ]; then echo "sitelink: ${cloud.disk.missing}" >&2; exit 1; fi`,
      // Format only a volume blkid finds blank (exit 2); any other probe failure must not wipe the state.
      "probe=0",
      `blkid "$device" >/dev/null || probe=$?`,
      `if [ "$probe" = 2 ]; then mkfs.ext4 -q -L sitelink-data "$device"; elif [ "$probe" != 0 ]; then echo "sitelink: cannot probe $device (blkid exit $probe)" >&2; exit 1; fi`,
      `install -d -m 0700 "$root/var/lib/private" "$root${f.dataMount}"`,
      `if ! grep -q " ${f.dataMount} " "$root/etc/fstab"; then`,
      `  echo "UUID=$(blkid -s UUID -o value "$device") ${f.dataMount} ext4 defaults,nofail 0 2" >> "$root/etc/fstab"`,
      "fi",
      `mountpoint -q "$root${f.dataMount}" || mount "$root${f.dataMount}"`,
    ]),
    section("Files of the state service, kept current by a timer (the service reloads the topology when it changes).", [
      `install -d -m 0755 "$root/etc/sitelink" "$root/usr/local/lib/sitelink"`,
      `install -d -m 0700 "$root${f.credentials}"`,
      writeFile(f.fetchScript, "0755", renderFetchScript(cloud)),
      writeFile("/etc/systemd/system/sitelink-state-files.service", "0644", fetchUnit),
      writeFile("/etc/systemd/system/sitelink-state-files.timer", "0644", fetchTimer),
    ]),
    section("The service's unit comes with the package; a drop-in sets this host's paths.", [
      installPackagedUnit(PACKAGED_UNITS.state, "sitelink-state.service"),
      `install -d -m 0755 "$root/etc/systemd/system/sitelink-state.service.d"`,
      writeFile(`/etc/systemd/system/sitelink-state.service.d/${cloud.dropIn}`, "0644", dropIn),
      "systemctl daemon-reload",
      "systemctl start sitelink-state-files.service",
      "systemctl enable --now sitelink-state-files.timer",
      "systemctl enable --now sitelink-state.service",
    ]),
  ]);
}

/** The script run by the timer: rewrites a file only when its content changed, atomically. */
function renderFetchScript(cloud: StateHostCloud): string {
  const f = STATE_FILES;
  const p = cloud.items;
  return [
    "#!/bin/bash",
    `# Keeps the sitelink state service's files in step with ${cloud.store} (written by the bootstrap).`,
    "set -euo pipefail",
    `root="${"$"}{SITELINK_ROOT:-}"`,
    `# The ${cloud.cli} is a snap; systemd units do not have /snap/bin on their PATH.`,
    'PATH="$PATH:/snap/bin"',
    "changed=0",
    `# fetch ${cloud.item.toUpperCase()} FILE MODE: rewrites FILE only when the value differs; sets changed=1 then.`,
    "fetch() {",
    "  local name=$1 file=$root$2 mode=$3 tmp",
    `  tmp=$(mktemp "$file.XXXXXX")`,
    `  if ! ${cloud.readCommand} > "$tmp"; then`,
    `    rm -f "$tmp"; echo "sitelink: cannot read ${cloud.item} $name" >&2; return 1`,
    "  fi",
    `  chmod "$mode" "$tmp"`,
    `  if cmp -s "$tmp" "$file"; then rm -f "$tmp"; else mv -f "$tmp" "$file"; changed=1; fi`,
    "}",
    `fetch ${quote(p.masterKey)} ${f.masterKey} 0600`,
    `fetch ${quote(p.tlsKey)} ${f.tlsKey} 0600`,
    `fetch ${quote(p.tlsCert)} ${f.tlsCert} 0600`,
    "# Credentials are handed over at start: a new key needs a restart (a no-op before the first start).",
    `if [ "$changed" = 1 ]; then systemctl try-restart sitelink-state.service; fi`,
    "# The service reloads the topology by itself when the file changes.",
    `fetch ${quote(p.topology)} ${f.topology} 0644`,
  ].join("\n");
}

export function script(title: string, sections: string[]): string {
  return [
    "#!/bin/bash",
    `# ${title}`,
    "# Rendered by the sitelink Pulumi components.",
    "set -euo pipefail",
    `root="${"$"}{SITELINK_ROOT:-}"`,
    "export DEBIAN_FRONTEND=noninteractive",
    "# Network steps are retried: cloud-init runs this once, early in boot.",
    "retry() {",
    "  local attempt",
    "  for attempt in 1 2 3 4 5 6 7 8 9 10; do",
    '    if "$@"; then return 0; fi',
    `    echo "sitelink: attempt $attempt of '$*' failed" >&2`,
    "    sleep 6",
    "  done",
    "  return 1",
    "}",
    "",
    sections.join("\n\n"),
    "",
  ].join("\n");
}

export function section(comment: string, lines: string[]): string {
  return [`# ${comment}`, ...lines].join("\n");
}

export function installPackages(packages: readonly string[]): string {
  return section("Packages.", ["retry apt-get update -q", `retry apt-get install -y -q ${packages.join(" ")}`]);
}

export function installSitelink(spec: string): string {
  return `retry npm install --global --no-fund --no-audit ${quote(spec)}`;
}

export function installPackagedUnit(packagePath: string, unit: string): string {
  return `install -m 0644 "$(npm root --global)/sitelink/${packagePath}" "$root/etc/systemd/system/${unit}"`;
}

/** Writes `content` to `path` (under $root) with `mode`, atomically; the content is never expanded by the shell. */
export function writeFile(path: string, mode: string, content: string): string {
  const delimiter = "SITELINK_EOF";
  if (content.split("\n").includes(delimiter)) throw new Error(`content of ${path} contains the heredoc delimiter`);
  return [
    `(umask 077 && cat > "$root${path}.tmp" <<'${delimiter}'`,
    content,
    delimiter,
    ")",
    `chmod ${mode} "$root${path}.tmp"`,
    `mv -f "$root${path}.tmp" "$root${path}"`,
  ].join("\n");
}

/** Single-quotes a value for bash. */
export function quote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

// Pure renderers of the boot scripts of cloud link hosts and of the state service host, and of the
// pieces the SSH install shares with them. A boot script is the host's stable bootstrap: packages,
// Node.js, forwarding, and a refresh timer that keeps the sitelink package and the host's files in
// step with what Pulumi keeps in the cloud (per-host parameters or metadata), so a changed program
// never needs new user data. No secret ever goes into these scripts: hosts read their URI, and the
// state host its keys, from the cloud's secret store at run time. Every path is under
// $SITELINK_ROOT (empty on a real host) so a test can run a script in a temporary root with
// stubbed system commands.
import { posix } from "node:path";
import { agentConfigSchema, DEFAULT_CONFIG_PATH, type AgentConfigInput } from "../../agent/contract/agent-config";
import { ACTIVE_STATUS_LINE, DEFAULT_STATUS_PATH } from "../../agent/host/status";

/** Ubuntu packages of a link host. strongswan-starter runs charon (with its VICI socket) at boot. */
export const HOST_PACKAGES = [
  "strongswan-charon",
  "strongswan-starter",
  "strongswan-swanctl",
  "libstrongswan-standard-plugins",
  "libcharon-extra-plugins",
] as const;

/** Where the units live inside the sitelink npm package (shipped with it: one source of truth). */
export const PACKAGED_UNITS = {
  agent: "agent/host/sitelink-agent.service",
  state: "agent/state/sitelink-state.service",
} as const;

/** The bundle inside the package: the agent and the state service in one file (scripts/bundle.mjs). */
export const PACKAGED_BUNDLE = "dist/sitelink.js";

/** Where the installer puts the bundle and the packaged units, and keeps its own scripts. */
export const SITELINK_DIR = "/usr/local/lib/sitelink";

/** The installed bundle. */
export const SITELINK_BUNDLE = `${SITELINK_DIR}/sitelink.js`;

/** The command the packaged units run: a link to SITELINK_BUNDLE. */
export const SITELINK_BIN = "/usr/local/bin/sitelink";

/** Files of the installer, on every host that runs it. */
export const INSTALL_FILES = {
  /** `install-sitelink SPEC`: the bundle and units from the package tarball. */
  installer: `${SITELINK_DIR}/install-sitelink`,
  /** The spec of the package installed last (rewritten only after a successful install). */
  packageSpec: `${SITELINK_DIR}/package-spec`,
} as const;

/** The oldest Node.js the runtime supports (better-sqlite3 12, AWS SDK v3), and the one hosts get when theirs is older. */
export const NODE_MIN_MAJOR = 20;
export const NODE_INSTALL_MAJOR = 22;

/**
 * Where a host gets Node.js when its image has none new enough:
 * - `nodesource`: Node.js 22 from NodeSource's signed apt repository (deb.nodesource.com);
 * - `preinstalled`: no repository is added; the bootstrap stops with a clear error unless the image has Node.js ≥ 20.
 */
export type NodeSource = "nodesource" | "preinstalled";
export const NODE_SOURCES = ["nodesource", "preinstalled"] as const satisfies readonly NodeSource[];

export const NODESOURCE = {
  keyUrl: "https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key",
  keyring: "/etc/apt/keyrings/nodesource.gpg",
  list: "/etc/apt/sources.list.d/nodesource.list",
  repository: `https://deb.nodesource.com/node_${NODE_INSTALL_MAJOR}.x`,
} as const;

/**
 * The version of better-sqlite3 (the state service's one native dependency) that this library
 * depends on, exactly as installed with it: the state host installs the same one.
 */
export const BETTER_SQLITE3_VERSION: string = (require("better-sqlite3/package.json") as { version: string }).version;

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
  fetchScript: `${SITELINK_DIR}/fetch-state-files`,
} as const;

/** Files of a cloud link host's refresh. */
export const AGENT_FILES = {
  config: DEFAULT_CONFIG_PATH,
  refreshScript: `${SITELINK_DIR}/refresh-agent`,
} as const;

/** charon settings of a link host (top level of strongswan.conf; Ubuntu includes strongswan.d/*.conf). */
export const CHARON_TUNING = "charon {\n  retransmit_timeout = 0.5\n  retransmit_base = 1.4\n  retransmit_tries = 3\n}";

/** System files every link host gets, cloud or SSH: forwarding and charon's IKE retransmits. */
export const HOST_TUNING_FILES = {
  sysctl: "/etc/sysctl.d/90-sitelink.conf",
  charon: "/etc/strongswan.d/sitelink.conf",
} as const;

/** Sections writing HOST_TUNING_FILES: IP forwarding (IPv6 too when `ipv6`) and the IKE retransmits. */
export function hostTuning(ipv6: boolean, why: string): string[] {
  const f = HOST_TUNING_FILES;
  const sysctl = ["net.ipv4.ip_forward = 1", ...(ipv6 ? ["net.ipv6.conf.all.forwarding = 1", "net.ipv6.conf.all.accept_ra = 2"] : [])];
  return [
    section(`IP forwarding: the host routes site traffic into its tunnels${why}.`, [writeFile(f.sysctl, "0644", sysctl.join("\n")), `sysctl --load "$root${f.sysctl}"`]),
    section("IKE retransmits: strongSwan's defaults take ~165 s to give up on a dead peer; ~5.5 s here.", [
      `install -d -m 0755 "$root/etc/strongswan.d"`,
      writeFile(f.charon, "0644", CHARON_TUNING),
    ]),
  ];
}

/**
 * How often hosts re-read what Pulumi keeps for them. Link hosts add up to as much again at random
 * (RandomizedDelaySec), so the hosts of a location do not restart their agents together.
 */
export const REFRESH_SECONDS = 30;
export const REFRESH_RANDOM_DELAY_SECONDS = 30;
/** How long an active host's refresh waits before restarting its agent: longer than a whole refresh window. */
export const ACTIVE_RESTART_DELAY_SECONDS = REFRESH_SECONDS + REFRESH_RANDOM_DELAY_SECONDS;

/** GCE instance metadata attributes a GCP link host reads its package spec and agent config from. */
export const GCP_AGENT_ATTRIBUTES = {
  package: "sitelink-agent-package",
  config: "sitelink-agent-config",
} as const;

/** How a host reads the items Pulumi keeps for it in its cloud. */
interface ItemStore {
  /** Where the items live: "Parameter Store", "instance metadata", "Secret Manager". */
  store: string;
  /** What one item is called in messages: "parameter", "attribute", "secret". */
  item: string;
  /** Installs the store's CLI when the image lacks it (a line of the boot script), if needed. */
  setup?: string;
  /** Prints the value of the item named "$name" (a bash command line). */
  readCommand: string;
}

function parameterStore(region: string): ItemStore {
  return {
    store: "Parameter Store",
    item: "parameter",
    // Ubuntu 24.04 has no AWS CLI apt package; the snap is Amazon's own.
    setup: "retry snap install aws-cli --classic",
    readCommand: `aws ssm get-parameter --region ${quote(region)} --name "$name" --with-decryption --query Parameter.Value --output text`,
  };
}

function secretManager(project: string): ItemStore {
  return {
    store: "Secret Manager",
    item: "secret",
    // Ubuntu's GCE images ship the gcloud snap; this is a no-op there.
    setup: "retry snap install google-cloud-cli --classic",
    readCommand: `gcloud secrets versions access latest --project ${quote(project)} --secret "$name"`,
  };
}

/** The instance's own metadata (no IAM involved; the attributes hold nothing secret). Ubuntu's GCE images ship curl. */
const INSTANCE_METADATA: ItemStore = {
  store: "instance metadata",
  item: "attribute",
  readCommand: `curl -fsS -H 'Metadata-Flavor: Google' "http://metadata.google.internal/computeMetadata/v1/instance/attributes/$name"`,
};

/**
 * The agent config a cloud link host gets (its agent.json): validated by the agent's own schema,
 * defaults written out. It must hold no host URI: those carry the host secret and are read from the
 * cloud's secret store (`uriSources`).
 */
export function renderAgentConfig(config: AgentConfigInput): string {
  const parsed = agentConfigSchema.parse(config);
  if (parsed.uris.length > 0) throw new Error("config.uris: a cloud host's config must not carry host URIs (they hold the host secret); use uriSources");
  return JSON.stringify(parsed, null, 2);
}

export interface AgentBootstrapOptions {
  /** Region of the host's parameters. */
  region: string;
  /** Its String parameters: the sitelink package spec and the agent config (renderAgentConfig). */
  parameters: { package: string; config: string };
  /** @default "nodesource" */
  nodeSource?: NodeSource;
}

/** User data of an AWS link host: the same for its whole life (cloud-init runs it once). */
export function renderAgentBootstrap(opts: AgentBootstrapOptions): string {
  return renderLinkHostBootstrap(parameterStore(opts.region), opts.parameters, opts.nodeSource);
}

export interface GcpAgentBootstrapOptions {
  /** @default "nodesource" */
  nodeSource?: NodeSource;
}

/**
 * The startup script of a GCP link host: the AWS bootstrap reading the instance's own metadata
 * attributes (GCP_AGENT_ATTRIBUTES) instead of Parameter Store. GCE runs a startup script at every
 * boot; every step is idempotent.
 */
export function renderGcpAgentBootstrap(opts: GcpAgentBootstrapOptions = {}): string {
  return renderLinkHostBootstrap(INSTANCE_METADATA, GCP_AGENT_ATTRIBUTES, opts.nodeSource);
}

function renderLinkHostBootstrap(store: ItemStore, items: { package: string; config: string }, nodeSource: NodeSource = "nodesource"): string {
  const f = AGENT_FILES;
  const refresh = renderFetchScript(store, "the sitelink agent's package and config", [
    fetchLine(items.package, INSTALL_FILES.packageSpec, "0644", "install_package"),
    fetchLine(items.config, f.config, "0600"),
    "# A new version or config takes effect with a restart; the agent's SIGTERM hands the active role",
    "# to another host first. Standbys restart first: the active host waits until every other host of",
    "# its location, whose refresh runs within the same window, is back. A no-op while the agent is not",
    "# running (first boot).",
    `if [ "$changed" = 1 ]; then`,
    `  if grep -qsF ${quote(ACTIVE_STATUS_LINE)} "$root${DEFAULT_STATUS_PATH}"; then sleep ${ACTIVE_RESTART_DELAY_SECONDS}; fi`,
    "  systemctl try-restart sitelink-agent.service",
    "fi",
  ]);
  return script(`sitelink link host bootstrap. Holds no secret: the agent reads its host URI from the secret store at start; its config and package come from ${store.store}.`, [
    installPackages(HOST_PACKAGES),
    ...(store.setup ? [store.setup] : []),
    installNode(nodeSource),
    ...hostTuning(true, " (IPv6 too, so a link that gains IPv6 routes needs no new bootstrap)"),
    section(`Package and config, kept in step with ${store.store} by a timer; the first run installs the agent.`, [
      `install -d -m 0700 "$root/etc/sitelink"`,
      `install -d -m 0755 "$root${SITELINK_DIR}"`,
      ...refreshSetup({ role: "agent", unit: "sitelink-agent-refresh", what: "the sitelink agent's package and config", store: store.store, path: f.refreshScript, text: refresh, randomDelay: true }),
    ]),
    section("Start charon, the agent and the refresh timer.", [
      "systemctl daemon-reload",
      "systemctl enable --now strongswan-starter.service",
      "systemctl enable --now sitelink-agent.service",
      "systemctl enable --now sitelink-agent-refresh.timer",
    ]),
  ]);
}

/** Items of the state host: the sitelink package spec, the topology, the TLS certificate and key, the master key. */
export interface StateItems {
  package: string;
  topology: string;
  tlsCert: string;
  masterKey: string;
  tlsKey: string;
}

export interface StateBootstrapOptions {
  /** Region of the Parameter Store parameters. */
  region: string;
  /** Parameter names: package, topology and TLS certificate (String), master key and TLS key (SecureString). */
  parameters: StateItems;
  /** The EBS volume holding the state (vol-…), mounted at /var/lib/sitelink. */
  volumeId: string;
  port: number;
  /** @default "nodesource" */
  nodeSource?: NodeSource;
}

/** What differs between clouds in the state host's bootstrap: its secret store and data disk. */
interface StateHostCloud {
  store: ItemStore;
  /** The data disk: how it is named in the section title, the shell variable naming it, where it shows up. */
  disk: { kind: string; variable: string; candidates: string; missing: string };
  dropIn: string;
  items: StateItems;
}

/** User data of the AWS state service host: data volume, files and package kept current from Parameter Store, the service unit. */
export function renderStateBootstrap(opts: StateBootstrapOptions): string {
  return renderStateHostBootstrap(opts, {
    store: parameterStore(opts.region),
    disk: {
      kind: "EBS volume",
      variable: `volume_id=${quote(opts.volumeId.replace("-", ""))}`,
      candidates: `"$root/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_$volume_id" "$root/dev/xvdf"`,
      missing: `data volume ${"$"}{volume_id} never appeared`,
    },
    dropIn: "10-sitelink-aws.conf",
    items: opts.parameters,
  });
}

export interface GcpStateBootstrapOptions {
  /** Project of the secrets. */
  project: string;
  /** Secret Manager secret ids (their `latest` version is read). */
  secrets: StateItems;
  /** `deviceName` of the attached persistent disk holding the state. */
  diskDeviceName: string;
  port: number;
  /** @default "nodesource" */
  nodeSource?: NodeSource;
}

/**
 * Startup script of the GCP state service host: the AWS bootstrap with Secret Manager (through the
 * gcloud CLI) and a persistent disk. It runs at every boot; every step is idempotent.
 */
export function renderGcpStateBootstrap(opts: GcpStateBootstrapOptions): string {
  return renderStateHostBootstrap(opts, {
    store: secretManager(opts.project),
    disk: {
      kind: "persistent disk",
      variable: `device_name=${quote(opts.diskDeviceName)}`,
      // The guest environment's udev link, and the kernel's own name for the same disk.
      candidates: `"$root/dev/disk/by-id/google-$device_name" "$root/dev/disk/by-id/scsi-0Google_PersistentDisk_$device_name"`,
      missing: `data disk ${"$"}{device_name} never appeared`,
    },
    dropIn: "10-sitelink-gcp.conf",
    items: opts.secrets,
  });
}

function renderStateHostBootstrap(opts: { port: number; nodeSource?: NodeSource }, cloud: StateHostCloud): string {
  const f = STATE_FILES;
  const p = cloud.items;
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
  const fetch = renderFetchScript(cloud.store, "the sitelink state service's package and files", [
    fetchLine(p.package, INSTALL_FILES.packageSpec, "0644", "install_package"),
    fetchLine(p.masterKey, f.masterKey, "0600"),
    fetchLine(p.tlsKey, f.tlsKey, "0600"),
    fetchLine(p.tlsCert, f.tlsCert, "0600"),
    "# Credentials are handed over at start, so a new key or version needs a restart (a no-op before the first start).",
    `if [ "$changed" = 1 ]; then systemctl try-restart sitelink-state.service; fi`,
    "# The service reloads the topology by itself when the file changes.",
    fetchLine(p.topology, f.topology, "0644"),
  ]);
  return script(`sitelink state service bootstrap. Holds no secret: the host reads its keys from ${cloud.store.store}.`, [
    ...(cloud.store.setup ? [cloud.store.setup] : []),
    installNode(opts.nodeSource ?? "nodesource"),
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
    section("Package and files of the state service, kept current by a timer (the service reloads the topology when it changes); the first run installs the service.", [
      `install -d -m 0755 "$root/etc/sitelink" "$root${SITELINK_DIR}"`,
      `install -d -m 0700 "$root${f.credentials}"`,
      ...refreshSetup({ role: "state", unit: "sitelink-state-files", what: "the state service's package and files", store: cloud.store.store, path: f.fetchScript, text: fetch, randomDelay: false }),
    ]),
    section("The service's unit came with the package; a drop-in sets this host's paths.", [
      `install -d -m 0755 "$root/etc/systemd/system/sitelink-state.service.d"`,
      writeFile(`/etc/systemd/system/sitelink-state.service.d/${cloud.dropIn}`, "0644", dropIn),
      "systemctl daemon-reload",
      "systemctl enable --now sitelink-state-files.timer",
      "systemctl enable --now sitelink-state.service",
    ]),
  ]);
}

/** One item of a fetch script: FILE follows the item NAME; APPLY (a function of the script) runs first with the new value. */
function fetchLine(name: string, file: string, mode: string, apply?: string): string {
  return `fetch ${quote(name)} ${file} ${mode}${apply ? ` ${apply}` : ""}`;
}

/**
 * The script a refresh timer runs: each item is read from the store and its file rewritten only
 * when the value changed, atomically; `steps` are fetch lines and what to do on a change
 * ($changed). `install_package` reinstalls sitelink from a new package spec.
 */
function renderFetchScript(store: ItemStore, what: string, steps: string[]): string {
  return [
    "#!/bin/bash",
    `# Keeps ${what} in step with ${store.store} (written by the bootstrap).`,
    "set -euo pipefail",
    `root="${"$"}{SITELINK_ROOT:-}"`,
    "# The AWS and gcloud CLIs are snaps; systemd units do not have /snap/bin on their PATH.",
    'PATH="$PATH:/snap/bin"',
    "changed=0",
    'tmp=""',
    "# A failed step leaves no temporary file behind.",
    `trap 'if [ -n "$tmp" ]; then rm -f "$tmp"; fi' EXIT`,
    `# fetch NAME FILE MODE [APPLY]: rewrites FILE when the ${store.item} NAME differs from it, and sets changed=1.`,
    "# APPLY first runs with the new value's file; when it fails FILE is kept, so the next run tries again.",
    "fetch() {",
    "  local name=$1 file=$root$2 mode=$3",
    `  tmp=$(mktemp "$file.XXXXXX")`,
    `  if ! ${store.readCommand} > "$tmp"; then`,
    `    echo "sitelink: cannot read ${store.item} $name" >&2; return 1`,
    "  fi",
    `  chmod "$mode" "$tmp"`,
    `  if cmp -s "$tmp" "$file"; then rm -f "$tmp"; tmp=""; return 0; fi`,
    `  if [ $# -gt 3 ]; then "$4" "$tmp"; fi`,
    `  mv -f "$tmp" "$file"; tmp=""; changed=1`,
    "}",
    "# A new package spec: install that package before recording it.",
    `install_package() { "$root${INSTALL_FILES.installer}" "$(cat "$1")"; }`,
    ...steps,
  ].join("\n");
}

/**
 * Installs the installer, a refresh script (renderFetchScript) and the oneshot service and timer
 * running it, then runs it once: its first run installs sitelink and writes the host's files.
 */
function refreshSetup(o: { role: keyof typeof PACKAGED_UNITS; unit: string; what: string; store: string; path: string; text: string; randomDelay: boolean }): string[] {
  const service = [
    "[Unit]",
    `Description=sitelink: refresh ${o.what} from ${o.store}`,
    "After=network-online.target",
    "Wants=network-online.target",
    "",
    "[Service]",
    "Type=oneshot",
    // The CLIs and npm keep caches under $HOME, which systemd sets for root's services only on request.
    "Environment=HOME=/root",
    `ExecStart=${o.path}`,
  ];
  const timer = [
    "[Unit]",
    `Description=sitelink: refresh ${o.what}`,
    "",
    "[Timer]",
    "OnBootSec=0",
    `OnUnitActiveSec=${REFRESH_SECONDS}s`,
    ...(o.randomDelay ? [`RandomizedDelaySec=${REFRESH_RANDOM_DELAY_SECONDS}s`] : []),
    // systemd's default accuracy (1 min) would stretch the period well beyond the one above.
    "AccuracySec=1s",
    "",
    "[Install]",
    "WantedBy=timers.target",
  ];
  return [
    writeFile(INSTALL_FILES.installer, "0755", renderInstaller(o.role)),
    writeFile(o.path, "0755", o.text),
    writeFile(`/etc/systemd/system/${o.unit}.service`, "0644", service.join("\n")),
    writeFile(`/etc/systemd/system/${o.unit}.timer`, "0644", timer.join("\n")),
    `retry "$root${o.path}"`,
  ];
}

/**
 * `install-sitelink SPEC`: the package tarball alone (`npm pack` fetches no dependencies, so none of
 * the Pulumi SDKs the library needs), its bundle and units under SITELINK_DIR, SITELINK_BIN linked
 * to the bundle, the role's unit installed. The state service also gets better-sqlite3, next to the
 * bundle where its require() finds it. A separate script, so its own `set -e` holds even where the
 * caller runs it as a condition (retry).
 */
function renderInstaller(role: keyof typeof PACKAGED_UNITS): string {
  const unit = PACKAGED_UNITS[role];
  const extracted = [PACKAGED_BUNDLE, ...Object.values(PACKAGED_UNITS)];
  return [
    "#!/bin/bash",
    `# Installs the sitelink ${role === "agent" ? "agent" : "state service"} from its npm package: install-sitelink SPEC (registry spec, tarball URL or path).`,
    "set -euo pipefail",
    `root="${"$"}{SITELINK_ROOT:-}"`,
    "work=$(mktemp -d)",
    `trap 'rm -rf "$work"' EXIT`,
    `(cd "$work" && npm pack --loglevel=error "$1" >/dev/null)`,
    `tarballs=("$work"/*.tgz)`,
    `tar -xzf "${"$"}{tarballs[0]}" -C "$work" ${extracted.map((p) => `package/${p}`).join(" ")}`,
    `install -d -m 0755 "$root${SITELINK_DIR}" "$root${posix.dirname(SITELINK_BIN)}"`,
    `install -m 0755 "$work/package/${PACKAGED_BUNDLE}" "$root${SITELINK_BUNDLE}"`,
    `install -m 0644 ${Object.values(PACKAGED_UNITS).map((p) => `"$work/package/${p}"`).join(" ")} "$root${SITELINK_DIR}/"`,
    `ln -sfn ${SITELINK_BUNDLE} "$root${SITELINK_BIN}"`,
    ...(role === "state"
      ? [`npm install --prefix "$root${SITELINK_DIR}" --no-save --no-package-lock --omit=dev --no-fund --no-audit --loglevel=error better-sqlite3@${BETTER_SQLITE3_VERSION}`]
      : []),
    installPackagedUnit(unit, posix.basename(unit)),
    "systemctl daemon-reload",
  ].join("\n");
}

/**
 * Node.js ≥ 20 for the runtime: the host's own when new enough (an image that ships it, an existing
 * machine), otherwise Node.js 22 from NodeSource's signed apt repository (its nodejs package
 * includes npm), or — with `preinstalled` — a clear error.
 */
export function installNode(source: NodeSource): string {
  const n = NODESOURCE;
  const missing =
    source === "nodesource"
      ? [
          "  retry apt-get update -q",
          "  retry apt-get install -y -q ca-certificates curl gnupg",
          `  install -d -m 0755 "$root${posix.dirname(n.keyring)}"`,
          `  retry curl -fsSL -o "$root${n.keyring}.asc" ${n.keyUrl}`,
          `  gpg --batch --yes --dearmor -o "$root${n.keyring}" "$root${n.keyring}.asc"`,
          `  rm -f "$root${n.keyring}.asc"`,
          `  chmod 0644 "$root${n.keyring}"`,
          `  echo ${quote(`deb [signed-by=${n.keyring}] ${n.repository} nodistro main`)} > "$root${n.list}"`,
          "  retry apt-get update -q",
          "  retry apt-get install -y -q nodejs",
        ]
      : [`  echo "sitelink: this host needs Node.js >= ${NODE_MIN_MAJOR} and has $(node --version 2>/dev/null || echo none); nodeSource preinstalled adds no repository" >&2`, "  exit 1"];
  return section(`Node.js >= ${NODE_MIN_MAJOR}: the host's own when new enough, else ${source === "nodesource" ? `Node.js ${NODE_INSTALL_MAJOR} from NodeSource's signed repository` : "an error (nodeSource: preinstalled)"}.`, [
    "node_major=$(node --version 2>/dev/null || true)",
    "node_major=${node_major#v}",
    "node_major=${node_major%%.*}",
    `if ! [ "${"$"}{node_major:-0}" -ge ${NODE_MIN_MAJOR} ] 2>/dev/null; then`,
    ...missing,
    "fi",
  ]);
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

/**
 * Installs sitelink once, for a script that runs to completion (the SSH install): Node.js (from
 * NodeSource when the host's is older than 20), then the agent from the package `spec` (registry
 * spec, tarball URL or path) through the installer, which also installs the agent's unit.
 */
export function installSitelink(spec: string): string {
  return [
    installNode("nodesource"),
    section("The agent from its package tarball (no dependencies).", [
      `install -d -m 0755 "$root${SITELINK_DIR}"`,
      writeFile(INSTALL_FILES.installer, "0755", renderInstaller("agent")),
      `retry "$root${INSTALL_FILES.installer}" ${quote(spec)}`,
    ]),
  ].join("\n\n");
}

/** Installs a packaged unit from SITELINK_DIR, where the installer put it. */
export function installPackagedUnit(packagePath: string, unit: string): string {
  return `install -m 0644 "$root${SITELINK_DIR}/${posix.basename(packagePath)}" "$root/etc/systemd/system/${unit}"`;
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

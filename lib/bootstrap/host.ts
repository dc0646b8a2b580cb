// What every sitelink host's script shares, whatever its cloud or role: the packages, where sitelink
// is installed and how (the installer, Node.js), the system tuning, and the refresh timer that keeps
// the package and the host's files in step with what Pulumi keeps in the cloud's store, so a changed
// program never needs new user data.
import { posix } from "node:path";
import { INSTALL_STATUS_PATH } from "../../agent/contract/install-status";
import { packagedFile } from "./agent-bundle";
import { PROBLEM_REPORTER_JS } from "./problem-reporter";
import { quote, section, writeFile } from "./shell";

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
  /** `install-sitelink FILE`: fetches, verifies and installs the agent FILE names (agentSource, agentSha256). */
  installer: `${SITELINK_DIR}/install-sitelink`,
  /** The agentSha256 installed last (written only after a verified install). */
  installedSha256: `${SITELINK_DIR}/agent-sha256`,
  /** Posts a problem to the state service when the agent cannot (POST /v1/problem). */
  reporter: `${SITELINK_DIR}/report-problem.js`,
} as const;

/** The oldest Node.js the runtime supports (AWS SDK v3), and the one hosts get when theirs is older. */
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

/** How a host reads the items Pulumi keeps for it in its cloud. */
export interface ItemStore {
  /** Where the items live: "Parameter Store", "instance metadata", "Secret Manager". */
  store: string;
  /** What one item is called in messages: "parameter", "attribute", "secret". */
  item: string;
  /** Installs the store's CLI when the image lacks it (a line of the boot script), if needed. */
  setup?: string;
  /** Prints the value of the item named "$name" (a bash command line). */
  readCommand: string;
}

/** One item of a fetch script: FILE follows the item NAME; APPLY (a function of the script) runs first with the new value. */
export function fetchLine(name: string, file: string, mode: string, apply?: string): string {
  return `fetch ${quote(name)} ${file} ${mode}${apply ? ` ${apply}` : ""}`;
}

/**
 * The script a refresh timer runs: each item is read from the store and its file rewritten only
 * when the value changed, atomically; `steps` are fetch lines and what to do on a change
 * ($changed). `install_agent` installs the agent a new item names.
 */
export function renderFetchScript(store: ItemStore, what: string, steps: string[]): string {
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
    "# A new agent source or SHA-256: install (verified) before recording it; a refused agent keeps the old file, so the next run tries again.",
    `install_agent() { "$root${INSTALL_FILES.installer}" "$1"; }`,
    ...steps,
  ].join("\n");
}

/**
 * Installs the installer, a refresh script (renderFetchScript) and the oneshot service and timer
 * running it, then runs it once: its first run installs sitelink and writes the host's files.
 */
export function refreshSetup(o: { installer: InstallerOptions; unit: string; what: string; store: string; path: string; text: string; randomDelay: boolean }): string[] {
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
    writeFile(INSTALL_FILES.installer, "0755", renderInstaller(o.installer)),
    ...(o.installer.readHostUri ? [writeFile(INSTALL_FILES.reporter, "0644", PROBLEM_REPORTER_JS)] : []),
    writeFile(o.path, "0755", o.text),
    writeFile(`/etc/systemd/system/${o.unit}.service`, "0644", service.join("\n")),
    writeFile(`/etc/systemd/system/${o.unit}.timer`, "0644", timer.join("\n")),
    `retry "$root${o.path}"`,
  ];
}

/** What differs between hosts in the installer. */
export interface InstallerOptions {
  role: keyof typeof PACKAGED_UNITS;
  /** Region of an `s3://` agent source (AWS hosts). */
  s3Region?: string;
  /** A command printing this host's URI (from the cloud's secret store), to report a refused agent to the state service. */
  readHostUri?: string;
}

/**
 * `install-sitelink FILE`: FILE is JSON with `agentSource` and `agentSha256` (a link host's agent
 * config, the state host's agent item). Fetches the source with the host's own identity (`s3://`
 * with the AWS CLI, `gs://` with gcloud, `https://`, `npm:SPEC` with `npm pack`, or a local path),
 * and installs nothing unless its SHA-256 is agentSha256: a mismatch keeps the installed agent, is
 * logged, written to INSTALL_STATUS_PATH and reported to the state service. A package tarball yields
 * its dist/sitelink.js; anything else is the bundle itself. The role's unit is written from the
 * package that rendered this script. A separate script, so its own `set -e` holds even where the
 * caller runs it as a condition (retry).
 */
export function renderInstaller(o: InstallerOptions): string {
  const unit = PACKAGED_UNITS[o.role];
  const installed = `"$root${INSTALL_FILES.installedSha256}"`;
  const status = `"$root${INSTALL_STATUS_PATH}"`;
  return [
    "#!/bin/bash",
    `# Installs the sitelink ${o.role === "agent" ? "agent" : "state service"} that FILE names, verified: install-sitelink FILE (JSON with agentSource, agentSha256).`,
    "set -euo pipefail",
    `root="${"$"}{SITELINK_ROOT:-}"`,
    "# JSON fields of FILE; the schema keeps quotes and spaces out of both values.",
    `field() { grep -o "\\"$1\\": *\\"[^\\"]*\\"" "$2" | head -n 1 | sed 's/.*: *"\\(.*\\)"$/\\1/'; }`,
    'expected=$(field agentSha256 "$1") || true',
    'source=$(field agentSource "$1") || true',
    'if ! [[ "$expected" =~ ^[0-9a-f]{64}$ ]] || [ -z "$source" ]; then echo "sitelink: $1 names no agentSource and agentSha256" >&2; exit 1; fi',
    `if [ -x "$root${SITELINK_BUNDLE}" ] && [ "$(cat ${installed} 2>/dev/null)" = "$expected" ]; then exit 0; fi`,
    "# Its directory keeps the mode the bootstrap gave it (0700 on a link host: the config is there).",
    "write_status() {",
    `  if [ ! -d "$(dirname ${status})" ]; then install -d -m 0700 "$(dirname ${status})"; fi`,
    `  printf '%s\\n' "$1" > ${status}.tmp && mv -f ${status}.tmp ${status}`,
    "}",
    "report() {",
    ...(o.readHostUri && o.role === "agent"
      ? [`  { ${o.readHostUri} | node "$root${INSTALL_FILES.reporter}" "$1" "$2"; } || echo "sitelink: could not report the problem to the state service" >&2`]
      : ["  : # no host identity to report with: the state service's own readiness shows it"]),
    "}",
    "work=$(mktemp -d)",
    `trap 'rm -rf "$work"' EXIT`,
    'case "$source" in',
    ...(o.s3Region
      ? [`  s3://*) object=${"$"}{source#s3://}; aws s3api get-object --region ${quote(o.s3Region)} --bucket "${"$"}{object%%/*}" --key "${"$"}{object#*/}" "$work/fetched" >/dev/null ;;`]
      : []),
    '  gs://*) gcloud storage cp --quiet "$source" "$work/fetched" ;;',
    '  https://*|http://*) curl -fsSL -o "$work/fetched" "$source" ;;',
    '  npm:*) (cd "$work" && npm pack --loglevel=error "${source#npm:}" >/dev/null) && mv "$work"/*.tgz "$work/fetched" ;;',
    '  /*) cp "$root$source" "$work/fetched" ;;',
    '  *) echo "sitelink: cannot fetch the agent from $source" >&2; exit 1 ;;',
    "esac",
    'got=$(sha256sum "$work/fetched")',
    'got=${got%% *}',
    'if [ "$got" != "$expected" ]; then',
    '  message="agent integrity mismatch: expected $expected got $got ($source)"',
    '  echo "sitelink: $message" >&2',
    `  write_status "{\\"ok\\":false,\\"kind\\":\\"integrity\\",\\"message\\":\\"$message\\"}"`,
    '  report integrity "$message"',
    "  exit 1",
    "fi",
    `if tar -tzf "$work/fetched" package/${PACKAGED_BUNDLE} >/dev/null 2>&1; then`,
    `  tar -xzf "$work/fetched" -C "$work" package/${PACKAGED_BUNDLE}`,
    `  mv -f "$work/package/${PACKAGED_BUNDLE}" "$work/fetched"`,
    "fi",
    `install -d -m 0755 "$root${SITELINK_DIR}" "$root${posix.dirname(SITELINK_BIN)}"`,
    `install -m 0755 "$work/fetched" "$root${SITELINK_BUNDLE}.new"`,
    `mv -f "$root${SITELINK_BUNDLE}.new" "$root${SITELINK_BUNDLE}"`,
    `ln -sfn ${SITELINK_BUNDLE} "$root${SITELINK_BIN}"`,
    `cat > "$root/etc/systemd/system/${posix.basename(unit)}" <<'SITELINK_UNIT'`,
    packagedFile(unit).trimEnd(),
    "SITELINK_UNIT",
    `echo "$expected" > ${installed}`,
    `write_status '{"ok":true}'`,
    `echo "sitelink: installed agent $expected ($source)"`,
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

/**
 * Installs sitelink once, for a script that runs to completion (the SSH install): Node.js (from
 * NodeSource when the host's is older than 20), then the agent that `specFile` (JSON with
 * agentSource and agentSha256) names, through the installer, which also writes the agent's unit.
 * A fetched agent is retried (the network); a staged one is not: its bytes will not change.
 */
export function installSitelink(specFile: string, fetched: boolean): string {
  return [
    installNode("nodesource"),
    section("The agent, verified against its SHA-256.", [
      `install -d -m 0755 "$root${SITELINK_DIR}"`,
      writeFile(INSTALL_FILES.installer, "0755", renderInstaller({ role: "agent" })),
      `${fetched ? "retry " : ""}"$root${INSTALL_FILES.installer}" "$root${specFile}"`,
    ]),
  ].join("\n\n");
}

/** What charon reads only when it starts: its settings (our tuning among them) and its plugins. */
const CHARON_INPUTS = [HOST_TUNING_FILES.charon, "/etc/strongswan.d/charon", "/usr/lib/ipsec/plugins"] as const;

/**
 * Starts charon for good. apt starts it while it installs the packages, before every plugin (vici,
 * curve25519, ...) and the tuning above are in place: such a charon lacks the VICI socket or
 * refuses our proposals ("DH group CURVE_25519 not supported") and never gets a tunnel. It is
 * restarted when it is not running, has no VICI socket, or started no later than the newest of
 * CHARON_INPUTS changed — and only then: on an existing host it may carry the operator's own
 * tunnels (an unchanged file keeps its time: writeFile replaces only what differs).
 */
export const START_CHARON = [
  "systemctl enable strongswan-starter.service",
  `charon_since="$(systemctl show -p ActiveEnterTimestamp --value strongswan-starter.service)"`,
  `charon_since="$(date -d "\${charon_since:-@0}" +%s 2>/dev/null || echo 0)"`,
  `charon_inputs="$({ stat -c %Y ${CHARON_INPUTS.map((p) => `"$root${p}"`).join(" ")} 2>/dev/null || true; } | sort -n | tail -n 1)"`,
  `if ! systemctl is-active --quiet strongswan-starter.service || [ ! -S "$root/var/run/charon.vici" ] || [ "$charon_since" -le "\${charon_inputs:-0}" ]; then`,
  "  systemctl restart strongswan-starter.service",
  "fi",
] as const;

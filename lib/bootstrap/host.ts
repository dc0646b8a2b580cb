// What every sitelink host's script shares, whatever its cloud or role: the packages, where sitelink
// is installed and how (the installer, Node.js), the system tuning, and the refresh timer that keeps
// the package and the host's files in step with what Pulumi keeps in the cloud's store, so a changed
// program never needs new user data.
import { posix } from "node:path";
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
  /** `install-sitelink SPEC`: the bundle and units from the package tarball. */
  installer: `${SITELINK_DIR}/install-sitelink`,
  /** The spec of the package installed last (rewritten only after a successful install). */
  packageSpec: `${SITELINK_DIR}/package-spec`,
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
 * ($changed). `install_package` reinstalls sitelink from a new package spec.
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
    "# A new package spec: install that package before recording it.",
    `install_package() { "$root${INSTALL_FILES.installer}" "$(cat "$1")"; }`,
    ...steps,
  ].join("\n");
}

/**
 * Installs the installer, a refresh script (renderFetchScript) and the oneshot service and timer
 * running it, then runs it once: its first run installs sitelink and writes the host's files.
 */
export function refreshSetup(o: { role: keyof typeof PACKAGED_UNITS; unit: string; what: string; store: string; path: string; text: string; randomDelay: boolean }): string[] {
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
 * to the bundle, the role's unit installed. The bundle is all either role runs (the state service's
 * SQLite is embedded in it). A separate script, so its own `set -e` holds even where the
 * caller runs it as a condition (retry).
 */
export function renderInstaller(role: keyof typeof PACKAGED_UNITS): string {
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

// The boot script of a state service host, whatever its cloud: its data disk, the package and files
// kept current from the cloud's store, and the service unit with this host's paths. No secret ever
// goes into it: the host reads its keys from the cloud's secret store at run time.
import { fetchLine, installNode, refreshSetup, renderFetchScript, SITELINK_BIN, SITELINK_DIR, type InstallerOptions, type ItemStore, type NodeSource } from "./host";
import { script, section, writeFile } from "./shell";

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
  /** The agent item: JSON with agentSource and agentSha256 (what install-sitelink takes). */
  agent: "/etc/sitelink/agent-source.json",
} as const;

/** Items of the state host: the agent to install (JSON with agentSource, agentSha256), the topology, the TLS certificate and key, the master key. */
export interface StateItems {
  agent: string;
  topology: string;
  tlsCert: string;
  masterKey: string;
  tlsKey: string;
}

/** What differs between clouds in the state host's bootstrap: its secret store and data disk. */
export interface StateHostCloud {
  store: ItemStore;
  /** The data disk: how it is named in the section title, the shell variable naming it, where it shows up. */
  disk: { kind: string; variable: string; candidates: string; missing: string };
  dropIn: string;
  items: StateItems;
  /** How this host fetches the agent (the `s3://` region). */
  installer?: Omit<InstallerOptions, "role" | "readHostUri">;
}

export function renderStateHostBootstrap(opts: { port: number; nodeSource?: NodeSource }, cloud: StateHostCloud): string {
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
    fetchLine(p.agent, f.agent, "0644", "install_agent"),
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
      ...refreshSetup({ installer: { ...cloud.installer, role: "state" }, unit: "sitelink-state-files", what: "the state service's package and files", store: cloud.store.store, path: f.fetchScript, text: fetch, randomDelay: false }),
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

// The boot script of a cloud link host, whatever its cloud: packages, Node.js, forwarding, and the
// refresh timer that installs the agent (verified against its SHA-256) and keeps it and its config current. No secret ever
// goes into it: the agent reads its host URI from the cloud's secret store at start.
import { agentConfigSchema, DEFAULT_CONFIG_PATH, type AgentConfigInput } from "../../agent/contract/agent-config";
import { ACTIVE_STATUS_LINE, DEFAULT_STATUS_PATH } from "../../agent/contract/status";
import { ACTIVE_RESTART_DELAY_SECONDS, fetchLine, HOST_PACKAGES, hostTuning, installNode, refreshSetup, renderFetchScript, SITELINK_DIR, START_CHARON, type InstallerOptions, type ItemStore, type NodeSource } from "./host";
import { installPackages, quote, script, section } from "./shell";

/** Files of a cloud link host's refresh. */
export const AGENT_FILES = {
  config: DEFAULT_CONFIG_PATH,
  refreshScript: `${SITELINK_DIR}/refresh-agent`,
} as const;

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

/**
 * `items.config` names the item holding the agent config, which also names the agent to install
 * (agentSource, agentSha256); `installer` says how this host fetches it and reports a refusal.
 */
export function renderLinkHostBootstrap(store: ItemStore, items: { config: string }, installer: Omit<InstallerOptions, "role">, nodeSource: NodeSource = "nodesource"): string {
  const f = AGENT_FILES;
  const refresh = renderFetchScript(store, "the sitelink agent and its config", [
    "# The config names the agent (agentSource, agentSha256): a verified install comes before the config moves.",
    fetchLine(items.config, f.config, "0600", "install_agent"),
    "# A new version or config takes effect with a restart; the agent's SIGTERM hands the active role",
    "# to another host first. Standbys restart first: the active host waits until every other host of",
    "# its location, whose refresh runs within the same window, is back. A no-op while the agent is not",
    "# running (first boot).",
    `if [ "$changed" = 1 ]; then`,
    `  if grep -qsF ${quote(ACTIVE_STATUS_LINE)} "$root${DEFAULT_STATUS_PATH}"; then sleep ${ACTIVE_RESTART_DELAY_SECONDS}; fi`,
    "  systemctl try-restart sitelink-agent.service",
    "fi",
  ]);
  return script(`sitelink link host bootstrap. Holds no secret: the agent reads its host URI from the secret store at start; its config, and the agent it names, come from ${store.store}.`, [
    installPackages(HOST_PACKAGES),
    ...(store.setup ? [store.setup] : []),
    installNode(nodeSource),
    ...hostTuning(true, " (IPv6 too, so a link that gains IPv6 routes needs no new bootstrap)"),
    section(`Agent and config, kept in step with ${store.store} by a timer; the first run installs the agent.`, [
      `install -d -m 0700 "$root/etc/sitelink"`,
      `install -d -m 0755 "$root${SITELINK_DIR}"`,
      ...refreshSetup({ installer: { ...installer, role: "agent" }, unit: "sitelink-agent-refresh", what: "the sitelink agent and its config", store: store.store, path: f.refreshScript, text: refresh, randomDelay: true }),
    ]),
    section("Start charon, the agent and the refresh timer.", [
      "systemctl daemon-reload",
      ...START_CHARON,
      "systemctl enable --now sitelink-agent.service",
      "systemctl enable --now sitelink-agent-refresh.timer",
    ]),
  ]);
}

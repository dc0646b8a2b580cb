// `sitelink run`: builds the real seams from agent.json (strongSwan over VICI, host check prober and
// listener, iptables firewall and MSS clamp, route provider) and runs the reconcile loop until SIGTERM/SIGINT.
// SIGHUP reloads agent.json: firewall, remove-routes, host-check, mtu and log level apply at once; changes
// that need new seams (URIs, provider, addresses, VICI socket, ports) are logged as needing a restart.
import { rm } from "node:fs/promises";
import type { AgentConfig } from "../contract/agent-config";
import { loadConfig } from "./config-file";
import { detectAddresses } from "./addresses";
import { createLogger, errorMessage, type Logger } from "./log";
import { ReconcileLoop, type ReconcileOptions, type SelfInfo } from "./reconcile";
import { StateClient } from "./state-client";
import { writeStatus, type AgentStatus } from "./status";
import { resolveHostUri, type UriSourceOptions } from "./uri-sources";
import { agentVersion } from "../contract/version";
import { installProblemReader } from "./install-status";
import { StrongswanDriver } from "./ipsec/driver";
import { IptablesFirewall } from "./firewall";
import { IptablesMssClamp } from "./mss-clamp";
import { HostCheckListener, HostCheckProber } from "./hostcheck";
import { createRouteProvider, ROUTE_PROVIDER_SECTIONS } from "./routes";
import type { HostChecker, RouteProvider } from "./types";

export interface RunAgentOptions {
  configPath: string;
  statusPath: string;
  log?: Logger;
  uriSources?: UriSourceOptions;
}

/** Config fields whose change needs new seams, i.e. a restart of the agent. */
const RESTART_FIELDS = ["uris", "uriSources", "provider", ...ROUTE_PROVIDER_SECTIONS, "publicAddress", "privateAddress", "viciSocket", "hostCheckPort"] as const;

export async function runAgent(opts: RunAgentOptions): Promise<number> {
  let config = await loadConfig(opts.configPath);
  const log = opts.log ?? createLogger(config.logLevel);
  const uri = await resolveHostUri(config, opts.uriSources);
  const self: SelfInfo = { hostId: uri.hostId, ...detectAddresses(config), hostCheckPort: config.hostCheckPort };
  log.info("agent starting", { version: agentVersion(), hostId: self.hostId, publicAddress: self.publicAddress, privateAddress: self.privateAddress, provider: config.provider });

  // Seams that can refuse the config (provider section missing, port taken) come first, so a
  // refusal leaves nothing running.
  let routes: RouteProvider;
  const listener = new HostCheckListener({ hostId: self.hostId, port: config.hostCheckPort, log });
  try {
    routes = createRouteProvider(config, self);
    if (config.hostCheck) await listener.start();
  } catch (err) {
    log.error("agent cannot start", { error: errorMessage(err) });
    return 1;
  }
  const firewall = new IptablesFirewall({ hostCheckPort: config.hostCheckPort });
  const checker = servedHostChecker(new HostCheckProber({ hostId: self.hostId, log }), listener);
  const ipsec = StrongswanDriver.start({ viciSocket: config.viciSocket, log });
  const state = new StateClient(uri);
  const status = new StatusWriter(opts.statusPath, log);

  const loop = new ReconcileLoop({
    state,
    ipsec,
    routes,
    firewall,
    mss: new IptablesMssClamp(),
    checker,
    self,
    options: reconcileOptions(config),
    agentVersion: agentVersion(),
    installProblem: installProblemReader(log),
    log,
    onStatus: (s) => status.write(s),
  });

  // The graceful stop (offline message included) is awaited before anything closes: the loop itself
  // exits as soon as its poll is aborted, and exiting then would drop the offline message.
  let stopped: Promise<void> | undefined;
  const onStop = (signal: NodeJS.Signals) => {
    if (stopped) return;
    log.info("stopping: tunnels stay up for the new active host", { signal });
    stopped = loop.stop(signal);
  };
  const onReload = () => {
    void reload().catch((err) => log.error("config reload failed", { error: errorMessage(err) }));
  };
  const reload = async () => {
    let next: AgentConfig;
    try {
      next = await loadConfig(opts.configPath);
    } catch (err) {
      log.error("config reload refused: keeping the running config", { error: errorMessage(err) });
      return;
    }
    log.setLevel(next.logLevel);
    if (next.hostCheck && !config.hostCheck) await listener.start();
    if (!next.hostCheck && config.hostCheck) await listener.close();
    const restart = RESTART_FIELDS.filter((f) => JSON.stringify(next[f]) !== JSON.stringify(config[f]));
    if (restart.length) log.warn("config changes that take effect after a restart (systemctl restart sitelink-agent)", { fields: restart });
    config = next;
    loop.updateOptions(reconcileOptions(next));
    log.info("config reloaded");
  };
  process.on("SIGTERM", onStop);
  process.on("SIGINT", onStop);
  process.on("SIGHUP", onReload);
  try {
    await loop.start();
    await stopped;
  } finally {
    process.off("SIGTERM", onStop);
    process.off("SIGINT", onStop);
    process.off("SIGHUP", onReload);
    state.close();
    await Promise.allSettled([ipsec.close(), checker.close(), listener.close()]);
    await status.remove();
  }
  log.info("agent stopped");
  return 0;
}

function reconcileOptions(config: AgentConfig): ReconcileOptions {
  return { firewall: config.firewall, removeRoutes: config.removeRoutes, hostCheck: config.hostCheck, mtu: config.mtu };
}

/** The prober, plus the listener answering with the same link-wide key, to the link's hosts alone, within a probe timeout. */
function servedHostChecker(prober: HostCheckProber, listener: HostCheckListener): HostChecker {
  return {
    setTargets(targets, key, timing, allow) {
      listener.update({ key, allow, requestTimeoutMs: timing.probeTimeout * 1000 });
      prober.setTargets(targets, key, timing);
    },
    results: () => prober.results(),
    onChange: (l) => prober.onChange(l),
    close: () => prober.close(),
  };
}

/** Writes status snapshots one at a time; a snapshot that arrives during a write replaces the queued one. */
class StatusWriter {
  private queued: AgentStatus | undefined;
  private writing: Promise<void> | undefined;
  private failing = false;

  constructor(
    private readonly path: string,
    private readonly log: Logger,
  ) {}

  write(status: AgentStatus): void {
    this.queued = status;
    this.writing ??= this.drain();
  }

  async remove(): Promise<void> {
    await this.writing;
    await rm(this.path, { force: true });
  }

  private async drain(): Promise<void> {
    while (this.queued) {
      const next = this.queued;
      this.queued = undefined;
      try {
        await writeStatus(this.path, next);
        this.failing = false;
      } catch (err) {
        if (!this.failing) this.log.warn("cannot write the status file", { path: this.path, error: errorMessage(err) });
        this.failing = true;
      }
    }
    this.writing = undefined;
  }
}

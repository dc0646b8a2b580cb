// `sitelink teardown`: what an uninstall runs once the agent is stopped. A stopped agent leaves its
// tunnels and iptables chains in place on purpose (the data plane never depends on it); an
// uninstalled one must not. This unloads the agent's own (`sitelink-`) connections and PSKs from
// charon, closing their SAs, and removes its firewall and MSS chains. Nothing else in charon or
// iptables is touched, so an operator's other tunnels on a shared host stay up.
import type { AgentConfig } from "../contract/agent-config";
import { IptablesFirewall } from "./firewall";
import { NAME_PREFIX } from "./ipsec/render";
import { errorMessage } from "./log";
import { IptablesMssClamp } from "./mss-clamp";
import type { Firewall, MssClamp } from "./types";
import { ViciCommandError, ViciConnectionError } from "./vici/connection";
import { ViciSession } from "./vici/session";

export interface TeardownResult {
  /** Connections and PSK ids unloaded from charon. */
  conns: string[];
  secrets: string[];
  /** One line per part that failed (the rest is still done). */
  failures: string[];
}

export async function teardown(config: AgentConfig): Promise<TeardownResult> {
  const result: TeardownResult = { conns: [], secrets: [], failures: [] };
  const session = new ViciSession(config.viciSocket);
  try {
    await unloadOwn(session, result);
  } catch (error) {
    // No charon (stopped, never installed): nothing is loaded in it.
    if (!(error instanceof ViciConnectionError)) result.failures.push(`ipsec: ${errorMessage(error)}`);
  } finally {
    session.close();
  }
  // Only what the config turned on: on a host that never used them, the tools may not even exist.
  const chains: [boolean, Pick<Firewall | MssClamp, "remove">][] = [
    [config.firewall, new IptablesFirewall({ hostCheckPort: config.hostCheckPort })],
    [config.mtu !== undefined, new IptablesMssClamp()],
  ];
  for (const [used, chain] of chains) {
    if (!used) continue;
    await chain.remove().catch((error: unknown) => result.failures.push(errorMessage(error)));
  }
  return result;
}

async function unloadOwn(session: ViciSession, result: TeardownResult): Promise<void> {
  for (const name of (await session.getConns()).filter((n) => n.startsWith(NAME_PREFIX))) {
    // Unloading a responder's connection leaves its SAs up: close them first.
    await session.terminate({ ike: name, force: true, timeout: -1 }).catch(alreadyGone);
    await session.unloadConn(name).catch(alreadyGone);
    result.conns.push(name);
  }
  for (const id of (await session.getShared()).filter((i) => i.startsWith(NAME_PREFIX))) {
    await session.unloadShared(id).catch(alreadyGone);
    result.secrets.push(id);
  }
}

/** charon refusing (e.g. terminating a connection that has no SA) means there is nothing left to do. */
function alreadyGone(error: unknown): void {
  if (!(error instanceof ViciCommandError)) throw error;
}

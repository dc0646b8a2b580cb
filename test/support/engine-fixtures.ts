// Test fixtures for the failover engine: small topologies and agent reports.
import { parseTopology, type Topology, type TopologyInput } from "../../agent/contract/topology";
import type { HostCheckResult, HostReport } from "../../agent/contract/protocol";

export interface HostSpec {
  id: string;
  priority?: number;
  timeout?: number;
  backoff?: number;
}

/**
 * One link "corp" with the given locations (name → hosts); each location gets its own 10.n/16. Its
 * timing is a 1 s heartbeat (crashConfirm 1.5 s): the engine's tests count in those steps.
 */
export function topologyOf(locations: Record<string, HostSpec[]>, link: Partial<TopologyInput["links"][number]> = {}): Topology {
  return parseTopology({
    version: 1,
    links: [
      {
        name: "corp",
        locations: Object.entries(locations).map(([name, hosts], i) => ({
          name,
          routes: [`10.${i}.0.0/16`],
          hosts: hosts.map((h) => ({ name: h.id.replace(/[^a-z0-9-]/g, "-"), ...h })),
        })),
        timing: { heartbeat: 1 },
        ...link,
      },
    ],
  });
}

/** A host-check result: `reachable` or failed `failures` times in a row, `ageMs` old when sent. */
export function check(target: string, reachable: boolean, ageMs = 0, failures = reachable ? 0 : 3): HostCheckResult {
  return { target, reachable, failures, ageMs };
}

export function report(hostChecks: HostCheckResult[] = []): HostReport {
  return {
    agentVersion: "test",
    role: "standby",
    appliedGeneration: 0,
    tunnels: [],
    hostChecks,
    routes: { provider: "file", applied: [] },
  };
}

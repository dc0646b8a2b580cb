// What the operator endpoint answers: every link, location and host as the service sees them now.
// Pure: the core hands in its engine views, stored reports and problems.
import { PROTOCOL_VERSION, type InstallProblem, type OperatorHost, type OperatorStatus } from "../contract/protocol";
import { connectedPairs, type Topology } from "../contract/topology";
import type { HostView } from "./engine";
import type { StoredReport } from "./store";

/** A problem a host posted to /v1/problem, with when (service wall clock). */
export interface PostedProblem extends InstallProblem {
  at: number;
}

export interface OperatorStatusInput {
  topology: Topology;
  /** By host id; times on the engine's monotonic clock. */
  views: Map<string, HostView>;
  reports: Map<string, StoredReport>;
  problems: Map<string, PostedProblem>;
  activeHost(link: string, location: string): string | null;
  /** The engine's monotonic clock now. */
  now: number;
  /** The wall clock now. */
  wallNow: number;
  generation: number;
}

export function renderOperatorStatus(input: OperatorStatusInput): OperatorStatus {
  const toWall = (t: number) => Math.max(0, Math.round(t + input.wallNow - input.now));
  const host = (id: string): OperatorHost => {
    const view = input.views.get(id);
    const stored = input.reports.get(id);
    return {
      id,
      status: view?.status ?? "offline",
      role: view?.role ?? "standby",
      lastContactMsAgo: view?.lastSeen == null ? null : Math.max(0, Math.round(input.now - view.lastSeen)),
      offlineSince: view?.offlineSince == null ? null : toWall(view.offlineSince),
      agentVersion: stored?.report.agentVersion ?? null,
      tunnels: (stored?.report.tunnels ?? []).map((t) => ({ location: t.location, state: t.state })),
      lastProblem: lastProblem(stored, input.problems.get(id)),
    };
  };
  return {
    protocol: PROTOCOL_VERSION,
    generation: input.generation,
    serverTime: input.wallNow,
    links: input.topology.links.map((link) => {
      const pairs = connectedPairs(link);
      return {
        name: link.name,
        locations: link.locations.map((location) => ({
          name: location.name,
          activeHost: input.activeHost(link.name, location.name),
          connectedTo: pairs.flatMap(([a, b]) => (a === location.name ? [b] : b === location.name ? [a] : [])),
          hosts: location.hosts.map((h) => host(h.id)),
        })),
      };
    }),
  };
}

/** The newer of the problem the running agent reports and the one posted without it. */
function lastProblem(stored: StoredReport | undefined, posted: PostedProblem | undefined): OperatorHost["lastProblem"] {
  const reported = stored?.report.installProblem && { ...stored.report.installProblem, at: stored.at, source: "report" as const };
  const fromPost = posted && { ...posted, source: "problem" as const };
  if (reported && fromPost) return reported.at >= fromPost.at ? reported : fromPost;
  return reported ?? fromPost ?? null;
}

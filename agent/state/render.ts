// The desired state of one host: a pure function of the topology, the engine's roles, what hosts
// reported, and the link's secrets. A link is indexed once per topology load, so rendering one host
// costs the size of its own output; the firewall allowlist, the same for every host of a link, is
// kept once per link (Allowlist) and spliced into each answer (desiredStateJson).
import { connectedPairs, type Host, type Link, type Location } from "../contract/topology";
import { DEFAULT_HOST_CHECK_PORT, PROTOCOL_VERSION, type DesiredState, type HostCheckTarget, type PeerHost, type PeerLocation, type UnchangedState } from "../contract/protocol";

/** What a host reported that renders use: addresses where the topology names none, its host-check port. */
export interface ReportedHost {
  publicAddress?: string;
  privateAddress?: string;
  hostCheckPort?: number;
}

export interface IndexedLocation {
  readonly location: Location;
  /** Connected locations, in the order of the link's connections (or the full mesh). */
  readonly peers: IndexedLocation[];
  /** The peers' routes: what an active host of this location points at itself. */
  readonly remoteRoutes: string[];
}

/** A link's hosts and locations by name, and who connects to whom. */
export class LinkIndex {
  readonly hosts = new Map<string, { host: Host; location: IndexedLocation }>();
  readonly locations = new Map<string, IndexedLocation>();
  readonly ike: DesiredState["peers"][number]["ike"];
  readonly esp: DesiredState["peers"][number]["esp"];

  constructor(readonly link: Link) {
    for (const location of link.locations) {
      const indexed: IndexedLocation = { location, peers: [], remoteRoutes: [] };
      this.locations.set(location.name, indexed);
      for (const host of location.hosts) this.hosts.set(host.id, { host, location: indexed });
    }
    for (const [a, b] of connectedPairs(link)) {
      const la = this.locations.get(a)!;
      const lb = this.locations.get(b)!;
      la.peers.push(lb);
      lb.peers.push(la);
    }
    for (const indexed of this.locations.values()) indexed.remoteRoutes.push(...indexed.peers.flatMap((p) => p.location.routes));
    // The preferred proposal alone when forced, else followed by strongSwan's `default` keyword.
    const { ike, esp, force } = link.cipher;
    this.ike = force ? [ike] : [ike, "default"];
    this.esp = force ? [esp] : [esp, "default"];
  }

  /** The host ids of a location and of every location connected to it: whose state an event there can change. */
  neighbourhood(location: string): string[] {
    const home = this.locations.get(location);
    if (!home) return [];
    return [home, ...home.peers].flatMap((l) => l.location.hosts.map((h) => h.id));
  }
}

export interface RenderInput {
  index: LinkIndex;
  hostId: string;
  /** The host's own role as the engine decided it. */
  role: "active" | "standby";
  /** The engine's active host of a location of this link, or null. */
  activeHost(location: string): string | null;
  reported(hostId: string): ReportedHost | undefined;
  /** PSK (base64) of a location pair of this link. */
  psk(a: string, b: string): string;
  /** Link-wide host-check key (base64url). */
  hostCheckKey: string;
}

/** The desired state without the firewall allowlist (kept per link), `generation`, `etag` and `serverTime` (added per answer). */
export type RenderedHost = Omit<DesiredState, "firewall" | "generation" | "etag" | "serverTime">;

export function renderHost(input: RenderInput): RenderedHost {
  const { index, hostId, role } = input;
  const self = index.hosts.get(hostId);
  if (!self) throw new Error(`host "${hostId}" is not in link "${index.link.name}"`);
  const own = self.location;
  const addressesOf = (id: string) => {
    const host = index.hosts.get(id)?.host;
    const reported = input.reported(id);
    return {
      publicAddress: host?.publicAddress ?? reported?.publicAddress,
      privateAddress: host?.privateAddress ?? reported?.privateAddress,
      hostCheckPort: reported?.hostCheckPort ?? DEFAULT_HOST_CHECK_PORT,
    };
  };
  const peerHost = (id: string): PeerHost => {
    const publicAddress = addressesOf(id).publicAddress;
    return publicAddress === undefined ? { id } : { id, publicAddress };
  };

  const peers: PeerLocation[] =
    role !== "active"
      ? []
      : own.peers.map(({ location: peer }) => {
          const active = input.activeHost(peer.name);
          return {
            location: peer.name,
            activeHost: active === null ? null : peerHost(active),
            hosts: peer.hosts.map((h) => peerHost(h.id)),
            localSubnets: [...own.location.routes],
            remoteSubnets: [...peer.routes],
            psk: input.psk(own.location.name, peer.name),
            ike: [...index.ike],
            esp: [...index.esp],
            initiator: own.location.name < peer.name,
          };
        });

  const targets: HostCheckTarget[] = [];
  for (const host of own.location.hosts) {
    if (host.id === hostId) continue;
    const { privateAddress, hostCheckPort } = addressesOf(host.id);
    if (privateAddress !== undefined) targets.push({ hostId: host.id, address: privateAddress, port: hostCheckPort, scope: "location" });
  }
  for (const { location: peer } of own.peers) {
    for (const host of peer.hosts) {
      const { publicAddress, hostCheckPort } = addressesOf(host.id);
      if (publicAddress !== undefined) targets.push({ hostId: host.id, address: publicAddress, port: hostCheckPort, scope: "peer" });
    }
  }

  const { timing } = index.link;
  return {
    protocol: PROTOCOL_VERSION,
    hostId,
    link: index.link.name,
    location: own.location.name,
    role,
    activeHost: input.activeHost(own.location.name),
    peers,
    hostCheck: { key: input.hostCheckKey, targets },
    routes: { pointHere: role === "active" ? [...own.remoteRoutes] : [] },
    timing: { heartbeat: timing.heartbeat, probeInterval: timing.probeInterval, probeTimeout: timing.probeTimeout },
  };
}

/** The addresses a host adds to its link's allowlist: the topology's and the reported ones. */
export function allowedAddresses(host: Host, reported: ReportedHost | undefined): string[] {
  const all = [host.publicAddress, host.privateAddress, reported?.publicAddress, reported?.privateAddress];
  return [...new Set(all.filter((a): a is string => a !== undefined))];
}

/**
 * The firewall allowlist of a link: every address of every host of it. Addresses are counted per
 * host, so one host's change costs O(its addresses) and says whether the list changed.
 */
export class Allowlist {
  private readonly counts = new Map<string, number>();
  private readonly byHost = new Map<string, string[]>();

  /** Sets the addresses one host adds; true when the list changed. */
  set(hostId: string, addresses: string[]): boolean {
    const before = this.byHost.get(hostId) ?? [];
    let changed = false;
    for (const a of before) {
      const n = this.counts.get(a)! - 1;
      if (n === 0) this.counts.delete(a);
      else this.counts.set(a, n);
    }
    for (const a of addresses) this.counts.set(a, (this.counts.get(a) ?? 0) + 1);
    for (const a of before) if (!this.counts.has(a)) changed = true;
    for (const a of addresses) if (this.counts.get(a) === 1 && !before.includes(a)) changed = true;
    if (addresses.length === 0) this.byHost.delete(hostId);
    else this.byHost.set(hostId, addresses);
    return changed;
  }

  addresses(): string[] {
    return [...this.counts.keys()].sort();
  }
}

/** One answer: a host's rendered state (JSON) with its link's allowlist (JSON array) and the per-answer fields. */
export function desiredStateJson(hostJson: string, allowJson: string, generation: number, serverTime: number, etag: string): string {
  return `${hostJson.slice(0, -1)},"firewall":{"allow":${allowJson}},"generation":${generation},"etag":"${etag}","serverTime":${serverTime}}`;
}

/** The answer to an agent that already holds the state `etag` names. */
export function unchangedStateJson(hostId: string, generation: number, serverTime: number, etag: string): string {
  return JSON.stringify({ protocol: PROTOCOL_VERSION, generation, hostId, unchanged: true, etag, serverTime } satisfies UnchangedState);
}

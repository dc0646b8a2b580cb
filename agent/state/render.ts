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
  /** Whether a host may carry its location's tunnels now (the engine's inService): peers accept IKE from these only. */
  inService(hostId: string): boolean;
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
  const addressesOf = (id: string) => effectiveAddresses(index.hosts.get(id)!.host, input.reported(id));
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
            hosts: peer.hosts.filter((h) => input.inService(h.id)).map((h) => peerHost(h.id)),
            localSubnets: [...own.location.routes],
            remoteSubnets: [...peer.routes],
            psk: input.psk(own.location.name, peer.name),
            ike: [...index.ike],
            esp: [...index.esp],
            initiator: own.location.name < peer.name,
          };
        });

  const targets: HostCheckTarget[] = [];
  for (const location of [own, ...own.peers]) {
    for (const host of location.location.hosts) {
      const target = probeTarget(index, hostId, host.id, input.reported(host.id));
      if (target) targets.push(target);
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

/**
 * A host's addresses and host-check port as handed out: what the topology pins wins, a reported
 * value fills only what it leaves open (a host cannot move itself off its pinned addresses).
 */
export function effectiveAddresses(host: Host, reported: ReportedHost | undefined): { publicAddress?: string; privateAddress?: string; hostCheckPort: number } {
  return {
    publicAddress: host.publicAddress ?? reported?.publicAddress,
    privateAddress: host.privateAddress ?? reported?.privateAddress,
    hostCheckPort: host.hostCheckPort ?? reported?.hostCheckPort ?? DEFAULT_HOST_CHECK_PORT,
  };
}

/**
 * What `proberId` is told to probe of `targetId`: a host of its own location on its private address,
 * a host of a connected location on its public address; undefined for any other host, and for one
 * whose address nobody knows. Reported results about anything else are no evidence.
 */
export function probeTarget(index: LinkIndex, proberId: string, targetId: string, reported: ReportedHost | undefined): HostCheckTarget | undefined {
  const prober = index.hosts.get(proberId);
  const target = index.hosts.get(targetId);
  if (!prober || !target || proberId === targetId) return undefined;
  const { publicAddress, privateAddress, hostCheckPort: port } = effectiveAddresses(target.host, reported);
  if (target.location === prober.location) return privateAddress === undefined ? undefined : { hostId: targetId, address: privateAddress, port, scope: "location" };
  if (!prober.location.peers.includes(target.location)) return undefined;
  return publicAddress === undefined ? undefined : { hostId: targetId, address: publicAddress, port, scope: "peer" };
}

/** The addresses a host adds to its link's allowlist: its effective ones (effectiveAddresses). */
export function allowedAddresses(host: Host, reported: ReportedHost | undefined): string[] {
  const { publicAddress, privateAddress } = effectiveAddresses(host, reported);
  return [...new Set([publicAddress, privateAddress].filter((a): a is string => a !== undefined))];
}

/**
 * The firewall allowlist of a link: every address of every host of it, with the hosts that hold
 * each (so a reported address another host holds can be told apart). One host's change costs
 * O(its addresses) and says whether the list changed.
 */
export class Allowlist {
  private readonly holders = new Map<string, Set<string>>();
  private readonly byHost = new Map<string, string[]>();

  /** Sets the addresses one host adds; true when the list changed. */
  set(hostId: string, addresses: string[]): boolean {
    const before = this.byHost.get(hostId) ?? [];
    let changed = false;
    for (const a of before) {
      const holders = this.holders.get(a)!;
      holders.delete(hostId);
      if (holders.size === 0) this.holders.delete(a);
    }
    for (const a of addresses) {
      let holders = this.holders.get(a);
      if (!holders) this.holders.set(a, (holders = new Set()));
      holders.add(hostId);
    }
    for (const a of before) if (!this.holders.has(a)) changed = true;
    for (const a of addresses) if (this.holders.get(a)!.size === 1 && !before.includes(a)) changed = true;
    if (addresses.length === 0) this.byHost.delete(hostId);
    else this.byHost.set(hostId, addresses);
    return changed;
  }

  /** The hosts whose addresses include `address`. */
  holdersOf(address: string): ReadonlySet<string> {
    return this.holders.get(address) ?? NOBODY;
  }

  addresses(): string[] {
    return [...this.holders.keys()].sort();
  }
}

const NOBODY: ReadonlySet<string> = new Set();

/** One answer: a host's rendered state (JSON) with its link's allowlist (JSON array) and the per-answer fields. */
export function desiredStateJson(hostJson: string, allowJson: string, generation: number, serverTime: number, etag: string): string {
  return `${hostJson.slice(0, -1)},"firewall":{"allow":${allowJson}},"generation":${generation},"etag":"${etag}","serverTime":${serverTime}}`;
}

/** The answer to an agent that already holds the state `etag` names. */
export function unchangedStateJson(hostId: string, generation: number, serverTime: number, etag: string): string {
  return JSON.stringify({ protocol: PROTOCOL_VERSION, generation, hostId, unchanged: true, etag, serverTime } satisfies UnchangedState);
}

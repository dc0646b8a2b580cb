// The desired state of one host: a pure function of the topology, the engine's roles, the
// addresses hosts reported, and the link's secrets. The service caches its output per host and
// compares renders to know whose state changed.
import { connectedPairs, type Link } from "../../lib/topology";
import { HOST_CHECK_PORT } from "../host/config";
import { PROTOCOL_VERSION, type DesiredState, type HostCheckTarget, type PeerHost, type PeerLocation } from "../protocol";

export interface HostAddresses {
  publicAddress?: string;
  privateAddress?: string;
}

export interface RenderInput {
  link: Link;
  hostId: string;
  /** The host's own role as the engine decided it. */
  role: "active" | "standby";
  /** The engine's active host of a location of this link, or null. */
  activeHost(location: string): string | null;
  /** Addresses a host last reported (used where the topology does not name one). */
  reported(hostId: string): HostAddresses | undefined;
  /** PSK (base64) of a location pair of this link. */
  psk(a: string, b: string): string;
  /** Link-wide host-check key (base64url). */
  hostCheckKey: string;
}

/** The desired state without `generation` and `serverTime`, which the service adds when it answers. */
export type RenderedState = Omit<DesiredState, "generation" | "serverTime">;

export function renderDesiredState(input: RenderInput): RenderedState {
  const { link, hostId, role } = input;
  const own = link.locations.find((l) => l.hosts.some((h) => h.id === hostId));
  if (!own) throw new Error(`host "${hostId}" is not in link "${link.name}"`);
  const addressesOf = (id: string): HostAddresses => {
    const host = link.locations.flatMap((l) => l.hosts).find((h) => h.id === id);
    const reported = input.reported(id);
    return {
      publicAddress: host?.publicAddress ?? reported?.publicAddress,
      privateAddress: host?.privateAddress ?? reported?.privateAddress,
    };
  };
  const peerHost = (id: string): PeerHost => {
    const publicAddress = addressesOf(id).publicAddress;
    return publicAddress === undefined ? { id } : { id, publicAddress };
  };

  const peerNames = connectedPairs(link).flatMap(([a, b]) => (a === own.name ? [b] : b === own.name ? [a] : []));
  const peerLocations = peerNames.map((name) => link.locations.find((l) => l.name === name)!);

  const peers: PeerLocation[] =
    role !== "active"
      ? []
      : peerLocations.map((peer) => {
          const active = input.activeHost(peer.name);
          return {
            location: peer.name,
            activeHost: active === null ? null : peerHost(active),
            hosts: peer.hosts.map((h) => peerHost(h.id)),
            localSubnets: [...own.routes],
            remoteSubnets: [...peer.routes],
            psk: input.psk(own.name, peer.name),
            ike: proposals(link.cipher.ike, link.cipher.force),
            esp: proposals(link.cipher.esp, link.cipher.force),
            initiator: own.name < peer.name,
          };
        });

  const allow = new Set<string>();
  for (const host of link.locations.flatMap((l) => l.hosts)) {
    const { publicAddress, privateAddress } = addressesOf(host.id);
    const reported = input.reported(host.id);
    for (const a of [publicAddress, privateAddress, reported?.publicAddress, reported?.privateAddress]) {
      if (a !== undefined) allow.add(a);
    }
  }

  const targets: HostCheckTarget[] = [];
  for (const host of own.hosts) {
    const address = host.id === hostId ? undefined : addressesOf(host.id).privateAddress;
    if (address !== undefined) targets.push({ hostId: host.id, address, port: HOST_CHECK_PORT, scope: "location" });
  }
  for (const peer of peerLocations) {
    for (const host of peer.hosts) {
      const address = addressesOf(host.id).publicAddress;
      if (address !== undefined) targets.push({ hostId: host.id, address, port: HOST_CHECK_PORT, scope: "peer" });
    }
  }

  return {
    protocol: PROTOCOL_VERSION,
    hostId,
    link: link.name,
    location: own.name,
    role,
    activeHost: input.activeHost(own.name),
    peers,
    firewall: { allow: [...allow].sort() },
    hostCheck: { key: input.hostCheckKey, targets },
    routes: { pointHere: role === "active" ? peerLocations.flatMap((p) => p.routes) : [] },
    timing: { heartbeat: link.timing.heartbeat, probeInterval: link.timing.probeInterval, probeTimeout: link.timing.probeTimeout },
  };
}

/** The preferred proposal alone when forced, else followed by strongSwan's `default` keyword. */
function proposals(preferred: string, force: boolean): string[] {
  return force ? [preferred] : [preferred, "default"];
}

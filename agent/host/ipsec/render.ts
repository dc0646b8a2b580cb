// Pure rendering of the strongSwan configuration the agent wants: one IKEv2 connection and one
// PSK per connected peer location, as VICI load-conn / load-shared messages. Nothing here is
// specific to userspace ESP (kernel-libipsec) or kernel ESP: that is charon's plugin choice.
import { createHash } from "node:crypto";
import { parseAddress, parseCidr } from "../../contract/net";
import type { PeerLocation } from "../../contract/protocol";
import type { ViciInput } from "../vici/message";

/** Every connection and secret the agent loads carries this prefix; nothing else is ever touched. */
export const NAME_PREFIX = "sitelink-";

/** Seconds between liveness checks of an idle peer: a dead peer is noticed after this plus retransmits. */
export const DPD_DELAY_S = 2;

export interface SelfAddresses {
  hostId: string;
  publicAddress?: string;
  privateAddress?: string;
}

export interface RenderOptions {
  /** Whether this host has `address` on one of its interfaces (decides local_addrs behind 1:1 NAT). */
  isLocalAddress(address: string): boolean;
}

export interface RenderedConn {
  name: string;
  location: string;
  /** The load-conn section for this connection. */
  config: ViciInput;
  /** Digest of `config`: equal digests mean charon already has exactly this connection. */
  digest: string;
  initiator: boolean;
  /** Address of the peer location's active host, when it has one with a public address. */
  activeAddress?: string;
  /** Peer host ids by the address/identity they use for IKE. */
  hostsByAddress: Map<string, string>;
}

export interface RenderedSecret {
  id: string;
  owners: string[];
  /** Secret: never log. */
  data: string;
  digest: string;
}

export interface RenderedConfig {
  conns: RenderedConn[];
  secrets: RenderedSecret[];
  /** Peer locations that get no connection, with the reason (e.g. no host has a public address). */
  skipped: { location: string; reason: string }[];
}

export class IpsecConfigError extends Error {
  constructor(field: string, problem: string) {
    super(`ipsec: ${field} ${problem}`);
    this.name = "IpsecConfigError";
  }
}

export function connName(location: string): string {
  return `${NAME_PREFIX}${location}`;
}

/** This host's IKE identity: its public address (what peers know it by), else its private one. */
export function localIdentity(self: SelfAddresses): string {
  const id = self.publicAddress ?? self.privateAddress;
  if (!id) throw new IpsecConfigError("self.publicAddress", "is required (or self.privateAddress when the host has no public address)");
  return id;
}

/**
 * local_addrs: an address the host actually has. Behind 1:1 NAT (AWS elastic IP, GCP external IP)
 * the public address is not on any interface, so IKE is bound to the private one; with neither
 * known to be local, charon picks the source address by route (%any).
 */
function localAddrs(self: SelfAddresses, opts: RenderOptions): string[] {
  for (const address of [self.publicAddress, self.privateAddress]) {
    if (address && opts.isLocalAddress(address)) return [address];
  }
  return ["%any"];
}

function digest(value: unknown): string {
  return createHash("sha256").update(JSON.stringify(value)).digest("hex");
}

function checkPeer(peer: PeerLocation, index: number): void {
  const at = `peers[${index}]`;
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(peer.location)) {
    throw new IpsecConfigError(`${at}.location`, `"${peer.location}" is not a location name`);
  }
  for (const [field, list] of [["localSubnets", peer.localSubnets], ["remoteSubnets", peer.remoteSubnets]] as const) {
    if (list.length === 0) throw new IpsecConfigError(`${at}.${field}`, "is empty");
    list.forEach((cidr, i) => {
      try {
        parseCidr(cidr);
      } catch (error) {
        throw new IpsecConfigError(`${at}.${field}[${i}]`, (error as Error).message);
      }
    });
  }
  peer.hosts.forEach((host, i) => {
    if (host.publicAddress !== undefined && !parseAddress(host.publicAddress)) {
      throw new IpsecConfigError(`${at}.hosts[${i}].publicAddress`, "is not an address");
    }
  });
}

/** The desired connections and secrets for `peers`; throws IpsecConfigError naming the bad field. */
export function renderIpsec(peers: PeerLocation[], self: SelfAddresses, opts: RenderOptions): RenderedConfig {
  const id = localIdentity(self);
  const local = localAddrs(self, opts);
  const seen = new Set<string>();
  const rendered: RenderedConfig = { conns: [], secrets: [], skipped: [] };
  peers.forEach((peer, index) => {
    checkPeer(peer, index);
    if (seen.has(peer.location)) throw new IpsecConfigError(`peers[${index}].location`, `"${peer.location}" appears twice`);
    seen.add(peer.location);

    const addressed = peer.hosts.filter((h): h is { id: string; publicAddress: string } => h.publicAddress !== undefined);
    if (addressed.length === 0) {
      const reason = peer.hosts.length === 0 ? "no host of the location is in service" : "no host of the location has a public address";
      rendered.skipped.push({ location: peer.location, reason });
      return;
    }
    const active = addressed.find((h) => h.id === peer.activeHost?.id);
    // The responder admits IKE from every peer host in service, so the peer's new active host is
    // accepted at once; its config does not name the active host, so a failover reloads nothing
    // there while the new host's IKE comes in. The initiator lists only the host it initiates to
    // (the active one): charon restarts an initiator's SA whenever its load-conn config changes,
    // so a standby joining or changing its address must leave the initiator's config as it was.
    const remote = peer.initiator ? [(active ?? addressed[0]!).publicAddress] : addressed.map((h) => h.publicAddress);
    const name = connName(peer.location);
    const config: ViciInput = {
      version: 2,
      local_addrs: local,
      remote_addrs: remote,
      proposals: peer.ike,
      // A failover moves the tunnel to another host (another identity), never the same SA to
      // another address: MOBIKE would only blur that.
      mobike: false,
      // NAT is detected by IKE; userspace ESP (kernel-libipsec) encapsulates in UDP by itself.
      encap: false,
      dpd_delay: `${DPD_DELAY_S}s`,
      // The initiator keeps trying until the peer answers: the link heals without the agent.
      keyingtries: 0,
      // Same identities (same pair of hosts) → one IKE SA: a restart replaces the old one.
      unique: "replace",
      local: { auth: "psk", id },
      // The initiator names the host it initiates to: charon looks the PSK up by the remote
      // identity first, and with %any an operator's secret without owners would win over ours.
      // The responder admits any peer host: the PSK of this location pair, owned by exactly the
      // peer hosts' identities, authenticates it, and remote_addrs admits only those hosts.
      remote: { auth: "psk", id: peer.initiator ? remote[0]! : "%any" },
      children: {
        [name]: {
          mode: "tunnel",
          local_ts: peer.localSubnets,
          remote_ts: peer.remoteSubnets,
          esp_proposals: peer.esp,
          // Only the initiator starts (both ends never race); the responder waits.
          start_action: peer.initiator ? "start" : "none",
          // Dead peer: the initiator re-initiates (to the active host), the responder forgets
          // the SA and waits for the peer's next active host.
          dpd_action: peer.initiator ? "restart" : "clear",
          close_action: peer.initiator ? "start" : "none",
        },
      },
    };
    rendered.conns.push({
      name,
      location: peer.location,
      config,
      digest: digest(config),
      initiator: peer.initiator,
      activeAddress: active?.publicAddress,
      hostsByAddress: new Map(addressed.map((h) => [h.publicAddress, h.id])),
    });
    const owners = [id, ...remote.filter((address) => address !== id)];
    rendered.secrets.push({ id: name, owners, data: peer.psk, digest: digest({ owners, data: peer.psk }) });
  });
  return rendered;
}

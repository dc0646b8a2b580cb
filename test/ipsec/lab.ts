// A small IPsec testbed for the driver tests and bench/ipsec.ts: three link hosts on one lab
// "internet" (a bridge, 198.18.0.0/24), each in its own namespace with a real charon and a veth
// "site" interface. Location east = host a (10.1.0.0/24); location west = hosts b and c, both
// 10.2.0.0/24 (c is west's standby, the same site). east < west, so east initiates.
import { randomBytes } from "node:crypto";
import type { PeerLocation } from "../../agent/contract/protocol";
import { startCharon, type Charon } from "../support/charon";
import { NetnsSandbox } from "../support/netns";

export interface LabHost {
  id: string;
  ns: string;
  charon: Charon;
  publicAddress: string;
  /** The host's address inside its site subnet (on its site interface). */
  siteAddress: string;
  subnet: string;
}

export interface IpsecLab {
  sandbox: NetnsSandbox;
  a: LabHost;
  b: LabHost;
  c: LabHost;
  /** PSK of the east-west pair (secret, like the state service's). */
  psk: string;
  cleanup(): Promise<void>;
}

export const PROPOSALS: Pick<PeerLocation, "ike" | "esp"> = { ike: ["aes128-sha256-x25519"], esp: ["aes128gcm128-x25519"] };

export async function createIpsecLab(label: string): Promise<IpsecLab> {
  const sandbox = await NetnsSandbox.create(label);
  try {
    const net = await sandbox.addNamespace("net");
    await sandbox.bridge(net, "br0");
    const make = async (id: string, octet: number, subnet: string, siteAddress: string): Promise<LabHost> => {
      const ns = await sandbox.addNamespace(id);
      const publicAddress = `198.18.0.${octet}`;
      await sandbox.veth({ ns, ifname: "eth0", addr: `${publicAddress}/24` }, { ns: net, ifname: `p-${id}` });
      await sandbox.attach(net, `p-${id}`, "br0");
      // The kernel has no dummy interfaces: a veth pair inside the namespace plays the site LAN.
      await sandbox.veth({ ns, ifname: "site0", addr: `${siteAddress}/24` }, { ns, ifname: "site1" });
      const charon = await startCharon(sandbox, ns);
      return { id, ns, charon, publicAddress, siteAddress, subnet };
    };
    const [a, b, c] = await Promise.all([
      make("a", 1, "10.1.0.0/24", "10.1.0.1"),
      make("b", 2, "10.2.0.0/24", "10.2.0.1"),
      make("c", 3, "10.2.0.0/24", "10.2.0.1"),
    ]);
    return { sandbox, a: a!, b: b!, c: c!, psk: randomBytes(32).toString("base64"), cleanup: () => sandbox.cleanup() };
  } catch (error) {
    await sandbox.cleanup();
    throw error;
  }
}

/**
 * What the state service would send host a (east) about west, with `active` as west's active host.
 * By default east initiates and every west host is in service; `initiator: false` plays a link
 * where the names sort the other way, `inService` the hosts the service lists.
 */
export function westSeenFromEast(lab: IpsecLab, active: LabHost | null, opts: { initiator?: boolean; inService?: LabHost[] } = {}): PeerLocation {
  return {
    location: "west",
    activeHost: active ? { id: active.id, publicAddress: active.publicAddress } : null,
    hosts: (opts.inService ?? [lab.b, lab.c]).map((h) => ({ id: h.id, publicAddress: h.publicAddress })),
    localSubnets: [lab.a.subnet],
    remoteSubnets: [lab.b.subnet],
    psk: lab.psk,
    ...PROPOSALS,
    initiator: opts.initiator ?? true,
  };
}

/** What a west host gets about east (by default the responder's side of it). */
export function eastSeenFromWest(lab: IpsecLab, opts: { initiator?: boolean } = {}): PeerLocation {
  return {
    location: "east",
    activeHost: { id: lab.a.id, publicAddress: lab.a.publicAddress },
    hosts: [{ id: lab.a.id, publicAddress: lab.a.publicAddress }],
    localSubnets: [lab.b.subnet],
    remoteSubnets: [lab.a.subnet],
    psk: lab.psk,
    ...PROPOSALS,
    initiator: opts.initiator ?? false,
  };
}

export function selfOf(host: LabHost) {
  return { hostId: host.id, publicAddress: host.publicAddress };
}

/** One ping from `from`'s site address to `to`'s: true when answered within a second. */
export async function pingSite(lab: IpsecLab, from: LabHost, to: LabHost): Promise<boolean> {
  const result = await lab.sandbox.exec(from.ns, ["ping", "-n", "-c", "1", "-W", "1", "-I", from.siteAddress, to.siteAddress], {
    allowFail: true,
  });
  return result.code === 0;
}

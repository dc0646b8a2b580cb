// The lab's plan: which namespaces, addresses and topology a lab of N locations uses.
// Pure, so the address scheme is unit-tested without root. Only 198.18.0.0/15 ("internet")
// and 10.x (sites) are ever used.
import { randomBytes } from "node:crypto";
import { parseTopology, type TimingInput, type Topology, type TopologyInput } from "../../agent/contract/topology";

export const INTERNET_CIDR_PREFIX = 16;
export const INTERNET_BRIDGE_ADDRESS = "198.18.0.1";
export const STATE_ADDRESS = "198.18.0.10";
export const STATE_PORT = 9443;
export const LINK_NAME = "lab";

export interface LabPlanOptions {
  /** Number of locations (2 or 3). @default 2 */
  locations?: number;
  /** Hosts per location; priorities count down from this number, so host a is preferred. @default 2 */
  hostsPerLocation?: number;
  /** Seconds a returning host waits before it may be active again. @default DEFAULTS.backoff */
  backoff?: number;
  /** Seconds without heartbeat before a host is offline. @default DEFAULTS.timeout */
  timeout?: number;
  /** The link's timing (a preset or fields). @default the standard preset */
  timing?: TimingInput;
  /** Namespace name prefix; random `sl<4 hex>` when absent so runs never collide. */
  prefix?: string;
}

export interface HostPlan {
  id: string;
  name: string;
  location: string;
  priority: number;
  /** Namespace of the host. */
  ns: string;
  publicAddress: string;
  privateAddress: string;
}

export interface LocationPlan {
  name: string;
  /** 1-based location number: the L in 198.18.L.x and 10.L.x.x. */
  index: number;
  route: string;
  hosts: HostPlan[];
  /** Router namespace: its routes play the cloud route table. */
  routerNs: string;
  routerLanAddress: string;
  routerClientAddress: string;
  clientNs: string;
  clientAddress: string;
}

export interface LabPlan {
  prefix: string;
  internetNs: string;
  stateNs: string;
  locations: LocationPlan[];
  topology: Topology;
}

const HOST_LETTERS = "abcdefgh";

export function randomPrefix(): string {
  return `sl${randomBytes(2).toString("hex")}`;
}

export function planLab(opts: LabPlanOptions = {}): LabPlan {
  const count = opts.locations ?? 2;
  const perLocation = opts.hostsPerLocation ?? 2;
  if (!Number.isInteger(count) || count < 2 || count > 3) throw new Error(`locations must be 2 or 3, got ${count}`);
  if (!Number.isInteger(perLocation) || perLocation < 1 || perLocation > HOST_LETTERS.length) {
    throw new Error(`hostsPerLocation must be 1-${HOST_LETTERS.length}, got ${perLocation}`);
  }
  const prefix = opts.prefix ?? randomPrefix();
  // Namespace names carry the prefix plus a short role; keep them short enough for interface-style limits.
  if (!/^[a-z0-9]{2,8}$/.test(prefix)) throw new Error(`prefix must be 2-8 lowercase letters or digits, got "${prefix}"`);

  const locations: LocationPlan[] = [];
  for (let l = 1; l <= count; l++) {
    const name = `site${l}`;
    const hosts: HostPlan[] = [];
    for (let h = 0; h < perLocation; h++) {
      const letter = HOST_LETTERS[h]!;
      hosts.push({
        id: `${name}-${letter}`,
        name: letter,
        location: name,
        priority: perLocation - h,
        ns: `${prefix}-h${l}${letter}`,
        publicAddress: `198.18.${l}.${11 + h}`,
        privateAddress: `10.${l}.0.${11 + h}`,
      });
    }
    locations.push({
      name,
      index: l,
      route: `10.${l}.0.0/16`,
      hosts,
      routerNs: `${prefix}-r${l}`,
      routerLanAddress: `10.${l}.0.1`,
      routerClientAddress: `10.${l}.1.1`,
      clientNs: `${prefix}-c${l}`,
      clientAddress: `10.${l}.1.10`,
    });
  }

  const input: TopologyInput = {
    version: 1,
    links: [
      {
        name: LINK_NAME,
        locations: locations.map((loc) => ({
          name: loc.name,
          routes: [loc.route],
          hosts: loc.hosts.map((h) => ({
            id: h.id,
            name: h.name,
            priority: h.priority,
            ...(opts.backoff === undefined ? {} : { backoff: opts.backoff }),
            ...(opts.timeout === undefined ? {} : { timeout: opts.timeout }),
            publicAddress: h.publicAddress,
            privateAddress: h.privateAddress,
          })),
        })),
        ...(opts.timing === undefined ? {} : { timing: opts.timing }),
      },
    ],
  };
  return { prefix, internetNs: `${prefix}-inet`, stateNs: `${prefix}-state`, locations, topology: parseTopology(input) };
}

export function allHosts(plan: LabPlan): HostPlan[] {
  return plan.locations.flatMap((l) => l.hosts);
}

export function locationOf(plan: LabPlan, name: string): LocationPlan {
  const loc = plan.locations.find((l) => l.name === name);
  if (!loc) throw new Error(`no location "${name}" in the lab`);
  return loc;
}

export function hostById(plan: LabPlan, id: string): HostPlan {
  const host = allHosts(plan).find((h) => h.id === id);
  if (!host) throw new Error(`no host "${id}" in the lab`);
  return host;
}

/** The host whose private address is `address` in `location`, if any. */
export function hostByPrivateAddress(loc: LocationPlan, address: string): HostPlan | undefined {
  return loc.hosts.find((h) => h.privateAddress === address);
}

/** Every ordered pair of distinct locations (traffic is proven in both directions). */
export function locationPairs(plan: LabPlan): [LocationPlan, LocationPlan][] {
  return plan.locations.flatMap((a) => plan.locations.filter((b) => b !== a).map((b): [LocationPlan, LocationPlan] => [a, b]));
}

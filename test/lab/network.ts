// Builds the lab's namespaces and links from a plan: an "internet" bridge, the state service,
// and per location its hosts, a router whose routes play the cloud route table, and a client.
import type { LabPlan, LocationPlan, HostPlan } from "./plan";
import { INTERNET_BRIDGE_ADDRESS, INTERNET_CIDR_PREFIX, STATE_ADDRESS } from "./plan";
import type { NetnsSandbox, VethEnd } from "../support/netns";

const INTERNET_BRIDGE = "br0";
const ROUTER_LAN_BRIDGE = "lan";
/** The host's interface on the internet and on its site LAN. */
export const HOST_PUBLIC_IF = "pub0";
export const HOST_LAN_IF = "lan0";

export async function buildNetwork(sandbox: NetnsSandbox, plan: LabPlan): Promise<void> {
  if (plan.prefix !== sandbox.prefix) throw new Error(`the plan's prefix ${plan.prefix} is not the sandbox's ${sandbox.prefix}`);
  await addNamespace(sandbox, plan.internetNs);
  await sandbox.bridge(plan.internetNs, INTERNET_BRIDGE, `${INTERNET_BRIDGE_ADDRESS}/${INTERNET_CIDR_PREFIX}`);

  await addNamespace(sandbox, plan.stateNs);
  await link(sandbox, { ns: plan.stateNs, ifname: "eth0", addr: `${STATE_ADDRESS}/${INTERNET_CIDR_PREFIX}` }, { ns: plan.internetNs, ifname: "pst" }, INTERNET_BRIDGE);

  for (const loc of plan.locations) await buildLocation(sandbox, plan, loc);
}

async function buildLocation(sandbox: NetnsSandbox, plan: LabPlan, loc: LocationPlan) {
  await addNamespace(sandbox, loc.routerNs);
  await sandbox.bridge(loc.routerNs, ROUTER_LAN_BRIDGE, `${loc.routerLanAddress}/24`);
  await sh(sandbox, loc.routerNs, forwarding());

  await addNamespace(sandbox, loc.clientNs);
  await link(sandbox, { ns: loc.clientNs, ifname: "eth0", addr: `${loc.clientAddress}/24` }, { ns: loc.routerNs, ifname: "cli0", addr: `${loc.routerClientAddress}/24` });
  await sh(sandbox, loc.clientNs, [`ip route add default via ${loc.routerClientAddress}`]);

  for (const host of loc.hosts) await buildHost(sandbox, plan, loc, host);

  // Like the Pulumi components on AWS: every remote route starts at the highest-priority host, and
  // carries sitelink's mark (proto 83): the lab provider moves only routes of its own kind.
  const preferred = [...loc.hosts].sort((a, b) => b.priority - a.priority)[0]!;
  await sh(
    sandbox,
    loc.routerNs,
    plan.locations.filter((other) => other !== loc).map((other) => `ip route replace ${other.route} via ${preferred.privateAddress} proto 83`),
  );
}

async function buildHost(sandbox: NetnsSandbox, plan: LabPlan, loc: LocationPlan, host: HostPlan) {
  await addNamespace(sandbox, host.ns);
  const port = `${loc.index}${host.name}`;
  await link(sandbox, { ns: host.ns, ifname: HOST_PUBLIC_IF, addr: `${host.publicAddress}/${INTERNET_CIDR_PREFIX}` }, { ns: plan.internetNs, ifname: `p${port}` }, INTERNET_BRIDGE);
  await link(sandbox, { ns: host.ns, ifname: HOST_LAN_IF, addr: `${host.privateAddress}/24` }, { ns: loc.routerNs, ifname: `h${port}` }, ROUTER_LAN_BRIDGE);
  await sh(sandbox, host.ns, [
    // The rest of the site (clients behind the router) is reached through the router.
    siteRoute(loc),
    ...forwarding(),
  ]);
}

/** A veth pair, the B end optionally a port of a bridge in its namespace. */
async function link(sandbox: NetnsSandbox, a: VethEnd, b: VethEnd, bridge?: string) {
  await sandbox.veth(a, b);
  if (bridge) await sandbox.attach(b.ns, b.ifname, bridge);
}

/** Creates a namespace of the plan through the sandbox (which owns and prefixes the names). */
async function addNamespace(sandbox: NetnsSandbox, fullName: string) {
  const created = await sandbox.addNamespace(fullName.slice(sandbox.prefix.length + 1));
  if (created !== fullName) throw new Error(`namespace ${created} is not the planned ${fullName}`);
}

function siteRoute(loc: LocationPlan): string {
  return `ip route replace ${loc.route} via ${loc.routerLanAddress}`;
}

function forwarding(): string[] {
  return ["sysctl -qw net.ipv4.ip_forward=1", "sysctl -qw net.ipv4.conf.all.rp_filter=0", "sysctl -qw net.ipv4.conf.default.rp_filter=0"];
}

/** Runs commands in a namespace one by one (a failing command throws with its own text). */
async function sh(sandbox: NetnsSandbox, ns: string, commands: string[]) {
  for (const command of commands) await sandbox.exec(ns, command.split(" "));
}

/** Sets both lab links of a host down (cut cables) or up again (with the site route a down link loses). */
export async function setHostLinks(sandbox: NetnsSandbox, host: HostPlan, loc: LocationPlan, up: boolean): Promise<void> {
  const state = up ? "up" : "down";
  await sh(sandbox, host.ns, [`ip link set ${HOST_PUBLIC_IF} ${state}`, `ip link set ${HOST_LAN_IF} ${state}`]);
  if (up) await sh(sandbox, host.ns, [siteRoute(loc)]);
}

/** The next hop of `cidr` in a router, i.e. which host the "route table" points at. */
export async function routeNextHop(sandbox: NetnsSandbox, loc: LocationPlan, cidr: string): Promise<string | undefined> {
  const { stdout } = await sandbox.exec(loc.routerNs, ["ip", "-4", "route", "show", cidr]);
  return /\bvia (\S+)/.exec(stdout)?.[1];
}

/** Drops everything between a host and the given addresses (in its own namespace), or lifts that. */
export async function setPartition(sandbox: NetnsSandbox, host: HostPlan, addresses: string[], cut: boolean): Promise<void> {
  const op = cut ? "-I" : "-D";
  for (const address of addresses) {
    await sandbox.exec(host.ns, ["iptables", "-w", op, "INPUT", "-s", address, "-j", "DROP"]);
    await sandbox.exec(host.ns, ["iptables", "-w", op, "OUTPUT", "-d", address, "-j", "DROP"]);
  }
}

/**
 * Drops `probability` of the packets arriving from the lab's internet at every host and at the state
 * service, at random (iptables' statistic match, in the raw table so no agent rule sees them first);
 * 0 removes the drop again. This kernel has no netem; this is loss without delay.
 */
export async function setInternetLoss(sandbox: NetnsSandbox, plan: LabPlan, probability: number, previous: number): Promise<void> {
  const rule = (p: number, ifname: string) => ["-i", ifname, "-m", "statistic", "--mode", "random", "--probability", String(p), "-j", "DROP"];
  const targets: Array<[string, string]> = [[plan.stateNs, "eth0"], ...plan.locations.flatMap((l) => l.hosts.map((h): [string, string] => [h.ns, HOST_PUBLIC_IF]))];
  for (const [ns, ifname] of targets) {
    if (previous > 0) await sandbox.exec(ns, ["iptables", "-w", "-t", "raw", "-D", "PREROUTING", ...rule(previous, ifname)]);
    if (probability > 0) await sandbox.exec(ns, ["iptables", "-w", "-t", "raw", "-I", "PREROUTING", ...rule(probability, ifname)]);
  }
}

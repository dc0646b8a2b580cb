// The boot lab's network: one bridge in the host's namespace with the lab's /24 of 198.19.0.0/16
// (the namespace lab uses 198.18.0.0/16, inside its own namespaces), and per instance a network
// namespace joined to it by a veth. The host side is a plain bridge address: no forwarding, no NAT
// to the outside, no default route in any instance, so traffic stays between the instances and
// the servers the lab binds on the bridge address.
import { execFileSync } from "node:child_process";
import { run } from "./proc";

export const LAB_SUPERNET = "198.19";
/** Where an instance's software looks for EC2 instance metadata. */
export const IMDS_ADDRESS = "169.254.169.254";

/** A /24 of 198.19.0.0/16 that no address of the host's namespace is in, picked at random so labs started together rarely pick the same. */
export async function freeSubnet(): Promise<string> {
  const { stdout } = await run(["ip", "-4", "-o", "addr", "show"]);
  const used = new Set([...stdout.matchAll(/inet 198\.19\.(\d+)\./g)].map((m) => Number(m[1])));
  const free = Array.from({ length: 254 }, (_, i) => i + 1).filter((n) => !used.has(n));
  const pick = free[Math.floor(Math.random() * free.length)];
  if (pick === undefined) throw new Error(`no free /24 left in ${LAB_SUPERNET}.0.0/16`);
  return `${LAB_SUPERNET}.${pick}`;
}

export async function createBridge(name: string, address: string): Promise<void> {
  await run(["ip", "link", "add", name, "type", "bridge"]);
  await run(["ip", "addr", "add", `${address}/24`, "dev", name]);
  await run(["ip", "link", "set", name, "up"]);
}

/**
 * Namespace `ns` with lo up and `eth0` (address/24), its peer `hostEnd` a port of `bridge`.
 * `imds` makes 169.254.169.254:80 reach a port on the bridge address from this namespace only:
 * a route to it and a DNAT rule in the namespace's own nat table (the host gets no link-local
 * address, and other namespaces see nothing).
 */
export async function addInstanceNetwork(opts: { ns: string; hostEnd: string; bridge: string; bridgeAddress: string; address: string; imdsPort?: number }): Promise<void> {
  const { ns, hostEnd, bridge, bridgeAddress, address, imdsPort } = opts;
  await run(["ip", "netns", "add", ns]);
  await run(["ip", "-n", ns, "link", "set", "lo", "up"]);
  // Made inside the namespace: the name eth0 never touches the host's namespace.
  await run(["ip", "link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", ns]);
  await run(["ip", "link", "set", hostEnd, "master", bridge, "up"]);
  await run(["ip", "-n", ns, "addr", "add", `${address}/24`, "dev", "eth0"]);
  await run(["ip", "-n", ns, "link", "set", "eth0", "up"]);
  if (imdsPort !== undefined) {
    await run(["ip", "-n", ns, "route", "add", `${IMDS_ADDRESS}/32`, "via", bridgeAddress]);
    await run([
      "ip", "netns", "exec", ns, "iptables", "-w", "-t", "nat", "-A", "OUTPUT", "-d", `${IMDS_ADDRESS}/32`, "-p", "tcp", "--dport", "80",
      "-j", "DNAT", "--to-destination", `${bridgeAddress}:${imdsPort}`,
    ]);
  }
}

/** Deletes a namespace (its veth pair goes with it) or a bridge; missing ones are fine. Sync for exit handlers. */
export function deleteNamespaceSync(ns: string): void {
  quietly(["ip", "netns", "del", ns]);
}

export function deleteLinkSync(name: string): void {
  quietly(["ip", "link", "del", name]);
}

function quietly(argv: string[]): void {
  try {
    execFileSync(argv[0]!, argv.slice(1), { stdio: "ignore" });
  } catch {
    // already gone
  }
}

// The agent's own allowlist: chain SITELINK in iptables and ip6tables, jumped to from the top of
// INPUT. It admits UDP 500/4500 and TCP host-check traffic only from link host addresses and drops
// those ports from anyone else; every other packet passes through untouched.
import { DEFAULT_HOST_CHECK_PORT } from "../contract/protocol";
import { parseAddress } from "../contract/net";
import { chainInPlace, commandReason, IPTABLES_FAMILIES, loadChain, removeChain, type IptablesFamily, type OwnChain } from "./iptables";
import { runCommand, type CommandRunner } from "./routes/command";
import type { Firewall } from "./types";

export const FIREWALL_CHAIN = "SITELINK";

export interface IptablesFirewallOptions {
  /** TCP port of the host check. @default 9790 */
  hostCheckPort?: number;
  /** @default runs the real tools on this host */
  run?: CommandRunner;
}

const OWN: OwnChain = { table: "filter", chain: FIREWALL_CHAIN, jumps: ["INPUT"] };

export class IptablesFirewall implements Firewall {
  private readonly port: number;
  private readonly run: CommandRunner;

  constructor(options: IptablesFirewallOptions = {}) {
    this.port = options.hostCheckPort ?? DEFAULT_HOST_CHECK_PORT;
    this.run = options.run ?? runCommand;
  }

  async apply(allow: string[]): Promise<void> {
    const byFamily = splitByFamily(allow);
    for (const family of IPTABLES_FAMILIES) {
      // Loaded in one iptables-restore commit, so an address change never opens a window where the
      // ports are closed to everyone or open to all.
      await loadChain(this.run, family, OWN, this.rules(family, byFamily[family.name])).catch((error) => {
        throw new Error(`firewall: cannot load the ${family.name} chain ${FIREWALL_CHAIN}: ${commandReason(error)}`);
      });
    }
  }

  async inPlace(allow: string[]): Promise<boolean> {
    const byFamily = splitByFamily(allow);
    for (const family of IPTABLES_FAMILIES) {
      if (!(await chainInPlace(this.run, family, OWN, this.rules(family, byFamily[family.name])))) return false;
    }
    return true;
  }

  async remove(): Promise<void> {
    for (const family of IPTABLES_FAMILIES) {
      await removeChain(this.run, family, OWN).catch((error) => {
        throw new Error(`firewall: cannot delete the ${family.name} chain ${FIREWALL_CHAIN}: ${commandReason(error)}`);
      });
    }
  }

  private rules(family: IptablesFamily, sources: string[]): string[] {
    const ports = [
      ["-p", "udp", "-m", "udp", "--dport", "500"],
      ["-p", "udp", "-m", "udp", "--dport", "4500"],
      ["-p", "tcp", "-m", "tcp", "--dport", String(this.port)],
    ].map((match) => match.join(" "));
    const rules: string[] = [];
    for (const source of sources) {
      for (const match of ports) rules.push(`-s ${source}/${family.hostPrefix} ${match} -j ACCEPT`);
    }
    for (const match of ports) rules.push(`${match} -j DROP`);
    return rules;
  }
}

/** Validates the allowlist and splits it by family, normalized and without duplicates. */
function splitByFamily(allow: string[]): Record<IptablesFamily["name"], string[]> {
  const out = { IPv4: new Set<string>(), IPv6: new Set<string>() };
  allow.forEach((text, index) => {
    const address = parseAddress(text);
    if (!address) throw new Error(`firewall: allow[${index}] "${text}" is not an IPv4 or IPv6 address`);
    if (address.kind() === "ipv4") out.IPv4.add(address.toString());
    else out.IPv6.add(address.toString());
  });
  return { IPv4: [...out.IPv4], IPv6: [...out.IPv6] };
}

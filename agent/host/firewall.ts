// The agent's own allowlist: chain SITELINK in iptables and ip6tables, jumped to from the top of
// INPUT. It admits UDP 500/4500 and TCP host-check traffic only from link host addresses and drops
// those ports from anyone else; every other packet passes through untouched.
import { HOST_CHECK_PORT } from "./config";
import { parseAddress } from "../../lib/net";
import { CommandError, runCommand, type CommandRunner } from "./routes/command";
import type { Firewall } from "./types";

export const FIREWALL_CHAIN = "SITELINK";

export interface IptablesFirewallOptions {
  /** TCP port of the host check. @default 9790 */
  hostCheckPort?: number;
  /** @default runs the real tools on this host */
  run?: CommandRunner;
}

interface Family {
  name: "IPv4" | "IPv6";
  iptables: string;
  restore: string;
  hostPrefix: 32 | 128;
}

const FAMILIES: Family[] = [
  { name: "IPv4", iptables: "iptables", restore: "iptables-restore", hostPrefix: 32 },
  { name: "IPv6", iptables: "ip6tables", restore: "ip6tables-restore", hostPrefix: 128 },
];

const JUMP = ["INPUT", "-j", FIREWALL_CHAIN];

export class IptablesFirewall implements Firewall {
  private readonly port: number;
  private readonly run: CommandRunner;

  constructor(options: IptablesFirewallOptions = {}) {
    this.port = options.hostCheckPort ?? HOST_CHECK_PORT;
    this.run = options.run ?? runCommand;
  }

  async apply(allow: string[]): Promise<void> {
    const byFamily = splitByFamily(allow);
    for (const family of FAMILIES) {
      // Declaring the chain in an iptables-restore batch flushes and refills it in one commit, so
      // an address change never opens a window where the ports are closed to everyone or open to all.
      const hasJump = await this.succeeds(family.iptables, ["-w", "-C", ...JUMP]);
      const batch = this.rules(family, byFamily[family.name], !hasJump);
      await this.run(family.restore, ["-w", "--noflush"], batch).catch((error) => {
        throw new Error(`firewall: cannot load the ${family.name} chain ${FIREWALL_CHAIN}: ${reason(error)}`);
      });
    }
  }

  async remove(): Promise<void> {
    for (const family of FAMILIES) {
      // Delete every jump we might have left (one normally), then the chain itself.
      while (await this.succeeds(family.iptables, ["-w", "-D", ...JUMP])) {}
      if (!(await this.succeeds(family.iptables, ["-w", "-n", "-L", FIREWALL_CHAIN]))) continue;
      await this.run(family.iptables, ["-w", "-F", FIREWALL_CHAIN]);
      await this.run(family.iptables, ["-w", "-X", FIREWALL_CHAIN]).catch((error) => {
        throw new Error(`firewall: cannot delete the ${family.name} chain ${FIREWALL_CHAIN}: ${reason(error)}`);
      });
    }
  }

  private rules(family: Family, sources: string[], addJump: boolean): string {
    const ports = [
      ["-p", "udp", "-m", "udp", "--dport", "500"],
      ["-p", "udp", "-m", "udp", "--dport", "4500"],
      ["-p", "tcp", "-m", "tcp", "--dport", String(this.port)],
    ].map((match) => match.join(" "));
    const lines = ["*filter", `:${FIREWALL_CHAIN} - [0:0]`];
    for (const source of sources) {
      for (const match of ports) lines.push(`-A ${FIREWALL_CHAIN} -s ${source}/${family.hostPrefix} ${match} -j ACCEPT`);
    }
    for (const match of ports) lines.push(`-A ${FIREWALL_CHAIN} ${match} -j DROP`);
    if (addJump) lines.push(`-I ${JUMP.join(" ")}`);
    lines.push("COMMIT", "");
    return lines.join("\n");
  }

  private async succeeds(command: string, args: string[]): Promise<boolean> {
    try {
      await this.run(command, args);
      return true;
    } catch (error) {
      if (error instanceof CommandError) return false;
      throw error; // the tool itself is missing: not a "no"
    }
  }
}

/** Validates the allowlist and splits it by family, normalized and without duplicates. */
function splitByFamily(allow: string[]): Record<Family["name"], string[]> {
  const out = { IPv4: new Set<string>(), IPv6: new Set<string>() };
  allow.forEach((text, index) => {
    const address = parseAddress(text);
    if (!address) throw new Error(`firewall: allow[${index}] "${text}" is not an IPv4 or IPv6 address`);
    if (address.kind() === "ipv4") out.IPv4.add(address.toString());
    else out.IPv6.add(address.toString());
  });
  return { IPv4: [...out.IPv4], IPv6: [...out.IPv6] };
}

function reason(error: unknown): string {
  return error instanceof CommandError ? error.stderr.trim() || `exit ${error.exitCode}` : String(error);
}

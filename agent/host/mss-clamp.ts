// `set-mtu`: policy-based IPsec has no tunnel interface whose MTU could be set, so the agent clamps
// the MSS of TCP SYNs to and from the remote subnets instead (IPv4: MTU − 40, IPv6: MTU − 60), in its
// own chain SITELINK-MSS of the mangle table, jumped to from FORWARD (routed site traffic) and OUTPUT
// (traffic of this host). TCPMSS --set-mss never raises a smaller MSS. Other rules are never touched.
import { parseCidr } from "../contract/net";
import { chainInPlace, commandReason, IPTABLES_FAMILIES, loadChain, removeChain, type IptablesFamily, type OwnChain } from "./iptables";
import { runCommand, type CommandRunner } from "./routes/command";
import type { MssClamp } from "./types";

export const MSS_CHAIN = "SITELINK-MSS";

/** IPv4 + TCP headers, IPv6 + TCP headers (no options). */
const HEADERS = { 4: 40, 6: 60 } as const;

const OWN: OwnChain = { table: "mangle", chain: MSS_CHAIN, jumps: ["FORWARD", "OUTPUT"] };

export class IptablesMssClamp implements MssClamp {
  private readonly run: CommandRunner;

  constructor(options: { run?: CommandRunner } = {}) {
    this.run = options.run ?? runCommand;
  }

  async apply(mtu: number, cidrs: string[]): Promise<void> {
    for (const [family, rules] of this.rules(mtu, cidrs)) {
      await loadChain(this.run, family, OWN, rules).catch((error) => {
        throw new Error(`mss clamp: cannot load the ${family.name} chain ${MSS_CHAIN}: ${commandReason(error)}`);
      });
    }
  }

  async inPlace(mtu: number, cidrs: string[]): Promise<boolean> {
    for (const [family, rules] of this.rules(mtu, cidrs)) {
      if (!(await chainInPlace(this.run, family, OWN, rules))) return false;
    }
    return true;
  }

  async remove(): Promise<void> {
    for (const family of IPTABLES_FAMILIES) {
      await removeChain(this.run, family, OWN).catch((error) => {
        throw new Error(`mss clamp: cannot delete the ${family.name} chain ${MSS_CHAIN}: ${commandReason(error)}`);
      });
    }
  }

  /** The chain's rules per family; validates everything before either family is touched. */
  private rules(mtu: number, cidrs: string[]): [IptablesFamily, string[]][] {
    if (!Number.isInteger(mtu) || mtu < 576 || mtu > 9000) throw new Error(`mss clamp: mtu ${mtu} is not an integer in 576..9000`);
    const parsed = cidrs.map((text, index) => {
      try {
        return parseCidr(text);
      } catch (error) {
        throw new Error(`mss clamp: cidrs[${index}]: ${(error as Error).message}`);
      }
    });
    return IPTABLES_FAMILIES.map((family) => {
      const mss = mtu - HEADERS[family.version];
      const own = [...new Set(parsed.filter((c) => c.family === family.version).map((c) => c.text))];
      return [family, own.flatMap((cidr) => ["-d", "-s"].map((dir) => `${dir} ${cidr} -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss ${mss}`))];
    });
  }
}

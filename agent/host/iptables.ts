// Shared by the agent's own iptables/ip6tables chains (firewall.ts, mss-clamp.ts): the two families,
// loading a chain atomically with iptables-restore --noflush, checking it is still in place, and
// removing a chain with its jumps.
// Every call passes -w (wait for the xtables lock instead of failing next to another tool).
import { CommandError, type CommandRunner } from "./routes/command";

export interface IptablesFamily {
  name: "IPv4" | "IPv6";
  version: 4 | 6;
  iptables: string;
  restore: string;
  hostPrefix: 32 | 128;
}

export const IPTABLES_FAMILIES: readonly IptablesFamily[] = [
  { name: "IPv4", version: 4, iptables: "iptables", restore: "iptables-restore", hostPrefix: 32 },
  { name: "IPv6", version: 6, iptables: "ip6tables", restore: "ip6tables-restore", hostPrefix: 128 },
];

/** One of the agent's chains: `jumps` are the built-in chains that jump to it (from their top). */
export interface OwnChain {
  table: "filter" | "mangle";
  chain: string;
  jumps: string[];
}

/**
 * Loads `rules` (lines without `-A chain`, e.g. `-d 10.0.0.0/8 -j ACCEPT`) as the whole content of the
 * chain in one iptables-restore commit: declaring the chain flushes and refills it atomically, and
 * --noflush leaves every other rule alone. Missing jumps are inserted in the same commit.
 */
export async function loadChain(run: CommandRunner, family: IptablesFamily, own: OwnChain, rules: string[]): Promise<void> {
  const lines = [`*${own.table}`, `:${own.chain} - [0:0]`, ...rules.map((rule) => `-A ${own.chain} ${rule}`)];
  const listed = await listTable(run, family, own.table);
  for (const from of own.jumps) {
    if (!listed.includes(jumpLine(from, own))) lines.push(`-I ${from} -j ${own.chain}`);
  }
  lines.push("COMMIT", "");
  await run(family.restore, ["-w", "--noflush"], lines.join("\n"));
}

/**
 * Whether the chain holds exactly `rules` and every jump to it is there (anywhere in the built-in
 * chain: an operator may insert rules above ours). One `iptables -S` of the table per call.
 */
export async function chainInPlace(run: CommandRunner, family: IptablesFamily, own: OwnChain, rules: string[]): Promise<boolean> {
  const lines = await listTable(run, family, own.table);
  const chain = lines.filter((line) => line.startsWith(`-A ${own.chain} `));
  const expected = rules.map((rule) => `-A ${own.chain} ${rule}`);
  return (
    own.jumps.every((from) => lines.includes(jumpLine(from, own))) &&
    chain.length === expected.length &&
    chain.every((line, i) => line === expected[i])
  );
}

/**
 * Deletes every jump to the chain (one normally), then the chain itself; nothing when it is absent.
 * One listing of the table says what is there: an agent starts by removing what an earlier run may
 * have left, and each further iptables process is a fork of the agent beside its first apply.
 */
export async function removeChain(run: CommandRunner, family: IptablesFamily, own: OwnChain): Promise<void> {
  const lines = await listTable(run, family, own.table);
  for (const from of own.jumps) {
    const jumps = lines.filter((line) => line === jumpLine(from, own)).length;
    for (let i = 0; i < jumps; i++) await run(family.iptables, ["-w", "-t", own.table, "-D", from, "-j", own.chain]);
  }
  if (!lines.includes(`-N ${own.chain}`)) return;
  await run(family.iptables, ["-w", "-t", own.table, "-F", own.chain]);
  await run(family.iptables, ["-w", "-t", own.table, "-X", own.chain]);
}

/** Every rule of a table, one per line as `iptables -S` prints it (`-N chain`, `-A chain rule`). */
async function listTable(run: CommandRunner, family: IptablesFamily, table: OwnChain["table"]): Promise<string[]> {
  return (await run(family.iptables, ["-w", "-t", table, "-S"])).stdout.split("\n").map((line) => line.trim());
}

function jumpLine(from: string, own: OwnChain): string {
  return `-A ${from} -j ${own.chain}`;
}

/** The tool's own words for a failure (its stderr), for error messages. */
export function commandReason(error: unknown): string {
  return error instanceof CommandError ? error.stderr.trim() || `exit ${error.exitCode}` : String(error);
}

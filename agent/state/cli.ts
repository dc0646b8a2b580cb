// `sitelink state …`: serve, status, rotate-psk, fingerprint, init.
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connectedPairs, type Topology } from "../contract/topology";
import { DEFAULT_STATE_PORT } from "../contract/uri";
import { decodeMasterKey, MASTER_KEY_BYTES } from "../contract/signing";
import type { HostView } from "./engine";
import { jsonLogger } from "./log";
import { startStateService } from "./service";
import { DATABASE_FILE, SqliteStore } from "./sqlite-store";
import { newPsk, sortedPair } from "./store";
import { certificateFingerprint, selfSignedCertificate } from "./tls";

/** Files `init` writes into the data directory; `serve` uses them when the flags are absent. */
export const DATA_FILES = { masterKey: "master.key", cert: "tls.crt", key: "tls.key" } as const;

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

const stdio: CliIo = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };

export class UsageError extends Error {}

const USAGE = `usage: sitelink state <command>
  init        --data DIR [--name DNS-OR-IP]...    master key (0600) and a self-signed TLS cert/key in DIR
  serve       --topology FILE --data DIR [--tls-cert F] [--tls-key F] [--master-key-file F] [--listen ADDR:PORT]
              (cert, key and master key default to the files init wrote in DIR; listen defaults to 0.0.0.0:${DEFAULT_STATE_PORT})
  status      --data DIR                        hosts, roles and generation, from the store
  rotate-psk  --data DIR --link LINK --pair A,B  new PSK for a location pair; a running service hands it out within a second
  fingerprint --tls-cert F                      SHA-256 fingerprint that host URIs pin
`;

interface FlagSpec {
  required?: string[];
  optional?: string[];
  repeatable?: string[];
}

const COMMANDS: Record<string, FlagSpec> = {
  init: { required: ["data"], repeatable: ["name"] },
  serve: { required: ["topology", "data"], optional: ["tls-cert", "tls-key", "master-key-file", "listen"] },
  status: { required: ["data"] },
  "rotate-psk": { required: ["data", "link", "pair"] },
  fingerprint: { required: ["tls-cert"] },
};

export async function runStateCli(argv: string[], io: CliIo = stdio): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    io.out(USAGE);
    return command === undefined ? 2 : 0;
  }
  try {
    const spec = COMMANDS[command];
    if (!spec) throw new UsageError(`unknown command "${command}"`);
    const flags = parseFlags(rest, spec);
    switch (command) {
      case "init":
        return init(flags, io);
      case "serve":
        return await serve(flags, io);
      case "status":
        return await status(flags, io);
      case "rotate-psk":
        return await rotatePsk(flags, io);
      default:
        io.out(`${certificateFingerprint(readFlagFile(flags, "tls-cert"))}\n`);
        return 0;
    }
  } catch (error) {
    io.err(`sitelink state ${command}: ${(error as Error).message}\n`);
    if (error instanceof UsageError) io.err(USAGE);
    return error instanceof UsageError ? 2 : 1;
  }
}

type Flags = Map<string, string[]>;
const one = (flags: Flags, name: string): string | undefined => flags.get(name)?.[0];

export function parseFlags(args: string[], spec: FlagSpec): Flags {
  const known = new Set([...(spec.required ?? []), ...(spec.optional ?? []), ...(spec.repeatable ?? [])]);
  const flags: Flags = new Map();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!match) throw new UsageError(`unexpected argument "${arg}"`);
    const name = match[1]!;
    if (!known.has(name)) throw new UsageError(`unknown flag --${name}`);
    const value = match[2] ?? args[++i];
    if (value === undefined || value === "") throw new UsageError(`--${name} needs a value`);
    if (flags.has(name) && !spec.repeatable?.includes(name)) throw new UsageError(`--${name} given twice`);
    flags.set(name, [...(flags.get(name) ?? []), value]);
  }
  for (const name of spec.required ?? []) {
    if (!flags.has(name)) throw new UsageError(`--${name} is required`);
  }
  return flags;
}

function readFlagFile(flags: Flags, flag: string, fallback?: string): Buffer {
  const file = one(flags, flag) ?? fallback!;
  try {
    return readFileSync(file);
  } catch (error) {
    throw new UsageError(`--${flag}: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
}

/** The master key file holds the base64 of 32 bytes (as `init` writes it) and must not be readable by others. */
export function readMasterKey(file: string, flag = "master-key-file"): Buffer {
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch (error) {
    throw new UsageError(`--${flag}: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
  if ((mode & 0o077) !== 0) throw new UsageError(`--${flag}: ${file} is readable by group or others (chmod 600 it)`);
  const key = decodeMasterKey(readFileSync(file, "utf8"));
  if (!key) throw new UsageError(`--${flag}: ${file} must hold the base64 of ${MASTER_KEY_BYTES} random bytes`);
  return key;
}

export function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text) ?? /^()()(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || !Number.isInteger(port) || port > 65535) throw new UsageError(`--listen: "${text}" is not ADDR:PORT (e.g. 0.0.0.0:${DEFAULT_STATE_PORT})`);
  return { host: match[1] || match[2] || "0.0.0.0", port };
}

function init(flags: Flags, io: CliIo): number {
  const dir = one(flags, "data")!;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // mkdir sets the mode only on a directory it creates.
  chmodSync(dir, 0o700);
  const paths = { masterKey: join(dir, DATA_FILES.masterKey), cert: join(dir, DATA_FILES.cert), key: join(dir, DATA_FILES.key) };
  for (const path of Object.values(paths)) {
    // Never overwrite: a new master key would invalidate every host URI.
    if (existsSync(path)) throw new Error(`${path} already exists; remove it first to start over`);
  }
  const names = flags.get("name") ?? ["sitelink-state"];
  const tls = selfSignedCertificate({ commonName: names[0], names });
  writeFileSync(paths.masterKey, `${randomBytes(MASTER_KEY_BYTES).toString("base64")}\n`, { mode: 0o600, flag: "wx" });
  writeFileSync(paths.key, tls.keyPem, { mode: 0o600, flag: "wx" });
  writeFileSync(paths.cert, tls.certPem, { mode: 0o644, flag: "wx" });
  io.out(`master key   ${paths.masterKey}\ncertificate  ${paths.cert}\nprivate key  ${paths.key}\nfingerprint  ${tls.fingerprint}\n`);
  return 0;
}

async function serve(flags: Flags, io: CliIo): Promise<number> {
  const dir = one(flags, "data")!;
  const cert = readFlagFile(flags, "tls-cert", join(dir, DATA_FILES.cert));
  const key = readFlagFile(flags, "tls-key", join(dir, DATA_FILES.key));
  const masterKey = readMasterKey(one(flags, "master-key-file") ?? join(dir, DATA_FILES.masterKey));
  const listen = parseListen(one(flags, "listen") ?? `0.0.0.0:${DEFAULT_STATE_PORT}`);
  // Listening before start returns: a SIGTERM from then on must close the service, not kill it.
  const stopped = new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  const service = await startStateService({
    topologyFile: one(flags, "topology")!,
    dataDir: dir,
    tls: { cert, key },
    masterKey,
    listen,
    logger: jsonLogger((line) => io.err(line)),
  });
  await stopped;
  await service.close();
  return 0;
}

async function status(flags: Flags, io: CliIo): Promise<number> {
  const dir = one(flags, "data")!;
  if (!existsSync(join(dir, DATABASE_FILE))) throw new UsageError(`--data: no store in ${dir} (has the service run there?)`);
  const store = new SqliteStore(dir, { readonly: true });
  try {
    const loaded = await store.load();
    if (!loaded.state) {
      io.out("no state stored yet\n");
      return 0;
    }
    io.out(formatStatus(loaded.state.hosts, loaded.generation, loaded.state.at, loaded.reports.map((r) => [r.hostId, r.report.appliedGeneration])));
    return 0;
  } finally {
    await store.close();
  }
}

/** The status table: one row per host, sorted by link, location, host. */
export function formatStatus(hosts: HostView[], generation: number, at: number, applied: [string, number][] = []): string {
  const appliedBy = new Map(applied);
  const when = (t: number | null) => (t === null ? "never" : new Date(t).toISOString().replace(".000Z", "Z"));
  const rows = [...hosts]
    .sort((a, b) => a.link.localeCompare(b.link) || a.location.localeCompare(b.location) || a.hostId.localeCompare(b.hostId))
    .map((h) => [h.link, h.location, h.hostId, statusOf(h), when(h.lastSeen), String(appliedBy.get(h.hostId) ?? "-")]);
  const table = [["LINK", "LOCATION", "HOST", "STATUS", "LAST SEEN", "APPLIED GEN"], ...rows];
  const widths = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
  const lines = table.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join("  ").trimEnd());
  return `generation ${generation}, as stored at ${when(at)} (a running service stores roles within 2 s of a decision, last-seen times every 10 s)\n${lines.join("\n")}\n`;
}

/** The status, with what the engine keeps for the data plane's sake: an offline host's role, a silent host's liveness. */
function statusOf(h: HostView): string {
  if (h.role === "active" && !h.online) return "offline (keeps role)";
  return h.silent && h.status === "active" ? "active (silent)" : h.status;
}

async function rotatePsk(flags: Flags, io: CliIo): Promise<number> {
  const dir = one(flags, "data")!;
  const linkName = one(flags, "link")!;
  const ends = one(flags, "pair")!.split(",");
  if (ends.length !== 2 || !ends[0] || !ends[1]) throw new UsageError(`--pair: expected two location names separated by a comma, e.g. --pair aws,office`);
  if (!existsSync(join(dir, DATABASE_FILE))) throw new UsageError(`--data: no store in ${dir} (has the service run there?)`);
  const store = new SqliteStore(dir);
  try {
    const topology = (await store.load()).topology as Topology | undefined;
    const link = topology?.links.find((l) => l.name === linkName);
    if (!link) throw new UsageError(`--link: no link "${linkName}" in the stored topology`);
    const pair = sortedPair(ends[0], ends[1]);
    if (!connectedPairs(link).some(([a, b]) => sortedPair(a, b).join() === pair.join())) {
      throw new UsageError(`--pair: locations ${pair.join(",")} are not a connected pair of link "${linkName}"`);
    }
    await store.rotatePsk(link.name, pair, newPsk());
    await store.appendEvent({ at: Date.now(), kind: "psk-rotated", detail: { link: link.name, pair } });
    io.out(`rotated the PSK of ${link.name} ${pair.join(",")}; a running service hands it to both locations within a second\n`);
    return 0;
  } finally {
    await store.close();
  }
}

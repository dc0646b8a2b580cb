// `sitelink state …`: serve, status, rotate-psk, fingerprint, init.
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connectedPairs, type Topology } from "../contract/topology";
import { DEFAULT_STATE_PORT, isFingerprint } from "../contract/uri";
import { fetchOperatorStatus, readiness } from "../contract/operator";
import type { OperatorStatus } from "../contract/protocol";
import { decodeMasterKey, deriveOperatorKey, MASTER_KEY_BYTES } from "../contract/signing";
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
  status      --url URL --fingerprint FP (--operator-key-file F | --master-key-file F) [--json]
              from anywhere: hosts, tunnels and problems as the running service sees them, and
              whether the link is ready (exit 0 ready, 1 not ready)
  operator-key (--data DIR | --master-key-file F)   the operator key (read-only status) on stdout
  rotate-psk  --data DIR --link LINK --pair A,B  new PSK for a location pair; a running service hands it out within a second
  fingerprint --tls-cert F                      SHA-256 fingerprint that host URIs pin
`;

interface FlagSpec {
  required?: string[];
  optional?: string[];
  repeatable?: string[];
  /** Flags without a value. */
  switches?: string[];
}

const COMMANDS: Record<string, FlagSpec> = {
  init: { required: ["data"], repeatable: ["name"] },
  serve: { required: ["topology", "data"], optional: ["tls-cert", "tls-key", "master-key-file", "listen"] },
  status: { optional: ["data", "url", "fingerprint", "operator-key-file", "master-key-file"], switches: ["json"] },
  "operator-key": { optional: ["data", "master-key-file"] },
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
      case "operator-key":
        io.out(`${deriveOperatorKey(masterKeyOf(flags))}\n`);
        return 0;
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
  const known = new Set([...(spec.required ?? []), ...(spec.optional ?? []), ...(spec.repeatable ?? []), ...(spec.switches ?? [])]);
  const flags: Flags = new Map();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!match) throw new UsageError(`unexpected argument "${arg}"`);
    const name = match[1]!;
    if (!known.has(name)) throw new UsageError(`unknown flag --${name}`);
    if (spec.switches?.includes(name)) {
      if (match[2] !== undefined) throw new UsageError(`--${name} takes no value`);
      if (flags.has(name)) throw new UsageError(`--${name} given twice`);
      flags.set(name, ["true"]);
      continue;
    }
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
  const key = decodeMasterKey(readSecretFile(file, flag));
  if (!key) throw new UsageError(`--${flag}: ${file} must hold the base64 of ${MASTER_KEY_BYTES} random bytes`);
  return key;
}

/** The text of a file that holds a secret, refused when group or others may read it. */
function readSecretFile(file: string, flag: string): string {
  try {
    if ((statSync(file).mode & 0o077) !== 0) throw new UsageError(`--${flag}: ${file} is readable by group or others (chmod 600 it)`);
    return readFileSync(file, "utf8");
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`--${flag}: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
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

/** Exactly one of the flags named: its name. */
function oneOf(flags: Flags, names: string[]): string {
  const given = names.filter((n) => flags.has(n));
  if (given.length !== 1) throw new UsageError(`give one of ${names.map((n) => `--${n}`).join(" or ")}`);
  return given[0]!;
}

/** The master key, from --master-key-file or the data directory `init` wrote. */
function masterKeyOf(flags: Flags): Buffer {
  return oneOf(flags, ["data", "master-key-file"]) === "data" ? readMasterKey(join(one(flags, "data")!, DATA_FILES.masterKey), "data") : readMasterKey(one(flags, "master-key-file")!);
}

async function status(flags: Flags, io: CliIo): Promise<number> {
  if (oneOf(flags, ["data", "url"]) === "url") return remoteStatus(flags, io);
  for (const flag of ["fingerprint", "operator-key-file", "master-key-file", "json"]) {
    if (flags.has(flag)) throw new UsageError(`--${flag} goes with --url, not --data`);
  }
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

/** The running service's status over its operator endpoint, and whether the link is ready. */
async function remoteStatus(flags: Flags, io: CliIo): Promise<number> {
  const url = one(flags, "url")!;
  if (!/^https:\/\/[^/?#]+\/?$/.test(url)) throw new UsageError(`--url: "${url}" is not https://host[:port]`);
  const fingerprint = one(flags, "fingerprint");
  if (fingerprint === undefined) throw new UsageError("--fingerprint is required with --url");
  if (!isFingerprint(fingerprint)) throw new UsageError("--fingerprint: must be the SHA-256 fingerprint of the service certificate (64 hex digits)");
  const operatorKey =
    oneOf(flags, ["operator-key-file", "master-key-file"]) === "operator-key-file" ? readOperatorKey(one(flags, "operator-key-file")!) : deriveOperatorKey(masterKeyOf(flags));
  const status = await fetchOperatorStatus(url, fingerprint, operatorKey);
  const verdict = readiness(status);
  if (flags.has("json")) io.out(`${JSON.stringify({ ...verdict, status }, null, 2)}\n`);
  else io.out(formatOperatorStatus(status, url, verdict.hosts));
  return verdict.ready ? 0 : 1;
}

/** An operator key file holds the key `operator-key` prints and must not be readable by others. */
function readOperatorKey(file: string): string {
  const flag = "operator-key-file";
  const key = readSecretFile(file, flag).trim();
  if (!/^[A-Za-z0-9_-]{43}$/.test(key)) throw new UsageError(`--${flag}: ${file} must hold the key \`sitelink state operator-key\` prints`);
  return key;
}

/** The operator's view: one row per host, then every host that is not ready and why. */
export function formatOperatorStatus(status: OperatorStatus, url: string, verdicts: { id: string; ready: boolean; reason: string }[]): string {
  const rows = status.links.flatMap((link) =>
    link.locations.flatMap((location) =>
      location.hosts.map((h) => [
        link.name,
        location.name,
        h.id,
        h.status,
        h.role,
        h.lastContactMsAgo === null ? "never" : `${Math.round(h.lastContactMsAgo / 1000)} s ago`,
        h.agentVersion ?? "-",
        h.tunnels.map((t) => `${t.location}:${t.state}`).join(",") || "-",
      ]),
    ),
  );
  const waiting = verdicts.filter((v) => !v.ready);
  const verdict = waiting.length === 0 ? "ready" : `not ready:\n${waiting.map((v) => `  ${v.id}: ${v.reason}`).join("\n")}`;
  return `${url} generation ${status.generation}\n${table(["LINK", "LOCATION", "HOST", "STATUS", "ROLE", "LAST CONTACT", "AGENT", "TUNNELS"], rows)}${verdict}\n`;
}

function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => r[c]!.length)));
  return all.map((r) => `${r.map((cell, c) => cell.padEnd(widths[c]!)).join("  ").trimEnd()}\n`).join("");
}

/** The status table: one row per host, sorted by link, location, host. */
export function formatStatus(hosts: HostView[], generation: number, at: number, applied: [string, number][] = []): string {
  const appliedBy = new Map(applied);
  const when = (t: number | null) => (t === null ? "never" : new Date(t).toISOString().replace(".000Z", "Z"));
  const rows = [...hosts]
    .sort((a, b) => a.link.localeCompare(b.link) || a.location.localeCompare(b.location) || a.hostId.localeCompare(b.hostId))
    .map((h) => [h.link, h.location, h.hostId, statusOf(h), when(h.lastSeen), String(appliedBy.get(h.hostId) ?? "-")]);
  const head = `generation ${generation}, as stored at ${when(at)} (a running service stores roles within 2 s of a decision, last-seen times every 10 s)\n`;
  return head + table(["LINK", "LOCATION", "HOST", "STATUS", "LAST SEEN", "APPLIED GEN"], rows);
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

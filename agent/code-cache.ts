// Runs the bundled program through V8's code cache. Most of a cold `sitelink run` under CPU load is
// V8 parsing and compiling the 4 MiB bundle; with the cache a restart (a failover drill, a reboot,
// a new config) skips that. The cache lives in a directory only root can write (systemd's
// CacheDirectory=, or SITELINK_CODE_CACHE_DIR), is keyed by the program's SHA-256 and the Node
// version, and V8 itself rejects one that does not match the source. Without a usable directory the
// program runs exactly as before, compiled from source.
import { lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import Module, { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Script } from "node:vm";

export const CODE_CACHE_DIR_ENV = "SITELINK_CODE_CACHE_DIR";
const PREFIX = "sitelink-";
const SUFFIX = ".v8cache";

export interface Program {
  /** The CommonJS program, as esbuild wrote it. */
  source: string;
  sha256: string;
}

/** The cache directory: SITELINK_CODE_CACHE_DIR, else systemd's CACHE_DIRECTORY (its first entry). */
export function codeCacheDir(env: NodeJS.ProcessEnv): string | undefined {
  return env[CODE_CACHE_DIR_ENV] || env.CACHE_DIRECTORY?.split(":")[0] || undefined;
}

export function codeCacheFile(dir: string, program: Program): string {
  return join(dir, `${PREFIX}${program.sha256.slice(0, 16)}-${process.version}-${process.arch}${SUFFIX}`);
}

/**
 * A directory fit to hold code V8 will run: ours (created 0700 when missing), and writable by
 * nobody else. Anything else is not used (the program then compiles from source).
 */
function trustedDir(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const stat = lstatSync(dir);
    return stat.isDirectory() && stat.uid === process.getuid?.() && (stat.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

function readCache(file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch {
    return undefined;
  }
}

/** Writes the cache atomically (0600) and removes the caches of other programs or Node versions. */
function writeCache(dir: string, file: string, data: Buffer): void {
  try {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, data, { mode: 0o600 });
    renameSync(tmp, file);
    for (const name of readdirSync(dir)) {
      if (name.startsWith(PREFIX) && join(dir, name) !== file) rmSync(join(dir, name), { force: true });
    }
  } catch {
    // A read-only or full disk costs the next start its speed, nothing else.
  }
}

/** Runs `program` as the main module at `filename`, compiled with the cached code when there is one. */
export function runProgram(program: Program, filename: string, env: NodeJS.ProcessEnv = process.env): void {
  const dir = codeCacheDir(env);
  const usable = dir !== undefined && trustedDir(dir);
  const file = usable ? codeCacheFile(dir, program) : undefined;
  const cachedData = file ? readCache(file) : undefined;
  const script = new Script(Module.wrap(program.source), { filename, cachedData });
  const used = cachedData !== undefined && script.cachedDataRejected === false;
  // Once, right after the top level ran (with what start-up compiled so far), or as the program
  // exits if that is sooner: serializing stops the event loop for a while, which later on would
  // stall host checks and could cost a failover. Lean on purpose, too: V8 reads a cache whole, and
  // one of everything a long run compiled costs more to read than it saves.
  let saved = file === undefined || used;
  const save = () => {
    if (saved) return;
    saved = true;
    writeCache(dir!, file!, script.createCachedData());
  };
  if (!saved) process.once("exit", save);
  const main = new Module(filename);
  main.filename = filename;
  main.loaded = true;
  const require = createRequire(filename);
  // The program's `require.main === module` check: it is the main module.
  require.main = main;
  (script.runInThisContext() as (...args: unknown[]) => void).call(main.exports, main.exports, require, main, filename, dirname(filename));
  save();
}

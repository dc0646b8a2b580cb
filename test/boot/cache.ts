// The boot lab's build cache: `.cache/boot/` at the repo root (git-ignored). Every entry is a
// directory named by kind and a hash of everything that shapes it, built into a temp directory and
// renamed into place, so an interrupted build never leaves a half entry that a later run would trust.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { unmountUnderSync } from "./mounts";
import { secondsSince } from "./proc";

export const REPO_ROOT = resolve(__dirname, "../..");
export const CACHE_ROOT = join(REPO_ROOT, ".cache", "boot");

export interface CacheEntry {
  dir: string;
  /** False when an existing entry was reused. */
  built: boolean;
  /** Time spent building, or finding the entry when reused. */
  seconds: number;
}

/** A short stable hash of a JSON-serialisable recipe. */
export function recipeHash(recipe: unknown): string {
  return createHash("sha256").update(JSON.stringify(recipe)).digest("hex").slice(0, 16);
}

/** Returns the entry `${kind}-${key}`, building it with `build(tempDir)` first if it is missing. */
export async function cachedDir(kind: string, key: string, build: (tempDir: string) => Promise<void>): Promise<CacheEntry> {
  const start = performance.now();
  const dir = join(CACHE_ROOT, `${kind}-${key}`);
  if (existsSync(dir)) return { dir, built: false, seconds: secondsSince(start) };
  mkdirSync(CACHE_ROOT, { recursive: true });
  // Same filesystem as the entry, so the final rename is atomic.
  const temp = join(CACHE_ROOT, `.tmp-${kind}-${key}-${process.pid}`);
  const discard = () => {
    unmountUnderSync(temp);
    rmSync(temp, { recursive: true, force: true });
  };
  discard();
  mkdirSync(temp);
  // An interrupted build is discarded by the caller's exit; this covers a plain process.exit().
  process.once("exit", discard);
  try {
    await build(temp);
    unmountUnderSync(temp);
    renameSync(temp, dir);
  } catch (error) {
    discard();
    // Another run finished the same entry first: use theirs.
    if (existsSync(dir)) return { dir, built: false, seconds: secondsSince(start) };
    throw error;
  } finally {
    process.removeListener("exit", discard);
  }
  return { dir, built: true, seconds: secondsSince(start) };
}

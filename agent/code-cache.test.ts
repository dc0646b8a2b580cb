// The bundle's code cache, with the real dist/sitelink.js: written once by a run that found none
// (once its top level ran, or as it exits if sooner), used and left alone by the next,
// rewritten when V8 rejects it, never kept where others could write, and never
// needed: without a directory the program runs as before.
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CODE_CACHE_DIR_ENV, codeCacheDir } from "./code-cache";

/** Generous for a cold start of the bundle on a busy machine. */
const START_MS = 10_000;

const BUNDLE = resolve(__dirname, "../dist/sitelink.js");
const { version } = JSON.parse(readFileSync(resolve(__dirname, "../package.json"), "utf8")) as { version: string };
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function cacheDirFor(mode = 0o700): string {
  const parent = mkdtempSync(join(tmpdir(), "sl-codecache-"));
  dirs.push(parent);
  const dir = join(parent, "cache");
  mkdirSync(dir, { mode });
  chmodSync(dir, mode);
  return dir;
}

function sitelink(env: NodeJS.ProcessEnv, ...args: string[]) {
  const { [CODE_CACHE_DIR_ENV]: _unset, CACHE_DIRECTORY: _unset2, ...base } = process.env;
  return spawnSync(process.execPath, [BUNDLE, ...args], { env: { ...base, ...env }, encoding: "utf8" });
}

const cacheFiles = (dir: string) => readdirSync(dir).filter((name) => name.endsWith(".v8cache"));

describe("the bundle's code cache", () => {
  it("is written by a cold run, then used by the next one without being rewritten", () => {
    const dir = cacheDirFor();
    expect(sitelink({ [CODE_CACHE_DIR_ENV]: dir }, "version")).toMatchObject({ status: 0, stdout: `${version}\n`, stderr: "" });
    const [file] = cacheFiles(dir);
    expect(file).toMatch(new RegExp(`^sitelink-[0-9a-f]{16}-${process.version.replaceAll(".", "\\.")}-${process.arch}\\.v8cache$`));
    const path = join(dir, file!);
    expect((statSync(path).mode & 0o777).toString(8)).toBe("600");
    const written = statSync(path);
    expect(sitelink({ [CODE_CACHE_DIR_ENV]: dir }, "version")).toMatchObject({ status: 0, stdout: `${version}\n` });
    expect(statSync(path).mtimeMs).toBe(written.mtimeMs);
    expect(cacheFiles(dir)).toEqual([file]);
  });

  it("is written by a long-running command once its top level ran, and left alone by the next", async () => {
    const dir = cacheDirFor();
    const data = join(dir, "..", "state");
    expect(sitelink({}, "state", "init", "--data", data, "--name", "127.0.0.1")).toMatchObject({ status: 0 });
    const topology = join(dir, "..", "topology.json");
    const host = (id: string) => ({ id, name: id });
    writeFileSync(topology, JSON.stringify({ version: 1, links: [{ name: "l", locations: [{ name: "a", routes: ["10.1.0.0/16"], hosts: [host("a1")] }, { name: "b", routes: ["10.2.0.0/16"], hosts: [host("b1")] }] }] }));
    const serve = () => spawn(process.execPath, [BUNDLE, "state", "serve", "--topology", topology, "--data", data, "--listen", "127.0.0.1:0"], {
      env: { ...process.env, [CODE_CACHE_DIR_ENV]: dir },
      stdio: "ignore",
    });
    const stop = (child: ReturnType<typeof serve>) => new Promise((resolve) => child.once("exit", resolve).kill("SIGKILL"));
    const first = serve();
    try {
      // Killed without an exit handler running: only the save at start-up can have written it.
      await expect.poll(() => cacheFiles(dir), { timeout: START_MS, interval: 250 }).toHaveLength(1);
    } finally {
      await stop(first);
    }
    const path = join(dir, cacheFiles(dir)[0]!);
    const written = statSync(path).mtimeMs;
    const second = serve();
    try {
      await new Promise((resolve) => setTimeout(resolve, 4_000));
      expect(second.exitCode).toBeNull();
    } finally {
      await stop(second);
    }
    expect(statSync(path).mtimeMs).toBe(written);
  }, 2 * START_MS + 20_000);

  it("replaces a cache V8 rejects (damaged, or of another build) and the caches of other versions", () => {
    const dir = cacheDirFor();
    sitelink({ [CODE_CACHE_DIR_ENV]: dir }, "version");
    const [file] = cacheFiles(dir);
    const path = join(dir, file!);
    writeFileSync(path, Buffer.alloc(4096, 7));
    writeFileSync(join(dir, "sitelink-0000000000000000-v18.0.0-x64.v8cache"), "old");
    expect(sitelink({ [CODE_CACHE_DIR_ENV]: dir }, "version")).toMatchObject({ status: 0, stdout: `${version}\n` });
    expect(readFileSync(path).equals(Buffer.alloc(4096, 7))).toBe(false);
    expect(cacheFiles(dir)).toEqual([file]);
  });

  it("is not kept in a directory others can write, and is created 0700 when missing", () => {
    const open = cacheDirFor(0o777);
    expect(sitelink({ [CODE_CACHE_DIR_ENV]: open }, "version")).toMatchObject({ status: 0, stdout: `${version}\n` });
    expect(cacheFiles(open)).toEqual([]);
    const missing = join(cacheDirFor(), "new");
    expect(sitelink({ CACHE_DIRECTORY: missing }, "version")).toMatchObject({ status: 0 });
    expect((statSync(missing).mode & 0o777).toString(8)).toBe("700");
    expect(cacheFiles(missing)).toHaveLength(1);
  });

  it("runs every command as before without a directory, or when the directory cannot be made", () => {
    expect(sitelink({}, "version")).toMatchObject({ status: 0, stdout: `${version}\n` });
    const file = join(cacheDirFor(), "a-file");
    writeFileSync(file, "");
    expect(sitelink({ [CODE_CACHE_DIR_ENV]: join(file, "below") }, "version")).toMatchObject({ status: 0, stdout: `${version}\n` });
    // A failing command keeps its exit code and message through the launcher.
    const bad = sitelink({}, "no-such-command");
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("no-such-command");
    expect(existsSync(join(file, "below"))).toBe(false);
  });

  it("takes its directory from SITELINK_CODE_CACHE_DIR, else systemd's CACHE_DIRECTORY", () => {
    expect(codeCacheDir({ [CODE_CACHE_DIR_ENV]: "/a", CACHE_DIRECTORY: "/b" })).toBe("/a");
    expect(codeCacheDir({ CACHE_DIRECTORY: "/var/cache/sitelink:/var/cache/other" })).toBe("/var/cache/sitelink");
    expect(codeCacheDir({ [CODE_CACHE_DIR_ENV]: "" })).toBeUndefined();
  });
});

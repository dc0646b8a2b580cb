import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DATABASE_FILE, SqliteStore } from "./sqlite-store";
import type { Decision } from "./engine";
import { sortedPair } from "./store";
import { report } from "../../test/support/state-testkit";

const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "sitelink-store-"));
  dirs.push(dir);
  return join(dir, "data");
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe("SqliteStore", () => {
  it("keeps state, reports, decisions, PSKs and the topology across reopening", async () => {
    const dir = tempDir();
    const store = new SqliteStore(dir);
    expect(await store.load()).toEqual({ state: undefined, generation: 0, laterDecisions: [], reports: [], psks: [], topology: undefined });
    const snapshot = { version: 1 as const, generation: 3, hosts: [], locations: [] };
    await store.saveState({ generation: 5, snapshot, hosts: [], at: 1000 });
    await store.saveReports([{ hostId: "h1", at: 1, report: report({ appliedGeneration: 1 }) }]);
    await store.saveReports([{ hostId: "h1", at: 2, report: report({ appliedGeneration: 2 }) }]);
    await store.appendDecisions([
      { generation: 3, at: 10, link: "l", location: "a", from: null, to: "h1", reason: "initial" },
      { generation: 4, at: 11, link: "l", location: "a", from: "h1", to: null, reason: "offline" },
    ], 6);
    expect(await store.createPsk("l", ["a", "b"], "first")).toBe("first");
    expect(await store.createPsk("l", ["a", "b"], "second")).toBe("first");
    await store.saveTopology({ version: 1, links: [] });
    await store.close();
    expect(statSync(dir).mode & 0o777).toBe(0o700);

    const again = new SqliteStore(dir);
    expect(await again.load()).toEqual({
      state: { generation: 5, snapshot, hosts: [], at: 1000 },
      // The generation stored with the decisions is newer than the state's; decision 4 is newer than the snapshot.
      generation: 6,
      laterDecisions: [{ generation: 4, at: 11, link: "l", location: "a", from: "h1", to: null, reason: "offline" }],
      reports: [{ hostId: "h1", at: 2, report: report({ appliedGeneration: 2 }) }],
      psks: [{ link: "l", pair: ["a", "b"], psk: "first" }],
      topology: { version: 1, links: [] },
    });
    await again.close();
  });

  it("notices writes of another process (rotate-psk) and only those", async () => {
    const dir = tempDir();
    const service = new SqliteStore(dir);
    await service.createPsk("l", sortedPair("b", "a"), "old");
    expect(await service.changedElsewhere()).toBe(false);
    const cli = new SqliteStore(dir);
    await cli.rotatePsk("l", ["a", "b"], "new");
    await cli.close();
    expect(await service.changedElsewhere()).toBe(true);
    expect(await service.changedElsewhere()).toBe(false);
    expect(await service.psks()).toEqual([{ link: "l", pair: ["a", "b"], psk: "new" }]);
    await service.close();
  });

  it("opens read-only for status, refusing writes, and refuses a missing file", async () => {
    const dir = tempDir();
    await new SqliteStore(dir).close();
    const reader = new SqliteStore(dir, { readonly: true });
    await expect(reader.saveTopology({})).rejects.toThrow("read-only");
    await reader.close();
    expect(() => new SqliteStore(join(dir, "nothing-here"), { readonly: true })).toThrow();
  });

  it("keeps the store private in a directory that already exists, under a loose umask", async () => {
    const dir = tempDir();
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    // Left behind loose, say by a copy: made private too.
    writeFileSync(join(dir, `${DATABASE_FILE}-journal`), "", { mode: 0o644 });
    chmodSync(join(dir, `${DATABASE_FILE}-journal`), 0o644);
    const umask = process.umask(0o022);
    try {
      const store = new SqliteStore(dir);
      await store.createPsk("l", ["a", "b"], "secret-psk");
      expect(readdirSync(dir).sort()).toEqual([DATABASE_FILE, `${DATABASE_FILE}-journal`]);
      for (const file of readdirSync(dir)) expect([file, statSync(join(dir, file)).mode & 0o777]).toEqual([file, 0o600]);
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      await store.close();
    } finally {
      process.umask(umask);
    }
  });

  it("waits for another process's transaction instead of failing, and a lock a killed process left behind does not block a restart", async () => {
    const dir = tempDir();
    const service = new SqliteStore(dir);
    await service.createPsk("l", ["a", "b"], "first");
    // A lock held right now by another process mid-transaction is waited for, then taken.
    const lock = join(dir, `${DATABASE_FILE}.lock`);
    mkdirSync(lock);
    const other = spawn(process.execPath, ["-e", `setTimeout(() => require("node:fs").rmdirSync(${JSON.stringify(lock)}), 300)`]);
    const released = new Promise((resolve) => other.on("exit", resolve));
    await service.saveTopology({ version: 1, links: [] });
    expect(existsSync(lock)).toBe(false);
    expect(await released).toBe(0);
    expect((await service.load()).topology).toEqual({ version: 1, links: [] });
    await service.close();
    // A killed process (SIGKILL mid-transaction) leaves its lock directory: older than any transaction, it is removed.
    mkdirSync(lock);
    const old = new Date(Date.now() - 60_000);
    utimesSync(lock, old, old);
    const restarted = new SqliteStore(dir);
    await restarted.appendDecisions([{ generation: 1, at: 1, link: "l", location: "a", from: null, to: "h1", reason: "initial" }], 1);
    expect((await restarted.load()).psks).toEqual([{ link: "l", pair: ["a", "b"], psk: "first" }]);
    expect(existsSync(lock)).toBe(false);
    await restarted.close();
  });

  it("prunes old events and decisions, but never the decisions a restart replays", async () => {
    const store = new SqliteStore(tempDir());
    const decision = (generation: number, at: number): Decision => ({ generation, at, link: "l", location: "a", from: null, to: "h1", reason: "initial" });
    await store.appendDecisions([decision(1, 100), decision(2, 200), decision(3, 300), decision(4, 400)], 4);
    for (const at of [100, 200, 300, 400]) await store.appendEvent({ at, kind: "k", detail: { at } });
    // The stored snapshot covers generations up to 2; 3 and 4 are replayed onto it at start.
    await store.saveState({ generation: 4, snapshot: { version: 1, generation: 2, hosts: [], locations: [] }, hosts: [], at: 400 });
    await store.prune(350, 100);
    expect((await store.load()).laterDecisions.map((d) => d.generation)).toEqual([3, 4]);
    const rows = (table: string, column: string) => store.rows(`SELECT ${column} AS v FROM ${table} ORDER BY rowid`).map((r) => r.v);
    expect(rows("decisions", "generation")).toEqual([3, 4]);
    expect(rows("events", "at")).toEqual([400]);
    // At most the newest `keepRows` of each.
    await store.appendEvent({ at: 500, kind: "k", detail: {} });
    await store.saveState({ generation: 4, snapshot: { version: 1, generation: 4, hosts: [], locations: [] }, hosts: [], at: 500 });
    await store.prune(0, 1);
    expect(rows("decisions", "generation")).toEqual([4]);
    expect(rows("events", "at")).toEqual([500]);
    await store.close();
  });
});

import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DATABASE_FILE, SqliteStore } from "./sqlite-store";
import { sortedPair } from "./store";
import { report } from "./testkit";

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
    expect(DATABASE_FILE).toBe("state.db");
  });
});

// StateCore against a real SQLite file: what survives a crash between snapshots.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseTopology } from "../../lib/topology";
import { StateCore, replayDecisions } from "./core";
import { memoryLogger } from "./log";
import { SqliteStore } from "./sqlite-store";
import { report } from "./testkit";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const host = (id: string, priority = 1) => ({ id, name: id, priority, timeout: 60 });
const topology = parseTopology({
  version: 1,
  links: [{ name: "l", locations: [{ name: "a", routes: ["10.1.0.0/16"], hosts: [host("a1", 2), host("a2")] }, { name: "b", routes: ["10.2.0.0/16"], hosts: [host("b1")] }] }],
});

describe("StateCore", () => {
  it("restores roles from decisions stored after the last snapshot (a crash, no clean close)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sitelink-core-"));
    dirs.push(dir);
    const masterKey = randomBytes(32);
    const opts = (store: SqliteStore) => ({ store, masterKey, logger: memoryLogger() });
    const store = new SqliteStore(dir);
    const now = Date.now();
    const first = await StateCore.open(topology, opts(store), now);
    for (const id of ["a1", "a2", "b1"]) first.heartbeat(id, report(), now);
    await first.offline("a1", "stop", now + 10); // a2 takes over; only decisions are stored so far
    const generation = first.generation;
    expect(first.hosts().map((h) => [h.hostId, h.status])).toEqual([
      ["a1", "offline"],
      ["a2", "active"],
      ["b1", "active"],
    ]);
    // No close(), no flush: the stored snapshot is the one from start, with nobody online.

    const second = await StateCore.open(topology, opts(new SqliteStore(dir)), now + 20);
    expect(second.generation).toBe(generation);
    expect(second.hosts().map((h) => [h.hostId, h.status])).toEqual([
      ["a1", "offline"],
      ["a2", "active"],
      ["b1", "active"],
    ]);
    await second.close();
    await store.close();
  });

  it("replays decisions onto a snapshot", () => {
    const snapshot = {
      version: 1 as const,
      generation: 2,
      hosts: [
        { id: "a1", online: true, lastSeen: 100, offlineSince: null },
        { id: "a2", online: true, lastSeen: 100, offlineSince: null },
      ],
      locations: [{ link: "l", location: "a", active: "a1", hadActive: true }],
    };
    expect(replayDecisions(snapshot, [])).toBe(snapshot);
    expect(
      replayDecisions(snapshot, [
        { generation: 3, at: 200, link: "l", location: "a", from: "a1", to: "a2", reason: "timeout" },
        { generation: 4, at: 300, link: "l", location: "b", from: null, to: "b1", reason: "initial" },
      ]),
    ).toEqual({
      version: 1,
      generation: 4,
      hosts: [
        { id: "a1", online: false, lastSeen: 100, offlineSince: 200 },
        { id: "a2", online: true, lastSeen: 200, offlineSince: null },
        { id: "b1", online: true, lastSeen: 300, offlineSince: null },
      ],
      locations: [
        { link: "l", location: "a", active: "a2", hadActive: true },
        { link: "l", location: "b", active: "b1", hadActive: true },
      ],
    });
  });
});

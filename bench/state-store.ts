// What one write of the state service's store costs: a decision (one failover: a decision row and
// the generation, one transaction, stored before any host is told) and a report flush (N changed
// reports, one transaction), for the store the service runs (SQLite as WebAssembly, rollback
// journal, synchronous=FULL: fsync per commit) and, when it is installed, the native better-sqlite3
// the service used before (WAL, synchronous=NORMAL: no fsync per commit; and with FULL, to compare
// like with like), with the same schema and statements. Figures are medians of wall time on this machine's disk.
// Run: npx tsx bench/state-store.ts [writes] — compare with: npm install --no-save better-sqlite3
import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Decision } from "../agent/state/engine";
import { DATABASE_FILE, SqliteStore } from "../agent/state/sqlite-store";
import type { StoredReport } from "../agent/state/store";
import { report } from "../test/support/state-testkit";

const WRITES = Number(process.argv[2] ?? 200);
const REPORT_BATCHES = [1, 100, 1_000];

type Writer = Pick<SqliteStore, "appendDecisions" | "saveReports" | "close">;

/** The previous store's writes, with its pragmas and statements (only what this bench measures). */
function betterSqlite3(dir: string, synchronous: "NORMAL" | "FULL"): Writer | undefined {
  let Database: new (file: string) => {
    pragma(sql: string): unknown;
    exec(sql: string): void;
    prepare(sql: string): { run(...values: unknown[]): unknown };
    transaction(fn: () => void): () => void;
    close(): void;
  };
  try {
    Database = createRequire(__filename)("better-sqlite3");
  } catch {
    return undefined;
  }
  const db = new Database(join(dir, DATABASE_FILE));
  db.pragma("journal_mode = WAL");
  db.pragma(`synchronous = ${synchronous}`);
  db.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE decisions (generation INTEGER NOT NULL, at INTEGER NOT NULL, link TEXT NOT NULL, location TEXT NOT NULL, from_host TEXT, to_host TEXT, reason TEXT NOT NULL);
    CREATE INDEX decisions_by_generation ON decisions (generation);
    CREATE TABLE reports (host_id TEXT PRIMARY KEY, at INTEGER NOT NULL, report TEXT NOT NULL);`);
  const putMeta = db.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
  const putReport = db.prepare("INSERT INTO reports (host_id, at, report) VALUES (?, ?, ?) ON CONFLICT (host_id) DO UPDATE SET at = excluded.at, report = excluded.report");
  const putDecision = db.prepare("INSERT INTO decisions (generation, at, link, location, from_host, to_host, reason) VALUES (?, ?, ?, ?, ?, ?, ?)");
  return {
    async appendDecisions(decisions, generation) {
      db.transaction(() => {
        for (const d of decisions) putDecision.run(d.generation, d.at, d.link, d.location, d.from, d.to, d.reason);
        putMeta.run("generation", JSON.stringify(generation));
      })();
    },
    async saveReports(reports) {
      db.transaction(() => {
        for (const r of reports) putReport.run(r.hostId, r.at, JSON.stringify(r.report));
      })();
    },
    async close() {
      db.close();
    },
  };
}

async function median(times: number, fn: (i: number) => Promise<void>): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < times; i++) {
    const start = performance.now();
    await fn(i);
    samples.push(performance.now() - start);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)]!;
}

// A realistic report: an active host with two tunnels and host checks of two peers.
const hostReport = report({
  role: "active",
  appliedGeneration: 7,
  tunnels: [
    { location: "b", state: "up", peerHost: "l.b.b1", peerAddress: "198.18.0.11", since: 1_700_000_000_000 },
    { location: "c", state: "up", peerHost: "l.c.c1", peerAddress: "198.18.0.12", since: 1_700_000_000_000 },
  ],
  hostChecks: [
    { target: "l.b.b1", reachable: true, rttMs: 12, failures: 0, ageMs: 200 },
    { target: "l.b.b2", reachable: true, rttMs: 13, failures: 0, ageMs: 300 },
  ],
});

const candidates: [string, (dir: string) => Writer | undefined][] = [
  ["node-sqlite3-wasm (embedded), rollback journal, synchronous=FULL", (dir) => new SqliteStore(dir)],
  ["better-sqlite3 (native), WAL, synchronous=NORMAL (as before)", (dir) => betterSqlite3(dir, "NORMAL")],
  ["better-sqlite3 (native), WAL, synchronous=FULL (fsync per commit, as the WebAssembly store)", (dir) => betterSqlite3(dir, "FULL")],
];

async function main(): Promise<void> {
  console.log(`${WRITES} writes each (fewer for large report batches); median ms per write`);
  for (const [name, open] of candidates) {
    const dir = mkdtempSync(join(tmpdir(), "sl-bench-store-"));
    try {
      const store = open(dir);
      if (!store) {
        console.log(`${name}: not installed`);
        continue;
      }
      const decision = (i: number): Decision => ({ generation: i + 1, at: Date.now(), link: "l", location: "a", from: "l.a.a1", to: "l.a.a2", reason: "offline" });
      const decisionMs = await median(WRITES, (i) => store.appendDecisions([decision(i)], i + 1));
      const reportMs = new Map<number, number>();
      for (const batch of REPORT_BATCHES) {
        const reports: StoredReport[] = Array.from({ length: batch }, (_, h) => ({ hostId: `l.a.h${h}`, at: Date.now(), report: hostReport }));
        reportMs.set(batch, await median(Math.max(5, Math.round(WRITES / batch)), () => store.saveReports(reports)));
      }
      await store.close();
      console.log(`${name}:\n  decision write ${decisionMs.toFixed(2)} ms; report flush ${REPORT_BATCHES.map((b) => `${b}: ${reportMs.get(b)!.toFixed(2)} ms`).join(", ")}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

void main();

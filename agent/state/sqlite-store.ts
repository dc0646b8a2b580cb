// The embedded store: one SQLite file in the data directory, private to the service (the directory
// 0700, the files 0600: the PSKs are in it). SQLite runs as WebAssembly (node-sqlite3-wasm, bundled
// into dist/sitelink.js with its .wasm), so the state host installs nothing but the bundle. Its file
// layer has no shared memory, so no WAL: a rollback journal (kept, PERSIST) with synchronous=FULL, so
// a commit is on disk (fsync) before the service hands out what it stored. Its lock is a directory
// `state.db.lock` (mkdir), held only during a transaction; one left by a killed process is removed
// once it is older than any transaction can be.
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, rmdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { Database, type BindValues, type Statement } from "node-sqlite3-wasm";
import type { Decision } from "./engine";
import type { LoadedState, PskRecord, SavedState, StateStore, StoredEvent, StoredReport } from "./store";

export const DATABASE_FILE = "state.db";

/** How long events and decisions are kept, and how many of each at most (decisions a restart needs stay). */
export const RETENTION = { days: 30, rows: 100_000 } as const;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS decisions (
    generation INTEGER NOT NULL, at INTEGER NOT NULL, link TEXT NOT NULL, location TEXT NOT NULL,
    from_host TEXT, to_host TEXT, reason TEXT NOT NULL);
  CREATE INDEX IF NOT EXISTS decisions_by_generation ON decisions (generation);
  CREATE TABLE IF NOT EXISTS events (at INTEGER NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS reports (host_id TEXT PRIMARY KEY, at INTEGER NOT NULL, report TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS psks (
    link TEXT NOT NULL, a TEXT NOT NULL, b TEXT NOT NULL, psk TEXT NOT NULL, created_at INTEGER NOT NULL,
    PRIMARY KEY (link, a, b));
`;

interface DecisionRow {
  generation: number;
  at: number;
  link: string;
  location: string;
  from_host: string | null;
  to_host: string | null;
  reason: string;
}

/** No transaction holds the lock this long: a lock directory older than this was left by a killed process. */
const STALE_LOCK_MS = 10_000;
/**
 * How long a write or read waits (blocking: SQLite's calls are synchronous) for another process's
 * transaction (rotate-psk, status), or for a killed process's lock to turn stale, before failing.
 */
const BUSY_TIMEOUT_MS = STALE_LOCK_MS + 5_000;
const BUSY_RETRY_MS = 2;

export class SqliteStore implements StateStore {
  private readonly db: Database;
  private readonly lockDir: string;
  private dataVersion: number;
  private readonly prepared: Statement[] = [];
  private readonly statements;

  /**
   * Opens (creating when needed) `dir/state.db`; `readonly` for `status`, which must not write.
   * Writable, it makes the directory 0700 and the database files 0600, even when they existed.
   */
  constructor(dir: string, opts: { readonly?: boolean } = {}) {
    const file = join(dir, DATABASE_FILE);
    this.lockDir = `${file}.lock`;
    if (!opts.readonly) makePrivate(dir, file);
    this.db = new Database(file, { readOnly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
    if (!opts.readonly) {
      this.busy(() => {
        this.db.exec("PRAGMA journal_mode = PERSIST");
        this.db.exec("PRAGMA synchronous = FULL");
        this.db.exec(SCHEMA);
      });
    }
    this.dataVersion = this.readDataVersion();
    const prepare = (sql: string) => {
      const statement = this.db.prepare(sql);
      this.prepared.push(statement);
      return statement;
    };
    this.statements = opts.readonly
      ? undefined
      : {
          putMeta: prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
          putReport: prepare(
            "INSERT INTO reports (host_id, at, report) VALUES (?, ?, ?) ON CONFLICT (host_id) DO UPDATE SET at = excluded.at, report = excluded.report",
          ),
          putDecision: prepare("INSERT INTO decisions (generation, at, link, location, from_host, to_host, reason) VALUES (?, ?, ?, ?, ?, ?, ?)"),
          putEvent: prepare("INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)"),
          pruneEvents: prepare("DELETE FROM events WHERE at < ? OR rowid <= (SELECT rowid FROM events ORDER BY rowid DESC LIMIT 1 OFFSET ?)"),
          // Decisions newer than the stored snapshot are replayed at start (load): those always stay.
          pruneDecisions: prepare(
            `DELETE FROM decisions WHERE generation <= coalesce((SELECT json_extract(value, '$.snapshot.generation') FROM meta WHERE key = 'state'), 0)
               AND (at < ? OR rowid <= (SELECT rowid FROM decisions ORDER BY rowid DESC LIMIT 1 OFFSET ?))`,
          ),
          insertPsk: prepare("INSERT OR IGNORE INTO psks (link, a, b, psk, created_at) VALUES (?, ?, ?, ?, ?)"),
          replacePsk: prepare(
            "INSERT INTO psks (link, a, b, psk, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (link, a, b) DO UPDATE SET psk = excluded.psk, created_at = excluded.created_at",
          ),
        };
  }

  async load(): Promise<LoadedState> {
    return this.busy(() => {
      this.db.exec("BEGIN");
      try {
        const meta = (key: string): unknown => {
          const row = this.db.get("SELECT value FROM meta WHERE key = ?", key) as { value: string } | null;
          return row === null ? undefined : JSON.parse(row.value);
        };
        const reports = (this.db.all("SELECT host_id, at, report FROM reports") as { host_id: string; at: number; report: string }[]).map(
          (r): StoredReport => ({ hostId: r.host_id, at: r.at, report: JSON.parse(r.report) }),
        );
        const state = meta("state") as SavedState | undefined;
        const rows = this.db.all("SELECT * FROM decisions WHERE generation > ? ORDER BY generation, rowid", state?.snapshot.generation ?? 0) as unknown as DecisionRow[];
        return {
          state,
          generation: Math.max((meta("generation") as number | undefined) ?? 0, state?.generation ?? 0),
          laterDecisions: rows.map((r) => ({ generation: r.generation, at: r.at, link: r.link, location: r.location, from: r.from_host, to: r.to_host, reason: r.reason })),
          reports,
          psks: this.readPsks(),
          topology: meta("topology"),
        };
      } finally {
        this.db.exec("COMMIT");
      }
    });
  }

  async saveState(state: SavedState): Promise<void> {
    const { putMeta } = this.writable();
    this.write(() => putMeta.run(["state", JSON.stringify(state)]));
  }

  async saveReports(reports: StoredReport[]): Promise<void> {
    const { putReport } = this.writable();
    this.write(() => {
      for (const r of reports) putReport.run([r.hostId, r.at, JSON.stringify(r.report)]);
    });
  }

  async appendDecisions(decisions: Decision[], generation: number): Promise<void> {
    const { putDecision, putMeta } = this.writable();
    this.write(() => {
      for (const d of decisions) putDecision.run([d.generation, d.at, d.link, d.location, d.from, d.to, d.reason]);
      putMeta.run(["generation", JSON.stringify(generation)]);
    });
  }

  async appendEvent(event: StoredEvent): Promise<void> {
    const { putEvent } = this.writable();
    this.write(() => putEvent.run([event.at, event.kind, JSON.stringify(event.detail)]));
  }

  async prune(before: number, keepRows: number): Promise<void> {
    const { pruneEvents, pruneDecisions } = this.writable();
    this.write(() => {
      pruneEvents.run([before, keepRows]);
      pruneDecisions.run([before, keepRows]);
    });
  }

  async saveTopology(document: unknown): Promise<void> {
    const { putMeta } = this.writable();
    this.write(() => putMeta.run(["topology", JSON.stringify(document)]));
  }

  async psks(): Promise<PskRecord[]> {
    return this.busy(() => this.readPsks());
  }

  async createPsk(link: string, pair: [string, string], psk: string): Promise<string> {
    const { insertPsk } = this.writable();
    return this.write(() => {
      insertPsk.run([link, pair[0], pair[1], psk, Date.now()]);
      // Database.get, not a kept Statement's get: that one leaves its read open, and with it the lock.
      return (this.db.get("SELECT psk FROM psks WHERE link = ? AND a = ? AND b = ?", [link, pair[0], pair[1]]) as { psk: string }).psk;
    });
  }

  async rotatePsk(link: string, pair: [string, string], psk: string): Promise<void> {
    const { replacePsk } = this.writable();
    this.write(() => replacePsk.run([link, pair[0], pair[1], psk, Date.now()]));
  }

  async changedElsewhere(): Promise<boolean> {
    // data_version changes only when another connection committed.
    const version = this.busy(() => this.readDataVersion());
    const changed = version !== this.dataVersion;
    this.dataVersion = version;
    return changed;
  }

  async close(): Promise<void> {
    // The WebAssembly heap is not garbage-collected: statements are finalized before the database closes.
    for (const statement of this.prepared.splice(0)) statement.finalize();
    this.db.close();
  }

  /** Test hook: a query's rows, for tests that look at what is stored. */
  rows(sql: string, values?: BindValues): Record<string, unknown>[] {
    return this.busy(() => this.db.all(sql, values));
  }

  private readPsks(): PskRecord[] {
    const rows = this.db.all("SELECT link, a, b, psk FROM psks ORDER BY link, a, b") as { link: string; a: string; b: string; psk: string }[];
    return rows.map((r) => ({ link: r.link, pair: [r.a, r.b], psk: r.psk }));
  }

  private readDataVersion(): number {
    return (this.db.get("PRAGMA data_version") as { data_version: number }).data_version;
  }

  /** One write transaction, committed (fsync) before it returns; rolled back when `work` throws. */
  private write<T>(work: () => T): T {
    return this.busy(() => {
      this.db.exec("BEGIN IMMEDIATE");
      try {
        const result = work();
        this.db.exec("COMMIT");
        return result;
      } catch (error) {
        if (this.db.inTransaction) this.db.exec("ROLLBACK");
        throw error;
      }
    });
  }

  /**
   * Runs `work`, retrying while another process holds the lock (its transactions take milliseconds;
   * the file layer has no busy handler), and removing a lock directory left behind by a killed process.
   */
  private busy<T>(work: () => T): T {
    const deadline = Date.now() + BUSY_TIMEOUT_MS;
    for (;;) {
      try {
        return work();
      } catch (error) {
        if (!/database is locked/.test((error as Error).message) || Date.now() > deadline) throw error;
        if (!this.removeStaleLock()) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, BUSY_RETRY_MS);
      }
    }
  }

  /** True when the lock directory was older than any transaction and is now gone. */
  private removeStaleLock(): boolean {
    try {
      if (Date.now() - statSync(this.lockDir).mtimeMs < STALE_LOCK_MS) return false;
      rmdirSync(this.lockDir);
      return true;
    } catch {
      return false; // gone meanwhile: retry at once next time round
    }
  }

  private writable() {
    if (!this.statements) throw new Error("the store was opened read-only");
    return this.statements;
  }
}

/** The directory 0700 and the database files 0600; SQLite gives a new journal the database file's mode. */
function makePrivate(dir: string, file: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  try {
    chmodSync(dir, 0o700);
    closeSync(openSync(file, "a", 0o600));
    for (const f of [file, `${file}-journal`]) if (existsSync(f)) chmodSync(f, 0o600);
  } catch (error) {
    throw new Error(`data directory ${dir}: cannot make it private (0700, files 0600): ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

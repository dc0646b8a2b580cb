// The embedded store: one SQLite file (WAL) in the data directory, private to the service (the
// directory 0700, the files 0600: the PSKs are in it).
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
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

export class SqliteStore implements StateStore {
  private readonly db: Database.Database;
  private dataVersion: number;
  private readonly statements;

  /**
   * Opens (creating when needed) `dir/state.db`; `readonly` for `status`, which must not write.
   * Writable, it makes the directory 0700 and the database files 0600, even when they existed.
   */
  constructor(dir: string, opts: { readonly?: boolean } = {}) {
    const file = join(dir, DATABASE_FILE);
    if (!opts.readonly) makePrivate(dir, file);
    this.db = new Database(file, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
    if (!opts.readonly) {
      this.db.pragma("journal_mode = WAL");
      // WAL + NORMAL: a commit survives a process crash; only an OS crash may lose the last commits.
      this.db.pragma("synchronous = NORMAL");
      this.db.exec(SCHEMA);
    }
    this.db.pragma("busy_timeout = 5000");
    this.dataVersion = this.readDataVersion();
    const db = this.db;
    this.statements = opts.readonly
      ? undefined
      : {
          putMeta: db.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
          putReport: db.prepare(
            "INSERT INTO reports (host_id, at, report) VALUES (?, ?, ?) ON CONFLICT (host_id) DO UPDATE SET at = excluded.at, report = excluded.report",
          ),
          putDecision: db.prepare(
            "INSERT INTO decisions (generation, at, link, location, from_host, to_host, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
          ),
          putEvent: db.prepare("INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)"),
          pruneEvents: db.prepare("DELETE FROM events WHERE at < ? OR rowid <= (SELECT rowid FROM events ORDER BY rowid DESC LIMIT 1 OFFSET ?)"),
          // Decisions newer than the stored snapshot are replayed at start (load): those always stay.
          pruneDecisions: db.prepare(
            `DELETE FROM decisions WHERE generation <= coalesce((SELECT json_extract(value, '$.snapshot.generation') FROM meta WHERE key = 'state'), 0)
               AND (at < ? OR rowid <= (SELECT rowid FROM decisions ORDER BY rowid DESC LIMIT 1 OFFSET ?))`,
          ),
          insertPsk: db.prepare("INSERT OR IGNORE INTO psks (link, a, b, psk, created_at) VALUES (?, ?, ?, ?, ?)"),
          getPsk: db.prepare("SELECT psk FROM psks WHERE link = ? AND a = ? AND b = ?").pluck(),
          replacePsk: db.prepare(
            "INSERT INTO psks (link, a, b, psk, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (link, a, b) DO UPDATE SET psk = excluded.psk, created_at = excluded.created_at",
          ),
        };
  }

  async load(): Promise<LoadedState> {
    const meta = (key: string): unknown => {
      const row = this.db.prepare("SELECT value FROM meta WHERE key = ?").pluck().get(key) as string | undefined;
      return row === undefined ? undefined : JSON.parse(row);
    };
    const reports = (this.db.prepare("SELECT host_id, at, report FROM reports").all() as { host_id: string; at: number; report: string }[]).map(
      (r): StoredReport => ({ hostId: r.host_id, at: r.at, report: JSON.parse(r.report) }),
    );
    const state = meta("state") as SavedState | undefined;
    const rows = this.db
      .prepare("SELECT * FROM decisions WHERE generation > ? ORDER BY generation, rowid")
      .all(state?.snapshot.generation ?? 0) as DecisionRow[];
    return {
      state,
      generation: Math.max((meta("generation") as number | undefined) ?? 0, state?.generation ?? 0),
      laterDecisions: rows.map((r) => ({ generation: r.generation, at: r.at, link: r.link, location: r.location, from: r.from_host, to: r.to_host, reason: r.reason })),
      reports,
      psks: await this.psks(),
      topology: meta("topology"),
    };
  }

  async saveState(state: SavedState): Promise<void> {
    this.writable().putMeta.run("state", JSON.stringify(state));
  }

  async saveReports(reports: StoredReport[]): Promise<void> {
    const { putReport } = this.writable();
    this.db.transaction(() => {
      for (const r of reports) putReport.run(r.hostId, r.at, JSON.stringify(r.report));
    })();
  }

  async appendDecisions(decisions: Decision[], generation: number): Promise<void> {
    const { putDecision, putMeta } = this.writable();
    this.db.transaction(() => {
      for (const d of decisions) putDecision.run(d.generation, d.at, d.link, d.location, d.from, d.to, d.reason);
      putMeta.run("generation", JSON.stringify(generation));
    })();
  }

  async appendEvent(event: StoredEvent): Promise<void> {
    this.writable().putEvent.run(event.at, event.kind, JSON.stringify(event.detail));
  }

  async prune(before: number, keepRows: number): Promise<void> {
    const { pruneEvents, pruneDecisions } = this.writable();
    this.db.transaction(() => {
      pruneEvents.run(before, keepRows);
      pruneDecisions.run(before, keepRows);
    })();
  }

  async saveTopology(document: unknown): Promise<void> {
    this.writable().putMeta.run("topology", JSON.stringify(document));
  }

  async psks(): Promise<PskRecord[]> {
    const rows = this.db.prepare("SELECT link, a, b, psk FROM psks ORDER BY link, a, b").all() as { link: string; a: string; b: string; psk: string }[];
    return rows.map((r) => ({ link: r.link, pair: [r.a, r.b], psk: r.psk }));
  }

  async createPsk(link: string, pair: [string, string], psk: string): Promise<string> {
    const { insertPsk, getPsk } = this.writable();
    insertPsk.run(link, pair[0], pair[1], psk, Date.now());
    return getPsk.get(link, pair[0], pair[1]) as string;
  }

  async rotatePsk(link: string, pair: [string, string], psk: string): Promise<void> {
    this.writable().replacePsk.run(link, pair[0], pair[1], psk, Date.now());
  }

  async changedElsewhere(): Promise<boolean> {
    // data_version changes only when another connection committed.
    const version = this.readDataVersion();
    const changed = version !== this.dataVersion;
    this.dataVersion = version;
    return changed;
  }

  async close(): Promise<void> {
    this.db.close();
  }

  private readDataVersion(): number {
    return this.db.pragma("data_version", { simple: true }) as number;
  }

  private writable() {
    if (!this.statements) throw new Error("the store was opened read-only");
    return this.statements;
  }
}

/** The directory 0700 and the database files 0600; SQLite gives new -wal and -shm files the database file's mode. */
function makePrivate(dir: string, file: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  try {
    chmodSync(dir, 0o700);
    closeSync(openSync(file, "a", 0o600));
    for (const f of [file, `${file}-wal`, `${file}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
  } catch (error) {
    throw new Error(`data directory ${dir}: cannot make it private (0700, files 0600): ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

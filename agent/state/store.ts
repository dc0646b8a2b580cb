// What the state service keeps across restarts, behind a small asynchronous interface so a
// PostgreSQL implementation (several replicas) can follow the SQLite one.
import { randomBytes } from "node:crypto";
import type { HostReport } from "../contract/protocol";
import type { Decision, EngineSnapshot, HostView } from "./engine";

export interface StoredReport {
  hostId: string;
  /** Service clock (ms) when the report arrived. */
  at: number;
  report: HostReport;
}

export interface PskRecord {
  link: string;
  /** The two location names, sorted. */
  pair: [string, string];
  /** Base64 of 32 random bytes. Secret: never log. */
  psk: string;
}

export interface StoredEvent {
  at: number;
  kind: string;
  /** Non-secret details only. */
  detail: Record<string, unknown>;
}

export interface SavedState {
  /** The desired-state generation (monotonic across restarts). */
  generation: number;
  snapshot: EngineSnapshot;
  /** The engine's view of every host when the snapshot was taken, for `sitelink state status`. */
  hosts: HostView[];
  at: number;
}

export interface LoadedState {
  state: SavedState | undefined;
  /** The newest desired-state generation stored (with decisions, or with the state). */
  generation: number;
  /** Decisions newer than the stored engine snapshot, oldest first: replayed onto it at start. */
  laterDecisions: Decision[];
  reports: StoredReport[];
  psks: PskRecord[];
  /** The topology document last served (it carries no secrets). */
  topology: unknown;
}

export interface StateStore {
  load(): Promise<LoadedState>;
  saveState(state: SavedState): Promise<void>;
  saveReports(reports: StoredReport[]): Promise<void>;
  /** Stores decisions and the desired-state generation they led to, in one transaction. */
  appendDecisions(decisions: Decision[], generation: number): Promise<void>;
  appendEvent(event: StoredEvent): Promise<void>;
  /** Deletes events and decisions older than `before` (wall-clock ms) or beyond the newest `keepRows`, keeping those a restart replays. */
  prune(before: number, keepRows: number): Promise<void>;
  saveTopology(document: unknown): Promise<void>;
  psks(): Promise<PskRecord[]>;
  /** Stores `psk` unless the pair already has one; returns the pair's PSK either way. */
  createPsk(link: string, pair: [string, string], psk: string): Promise<string>;
  /** Replaces the pair's PSK. */
  rotatePsk(link: string, pair: [string, string], psk: string): Promise<void>;
  /** True when another process (e.g. `sitelink state rotate-psk`) wrote since the last call. */
  changedElsewhere(): Promise<boolean>;
  close(): Promise<void>;
}

/** Random bytes of a location pair's PSK. */
export const PSK_BYTES = 32;

/** A new PSK: base64 of PSK_BYTES random bytes. Secret: never log. */
export function newPsk(): string {
  return randomBytes(PSK_BYTES).toString("base64");
}

/** Location pairs are stored sorted, so both ends of a tunnel find the same PSK. */
export function sortedPair(a: string, b: string): [string, string] {
  return a < b ? [a, b] : [b, a];
}

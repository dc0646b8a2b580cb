// Public types of the failover engine: what it decides, how it shows a host, what it persists.
import { z } from "zod";

export type Role = "active" | "standby";

/**
 * offline → not heard from; backoff → back, but too soon after going offline; partitioned → reaches
 * fewer peers; silent → no heartbeat for its timeout, but others still reach it (a silent active host
 * shows as active, with `silent` set).
 */
export type HostStatus = "offline" | "backoff" | "partitioned" | "silent" | "available" | "active";

/** Why a host stopped being online. */
export type OfflineReason = "offline" | "timeout" | "crash-confirmed";

/** Why an online host out of backoff is still not eligible. */
export type PartitionReason = "partitioned" | "peers-lost";

/** One change of a location's active host. */
export interface Decision {
  generation: number;
  at: number;
  link: string;
  location: string;
  from: string | null;
  to: string | null;
  reason: string;
}

/** A host as the engine sees it after its last decision (an offline host may still hold the active role). */
export interface HostView {
  hostId: string;
  link: string;
  location: string;
  status: HostStatus;
  online: boolean;
  /** Online although no heartbeat came for `timeout`: other hosts still reach it (it lost the state service). */
  silent: boolean;
  eligible: boolean;
  lastSeen: number | null;
  offlineSince: number | null;
  role: Role;
}

const epochMs = z.number().int().nonnegative();

/** What survives a restart of the state service (kept in its store as JSON). */
export const engineSnapshotSchema = z.strictObject({
  version: z.literal(1),
  generation: z.int().nonnegative(),
  hosts: z.array(
    z.strictObject({
      id: z.string().min(1),
      online: z.boolean(),
      lastSeen: epochMs.nullable(),
      offlineSince: epochMs.nullable(),
    }),
  ),
  locations: z.array(
    z.strictObject({
      link: z.string().min(1),
      location: z.string().min(1),
      active: z.string().min(1).nullable(),
      /** The location has had an active host before (so a new one is not the "initial" choice). */
      hadActive: z.boolean(),
    }),
  ),
});

export type EngineSnapshot = z.infer<typeof engineSnapshotSchema>;

/** A heartbeat or offline message named a host the topology does not know. */
export class UnknownHostError extends Error {
  constructor(readonly hostId: string) {
    super(`unknown host "${hostId}"`);
    this.name = "UnknownHostError";
  }
}

/** A snapshot given to restore() is malformed; `fields` names every bad field. */
export class SnapshotError extends Error {
  constructor(readonly fields: string[], detail: string) {
    super(`invalid engine snapshot: ${detail}`);
    this.name = "SnapshotError";
  }
}

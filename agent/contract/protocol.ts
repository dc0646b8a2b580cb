// The wire contract between the link agent and the state service: one zod schema per message,
// imported by both sides. Every request is HMAC-signed (see signing.ts); so is every response.
// Content is checked as strictly as the topology it comes from (same address, CIDR, name and
// timing rules), so a signed answer with a bad field is refused as a whole.
import { z } from "zod";
import { isAddress } from "./net";
import { ESP_PROPOSALS, HOST_ID_PATTERN, IKE_PROPOSALS, NAME_PATTERN, hostAddressSchema, routeSchema, timingFields } from "./topology";

export const PROTOCOL_VERSION = 1;

/** Paths of the state service API. */
export const API = {
  /** POST PollRequest → PollResponse: heartbeat + report, answered at once or held (long-poll). */
  poll: "/v1/poll",
  /** POST OfflineRequest → OfflineResponse: graceful stop, the host is offline (and demoted) at once. */
  offline: "/v1/offline",
  /** POST ProblemRequest → {}: a host without a working agent (failed boot, refused agent) says why. */
  problem: "/v1/problem",
  /** GET → OperatorStatus: read-only, signed with the operator key (signing.ts deriveOperatorKey). */
  operatorStatus: "/v1/operator/status",
} as const;

/** Largest request body the service reads; anything larger is refused with 413. */
export const MAX_BODY_BYTES = 256 * 1024;

/** The host-check port of a host that does not report one. */
export const DEFAULT_HOST_CHECK_PORT = 9790;

/** A host's address (no zone id, not unspecified), normalized. */
const address = hostAddressSchema;
const hostId = z.string().regex(HOST_ID_PATTERN, "must be a host id (1-128 of a-z 0-9 . _ -)");
const name = z.string().regex(NAME_PATTERN, "must be a link or location name");
/** A network CIDR, normalized (`10.0.0.0/8` for `10.0.0.0/08`). */
const cidr = routeSchema;
const port = z.int().min(1).max(65535);
const epochMs = z.number().int().nonnegative();
/** Names the content of a desired state (not its generation or time): hex of a digest. */
const etag = z.string().regex(/^[0-9a-f]{16,128}$/, "must be an etag (hex)");

/** Base64 (or base64url) of at least 32 bytes: a PSK or the host-check key. */
const key = z
  .string()
  .refine((v) => /^[A-Za-z0-9+/_-]+={0,2}$/.test(v) && Buffer.from(v, "base64").length >= 32, "must be the base64 of at least 32 bytes");

export const tunnelStateSchema = z.enum(["up", "connecting", "down"]);

export const tunnelReportSchema = z.strictObject({
  /** The peer location this tunnel connects to. */
  location: name,
  state: tunnelStateSchema,
  /** The peer host the established IKE SA is with, when up. */
  peerHost: hostId.optional(),
  /** As charon saw it: informational only, so any address is accepted. */
  peerAddress: z.string().refine(isAddress, "must be an IPv4 or IPv6 address").optional(),
  /** When the tunnel last changed state (ms since epoch, agent clock). */
  since: epochMs.optional(),
});

export const hostCheckResultSchema = z.strictObject({
  target: hostId,
  reachable: z.boolean(),
  rttMs: z.number().nonnegative().optional(),
  /** How many probes in a row failed (0 when reachable). */
  failures: z.int().nonnegative().default(0),
  /** Age of this result when the report was sent, in ms (agent and service clocks may differ; the service clamps it). */
  ageMs: z.number().nonnegative(),
});

export const routeReportSchema = z.strictObject({
  provider: z.string().min(1).max(32),
  /** CIDRs this host currently points at itself. */
  applied: z.array(cidr).max(4096),
  /** The last error of the route provider, if the last apply failed. */
  error: z.string().max(1024).optional(),
});

/** What can keep a host from running the agent: the bundle failed its check, or the boot script failed. */
export const problemKindSchema = z.enum(["integrity", "bootstrap"]);

/** Longest problem message a host sends (POST /v1/problem, `installProblem`). */
export const PROBLEM_MESSAGE_MAX = 500;

/** One line of printable text (it ends up in terminals), at most PROBLEM_MESSAGE_MAX characters, never a secret. */
const problemMessage = z
  .string()
  .min(1)
  .max(PROBLEM_MESSAGE_MAX)
  .refine((v) => !/[\u0000-\u001f\u007f]/.test(v), "must be one line of printable text");

/** A problem of the host's install, as its installer recorded it (`/etc/sitelink/install-status.json`). */
export const installProblemSchema = z.strictObject({ kind: problemKindSchema, message: problemMessage });

export const hostReportSchema = z.strictObject({
  agentVersion: z.string().min(1).max(64),
  publicAddress: address.optional(),
  privateAddress: address.optional(),
  /** The TCP port this host answers host checks on; DEFAULT_HOST_CHECK_PORT when absent. */
  hostCheckPort: port.optional(),
  /** The role the agent is applying right now. */
  role: z.enum(["active", "standby"]),
  /** Generation of the desired state last applied completely. */
  appliedGeneration: z.int().nonnegative(),
  tunnels: z.array(tunnelReportSchema).max(1024),
  hostChecks: z.array(hostCheckResultSchema).max(4096),
  routes: routeReportSchema,
  /** What the installer refused (install-status.json): the agent reporting is the old one, kept. */
  installProblem: installProblemSchema.optional(),
});

export const pollRequestSchema = z.strictObject({
  protocol: z.literal(PROTOCOL_VERSION),
  hostId,
  /** The last generation the agent saw; 0 on start. The service answers at once when newer exists. */
  generation: z.int().nonnegative(),
  /** False to get an answer at once (first poll, urgent report such as a failed probe of the active host). */
  wait: z.boolean(),
  /**
   * The etag of the desired state the agent holds. When its content is still the service's, the
   * answer is an unchanged state (a few dozen bytes) instead of the whole state again.
   */
  etag: etag.optional(),
  report: hostReportSchema,
});

export const offlineRequestSchema = z.strictObject({
  protocol: z.literal(PROTOCOL_VERSION),
  hostId,
  reason: z.string().max(256),
});

/** A problem posted by a host without a working agent; the host's next poll without `installProblem` clears it. */
export const problemRequestSchema = z.strictObject({
  hostId,
  kind: problemKindSchema,
  message: problemMessage,
});

export const peerHostSchema = z.strictObject({
  id: hostId,
  publicAddress: address.optional(),
});

const ikeProposal = z.enum([...IKE_PROPOSALS, "default"]);
const espProposal = z.enum([...ESP_PROPOSALS, "default"]);

export const peerLocationSchema = z.strictObject({
  location: name,
  /** The peer location's active host, or null while it has none. */
  activeHost: peerHostSchema.nullable(),
  /**
   * The peer location's hosts in service (the active one, and the others online that did not lose the
   * role for lack of contact): IKE is accepted from all of them, so a new peer active host is admitted
   * at once, and from no other, so a host that left cannot pull the tunnel back to itself.
   */
  hosts: z.array(peerHostSchema),
  localSubnets: z.array(cidr),
  remoteSubnets: z.array(cidr),
  /** Pre-shared key of this location pair (base64). Secret: never log. */
  psk: key,
  /** Proposals in strongSwan syntax, preferred first (`default`: strongSwan's own list). */
  ike: z.array(ikeProposal).min(1),
  esp: z.array(espProposal).min(1),
  /** True when this side initiates (the lower location name), so both ends never race. */
  initiator: z.boolean(),
});

export const hostCheckTargetSchema = z.strictObject({
  hostId,
  address,
  port,
  /** `location`: same-location host on its private address (fast crash detection); `peer`: other location, public address. */
  scope: z.enum(["location", "peer"]),
});

/** The topology's ranges, so an answer with a heartbeat of 4e6 s is refused. */
export const timingSchema = z.strictObject(timingFields);

export const desiredStateSchema = z.strictObject({
  protocol: z.literal(PROTOCOL_VERSION),
  /** When this host's state last changed (not the newest generation of all hosts). */
  generation: z.int().nonnegative(),
  hostId,
  link: name,
  location: name,
  role: z.enum(["active", "standby"]),
  /** The active host of this host's own location (may be this host), or null. */
  activeHost: hostId.nullable(),
  /** One entry per connected peer location; empty unless this host is active. */
  peers: z.array(peerLocationSchema),
  firewall: z.strictObject({
    /** Every link host address (public and private): the only sources admitted on UDP 500/4500 and TCP 9790. */
    allow: z.array(address),
  }),
  hostCheck: z.strictObject({
    /** Link-wide key for the host-check challenge (base64url). Secret: never log. */
    key,
    targets: z.array(hostCheckTargetSchema),
  }),
  routes: z.strictObject({
    /** Remote CIDRs to point at this host; empty unless this host is active. */
    pointHere: z.array(cidr),
  }),
  timing: timingSchema,
  /** Names this content: sent back in the next poll. */
  etag,
  /** Service clock (ms since epoch) when the answer was made. */
  serverTime: epochMs,
});

/** The answer to a poll whose etag still names the host's desired state: only what moves. */
export const unchangedStateSchema = z.strictObject({
  protocol: z.literal(PROTOCOL_VERSION),
  generation: z.int().nonnegative(),
  hostId,
  unchanged: z.literal(true),
  etag,
  serverTime: epochMs,
});

/** The schema a poll answer must meet: one that says it is unchanged must be exactly that, anything else a whole state. */
export function pollAnswerSchema(json: unknown): z.ZodType<UnchangedState | DesiredState> {
  return typeof json === "object" && json !== null && "unchanged" in json ? unchangedStateSchema : desiredStateSchema;
}

export const offlineResponseSchema = z.strictObject({
  protocol: z.literal(PROTOCOL_VERSION),
  generation: z.int().nonnegative(),
});

/** How the engine shows a host (agent/state/engine HostStatus). */
export const HOST_STATUSES = ["offline", "backoff", "partitioned", "silent", "available", "active"] as const;

export const operatorHostSchema = z.strictObject({
  id: hostId,
  /** `offline` also for a host never heard from (then `lastContactMsAgo` is null). */
  status: z.enum(HOST_STATUSES),
  role: z.enum(["active", "standby"]),
  /** Milliseconds since the host's last poll; null when it never polled. */
  lastContactMsAgo: z.number().nonnegative().nullable(),
  /** When the host went offline (service clock, ms since epoch); null while online or never seen. */
  offlineSince: epochMs.nullable(),
  agentVersion: z.string().nullable(),
  /** As the host last reported them: one per peer location it has a tunnel to (only an active host has). */
  tunnels: z.array(z.strictObject({ location: name, state: tunnelStateSchema })),
  /** The host's last problem: from a running agent's report, or posted to /v1/problem. */
  lastProblem: z
    .strictObject({ kind: problemKindSchema, message: z.string(), at: epochMs, source: z.enum(["report", "problem"]) })
    .nullable(),
});

export const operatorStatusSchema = z.strictObject({
  protocol: z.literal(PROTOCOL_VERSION),
  generation: z.int().nonnegative(),
  serverTime: epochMs,
  links: z.array(
    z.strictObject({
      name,
      locations: z.array(
        z.strictObject({
          name,
          activeHost: hostId.nullable(),
          /** The locations this one has a tunnel with (the link's connections). */
          connectedTo: z.array(name),
          hosts: z.array(operatorHostSchema),
        }),
      ),
    }),
  ),
});

/** Body of every 4xx/5xx answer. */
export const errorResponseSchema = z.strictObject({
  error: z.string(),
  /** Field paths at fault, when the body was malformed. */
  fields: z.array(z.string()).optional(),
});

export type TunnelState = z.infer<typeof tunnelStateSchema>;
export type TunnelReport = z.infer<typeof tunnelReportSchema>;
export type HostCheckResult = z.infer<typeof hostCheckResultSchema>;
export type RouteReport = z.infer<typeof routeReportSchema>;
export type HostReport = z.infer<typeof hostReportSchema>;
export type PollRequest = z.infer<typeof pollRequestSchema>;
export type OfflineRequest = z.infer<typeof offlineRequestSchema>;
export type ProblemKind = z.infer<typeof problemKindSchema>;
export type InstallProblem = z.infer<typeof installProblemSchema>;
export type ProblemRequest = z.infer<typeof problemRequestSchema>;
export type OperatorHost = z.infer<typeof operatorHostSchema>;
export type OperatorStatus = z.infer<typeof operatorStatusSchema>;
export type PeerHost = z.infer<typeof peerHostSchema>;
export type PeerLocation = z.infer<typeof peerLocationSchema>;
export type HostCheckTarget = z.infer<typeof hostCheckTargetSchema>;
export type DesiredState = z.infer<typeof desiredStateSchema>;
export type UnchangedState = z.infer<typeof unchangedStateSchema>;
export type OfflineResponse = z.infer<typeof offlineResponseSchema>;
export type ErrorResponse = z.infer<typeof errorResponseSchema>;

// The wire contract between the link agent and the state service: one zod schema per message,
// imported by both sides. Every request is HMAC-signed (see signing.ts); so is every response.
import { z } from "zod";
import { isAddress } from "../lib/net";

export const PROTOCOL_VERSION = 1;

/** Paths of the state service API. */
export const API = {
  /** POST PollRequest → PollResponse: heartbeat + report, answered at once or held (long-poll). */
  poll: "/v1/poll",
  /** POST OfflineRequest → OfflineResponse: graceful stop, the host is offline (and demoted) at once. */
  offline: "/v1/offline",
} as const;

/** Largest request body the service reads; anything larger is refused with 413. */
export const MAX_BODY_BYTES = 256 * 1024;

const address = z.string().refine(isAddress, { message: "must be an IPv4 or IPv6 address" });
const hostId = z.string().min(1).max(128);
const cidr = z.string().min(3).max(64);
const epochMs = z.number().int().nonnegative();

export const tunnelStateSchema = z.enum(["up", "connecting", "down"]);

export const tunnelReportSchema = z.strictObject({
  /** The peer location this tunnel connects to. */
  location: z.string().min(1).max(63),
  state: tunnelStateSchema,
  /** The peer host the established IKE SA is with, when up. */
  peerHost: hostId.optional(),
  peerAddress: address.optional(),
  /** When the tunnel last changed state (ms since epoch, agent clock). */
  since: epochMs.optional(),
});

export const hostCheckResultSchema = z.strictObject({
  target: hostId,
  reachable: z.boolean(),
  rttMs: z.number().nonnegative().optional(),
  /** How many probes in a row failed (0 when reachable). */
  failures: z.int().nonnegative().default(0),
  /** Age of this result when the report was sent, in ms (agent and service clocks may differ). */
  ageMs: z.number().nonnegative(),
});

export const routeReportSchema = z.strictObject({
  provider: z.string().min(1).max(32),
  /** CIDRs this host currently points at itself. */
  applied: z.array(cidr).max(4096),
  /** The last error of the route provider, if the last apply failed. */
  error: z.string().max(1024).optional(),
});

export const hostReportSchema = z.strictObject({
  agentVersion: z.string().min(1).max(64),
  publicAddress: address.optional(),
  privateAddress: address.optional(),
  /** The role the agent is applying right now. */
  role: z.enum(["active", "standby"]),
  /** Generation of the desired state last applied completely. */
  appliedGeneration: z.int().nonnegative(),
  tunnels: z.array(tunnelReportSchema).max(1024),
  hostChecks: z.array(hostCheckResultSchema).max(4096),
  routes: routeReportSchema,
});

export const pollRequestSchema = z.strictObject({
  protocol: z.literal(PROTOCOL_VERSION),
  hostId,
  /** The last generation the agent saw; 0 on start. The service answers at once when newer exists. */
  generation: z.int().nonnegative(),
  /** False to get an answer at once (first poll, urgent report such as a failed probe of the active host). */
  wait: z.boolean(),
  report: hostReportSchema,
});

export const offlineRequestSchema = z.strictObject({
  protocol: z.literal(PROTOCOL_VERSION),
  hostId,
  reason: z.string().max(256),
});

export const peerHostSchema = z.strictObject({
  id: hostId,
  publicAddress: address.optional(),
});

export const peerLocationSchema = z.strictObject({
  location: z.string(),
  /** The peer location's active host, or null while it has none. */
  activeHost: peerHostSchema.nullable(),
  /** Every host of the peer location: IKE is accepted from all, so a new peer active host is admitted at once. */
  hosts: z.array(peerHostSchema),
  localSubnets: z.array(cidr),
  remoteSubnets: z.array(cidr),
  /** Pre-shared key of this location pair (base64). Secret: never log. */
  psk: z.string().min(32),
  /** Proposals in strongSwan syntax, preferred first. */
  ike: z.array(z.string()).min(1),
  esp: z.array(z.string()).min(1),
  /** True when this side initiates (the lower location name), so both ends never race. */
  initiator: z.boolean(),
});

export const hostCheckTargetSchema = z.strictObject({
  hostId,
  address,
  port: z.int().min(1).max(65535),
  /** `location`: same-location host on its private address (fast crash detection); `peer`: other location, public address. */
  scope: z.enum(["location", "peer"]),
});

export const timingSchema = z.strictObject({
  heartbeat: z.number().positive(),
  probeInterval: z.number().positive(),
  probeTimeout: z.number().positive(),
});

export const desiredStateSchema = z.strictObject({
  protocol: z.literal(PROTOCOL_VERSION),
  generation: z.int().nonnegative(),
  hostId,
  link: z.string(),
  location: z.string(),
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
    /** Link-wide key for the host-check challenge (base64). Secret: never log. */
    key: z.string().min(32),
    targets: z.array(hostCheckTargetSchema),
  }),
  routes: z.strictObject({
    /** Remote CIDRs to point at this host; empty unless this host is active. */
    pointHere: z.array(cidr),
  }),
  timing: timingSchema,
  /** Service clock (ms since epoch) when the answer was made. */
  serverTime: epochMs,
});

export const offlineResponseSchema = z.strictObject({
  protocol: z.literal(PROTOCOL_VERSION),
  generation: z.int().nonnegative(),
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
export type PeerHost = z.infer<typeof peerHostSchema>;
export type PeerLocation = z.infer<typeof peerLocationSchema>;
export type HostCheckTarget = z.infer<typeof hostCheckTargetSchema>;
export type DesiredState = z.infer<typeof desiredStateSchema>;
export type OfflineResponse = z.infer<typeof offlineResponseSchema>;
export type ErrorResponse = z.infer<typeof errorResponseSchema>;

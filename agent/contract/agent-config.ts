// The agent's configuration file (/etc/sitelink/agent.json, mode 0600). Written by the CLI
// (`sitelink add-uri`, `set-provider`, …) and by the cloud bootstrap the Pulumi components render.
import { z } from "zod";
import { isAddress } from "./net";
import { DEFAULT_HOST_CHECK_PORT } from "./protocol";
import { routeSchema } from "./topology";

export const DEFAULT_CONFIG_PATH = "/etc/sitelink/agent.json";
export const DEFAULT_VICI_SOCKET = "/var/run/charon.vici";

/** Priority of the routes a GCP host creates (lower wins), unless its config says otherwise. */
export const GCP_ROUTE_PRIORITY = 900;

export const ROUTE_PROVIDERS = ["aws", "gcp", "azure", "oracle", "kernel", "file", "none", "lab"] as const;

const ipAddress = z.string().refine(isAddress, "must be an IP address");
export type RouteProviderName = (typeof ROUTE_PROVIDERS)[number];

/** Where a host URI is kept outside the config file (it carries the host secret). */
export const uriSourceSchema = z.discriminatedUnion("kind", [
  z.strictObject({
    kind: z.literal("aws-ssm"),
    /** SecureString parameter holding the whole host URI; readable only by this host's role. */
    parameter: z.string().min(1),
    region: z.string().min(1).optional(),
  }),
  z.strictObject({
    kind: z.literal("gcp-secret-manager"),
    /** projects/P/secrets/S/versions/V, readable only by this host's service account. */
    name: z.string().regex(/^projects\/[^/]+\/secrets\/[^/]+\/versions\/[^/]+$/, "must be projects/P/secrets/S/versions/V"),
  }),
]);

/** SHA-256, lower-case hex. */
export const sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, "must be a SHA-256 (64 lower-case hex digits)");

/**
 * Where a host's installer fetches the agent: `s3://BUCKET/KEY`, `gs://BUCKET/OBJECT`, `https://…`,
 * `npm:SPEC` (a package tarball) or an absolute path. No spaces or quotes (it reaches a shell).
 */
export const agentSourceSchema = z.string().regex(/^(s3:\/\/|gs:\/\/|https?:\/\/|npm:|\/)[^\s'"`$\\]+$/, "must be s3://…, gs://…, https://…, npm:SPEC or an absolute path, without spaces or quotes");

export const agentConfigSchema = z.strictObject({
  /** Where the installer fetched this host's agent (cloud hosts; the agent itself does not read it). */
  agentSource: agentSourceSchema.optional(),
  /** SHA-256 the installer verified that agent against before installing it. */
  agentSha256: sha256Schema.optional(),
  /** Host URIs added with `sitelink add-uri` (secrets inside: the file is 0600). */
  uris: z.array(z.string()).default([]),
  /** Host URIs kept in the cloud's secret store, read at start. */
  uriSources: z.array(uriSourceSchema).default([]),
  provider: z.enum(ROUTE_PROVIDERS).default("none"),
  aws: z
    .strictObject({
      /** Route tables of this host's location; the only ones the agent ever changes. */
      routeTableIds: z.array(z.string().regex(/^rtb-[0-9a-f]+$/, "must be a route table id (rtb-…)")).min(1),
      /**
       * The network interfaces of the location's hosts: a route is moved here only from one of them
       * (or from none: a missing route is created). Unset: from any network interface, never from
       * a gateway, peering, NAT or transit gateway.
       */
      linkInterfaceIds: z.array(z.string().regex(/^eni-[0-9a-f]+$/, "must be a network interface id (eni-…)")).min(1).optional(),
      region: z.string().min(1).optional(),
    })
    .optional(),
  gcp: z
    .strictObject({
      /** Network self-link or name the routes belong to. */
      network: z.string().min(1),
      project: z.string().min(1).optional(),
      /** Route priority (lower wins); the agent's routes use it. */
      priority: z.int().min(0).max(65535).default(GCP_ROUTE_PRIORITY),
    })
    .optional(),
  azure: z
    .strictObject({
      /** Route tables of this host's location (full ARM ids); the only ones the agent ever changes. */
      routeTables: z
        .array(z.string().regex(/^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.Network\/routeTables\/[^/]+$/i, "must be a route table id (/subscriptions/…/resourceGroups/…/providers/Microsoft.Network/routeTables/NAME)"))
        .min(1),
    })
    .optional(),
  oracle: z
    .strictObject({
      /** Route tables of this host's location; the only ones the agent ever changes. */
      routeTableIds: z.array(z.string().regex(/^ocid1\.routetable\.[a-z0-9][a-z0-9.-]*$/, "must be a route table OCID (ocid1.routetable.…)")).min(1),
      /** @default the instance's region from the metadata service */
      region: z.string().regex(/^[a-z0-9-]+$/, "must be a region identifier (e.g. eu-frankfurt-1)").optional(),
    })
    .optional(),
  /** The agent runs with / as its directory: a relative path would not be where the operator meant. */
  file: z.strictObject({ path: z.string().startsWith("/", "must be an absolute path") }).optional(),
  kernel: z.strictObject({ device: z.string().min(1).optional(), via: ipAddress.optional() }).optional(),
  lab: z.strictObject({ namespace: z.string().min(1), via: ipAddress }).optional(),
  /** Manage the agent's own iptables/ip6tables chain (`firewall-on`). */
  firewall: z.boolean().default(false),
  /**
   * The remote CIDRs this host may point at itself, whatever the state service sends: each desired
   * CIDR must lie inside one of them. Unset: any CIDR but a default route (0.0.0.0/0, ::/0), which
   * must be listed to be taken over.
   */
  allowedRoutes: z.array(routeSchema).max(4096).optional(),
  /** Delete routes this host created once they are no longer desired (`remove-routes-on`). */
  removeRoutes: z.boolean().default(false),
  /** Serve and run host checks (`host-check-off` disables both). */
  hostCheck: z.boolean().default(true),
  hostCheckPort: z.int().min(1).max(65535).default(DEFAULT_HOST_CHECK_PORT),
  /** `set-mtu`: TCP MSS of traffic to and from the remote subnets is clamped to fit this MTU; unset = no clamp. */
  mtu: z.int().min(576).max(9000).optional(),
  /** Override address detection (NAT, several interfaces). */
  publicAddress: ipAddress.optional(),
  privateAddress: ipAddress.optional(),
  viciSocket: z.string().min(1).default(DEFAULT_VICI_SOCKET),
  logLevel: z.enum(["debug", "info", "warn", "error"]).default("info"),
});

export type AgentConfig = z.output<typeof agentConfigSchema>;
export type AgentConfigInput = z.input<typeof agentConfigSchema>;
export type UriSource = z.output<typeof uriSourceSchema>;

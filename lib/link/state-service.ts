// What every state service a link runs has in common, whichever location kind hosts it: the handle
// the Link reads, the arguments the Link passes, the keys and certificate, and their defaults.
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import * as tls from "@pulumi/tls";
import { z } from "zod";
import { cidrProblem } from "../../agent/contract/net";
import { decodeMasterKey, MASTER_KEY_BYTES } from "../../agent/contract/signing";
import { certificateFingerprint, DEFAULT_STATE_PORT } from "../../agent/contract/uri";
import { agentPackageSchema, type AgentPackage } from "../bootstrap/agent-source";
import { inputString, isRecord } from "./args";
import type { LinkHost } from "./location";

/** A state service the link runs, as the Link and its hosts use it. */
export interface StateServiceHandle extends pulumi.ComponentResource {
  /** The location kind it runs in (`LocationSpec.cloud`). */
  readonly kind: string;
  /** `https://ADDRESS:port`. */
  readonly url: pulumi.Output<string>;
  /** The public address agents reach it at. */
  readonly address: pulumi.Output<string>;
  readonly port: number;
  /** SHA-256 fingerprint of its certificate (lower-case hex). */
  readonly fingerprint: pulumi.Output<string>;
  /** Base64 of 32 random bytes. Secret. */
  readonly masterKey: pulumi.Output<string>;
}

/** What every state service component takes besides its location and its kind's own settings. */
export interface StateServiceArgsBase {
  /** The link the service serves. */
  link: string;
  /** The link hosts: the only sources admitted to the service port (with `adminCidrs`). */
  hosts: LinkHost[];
  /** The topology document (JSON), delivered through the cloud's parameter or secret store. */
  topology: pulumi.Input<string>;
  /**
   * What must exist before a topology is published: the routes Pulumi creates for the locations it
   * names (an agent would otherwise create a missing route itself, and the next `pulumi up` fail on it).
   * @default nothing
   */
  topologyDependsOn?: pulumi.Input<pulumi.Resource[]>;
  /** The agent the user named; absent: this library's bundle, published by the location. */
  agentPackage?: AgentPackage;
  /**
   * Admitted to the service port and SSH.
   * @default []
   */
  adminCidrs?: string[];
  /**
   * Port of the HTTPS API.
   * @default 9443
   */
  port?: number;
  /**
   * Size of the state volume or disk in GiB.
   * @default 8
   */
  volumeSize?: number;
}

/** What the Link hands the location that runs its state service. */
export interface StateServiceRequest extends StateServiceArgsBase {
  /** The `stateService` settings of the Link that belong to this location kind (validated). */
  settings: Record<string, unknown>;
}

export const STATE_SERVICE_COMMON_DEFAULTS = {
  port: DEFAULT_STATE_PORT,
  volumeSize: 8,
  /** Agents pin the certificate by fingerprint, so its expiry protects nothing; ten years. */
  certificateValidityHours: 24 * 365 * 10,
} as const;

export const adminCidrsSchema = z.array(
  z.string().superRefine((v, ctx) => {
    const problem = cidrProblem(v);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  }),
);

/** `port` and `volumeSize`: settings of every state service, whichever kind runs it. */
export const STATE_SETTINGS_COMMON = {
  port: z.int().min(1).max(65535).optional(),
  volumeSize: z.int().min(1, "must be at least 1 GiB").max(16384).optional(),
};

/** What a state service component takes besides its location and its kind's own settings. */
export const stateServiceCommon = {
  link: z.string().min(1, "must be the link's name"),
  hosts: z.array(z.custom<unknown>((v) => isRecord(v) && typeof v.id === "string", { message: "must be a link host (from a location)" })),
  topology: inputString(undefined, "the topology document (JSON)"),
  agentPackage: agentPackageSchema.optional(),
  adminCidrs: adminCidrsSchema.optional(),
  ...STATE_SETTINGS_COMMON,
  topologyDependsOn: z.unknown().optional(),
};

export { certificateFingerprint };

/** The master key as the state service reads its key file (`readMasterKey` of the state CLI): base64 of 32 random bytes. */
export function masterKeyBytes(fileText: string): Buffer {
  const key = decodeMasterKey(fileText);
  if (!key) throw new Error(`the state service's master key must be the base64 of ${MASTER_KEY_BYTES} random bytes`);
  return key;
}

/** The service's master key (secret), TLS key and a certificate for `address`, whichever kind runs it. */
export function stateCredentials(name: string, link: string, address: pulumi.Output<string>, parent: pulumi.CustomResourceOptions) {
  const masterKey = new random.RandomBytes(`${name}-master-key`, { length: 32 }, parent);
  const tlsKey = new tls.PrivateKey(`${name}-tls-key`, { algorithm: "ECDSA", ecdsaCurve: "P256" }, parent);
  const cert = new tls.SelfSignedCert(
    `${name}-tls-cert`,
    {
      privateKeyPem: tlsKey.privateKeyPem,
      subject: { commonName: `sitelink-${link}-state` },
      ipAddresses: [address],
      validityPeriodHours: STATE_SERVICE_COMMON_DEFAULTS.certificateValidityHours,
      allowedUses: ["digital_signature", "key_encipherment", "server_auth"],
    },
    parent,
  );
  return { masterKey: pulumi.secret(masterKey.base64), tlsKey, cert };
}

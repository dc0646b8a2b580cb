// The startup scripts of GCP hosts: the agent's package and config in the instance's own metadata,
// the state host's items in Secret Manager (read with the gcloud CLI).
import type { ItemStore, NodeSource } from "../bootstrap/host";
import { renderLinkHostBootstrap } from "../bootstrap/link-host";
import { quote } from "../bootstrap/shell";
import { renderStateHostBootstrap, type StateItems } from "../bootstrap/state-host";

/** GCE instance metadata attributes a GCP link host reads its agent config (naming the agent to install) from. */
export const GCP_AGENT_ATTRIBUTES = {
  config: "sitelink-agent-config",
} as const;

export function secretManager(project: string): ItemStore {
  return {
    store: "Secret Manager",
    item: "secret",
    // Ubuntu's GCE images ship the gcloud snap; this is a no-op there.
    setup: "retry snap install google-cloud-cli --classic",
    readCommand: `gcloud secrets versions access latest --project ${quote(project)} --secret "$name"`,
  };
}

/** The instance's own metadata (no IAM involved; the attributes hold nothing secret). Ubuntu's GCE images ship curl. */
export const INSTANCE_METADATA: ItemStore = {
  store: "instance metadata",
  item: "attribute",
  readCommand: `curl -fsS -H 'Metadata-Flavor: Google' "http://metadata.google.internal/computeMetadata/v1/instance/attributes/$name"`,
};

export interface GcpAgentBootstrapOptions {
  /** Project of the host's URI secret. */
  project: string;
  /** Secret Manager secret id of the host's URI (read to report a refused agent). */
  uriSecret: string;
  /** @default "nodesource" */
  nodeSource?: NodeSource;
}

/**
 * The startup script of a GCP link host: the AWS bootstrap reading the instance's own metadata
 * attributes (GCP_AGENT_ATTRIBUTES) instead of Parameter Store. GCE runs a startup script at every
 * boot; every step is idempotent.
 */
export function renderGcpAgentBootstrap(opts: GcpAgentBootstrapOptions): string {
  const readHostUri = `gcloud secrets versions access latest --project ${quote(opts.project)} --secret ${quote(opts.uriSecret)}`;
  return renderLinkHostBootstrap(INSTANCE_METADATA, GCP_AGENT_ATTRIBUTES, { readHostUri }, opts.nodeSource);
}

export interface GcpStateBootstrapOptions {
  /** Project of the secrets. */
  project: string;
  /** Secret Manager secret ids (their `latest` version is read). */
  secrets: StateItems;
  /** `deviceName` of the attached persistent disk holding the state. */
  diskDeviceName: string;
  port: number;
  /** @default "nodesource" */
  nodeSource?: NodeSource;
}

/**
 * Startup script of the GCP state service host: the AWS bootstrap with Secret Manager (through the
 * gcloud CLI) and a persistent disk. It runs at every boot; every step is idempotent.
 */
export function renderGcpStateBootstrap(opts: GcpStateBootstrapOptions): string {
  return renderStateHostBootstrap(opts, {
    store: secretManager(opts.project),
    disk: {
      kind: "persistent disk",
      variable: `device_name=${quote(opts.diskDeviceName)}`,
      // The guest environment's udev link, and the kernel's own name for the same disk.
      candidates: `"$root/dev/disk/by-id/google-$device_name" "$root/dev/disk/by-id/scsi-0Google_PersistentDisk_$device_name"`,
      missing: `data disk ${"$"}{device_name} never appeared`,
    },
    dropIn: "10-sitelink-gcp.conf",
    items: opts.secrets,
  });
}

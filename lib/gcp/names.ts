// Physical names of GCP resources. Firewalls, addresses, instances, secrets, service accounts and
// custom roles are named by us (several have no autonaming, and autonamed ones could pass GCP's
// length limits): readable parts, cut to fit, plus a hash of what makes the name unique.
import { createHash } from "node:crypto";

/** GCP's limit for most resource names (RFC 1035 label). */
export const GCP_NAME_MAX = 63;
/** Service account ids: 6-30 characters. */
export const GCP_ACCOUNT_ID_MAX = 30;

function shortHash(key: string): string {
  return createHash("sha256").update(key).digest("hex").slice(0, 8);
}

/**
 * `parts` joined by '-' (first part must start with a letter), cut so that the name plus the hash of
 * `key` fits in `max`, e.g. `sitelink-us-central-a-1f2e3d4c`. Valid as a GCP resource name, network tag
 * and Secret Manager secret id.
 */
export function gcpName(parts: string[], key: string, max: number = GCP_NAME_MAX): string {
  const hash = shortHash(key);
  const body = parts
    .join("-")
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .slice(0, max - hash.length - 1)
    .replace(/-+$/, "");
  return `${body}-${hash}`;
}

/** A custom role id (`[a-zA-Z0-9_.]{3,64}`), unique for `key`. */
export function gcpRoleId(prefix: string, key: string): string {
  return `${prefix}_${shortHash(key)}`;
}

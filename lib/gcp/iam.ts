// What a GCP link host may do: exactly the calls of the agent's `gcp` route provider
// (agent/host/routes/gcp.ts), and reading its own host URI.

/**
 * The permissions of the route provider's calls:
 * - routes.list (GET …/global/routes): compute.routes.list
 * - routes.insert with nextHopInstance = itself: compute.routes.create, compute.networks.updatePolicy
 *   on the network, compute.instances.use on the next-hop instance
 * - routes.delete: compute.routes.delete, compute.networks.updatePolicy
 * - globalOperations.wait: compute.globalOperations.get
 * It never reads one route (routes.get) nor waits on zone operations: those are not granted.
 */
export const GCP_ROUTE_PERMISSIONS = [
  "compute.routes.list",
  "compute.routes.create",
  "compute.routes.delete",
  "compute.networks.updatePolicy",
  "compute.instances.use",
  "compute.globalOperations.get",
] as const;

/** The role that reads a secret's versions; granted on the host's own secret only. */
export const SECRET_ACCESSOR_ROLE = "roles/secretmanager.secretAccessor";

/** The OAuth scope of the hosts: access is decided by IAM alone (Google's recommendation). */
export const CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform";

export function serviceAccountMember(email: string): string {
  return `serviceAccount:${email}`;
}

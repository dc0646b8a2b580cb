// Argument rules of the GCP components (GcpLocation, GcpStateService): names and self-links, zones
// and their regions; the topology rules of the location come from the shared location check.
import { z } from "zod";
import { inputString, isRecord, locationTopologyIssues, nodeSource, uniqueIssues, zodIssues, type ArgIssue } from "../link/args";
import { stateServiceCommon } from "../link/state-service";

const gcpLabel = "[a-z]([-a-z0-9]{0,61}[a-z0-9])?";
/** A name, or a (partial) self-link of a resource in `collection`. */
const gcpRef = (collection: string) => new RegExp(`^(${gcpLabel}|(https://www\\.googleapis\\.com/compute/v1/)?projects/[^/]+/${collection}/${gcpLabel})$`);
export const GCP_PATTERNS = {
  network: gcpRef("global/networks"),
  subnetwork: gcpRef("regions/[a-z]+-[a-z]+\\d+/subnetworks"),
  zone: /^([a-z]+-[a-z]+\d+)-[a-z]$/,
  project: /^[a-z][-a-z0-9]{4,28}[a-z0-9]$/,
  machineType: new RegExp(`^${gcpLabel}$`),
} as const;

const gcpLocationArgsSchema = z.object({
  network: inputString(GCP_PATTERNS.network, "a VPC network name or self-link (projects/P/global/networks/N)"),
  subnetwork: inputString(GCP_PATTERNS.subnetwork, "a subnetwork name or self-link (projects/P/regions/R/subnetworks/S)"),
  zone: z.string().regex(GCP_PATTERNS.zone, "must be a GCP zone such as us-central1-a"),
  project: z.string().regex(GCP_PATTERNS.project, "must be a GCP project id (6-30 of a-z 0-9 -, starting with a letter)").optional(),
  routes: z.array(z.unknown()),
  hosts: z.array(z.unknown()).optional(),
  machineType: z.string().regex(GCP_PATTERNS.machineType, "must be a GCP machine type such as e2-small").optional(),
  image: inputString(undefined, "an image (self-link, family path or name)").optional(),
  nodeSource: nodeSource.optional(),
});

/** The region of a GCP zone (`us-central1-a` → `us-central1`). */
export function gcpRegionOf(zone: string): string {
  return GCP_PATTERNS.zone.exec(zone)?.[1] ?? zone;
}

/** Checks GcpLocation arguments on their own (the Link checks what spans locations). */
export function validateGcpLocationArgs(name: string, args: unknown): ArgIssue[] {
  const issues = zodIssues(gcpLocationArgsSchema, args);
  if (isRecord(args) && typeof args.subnetwork === "string" && typeof args.zone === "string" && GCP_PATTERNS.zone.test(args.zone)) {
    const region = /\/regions\/([^/]+)\//.exec(args.subnetwork)?.[1];
    if (region && region !== gcpRegionOf(args.zone)) {
      issues.push({ path: "subnetwork", message: `is in region ${region}, but the hosts' zone ${args.zone} is in ${gcpRegionOf(args.zone)}` });
    }
  }
  issues.push(...locationTopologyIssues(name, args));
  return uniqueIssues(issues);
}

/** The settings of `Link` `stateService` that only a state service in a GCP location takes. */
export const GCP_STATE_SETTINGS = {
  machineType: z.string().regex(GCP_PATTERNS.machineType, "must be a GCP machine type such as e2-micro").optional(),
  image: inputString(undefined, "an image (self-link, family path or name)").optional(),
};

const gcpStateServiceArgsSchema = z.strictObject({
  ...stateServiceCommon,
  location: z.custom<unknown>((v) => isRecord(v) && isRecord(v.spec) && v.spec.cloud === "gcp", { message: "must be a GcpLocation" }),
  ...GCP_STATE_SETTINGS,
});

/** Checks GcpStateService arguments. */
export function validateGcpStateServiceArgs(args: unknown): ArgIssue[] {
  return zodIssues(gcpStateServiceArgsSchema, args);
}

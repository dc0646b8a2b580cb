// The agent bundle of this library as a private GCS object, fetched by the hosts with their own
// service accounts (`gcloud storage cp`): a bucket the location makes (uniform access, public
// access prevention enforced) holding only agent bundles, keyed by their SHA-256. GCS grants IAM
// roles on buckets only (uniform access has no object ACLs), so each host's and the state host's
// service account gets roles/storage.objectViewer on that bucket under an IAM condition naming
// exactly this object: the narrowest grant GCS offers (no listing, no other object).
import type * as gcp from "@pulumi/gcp";
import * as pulumi from "@pulumi/pulumi";
import { agentBundle } from "../bootstrap/agent-bundle";
import { agentObjectKey, userAgentDelivery, type AgentDelivery, type AgentPackage } from "../bootstrap/agent-source";
import { loadGcp } from "./peer";

/** Reads objects of the bucket; granted on the agent bucket only. */
export const OBJECT_VIEWER_ROLE = "roles/storage.objectViewer";

export interface GcpAgentSource {
  delivery: pulumi.Output<AgentDelivery>;
  /** The object the hosts may read (absent: a user's package, no grant needed). */
  object?: { bucket: pulumi.Output<string>; name: pulumi.Output<string> };
}

export function publishAgentBundle(name: string, link: string, o: { project?: string; location: string }, parent: pulumi.Resource): { source: GcpAgentSource; object: gcp.storage.BucketObject } {
  const gcp = loadGcp("GcpLocation");
  const bundle = agentBundle();
  const opts = { parent };
  const bucket = new gcp.storage.Bucket(
    `${name}-agent`,
    { project: o.project, location: o.location, uniformBucketLevelAccess: true, publicAccessPrevention: "enforced", forceDestroy: true, labels: { "sitelink-link": link } },
    opts,
  );
  const object = new gcp.storage.BucketObject(`${name}-agent`, { bucket: bucket.name, name: agentObjectKey(bundle.sha256), source: new pulumi.asset.FileAsset(bundle.path), contentType: "application/javascript" }, opts);
  return {
    object,
    source: {
      delivery: pulumi.all([object.bucket, object.name]).apply(([b, k]) => ({ agentSource: `gs://${b}/${k}`, agentSha256: bundle.sha256 })),
      object: { bucket: object.bucket, name: object.name },
    },
  };
}

export function userAgentSource(p: AgentPackage): GcpAgentSource {
  return { delivery: pulumi.output(userAgentDelivery(p)) };
}

/** The IAM condition that narrows a bucket grant to one object. */
export function objectCondition(bucket: string, object: string): { title: string; description: string; expression: string } {
  return { title: "sitelink-agent-bundle", description: "this sitelink agent bundle only", expression: `resource.name == "projects/_/buckets/${bucket}/objects/${object}"` };
}

/** Lets `member` read the agent bundle's object, and nothing else of its bucket (nothing when the user named a package elsewhere). */
export function grantAgentRead(name: string, source: GcpAgentSource, member: pulumi.Input<string>, parent: pulumi.Resource): pulumi.Resource[] {
  const o = source.object;
  if (!o) return [];
  const condition = pulumi.all([o.bucket, o.name]).apply(([b, n]) => objectCondition(b, n));
  return [new (loadGcp("GcpLocation").storage.BucketIAMMember)(`${name}-agent-read`, { bucket: o.bucket, role: OBJECT_VIEWER_ROLE, member, condition }, { parent })];
}

// The agent bundle of this library as a private GCS object, fetched by the hosts with their own
// service accounts (`gcloud storage cp`): a bucket the location makes (uniform access, public
// access prevention enforced) holding only agent bundles, keyed by their SHA-256; each host's and
// the state host's service account gets roles/storage.objectViewer on that bucket alone.
import * as gcp from "@pulumi/gcp";
import * as pulumi from "@pulumi/pulumi";
import { agentBundle } from "../bootstrap/agent-bundle";
import { agentObjectKey, userAgentDelivery, type AgentDelivery, type AgentPackage } from "../bootstrap/agent-source";

/** Reads objects of the bucket; granted on the agent bucket only. */
export const OBJECT_VIEWER_ROLE = "roles/storage.objectViewer";

export interface GcpAgentSource {
  delivery: pulumi.Output<AgentDelivery>;
  /** The bucket whose objects the hosts may read (absent: a user's package, no grant needed). */
  bucket?: pulumi.Output<string>;
}

export function publishAgentBundle(name: string, link: string, o: { project?: string; location: string }, parent: pulumi.Resource): { source: GcpAgentSource; object: gcp.storage.BucketObject } {
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
    source: { delivery: pulumi.all([object.bucket, object.name]).apply(([b, k]) => ({ agentSource: `gs://${b}/${k}`, agentSha256: bundle.sha256 })), bucket: bucket.name },
  };
}

export function userAgentSource(p: AgentPackage): GcpAgentSource {
  return { delivery: pulumi.output(userAgentDelivery(p)) };
}

/** Lets `member` read the agent bucket's objects (nothing when the user named a package elsewhere). */
export function grantAgentRead(name: string, source: GcpAgentSource, member: pulumi.Input<string>, parent: pulumi.Resource): pulumi.Resource[] {
  return source.bucket ? [new gcp.storage.BucketIAMMember(`${name}-agent-read`, { bucket: source.bucket, role: OBJECT_VIEWER_ROLE, member }, { parent })] : [];
}

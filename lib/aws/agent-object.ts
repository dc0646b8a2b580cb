// The agent bundle of this library as a private S3 object, fetched by the hosts with their own
// roles: a bucket the location makes (no public access, bucket-owner-enforced, encrypted at rest)
// or one the user names, and the object keyed by the bundle's SHA-256. No bucket policy: each host
// role and the state host role get s3:GetObject on exactly this object's ARN (iam.ts, s3ObjectArn).
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { agentBundle } from "../bootstrap/agent-bundle";
import { agentObjectKey, userAgentDelivery, type AgentDelivery, type AgentPackage } from "../bootstrap/agent-source";

/** What the hosts of a location are told, and the object their roles may read (absent: a user's package, no grant needed). */
export interface AwsAgentSource {
  delivery: pulumi.Output<AgentDelivery>;
  object?: pulumi.Output<{ bucket: string; key: string }>;
}

/** Publishes the bundle once per location, under `name`, in `bucket` or a bucket of its own. */
export function publishAgentBundle(name: string, link: string, bucket: pulumi.Input<string> | undefined, parent: pulumi.Resource): { source: AwsAgentSource; object: aws.s3.BucketObjectv2; bucket?: aws.s3.Bucket } {
  const bundle = agentBundle();
  const opts = { parent };
  let own: aws.s3.Bucket | undefined;
  let bucketName: pulumi.Input<string>;
  const settings: pulumi.Resource[] = [];
  if (bucket === undefined) {
    own = new aws.s3.Bucket(`${name}-agent`, { bucketPrefix: "sitelink-agent-", forceDestroy: true, tags: { Name: `sitelink-${link}-agent` } }, opts);
    bucketName = own.bucket;
    settings.push(
      new aws.s3.BucketPublicAccessBlock(`${name}-agent`, { bucket: own.id, blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true }, opts),
      new aws.s3.BucketOwnershipControls(`${name}-agent`, { bucket: own.id, rule: { objectOwnership: "BucketOwnerEnforced" } }, opts),
      new aws.s3.BucketServerSideEncryptionConfiguration(`${name}-agent`, { bucket: own.id, rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" } }] }, opts),
    );
  } else {
    bucketName = bucket;
  }
  const key = agentObjectKey(bundle.sha256);
  const object = new aws.s3.BucketObjectv2(
    `${name}-agent`,
    { bucket: bucketName, key, source: new pulumi.asset.FileAsset(bundle.path), contentType: "application/javascript", serverSideEncryption: "AES256", tags: { Name: `sitelink-${link}-agent` } },
    { ...opts, dependsOn: settings },
  );
  return {
    object,
    bucket: own,
    source: {
      delivery: pulumi.all([object.bucket, object.key]).apply(([b, k]) => ({ agentSource: `s3://${b}/${k}`, agentSha256: bundle.sha256 })),
      object: pulumi.all([object.bucket, object.key]).apply(([b, k]) => ({ bucket: b, key: k })),
    },
  };
}

/** A package the user named: nothing to publish or grant. */
export function userAgentSource(p: AgentPackage): AwsAgentSource {
  return { delivery: pulumi.output(userAgentDelivery(p)) };
}

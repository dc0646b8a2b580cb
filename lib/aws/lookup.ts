// Lookups the AWS components make through the provider of the resource they are made for
// (each location may have its own region and account).
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { AwsAccount } from "./iam";

/** Canonical's AWS account: the publisher of the official Ubuntu images. */
export const CANONICAL_OWNER = "099720109477";

/** Partition, region and account of the provider `parent`'s children use. */
export function awsAccountOf(parent: pulumi.Resource): pulumi.Output<AwsAccount> {
  const identity = aws.getCallerIdentityOutput({}, { parent });
  const region = aws.getRegionOutput({}, { parent });
  return pulumi.all([identity, region]).apply(([id, r]) => ({
    // arn:PARTITION:sts::ACCOUNT:…
    partition: id.arn.split(":")[1] ?? "aws",
    region: r.region,
    accountId: id.accountId,
  }));
}

/** Graviton instance families (t4g, c7g, m6gd, …) need arm64 images. */
export function architectureOf(instanceType: string): "amd64" | "arm64" {
  return /^[a-z]+\d+g[a-z]*\./.test(instanceType) ? "arm64" : "amd64";
}

/** The newest Ubuntu 24.04 LTS image for the instance type, looked up through `parent`'s provider. */
export function ubuntuAmi(parent: pulumi.Resource, instanceType: string): pulumi.Output<string> {
  const arch = architectureOf(instanceType);
  return aws.ec2
    .getAmiOutput(
      {
        owners: [CANONICAL_OWNER],
        mostRecent: true,
        filters: [
          { name: "name", values: [`ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-${arch}-server-*`] },
          { name: "virtualization-type", values: ["hvm"] },
        ],
      },
      { parent },
    )
    .apply((ami) => ami.id);
}

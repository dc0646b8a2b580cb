// IAM documents and image choice: pure functions, checked for other partitions and Graviton types.
import { describe, expect, it } from "vitest";
import { hostPolicy, routeTableArn, s3ObjectArn, statePolicy } from "./iam";
import { architectureOf } from "./lookup";

const govcloud = { partition: "aws-us-gov", region: "us-gov-west-1", accountId: "111122223333" };

describe("IAM documents", () => {
  it("scope route changes to the location's route tables in the account's own partition", () => {
    expect(routeTableArn(govcloud, "rtb-0123456789abcdef0")).toBe("arn:aws-us-gov:ec2:us-gov-west-1:111122223333:route-table/rtb-0123456789abcdef0");
    const arn = (name: string) => `arn:aws-us-gov:ssm:us-gov-west-1:111122223333:parameter/sitelink/x/${name}`;
    const objectArn = s3ObjectArn(govcloud, { bucket: "bucket", key: "sitelink/agent/abc/sitelink.js" });
    expect(objectArn).toBe("arn:aws-us-gov:s3:::bucket/sitelink/agent/abc/sitelink.js");
    const policy = hostPolicy(govcloud, ["rtb-01234567"], { uri: arn("uri"), config: arn("config") }, objectArn);
    expect(policy.Statement[0]).toEqual({
      Sid: "OwnRouteTables",
      Effect: "Allow",
      Action: ["ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute"],
      Resource: ["arn:aws-us-gov:ec2:us-gov-west-1:111122223333:route-table/rtb-01234567"],
    });
    expect(policy.Statement[2]).toEqual({ Sid: "OwnParametersRead", Effect: "Allow", Action: "ssm:GetParameter", Resource: [arn("uri"), arn("config")] });
    // The agent bundle: exactly its object, nothing else of the bucket.
    expect(policy.Statement[4]).toEqual({ Sid: "AgentBundle", Effect: "Allow", Action: "s3:GetObject", Resource: "arn:aws-us-gov:s3:::bucket/sitelink/agent/abc/sitelink.js" });
    // Only the URI is a SecureString: the grant to decrypt names it alone.
    expect(policy.Statement[3]).toEqual({
      Sid: "OwnHostUriDecrypt",
      Effect: "Allow",
      Action: "kms:Decrypt",
      Resource: "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/*",
      Condition: { StringEquals: { "kms:ViaService": "ssm.us-gov-west-1.amazonaws.com", "kms:EncryptionContext:PARAMETER_ARN": [arn("uri")] } },
    });
  });

  it("lets the state service read only its own parameters, and decrypt only its secure ones", () => {
    const arn = (name: string) => `arn:aws:ssm:us-east-1:1:parameter/${name}`;
    const policy = statePolicy({ partition: "aws", region: "us-east-1", accountId: "1" }, { read: [arn("a"), arn("b"), arn("c")], secure: [arn("c")] });
    expect(policy.Statement.map((s) => [s.Sid, s.Action])).toEqual([
      ["StateFilesRead", "ssm:GetParameter"],
      ["StateKeysDecrypt", "kms:Decrypt"],
    ]);
    expect(policy.Statement[0]!.Resource).toEqual([arn("a"), arn("b"), arn("c")]);
    expect((policy.Statement[1]!.Condition as { StringEquals: Record<string, unknown> }).StringEquals["kms:EncryptionContext:PARAMETER_ARN"]).toEqual([arn("c")]);
  });
});

describe("architectureOf", () => {
  it("picks arm64 images for Graviton families only", () => {
    const types = ["t3.small", "t4g.small", "c6gn.large", "m7gd.xlarge", "r8g.large", "g5.xlarge", "inf2.xlarge", "c7i.large"];
    expect(types.map(architectureOf)).toEqual(["amd64", "arm64", "arm64", "arm64", "arm64", "amd64", "amd64", "amd64"]);
  });
});

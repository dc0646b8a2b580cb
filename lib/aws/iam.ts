// Pure renderers of the IAM documents of link hosts and the state service host: least privilege,
// each identity reaches only its own route tables and its own parameters.

export interface PolicyDocument {
  Version: "2012-10-17";
  Statement: Record<string, unknown>[];
}

export const EC2_ASSUME_ROLE_POLICY: PolicyDocument = {
  Version: "2012-10-17",
  Statement: [{ Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" }],
};

export interface AwsAccount {
  /** `aws`, `aws-cn`, `aws-us-gov`. */
  partition: string;
  region: string;
  accountId: string;
}

/** The route calls the agent makes, allowed only on these route tables. */
export const ROUTE_ACTIONS = ["ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute"] as const;
/** What the agent reads (its own interface comes from instance metadata). Describe calls cannot be scoped to resources in IAM. */
export const DESCRIBE_ACTIONS = ["ec2:DescribeRouteTables"] as const;

export function routeTableArn(account: AwsAccount, routeTableId: string): string {
  return `arn:${account.partition}:ec2:${account.region}:${account.accountId}:route-table/${routeTableId}`;
}

/** An S3 object's ARN (S3 ARNs name neither region nor account). */
export function s3ObjectArn(account: AwsAccount, object: { bucket: string; key: string }): string {
  return `arn:${account.partition}:s3:::${object.bucket}/${object.key}`;
}

/** Read exactly these parameters. */
function readParameters(sid: string, parameterArns: string[]): Record<string, unknown> {
  return { Sid: `${sid}Read`, Effect: "Allow", Action: "ssm:GetParameter", Resource: parameterArns };
}

/** Decrypt exactly these SecureString parameters: the KMS grant holds only through SSM and for them. */
function decryptParameters(sid: string, account: AwsAccount, parameterArns: string[]): Record<string, unknown> {
  return {
    Sid: `${sid}Decrypt`,
    Effect: "Allow",
    Action: "kms:Decrypt",
    Resource: `arn:${account.partition}:kms:${account.region}:${account.accountId}:key/*`,
    // Both keys must match; a list of values matches any of them.
    Condition: {
      StringEquals: { "kms:ViaService": `ssm.${account.region}.amazonaws.com`, "kms:EncryptionContext:PARAMETER_ARN": parameterArns },
    },
  };
}

/** The parameters of a link host: its URI (SecureString) and its agent config (String). */
export interface HostParameterArns {
  uri: string;
  config: string;
}

/** Read exactly this S3 object: the agent bundle the location published (none when the user names a package elsewhere). */
function readAgentObject(objectArn: string | undefined): Record<string, unknown>[] {
  return objectArn ? [{ Sid: "AgentBundle", Effect: "Allow", Action: "s3:GetObject", Resource: objectArn }] : [];
}

/** A link host: change routes of its own location's route tables, read its own parameters and the agent bundle, decrypt its own URI. */
export function hostPolicy(account: AwsAccount, routeTableIds: string[], parameters: HostParameterArns, agentObjectArn?: string): PolicyDocument {
  return {
    Version: "2012-10-17",
    Statement: [
      { Sid: "OwnRouteTables", Effect: "Allow", Action: [...ROUTE_ACTIONS], Resource: routeTableIds.map((id) => routeTableArn(account, id)) },
      { Sid: "Describe", Effect: "Allow", Action: [...DESCRIBE_ACTIONS], Resource: "*" },
      readParameters("OwnParameters", [parameters.uri, parameters.config]),
      decryptParameters("OwnHostUri", account, [parameters.uri]),
      ...readAgentObject(agentObjectArn),
    ],
  };
}

/** The state service host: read its own parameters (agent, topology, TLS, master key) and the agent bundle, decrypt its secure ones, nothing else. */
export function statePolicy(account: AwsAccount, parameters: { read: string[]; secure: string[] }, agentObjectArn?: string): PolicyDocument {
  return {
    Version: "2012-10-17",
    Statement: [readParameters("StateFiles", parameters.read), decryptParameters("StateKeys", account, parameters.secure), ...readAgentObject(agentObjectArn)],
  };
}

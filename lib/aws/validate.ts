// Argument rules of the AWS components (AwsLocation, AwsStateService): AWS id formats and the forms
// of `routeTableIds`; the topology rules of the location come from the shared location check.
import { z } from "zod";
import { inputString, isDeferred, isRecord, locationTopologyIssues, nodeSource, uniqueIssues, zodIssues, type ArgIssue } from "../link/args";
import { stateServiceCommon } from "../link/state-service";

// AWS resource ids: a prefix and 8 or 17 hex digits.
const awsId = (prefix: string) => new RegExp(`^${prefix}-([0-9a-f]{8}|[0-9a-f]{17})$`);
export const AWS_ID_PATTERNS = {
  vpc: awsId("vpc"),
  subnet: awsId("subnet"),
  routeTable: awsId("rtb"),
  ami: awsId("ami"),
} as const;

const instanceType = z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9-]+$/, "must be an EC2 instance type such as t3.small");

/** A key of the record form of `routeTableIds`: it names the routes of its table. */
export const ROUTE_TABLE_KEY = /^[A-Za-z0-9_]{1,63}$/;

const routeTableId = inputString(AWS_ID_PATTERNS.routeTable, "a route table id (rtb-…)");

/**
 * `routeTableIds`: plain ids (each names its own routes), or a record of stable keys to ids of any
 * kind. An Output in the list is refused: its value is not known when the routes get their names.
 */
const routeTableIdsSchema = z.unknown().superRefine((value, ctx) => {
  const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: "custom", path, message });
  let entries: [string | number, unknown][];
  if (Array.isArray(value)) entries = value.map((v, i) => [i, v]);
  else if (isRecord(value) && !isDeferred(value)) entries = Object.entries(value);
  else return issue([], "must be a list of route table ids (rtb-…) or a record of keys to ids ({ private: table.id })");
  if (entries.length === 0) return issue([], "at least one route table id is needed");
  const seen = new Set<unknown>();
  for (const [key, id] of entries) {
    if (typeof key === "string" && !ROUTE_TABLE_KEY.test(key)) issue([key], "must be a key of 1-63 letters, digits or _ (it names the routes of this table)");
    if (typeof key === "number" && isDeferred(id)) {
      issue([key], "an Output cannot name routes (its value is unknown when they are declared): pass routeTableIds as a record of stable keys, e.g. { private: table.id }");
    } else if (!routeTableId.safeParse(id).success) {
      issue([key], "must be a route table id (rtb-…)");
    } else if (typeof id === "string" && seen.has(id)) {
      issue([key], `duplicate route table id "${id}"`);
    }
    seen.add(id);
  }
});

const awsLocationArgsSchema = z.object({
  vpcId: inputString(AWS_ID_PATTERNS.vpc, "a VPC id (vpc-…)"),
  subnetId: inputString(AWS_ID_PATTERNS.subnet, "a subnet id (subnet-…)"),
  routeTableIds: routeTableIdsSchema,
  routes: z.array(z.unknown()),
  hosts: z.array(z.unknown()).optional(),
  instanceType: instanceType.optional(),
  ami: inputString(AWS_ID_PATTERNS.ami, "an AMI id (ami-…)").optional(),
  keyName: inputString(undefined, "a key pair name").optional(),
  nodeSource: nodeSource.optional(),
  agentBucket: inputString(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "an S3 bucket name").optional(),
});

/** Checks AwsLocation arguments on their own (the Link checks what spans locations). */
export function validateAwsLocationArgs(name: string, args: unknown): ArgIssue[] {
  const issues = zodIssues(awsLocationArgsSchema, args);
  issues.push(...locationTopologyIssues(name, args));
  return uniqueIssues(issues);
}

/** The settings of `Link` `stateService` that only a state service in an AWS location takes. */
export const AWS_STATE_SETTINGS = {
  instanceType: instanceType.optional(),
  ami: inputString(AWS_ID_PATTERNS.ami, "an AMI id (ami-…)").optional(),
};

const stateServiceArgsSchema = z.strictObject({
  ...stateServiceCommon,
  location: z.custom<unknown>((v) => isRecord(v) && isRecord(v.spec) && v.spec.cloud === "aws", { message: "must be an AwsLocation" }),
  ...AWS_STATE_SETTINGS,
});

/** Checks AwsStateService arguments (the Link passes them; a program may create one itself). */
export function validateAwsStateServiceArgs(args: unknown): ArgIssue[] {
  return zodIssues(stateServiceArgsSchema, args);
}

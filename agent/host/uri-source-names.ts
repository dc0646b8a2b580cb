// Names and errors of URI sources, apart from the readers: the CLI needs these without loading the
// AWS SDK that reading from SSM needs (it would slow every `sitelink` command).
import type { UriSource } from "../contract/agent-config";

export class UriSourceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UriSourceError";
  }
}

/** A short, secret-free name of a source, for logs and errors. */
export function describeUriSource(source: UriSource): string {
  return source.kind === "aws-ssm" ? `aws-ssm:${source.parameter}` : `gcp-secret-manager:${source.name}`;
}

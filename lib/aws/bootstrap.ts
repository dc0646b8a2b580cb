// The boot scripts of AWS hosts (user data): items in Parameter Store, read with the AWS CLI.
import type { ItemStore, NodeSource } from "../bootstrap/host";
import { renderLinkHostBootstrap } from "../bootstrap/link-host";
import { quote } from "../bootstrap/shell";
import { renderStateHostBootstrap, type StateItems } from "../bootstrap/state-host";

export function parameterStore(region: string): ItemStore {
  return {
    store: "Parameter Store",
    item: "parameter",
    // Ubuntu 24.04 has no AWS CLI apt package; the snap is Amazon's own. An image with the CLI keeps its own.
    setup: "command -v aws >/dev/null || retry snap install aws-cli --classic",
    readCommand: `aws ssm get-parameter --region ${quote(region)} --name "$name" --with-decryption --query Parameter.Value --output text`,
  };
}

/** Prints the value of a SecureString parameter (the host URI, for the problem reporter). */
function readSecureParameter(region: string, name: string): string {
  return `aws ssm get-parameter --region ${quote(region)} --name ${quote(name)} --with-decryption --query Parameter.Value --output text`;
}

export interface AwsAgentBootstrapOptions {
  /** Region of the host's parameters and of the agent's S3 object. */
  region: string;
  /** Its parameters: the agent config (renderAgentConfig; String, naming the agent) and the host URI (SecureString). */
  parameters: { config: string; uri: string };
  /** @default "nodesource" */
  nodeSource?: NodeSource;
}

/** User data of an AWS link host: the same for its whole life (cloud-init runs it once). */
export function renderAwsAgentBootstrap(opts: AwsAgentBootstrapOptions): string {
  return renderLinkHostBootstrap(
    parameterStore(opts.region),
    { config: opts.parameters.config },
    { s3Region: opts.region, readHostUri: readSecureParameter(opts.region, opts.parameters.uri) },
    opts.nodeSource,
  );
}

export interface AwsStateBootstrapOptions {
  /** Region of the Parameter Store parameters. */
  region: string;
  /** Parameter names: agent (JSON naming it), topology and TLS certificate (String), master key and TLS key (SecureString). */
  parameters: StateItems;
  /** The EBS volume holding the state (vol-…), mounted at /var/lib/sitelink. */
  volumeId: string;
  port: number;
  /** @default "nodesource" */
  nodeSource?: NodeSource;
}

/** User data of the AWS state service host: data volume, files and package kept current from Parameter Store, the service unit. */
export function renderAwsStateBootstrap(opts: AwsStateBootstrapOptions): string {
  return renderStateHostBootstrap(opts, {
    store: parameterStore(opts.region),
    disk: {
      kind: "EBS volume",
      variable: `volume_id=${quote(opts.volumeId.replace("-", ""))}`,
      candidates: `"$root/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_$volume_id" "$root/dev/xvdf"`,
      missing: `data volume ${"$"}{volume_id} never appeared`,
    },
    dropIn: "10-sitelink-aws.conf",
    items: opts.parameters,
    installer: { s3Region: opts.region },
  });
}

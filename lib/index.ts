// sitelink: self-healing site-to-site IPsec links as Pulumi components.
// The link and what every location kind shares.
export { agentBundle, type AgentBundle } from "./bootstrap/agent-bundle";
export type { AgentPackage } from "./bootstrap/agent-source";
export { Link, READINESS_DEFAULTS, type ReadinessArgs, type LinkArgs, type LinkHostStatus, type OwnedStateServiceArgs, type ExternalStateServiceArgs } from "./link/link";
export { Location, type CloudHostArgs, type LinkContext, type LinkHost } from "./link/location";
export { ArgsError, type ArgIssue } from "./link/args";
export { validateLinkArgs } from "./link/validate";
export { certificateFingerprint, STATE_SERVICE_COMMON_DEFAULTS, type StateServiceArgsBase, type StateServiceHandle, type StateServiceRequest } from "./link/state-service";
export { renderAgentConfig } from "./bootstrap/link-host";
export { type NodeSource } from "./bootstrap/host";
export * as topology from "../agent/contract/topology";
// AWS.
export { AwsLocation, AWS_LOCATION_DEFAULTS, type AwsLocationArgs, type AwsHostArgs } from "./aws/location";
export {
  AwsStateService,
  AwsStateService as StateService,
  AWS_STATE_SERVICE_DEFAULTS,
  AWS_STATE_SERVICE_DEFAULTS as STATE_SERVICE_DEFAULTS,
  type AwsStateServiceArgs,
  type AwsStateServiceArgs as StateServiceArgs,
} from "./aws/state-service";
export { validateAwsLocationArgs, validateAwsStateServiceArgs, validateAwsStateServiceArgs as validateStateServiceArgs } from "./aws/validate";
export {
  renderAwsAgentBootstrap,
  renderAwsAgentBootstrap as renderAgentBootstrap,
  renderAwsStateBootstrap,
  renderAwsStateBootstrap as renderStateBootstrap,
} from "./aws/bootstrap";
// GCP.
export { GcpLocation, GCP_LOCATION_DEFAULTS, type GcpLocationArgs, type GcpHostArgs } from "./gcp/location";
export { GcpStateService, GCP_STATE_SERVICE_DEFAULTS, type GcpStateServiceArgs } from "./gcp/state-service";
export { validateGcpLocationArgs, validateGcpStateServiceArgs } from "./gcp/validate";
export { renderGcpAgentBootstrap, renderGcpStateBootstrap } from "./gcp/bootstrap";
// On-prem sites.
export { SshLocation, SSH_LOCATION_DEFAULTS, type SshLocationArgs, type SshHostArgs, type SshConnectionArgs, type SshEndpointArgs, type SshRouteMode } from "./onprem/ssh-location";
export { ManualLocation, type ManualLocationArgs } from "./onprem/manual-location";
export { type ExistingHostArgs } from "./onprem/hosts";
export { validateSshLocationArgs, validateManualLocationArgs } from "./onprem/validate";
export { renderSshInstall, renderSshUninstall } from "./onprem/install";

// sitelink: self-healing site-to-site IPsec links as Pulumi components.
export { Link, defaultAgentPackage, type LinkArgs, type LinkHostStatus, type OwnedStateServiceArgs, type ExternalStateServiceArgs } from "./link/link";
export { AwsLocation, AWS_LOCATION_DEFAULTS, type AwsLocationArgs, type AwsHostArgs } from "./aws/location";
export { GcpLocation, GCP_LOCATION_DEFAULTS, type GcpLocationArgs, type GcpHostArgs } from "./gcp/location";
export { GcpStateService, GCP_STATE_SERVICE_DEFAULTS, type GcpStateServiceArgs } from "./gcp/state-service";
export { StateService, STATE_SERVICE_DEFAULTS, certificateFingerprint, type StateServiceArgs } from "./aws/state-service";
export { Location, type LinkContext, type LinkHost } from "./link/location";
export { ArgsError, validateAwsLocationArgs, validateGcpLocationArgs, validateGcpStateServiceArgs, validateLinkArgs, validateStateServiceArgs, type ArgIssue } from "./link/validate";
export { renderAgentBootstrap, renderAgentConfig, renderGcpAgentBootstrap, renderGcpStateBootstrap, renderStateBootstrap, type NodeSource } from "./bootstrap/bootstrap";
export * as topology from "../agent/contract/topology";
export { SshLocation, SSH_LOCATION_DEFAULTS, type SshLocationArgs, type SshHostArgs, type SshConnectionArgs, type SshEndpointArgs, type SshRouteMode } from "./onprem/ssh-location";
export { ManualLocation, type ManualLocationArgs } from "./onprem/manual-location";
export { type ExistingHostArgs } from "./onprem/hosts";
export { validateSshLocationArgs, validateManualLocationArgs } from "./onprem/validate";
export { renderSshInstall, renderSshUninstall } from "./onprem/install";

// sitelink: self-healing site-to-site IPsec links as Pulumi components.
export { Link, defaultAgentPackage, type LinkArgs, type LinkHostStatus, type OwnedStateServiceArgs, type ExternalStateServiceArgs } from "./link";
export { AwsLocation, AWS_LOCATION_DEFAULTS, type AwsLocationArgs, type AwsHostArgs } from "./aws-location";
export { StateService, STATE_SERVICE_DEFAULTS, certificateFingerprint, type StateServiceArgs } from "./state-service";
export { Location, type LinkContext, type LinkHost } from "./location";
export { ArgsError, validateAwsLocationArgs, validateLinkArgs, type ArgIssue } from "./validate";
export { renderAgentBootstrap, renderStateBootstrap } from "./bootstrap";
export * as topology from "./topology";

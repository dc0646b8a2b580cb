export { HostCheckListener, type HostCheckListenerOptions } from "./listener";
export { HostCheckProber, probe, type HostCheckProberOptions, type ProbeFailure, type ProbeOutcome } from "./prober";

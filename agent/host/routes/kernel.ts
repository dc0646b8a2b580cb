// `kernel`: routes in this host's own main table, for on-prem hosts that are the site's gateway.
// Only the active host holds them: a standby has no IPsec policies for the remote subnets, so its
// routes would send that traffic out in the clear (or nowhere). A standby withdraws them.
import type { CommandRunner } from "./command";
import { IpRouteProvider } from "./ip-route";

export function createKernelRouteProvider(nextHop: { device?: string; via?: string }, run?: CommandRunner): IpRouteProvider {
  if (!nextHop.device && !nextHop.via) throw new Error("route provider kernel: set kernel.device or kernel.via in the agent config");
  return new IpRouteProvider("kernel", "own", [], nextHop, run);
}

// `kernel`: routes in this host's own main table, for on-prem hosts that are the site's gateway.
import type { CommandRunner } from "./command";
import { IpRouteProvider } from "./ip-route";

export function createKernelRouteProvider(nextHop: { device?: string; via?: string }, run?: CommandRunner): IpRouteProvider {
  if (!nextHop.device && !nextHop.via) throw new Error("route provider kernel: set kernel.device or kernel.via in the agent config");
  return new IpRouteProvider("kernel", [], nextHop, run);
}

// `kernel`: routes in this host's own main table, for on-prem hosts that are the site's gateway.
// Only the active host holds them: a standby has no IPsec policies for the remote subnets, so its
// routes would send that traffic out in the clear (or nowhere). A standby withdraws them.
import type { AgentConfig } from "../../contract/agent-config";
import type { CommandRunner } from "./command";
import type { ProviderFlags, RouteProviderDescriptor } from "./descriptor";
import { IpRouteProvider } from "./ip-route";

export function createKernelRouteProvider(nextHop: { device?: string; via?: string }, run?: CommandRunner): IpRouteProvider {
  if (!nextHop.device && !nextHop.via) throw new Error("route provider kernel: set kernel.device or kernel.via in the agent config");
  return new IpRouteProvider("kernel", "own", [], nextHop, run);
}

export const kernelRoutes: RouteProviderDescriptor = {
  name: "kernel",
  section: "kernel",
  flags: ["device", "via"],
  usage: "--device DEV and/or --via ADDRESS",
  configure(config: AgentConfig, flags: ProviderFlags): AgentConfig {
    const next: AgentConfig = { ...config, provider: "kernel" };
    if (!flags.has("device") && !flags.has("via")) {
      if (!config.kernel) flags.usage("set-provider kernel needs --device DEV or --via ADDRESS (where the remote networks' routes point)");
      return next;
    }
    const device = flags.get("device");
    const via = flags.get("via");
    return { ...next, kernel: { ...(device && { device }), ...(via && { via }) } };
  },
  create: (config, _self, deps) => createKernelRouteProvider(config.kernel ?? {}, deps.run),
};

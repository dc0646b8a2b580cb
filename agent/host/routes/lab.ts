// `lab`: the namespace lab's "cloud route table" is a router namespace; the active host points the
// remote CIDRs at its own address there (`ip -n <namespace> route replace CIDR via <via>`). Like a
// cloud route table, a standby leaves it alone: the new active host points the routes at itself.
import type { CommandRunner } from "./command";
import type { AgentConfig } from "../../contract/agent-config";
import { missingSection, type ProviderFlags, type RouteProviderDescriptor } from "./descriptor";
import { IpRouteProvider } from "./ip-route";

export function createLabRouteProvider(lab: { namespace: string; via: string }, run?: CommandRunner): IpRouteProvider {
  return new IpRouteProvider("lab", "shared", ["-n", lab.namespace], { via: lab.via }, run);
}

export const labRoutes: RouteProviderDescriptor = {
  name: "lab",
  section: "lab",
  flags: ["namespace", "via"],
  usage: "--namespace NS --via ADDRESS",
  configure(config: AgentConfig, flags: ProviderFlags): AgentConfig {
    const namespace = flags.get("namespace") ?? config.lab?.namespace;
    const via = flags.get("via") ?? config.lab?.via;
    if (!namespace || !via) flags.usage("set-provider lab needs --namespace and --via");
    return { ...config, provider: "lab", lab: { namespace, via } };
  },
  create(config, _self, deps) {
    if (!config.lab) throw missingSection("lab", "lab", "lab.namespace and lab.via name the router namespace and this host's address there");
    return createLabRouteProvider(config.lab, deps.run);
  },
};

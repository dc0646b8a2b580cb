// `lab`: the namespace lab's "cloud route table" is a router namespace; the active host points the
// remote CIDRs at its own address there (`ip -n <namespace> route replace CIDR via <via>`). Like a
// cloud route table, a standby leaves it alone: the new active host points the routes at itself.
import type { CommandRunner } from "./command";
import { IpRouteProvider } from "./ip-route";

export function createLabRouteProvider(lab: { namespace: string; via: string }, run?: CommandRunner): IpRouteProvider {
  return new IpRouteProvider("lab", "shared", ["-n", lab.namespace], { via: lab.via }, run);
}

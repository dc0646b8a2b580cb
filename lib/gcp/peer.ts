// @pulumi/gcp, loaded only by the components that use it (see ../link/optional-peer).
import type * as gcp from "@pulumi/gcp";
import { optionalPeer } from "../link/optional-peer";

export function loadGcp(component: string): typeof gcp {
  return optionalPeer<typeof gcp>("@pulumi/gcp", component);
}

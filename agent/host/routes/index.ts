// The route providers the agent knows: one line each. A provider's file holds its descriptor
// (name, `set-provider` flags, config section, factory); its config section is part of the agent
// config schema (agent/contract/agent-config.ts).
import type { AgentConfig, RouteProviderName } from "../../contract/agent-config";
import type { RouteProvider } from "../types";
import { awsRoutes } from "./aws";
import { azureRoutes } from "./azure";
import { BoundedRouteProvider } from "./bounds";
import type { RouteProviderDeps, RouteProviderDescriptor, RouteProviderSelf } from "./descriptor";
import { fileRoutes } from "./file";
import { gcpRoutes } from "./gcp";
import { kernelRoutes } from "./kernel";
import { labRoutes } from "./lab";
import { noneRoutes } from "./none";
import { oracleRoutes } from "./oracle";

export const ROUTE_PROVIDER_REGISTRY: Record<RouteProviderName, RouteProviderDescriptor> = {
  aws: awsRoutes,
  gcp: gcpRoutes,
  azure: azureRoutes,
  oracle: oracleRoutes,
  kernel: kernelRoutes,
  file: fileRoutes,
  none: noneRoutes,
  lab: labRoutes,
};

/** The configured provider, held to the config's `allowedRoutes` (bounds.ts). */
export function createRouteProvider(config: AgentConfig, self: RouteProviderSelf, deps: RouteProviderDeps = {}): RouteProvider {
  return new BoundedRouteProvider(ROUTE_PROVIDER_REGISTRY[config.provider].create(config, self, deps), config.allowedRoutes);
}

/** The config sections of every provider: a change to one takes effect after a restart. */
export const ROUTE_PROVIDER_SECTIONS = Object.values(ROUTE_PROVIDER_REGISTRY).flatMap((d) => (d.section ? [d.section] : []));

export type { RouteProviderDeps, RouteProviderSelf } from "./descriptor";
export { RouteApplyError } from "./failures";

// Picks the route provider the agent config names and checks that its config section is there.
import type { EC2Client } from "@aws-sdk/client-ec2";
import type { AgentConfig } from "../../contract/agent-config";
import type { RouteProvider } from "../types";
import { AwsRouteProvider } from "./aws";
import type { CommandRunner } from "./command";
import { FileRouteProvider } from "./file";
import { GcpRouteProvider } from "./gcp";
import type { Fetch } from "./http";
import { createKernelRouteProvider } from "./kernel";
import { createLabRouteProvider } from "./lab";
import { NoneRouteProvider } from "./none";

export interface RouteProviderSelf {
  hostId: string;
  privateAddress?: string;
  publicAddress?: string;
}

/** Overrides for tests and the lab: endpoints, clients, command runner. */
export interface RouteProviderDeps {
  imdsEndpoint?: string;
  ec2?: EC2Client;
  gcpMetadataUrl?: string;
  gcpComputeUrl?: string;
  fetch?: Fetch;
  run?: CommandRunner;
}

export function createRouteProvider(config: AgentConfig, self: RouteProviderSelf, deps: RouteProviderDeps = {}): RouteProvider {
  const missing = (section: string, hint: string) => new Error(`route provider ${config.provider}: the agent config has no "${section}" section (${hint})`);
  switch (config.provider) {
    case "none":
      return new NoneRouteProvider();
    case "aws":
      if (!config.aws) throw missing("aws", "aws.routeTableIds lists the location's route tables");
      return new AwsRouteProvider({ routeTableIds: config.aws.routeTableIds, region: config.aws.region, imdsEndpoint: deps.imdsEndpoint, ec2: deps.ec2, fetch: deps.fetch });
    case "gcp":
      if (!config.gcp) throw missing("gcp", "gcp.network names the VPC network");
      return new GcpRouteProvider({ ...config.gcp, hostId: self.hostId, metadataUrl: deps.gcpMetadataUrl, computeUrl: deps.gcpComputeUrl, fetch: deps.fetch });
    case "kernel":
      return createKernelRouteProvider(config.kernel ?? {}, deps.run);
    case "file":
      if (!config.file) throw missing("file", "file.path is where the routes file is written");
      return new FileRouteProvider(config.file.path, self);
    case "lab":
      if (!config.lab) throw missing("lab", "lab.namespace and lab.via name the router namespace and this host's address there");
      return createLabRouteProvider(config.lab, deps.run);
  }
}

export { RouteApplyError } from "./failures";

// What a route provider tells the rest of the agent about itself: its name, its `set-provider`
// flags, the config section it reads, and how it is built. Each provider's file exports one; the
// registry (index.ts) lists them.
import type { EC2Client } from "@aws-sdk/client-ec2";
import type { AgentConfig, RouteProviderName } from "../../contract/agent-config";
import type { RouteProvider } from "../types";
import type { CommandRunner } from "./command";
import type { Fetch, RetryPolicy } from "./http";

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
  azureImdsUrl?: string;
  azureArmUrl?: string;
  ociImdsUrl?: string;
  ociAuthUrl?: string;
  ociCoreUrl?: string;
  /** Retries of cloud REST calls (tests: short waits). */
  retry?: RetryPolicy;
  fetch?: Fetch;
  run?: CommandRunner;
}

/** The flags of one `set-provider` command line. */
export interface ProviderFlags {
  /** The value of a flag given at most once. */
  get(name: string): string | undefined;
  /** Every value of a repeatable flag. */
  all(name: string): string[];
  has(name: string): boolean;
  /** Refuses the command line (exit 2, usage). */
  usage(message: string): never;
}

export interface RouteProviderDescriptor {
  name: RouteProviderName;
  /** The agent config section it reads; a change to it takes effect after a restart. */
  section?: keyof AgentConfig;
  /** `set-provider` flags it takes (without `--`). */
  flags: readonly string[];
  /** Those flags as the usage shows them; empty when it takes none. */
  usage: string;
  /** The config after `set-provider NAME FLAGS`: its section from the flags, or kept from `config`. */
  configure(config: AgentConfig, flags: ProviderFlags): AgentConfig;
  /** The provider, from a config whose `provider` names it. */
  create(config: AgentConfig, self: RouteProviderSelf, deps: RouteProviderDeps): RouteProvider;
}

/** The error when a provider's section is missing from the config (an edit by hand). */
export function missingSection(provider: string, section: string, hint: string): Error {
  return new Error(`route provider ${provider}: the agent config has no "${section}" section (${hint})`);
}

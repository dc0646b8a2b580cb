// The cloud-agnostic side of a location: what a Link needs from it and hands to it.
// AwsLocation, GcpLocation, SshLocation and ManualLocation implement it.
import * as pulumi from "@pulumi/pulumi";
import type { KnownAddresses, LocationLike, LocationSpec } from "./args";
import type { AgentPackage } from "../bootstrap/agent-source";
import type { StateServiceHandle, StateServiceRequest } from "./state-service";

/** A link host of a cloud location, where the location creates the instance. */
export interface CloudHostArgs {
  /** Host name, unique in the location (1-63 of a-z 0-9 -). */
  name: string;
  /**
   * Higher wins the active role.
   * @default 1
   */
  priority?: number;
  /**
   * Seconds without a heartbeat before the host counts as offline.
   * @default 5
   */
  timeout?: number;
  /**
   * Seconds after going offline during which the host may not become active again.
   * @default 10
   */
  backoff?: number;
}

/** A link host once its location has allocated its addresses. */
export interface LinkHost {
  /** `link.location.host`: the host's identity on the wire and in its secret. */
  id: string;
  name: string;
  location: string;
  priority: number;
  timeout: number;
  backoff: number;
  /** Where peers reach it (IKE, host checks). */
  publicAddress: pulumi.Output<string>;
  /** Where hosts of its own location reach it (host checks). */
  privateAddress: pulumi.Output<string>;
  /** The addresses already known at construction (given as plain strings), for rules decided then. */
  known?: KnownAddresses;
}

/** What a Link hands a location when it joins: everything that depends on the other locations. */
export interface LinkContext {
  link: string;
  /** Hosts of the locations connected to this one: the only sources of IKE and host checks. */
  peerHosts: LinkHost[];
  /** Routes of the connected locations: each gets a route entry pointing at this location's host. */
  remoteRoutes: string[];
  /** The host URI of a host of this location (a secret Output). */
  hostUri(hostId: string): pulumi.Output<string>;
  /** Where the state service listens: CIDR to allow egress to (a /32, or 0.0.0.0/0 when only its name is known) and port. */
  stateService: { cidr: pulumi.Output<string>; port: number };
  /** The agent the user named; absent: the location publishes this library's bundle for its hosts. */
  agentPackage?: AgentPackage;
  /** Sources admitted to SSH on the hosts. */
  adminCidrs: string[];
}

/** A network of a link. Created by the user, validated on construction, built out when a Link takes it. */
export abstract class Location extends pulumi.ComponentResource implements LocationLike {
  abstract readonly spec: LocationSpec;
  private joined?: string;

  /** The link this location belongs to, once a Link took it. */
  get linkName(): string | undefined {
    return this.joined;
  }

  /**
   * Phase 1, run by the Link for every location before any joins: creates what gives the hosts
   * their addresses, which the other locations, the state service and the topology need.
   */
  allocate(link: string): LinkHost[] {
    if (this.joined !== undefined) throw new Error(`location "${this.spec.name}" already belongs to link "${this.joined}"`);
    this.joined = link;
    return this.allocateHosts(link);
  }

  protected abstract allocateHosts(link: string): LinkHost[];

  /** Phase 2: firewall, identities, secrets, hosts and routes. */
  abstract join(ctx: LinkContext): void;

  /**
   * The cloud routes this location's resources create once it joined. An agent creates a missing
   * route itself, so the Link publishes a topology naming new locations only after these exist.
   */
  cloudRoutes(): pulumi.Resource[] {
    return [];
  }

  /**
   * What runs this location's hosts once it joined (instances, install commands): the Link's
   * readiness check starts once they exist. None for hosts set up by hand.
   */
  hostResources(): pulumi.CustomResource[] {
    return [];
  }

  /**
   * Runs the link's state service in this location (never on a link host). A kind that can host
   * one overrides this and lists its settings in the Link's rules (`STATE_HOSTS`), which refuse
   * every other kind before anything is registered.
   */
  createStateService(_name: string, _request: StateServiceRequest, _opts: pulumi.ComponentResourceOptions): StateServiceHandle {
    throw new Error(`location "${this.spec.name}" cannot run the state service`);
  }
}

/** The host that starts active: highest priority, then the lowest id (the state service's order). */
export function initialActive<T extends { id: string; priority: number }>(hosts: readonly T[]): T {
  const sorted = [...hosts].sort((a, b) => b.priority - a.priority || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const first = sorted[0];
  if (!first) throw new Error("a location needs at least one host");
  return first;
}

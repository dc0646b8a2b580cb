// The Link: a set of locations connected by self-healing IPsec tunnels, the state service that
// decides their active hosts, and the topology document that describes it all.
import * as pulumi from "@pulumi/pulumi";
import type { AgentPackage } from "../bootstrap/agent-source";
import { waitForReadiness, type Readiness } from "../../agent/contract/operator";
import { deriveHostSecret, deriveOperatorKey } from "../../agent/contract/signing";
import { formatHostUri, normalizeFingerprint, type StateEndpoint } from "../../agent/contract/uri";
import type { AwsStateService } from "../aws/state-service";
import type { GcpStateService } from "../gcp/state-service";
import { throwIfInvalid } from "./args";
import { initialActive, type LinkHost, type Location } from "./location";
import { checkTopology, connectedPairs, parseTopology, type Cipher, type TimingInput, type Topology, type TopologyInput } from "../../agent/contract/topology";
import { masterKeyBytes, type StateServiceHandle } from "./state-service";
import { stateSettingsOf, validateLinkArgs } from "./validate";

/** Runs the state service on a small instance in one of the link's AWS or GCP locations. */
export interface OwnedStateServiceArgs {
  /** Name of the AWS or GCP location (of this link) whose network and subnet the service uses. */
  location: string;
  /**
   * AWS only.
   * @default "t3.micro"
   */
  instanceType?: string;
  /**
   * GCP only.
   * @default "e2-micro"
   */
  machineType?: string;
  /**
   * GCP only: boot image.
   * @default "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"
   */
  image?: pulumi.Input<string>;
  /**
   * Port of the HTTPS API.
   * @default 9443
   */
  port?: number;
  /**
   * Size in GiB of the EBS volume or persistent disk holding the state.
   * @default 8
   */
  volumeSize?: number;
  /**
   * AWS only.
   * @default newest Canonical Ubuntu 24.04 LTS image
   */
  ami?: pulumi.Input<string>;
}

/** Uses a state service run elsewhere (`sitelink state serve`); the link's topology must be delivered to it. */
export interface ExternalStateServiceArgs {
  /** `https://host[:port]`. */
  url: string;
  /** SHA-256 fingerprint of its certificate (`sitelink state fingerprint`). */
  fingerprint: pulumi.Input<string>;
  /** Content of its master key file. Secret. */
  masterKey: pulumi.Input<string>;
}

/** Whether `pulumi up` waits for the link to work, and how long. */
export interface ReadinessArgs {
  /**
   * Wait until every host has reported, every location has an active host and every connection's
   * tunnel is up; fail `pulumi up` naming each host that is not. Turn it off on runners that cannot
   * reach the state service (or set the stack config `sitelink:waitForReadiness` to false).
   * @default true (the stack config `sitelink:waitForReadiness` when set)
   */
  wait?: boolean;
  /**
   * How long to wait, in seconds (1-3600), counted from when the hosts exist.
   * @default 600
   */
  timeoutSeconds?: number;
}

export const READINESS_DEFAULTS = {
  wait: true,
  timeoutSeconds: 600,
  /** Pause between two reads of the state service's status. */
  intervalMs: 2000,
} as const;

export interface LinkArgs {
  /** The locations (at least two); each belongs to one link. */
  locations: Location[];
  /** Where the state service runs. */
  stateService: OwnedStateServiceArgs | ExternalStateServiceArgs;
  /**
   * Location pairs that get a tunnel.
   * @default every pair (full mesh)
   */
  connections?: [string, string][];
  /**
   * IKE and ESP proposals (strongSwan syntax); `force` offers only these.
   * @default { ike: "aes128-sha256-x25519", esp: "aes128gcm128-x25519", force: false }
   */
  cipher?: Partial<Cipher>;
  /**
   * Heartbeat and host-check timing, in seconds. `preset: "fast"` (heartbeat 0.25, probeInterval 0.04,
   * probeTimeout 0.08) is for hosts close to each other (one region, low jitter); fields given beside a
   * preset override it.
   * @default { preset: "standard" }: { heartbeat: 0.5, probeInterval: 0.25, probeTimeout: 0.4, crashConfirm: 1.05 } (crashConfirm when left out: heartbeat + 0.5, or 2 × probeTimeout + probeInterval if longer)
   */
  timing?: TimingInput;
  /**
   * The agent the hosts install instead of this library's own bundle (dist/sitelink.js, which each
   * cloud location publishes privately for its hosts): `{ url, sha256 }` or `{ npmSpec, sha256 }`.
   * Hosts verify the SHA-256 before installing and refuse a mismatch. A change reaches running
   * hosts within a minute, standbys first.
   * @default this library's bundle
   */
  agentPackage?: AgentPackage;
  /**
   * Networks admitted to SSH on every host and to the state service port.
   * @default []
   */
  adminCidrs?: string[];
  /**
   * `pulumi up` waits until the link works (not `pulumi preview`).
   * @default { wait: true, timeoutSeconds: 600 }
   */
  readiness?: ReadinessArgs;
}

/** A host of the link as deployed. */
export interface LinkHostStatus {
  id: string;
  location: string;
  name: string;
  priority: number;
  publicAddress: string;
  privateAddress: string;
  /** The role at creation: the highest-priority host of each location starts active. */
  role: "active" | "standby";
}

/** How the link's hosts reach their state service. */
interface StateAccess {
  endpoint: pulumi.Output<StateEndpoint>;
  /** Egress destination of the hosts: a /32, or anywhere when only its name is known. */
  cidr: pulumi.Output<string>;
  port: number;
  url: pulumi.Output<string>;
  fingerprint: pulumi.Output<string>;
  /** Secret. */
  masterKey: pulumi.Output<string>;
}

export class Link extends pulumi.ComponentResource {
  readonly hosts: pulumi.Output<LinkHostStatus[]>;
  /** `https://…` of the state service. */
  readonly stateUrl: pulumi.Output<string>;
  /** SHA-256 fingerprint of the state service certificate. */
  readonly fingerprint: pulumi.Output<string>;
  /** The topology document (JSON, no secrets); deliver it yourself to an external state service. */
  readonly topology: pulumi.Output<string>;
  /** Present when the link runs its own state service, whichever kind of location runs it. */
  readonly ownStateService?: StateServiceHandle;
  /**
   * Every host ready and why, once `pulumi up` has waited for it; undefined when it did not wait
   * (preview, or `readiness.wait` false). `pulumi up` fails when the link is not ready in time.
   */
  readonly readiness: pulumi.Output<Readiness | undefined>;

  /** @deprecated Use `ownStateService`. Present when the link runs its own state service in an AWS location. */
  get stateService(): AwsStateService | undefined {
    return this.ownStateService?.kind === "aws" ? (this.ownStateService as AwsStateService) : undefined;
  }

  /** @deprecated Use `ownStateService`. Present when the link runs its own state service in a GCP location. */
  get gcpStateService(): GcpStateService | undefined {
    return this.ownStateService?.kind === "gcp" ? (this.ownStateService as GcpStateService) : undefined;
  }

  constructor(name: string, args: LinkArgs, opts?: pulumi.ComponentResourceOptions) {
    throwIfInvalid(`Link "${name}"`, validateLinkArgs(name, args));
    const wait = args.readiness?.wait ?? new pulumi.Config("sitelink").getBoolean("waitForReadiness") ?? READINESS_DEFAULTS.wait;
    super("sitelink:index:Link", name, {}, opts);
    const agentPackage = args.agentPackage;
    const adminCidrs = args.adminCidrs ?? [];
    const hostsByLocation = new Map(args.locations.map((l) => [l.spec.name, l.allocate(name)]));
    const allHosts = [...hostsByLocation.values()].flat();
    this.topology = renderTopology(name, args, hostsByLocation);

    // The routes Pulumi creates exist before a topology naming their locations is published:
    // known once every location has joined, below.
    let routesCreated!: (routes: pulumi.Resource[]) => void;
    const topologyDependsOn = new Promise<pulumi.Resource[]>((resolve) => (routesCreated = resolve));
    const { state, service } = this.stateAccess(name, args, { hosts: allHosts, agentPackage, adminCidrs, topologyDependsOn });
    this.ownStateService = service;
    this.stateUrl = state.url;
    this.fingerprint = state.fingerprint;
    const hostUri = (id: string) =>
      pulumi.secret(
        pulumi.all([state.masterKey, state.endpoint, state.fingerprint]).apply(([key, ep, fp]) =>
          formatHostUri({ hostId: id, secret: deriveHostSecret(masterKeyBytes(key), id), endpoints: [ep], fingerprints: [fp] }),
        ),
      );
    const pairs = connectedPairs(topologyDocument(name, args, hostsByLocation).links[0]!);
    for (const location of args.locations) {
      const peers = pairs.flatMap(([a, b]) => (a === location.spec.name ? [b] : b === location.spec.name ? [a] : []));
      location.join({
        link: name,
        peerHosts: peers.flatMap((p) => hostsByLocation.get(p) ?? []),
        remoteRoutes: peers.flatMap((p) => args.locations.find((l) => l.spec.name === p)?.spec.routes ?? []),
        hostUri,
        stateService: { cidr: state.cidr, port: state.port },
        agentPackage,
        adminCidrs,
      });
    }
    routesCreated(args.locations.flatMap((l) => l.cloudRoutes()));
    const timeoutSeconds = args.readiness?.timeoutSeconds ?? READINESS_DEFAULTS.timeoutSeconds;
    this.readiness = wait ? awaitReadiness(name, state, allHosts, args.locations, timeoutSeconds) : pulumi.output(undefined);

    this.hosts = pulumi.all(allHosts.map((h) => pulumi.all([h.publicAddress, h.privateAddress]))).apply((addresses) =>
      allHosts.map((h, i): LinkHostStatus => {
        const active = initialActive(hostsByLocation.get(h.location) ?? [h]);
        return {
          id: h.id,
          location: h.location,
          name: h.name,
          priority: h.priority,
          publicAddress: addresses[i]![0],
          privateAddress: addresses[i]![1],
          role: active.id === h.id ? "active" : "standby",
        };
      }),
    );
    // An output the engine waits for: `pulumi up` ends only once the link is ready, and fails if it is not.
    this.registerOutputs({ hosts: this.hosts, stateUrl: this.stateUrl, fingerprint: this.fingerprint, topology: this.topology, readiness: this.readiness });
  }

  /** The link's own state service (when it runs one), and how hosts reach whichever it uses. */
  private stateAccess(
    name: string,
    args: LinkArgs,
    shared: { hosts: LinkHost[]; agentPackage?: AgentPackage; adminCidrs: string[]; topologyDependsOn: Promise<pulumi.Resource[]> },
  ): { state: StateAccess; service?: StateServiceHandle } {
    const settings = args.stateService;
    if ("location" in settings) {
      // validateLinkArgs has made sure it is a location of this link that can run the service.
      const location = args.locations.find((l) => l.spec.name === settings.location)!;
      const request = {
        link: name,
        ...shared,
        topology: this.topology,
        port: settings.port,
        volumeSize: settings.volumeSize,
        settings: stateSettingsOf(location.spec.cloud, settings as unknown as Record<string, unknown>),
      };
      const service = location.createStateService(`${name}-state`, request, { parent: this });
      return {
        service,
        state: {
          endpoint: service.address.apply((host) => ({ host, port: service.port })),
          cidr: service.address.apply((a) => `${a}/32`),
          port: service.port,
          url: service.url,
          fingerprint: service.fingerprint,
          masterKey: service.masterKey,
        },
      };
    }
    const url = new URL(settings.url);
    const port = url.port ? Number(url.port) : 443;
    return {
      state: {
        endpoint: pulumi.output({ host: url.hostname.replace(/^\[(.*)\]$/, "$1"), port }),
        cidr: pulumi.output("0.0.0.0/0"),
        port,
        url: pulumi.output(settings.url),
        fingerprint: pulumi.output(settings.fingerprint).apply(normalizeFingerprint),
        masterKey: pulumi.secret(settings.masterKey),
      },
    };
  }
}

/**
 * Waits, during `pulumi up` and once every host's instance or install exists, until the state
 * service sees the link's hosts ready; rejects with every host that is not and why.
 */
function awaitReadiness(name: string, state: StateAccess, hosts: LinkHost[], locations: Location[], timeoutSeconds: number): pulumi.Output<Readiness | undefined> {
  const hostsExist = locations.flatMap((l) => l.hostResources()).map((r) => r.id);
  const verdict = pulumi.all([pulumi.all([state.url, state.fingerprint, state.masterKey]), pulumi.all(hostsExist)]).apply(async ([[url, fingerprint, masterKey]]) => {
    if (pulumi.runtime.isDryRun()) return undefined;
    try {
      return await waitForReadiness({
        url,
        fingerprint,
        operatorKey: deriveOperatorKey(masterKeyBytes(masterKey)),
        timeoutMs: timeoutSeconds * 1000,
        intervalMs: READINESS_DEFAULTS.intervalMs,
        expectHosts: hosts.map((h) => h.id),
      });
    } catch (error) {
      throw new Error(
        `Link "${name}": ${(error as Error).message}\n(readiness: { wait: false } skips this check, e.g. on a runner that cannot reach the state service at ${url})`,
      );
    }
  });
  // The verdict names hosts and problems, never the master key it was read with.
  return pulumi.unsecret(verdict);
}

/** The topology document of the link (validated, defaults filled in), before host addresses are known. */
function topologyDocument(name: string, args: LinkArgs, hostsByLocation: Map<string, LinkHost[]>): Topology {
  return parseTopology(topologyInput(name, args, hostsByLocation));
}

/** The topology document of the link as written; host addresses once known. */
function topologyInput(name: string, args: LinkArgs, hostsByLocation: Map<string, LinkHost[]>, addresses?: Map<string, [string, string]>): TopologyInput {
  return {
    version: 1,
    links: [
      {
        name,
        locations: args.locations.map((l) => ({
          name: l.spec.name,
          routes: l.spec.routes,
          hosts: (hostsByLocation.get(l.spec.name) ?? []).map((h) => {
            const address = addresses?.get(h.id);
            return {
              id: h.id,
              name: h.name,
              priority: h.priority,
              timeout: h.timeout,
              backoff: h.backoff,
              ...(address ? { publicAddress: address[0], privateAddress: address[1] } : {}),
            };
          }),
        })),
        ...(args.connections ? { connections: args.connections } : {}),
        ...(args.cipher ? { cipher: args.cipher } : {}),
        ...(args.timing ? { timing: args.timing } : {}),
      },
    ],
  };
}

/**
 * The document as JSON, once every host address is known. Addresses given as plain strings were
 * checked at construction; one known only now (a cloud address, an Output) may still clash with
 * another, which fails here naming the hosts.
 */
function renderTopology(name: string, args: LinkArgs, hostsByLocation: Map<string, LinkHost[]>): pulumi.Output<string> {
  const hosts = [...hostsByLocation.values()].flat();
  return pulumi.all(hosts.map((h) => pulumi.all([h.publicAddress, h.privateAddress]))).apply((addresses) => {
    const byId = new Map(hosts.map((h, i): [string, [string, string]] => [h.id, addresses[i]!]));
    const result = checkTopology(topologyInput(name, args, hostsByLocation, byId));
    if (!result.ok) throw new Error(`Link "${name}": the host addresses known at deployment clash:\n${result.issues.map((i) => `  ${hostNamed(i.path, args, hostsByLocation)}: ${hostNamed(i.message, args, hostsByLocation)}`).join("\n")}`);
    // Compact: it travels in a parameter of at most 8 KB.
    return JSON.stringify(result.topology);
  });
}

/** `text` with the document paths of host fields (`links[0].locations[1].hosts[0].publicAddress`) as `host <id> publicAddress`. */
function hostNamed(text: string, args: LinkArgs, hostsByLocation: Map<string, LinkHost[]>): string {
  return text.replace(/links\[0\]\.locations\[(\d+)\]\.hosts\[(\d+)\]\.(\w+)/g, (path, l: string, h: string, field: string) => {
    const host = hostsByLocation.get(args.locations[Number(l)]?.spec.name ?? "")?.[Number(h)];
    return host ? `host ${host.id} ${field}` : path;
  });
}

// A location of existing hosts reached over SSH (offices, data centers): the component installs or
// upgrades strongSwan and the agent on each host with @pulumi/command, hands the agent its config
// (host URI inside) on stdin only, and uninstalls it when the location leaves the program.
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { agentConfigSchema, type AgentConfigInput } from "../agent/host/config";
import { sha256Hex } from "../agent/signing";
import { Location, type LinkContext, type LinkHost } from "./location";
import { parseCidr } from "./net";
import { existingLinkHosts, existingLocationSpec, type ExistingHostArgs } from "./ssh-hosts";
import { remoteCommand, renderSshInstall, renderSshUninstall } from "./ssh-install";
import { validateSshLocationArgs } from "./ssh-validate";
import { throwIfInvalid, type LocationSpec } from "./validate";

export interface SshConnectionArgs {
  /**
   * Where SSH reaches the host.
   * @default the host's publicAddress
   */
  host?: pulumi.Input<string>;
  /** SSH user: root, or a user with passwordless sudo (see `sudo`). */
  user: pulumi.Input<string>;
  /** Private key of that user (PEM or OpenSSH format). Secret: pass a Pulumi secret (`config.requireSecret`). */
  privateKey: pulumi.Input<string>;
  /**
   * @default 22
   */
  port?: pulumi.Input<number>;
}

export interface SshHostArgs extends ExistingHostArgs {
  /** How Pulumi reaches the host to install the agent. */
  connection: SshConnectionArgs;
}

/**
 * Who moves the location's remote routes to its active host:
 * - `kernel`: the agent installs kernel routes; the host is the site's router or its next hop.
 * - `file`: IPsec-router mode: the active host's agent writes the remote routes to `routesFile`, and
 *   the site router sends them to that host (static routes, or a script reading the file).
 */
export type SshRouteMode = "kernel" | "file";

export interface SshLocationArgs {
  /** CIDRs of this location reachable through the link. */
  routes: string[];
  /** The hosts (at least one; more for failover), with the addresses they already have. */
  hosts: SshHostArgs[];
  /**
   * @default "kernel"
   */
  routeMode?: SshRouteMode;
  /**
   * Where the kernel routes of the remote networks point in `routeMode: "kernel"` (required there):
   * usually the host's internet-facing interface (`device`) or its upstream gateway (`via`);
   * strongSwan's IPsec policies take the traffic from there into the tunnels.
   */
  kernel?: { device?: string; via?: string };
  /**
   * Routes file of `routeMode: "file"` (under /etc/sitelink/ or /run/sitelink/, where the agent's unit may write).
   * @default "/etc/sitelink/routes"
   */
  routesFile?: string;
  /**
   * Run the install and uninstall through `sudo -n` (the SSH user needs passwordless sudo); false when connecting as root without sudo.
   * @default true
   */
  sudo?: boolean;
  /**
   * Let the agent keep its own iptables allowlist (UDP 500/4500 and TCP 9790 only from link hosts); on-prem hosts have no cloud firewall in front.
   * @default false
   */
  firewall?: boolean;
}

export const SSH_LOCATION_DEFAULTS = { routeMode: "kernel", routesFile: "/etc/sitelink/routes", sudo: true, firewall: false } as const;

/** The resources of one SSH host. */
export interface SshHostResources {
  host: LinkHost;
  /** Runs the install script; replaced (so run again) when the script or the config changes. */
  install?: command.remote.Command;
  /** Does nothing until the location leaves the program: then its delete command uninstalls the agent. */
  uninstall?: command.remote.Command;
}

export class SshLocation extends Location {
  readonly spec: LocationSpec;
  /** Filled when a Link takes this location. */
  readonly hosts: SshHostResources[] = [];
  private readonly args: SshLocationArgs;

  constructor(name: string, args: SshLocationArgs, opts?: pulumi.ComponentResourceOptions) {
    throwIfInvalid(`SshLocation "${name}"`, validateSshLocationArgs(name, args));
    super("sitelink:index:SshLocation", name, {}, opts);
    this.args = args;
    this.spec = existingLocationSpec(name, "ssh", args);
  }

  protected allocateHosts(link: string): LinkHost[] {
    this.hosts.push(...existingLinkHosts(link, this.spec, this.args.hosts).map((host) => ({ host })));
    return this.hosts.map((h) => h.host);
  }

  join(ctx: LinkContext): void {
    const ipv6 = [...this.spec.routes, ...ctx.remoteRoutes].some((r) => parseCidr(r).family === 6);
    const script = renderSshInstall({ agentPackage: ctx.agentPackage, ipv6 });
    const sudo = this.args.sudo ?? SSH_LOCATION_DEFAULTS.sudo;
    const create = remoteCommand(script, "sitelink-install", sudo);
    const remove = remoteCommand(renderSshUninstall(), "sitelink-uninstall", sudo);
    this.hosts.forEach((h, i) => {
      const args = this.args.hosts[i]!;
      const name = `${this.spec.name}-${h.host.name}`;
      const c = args.connection;
      const connection = { host: c.host ?? args.publicAddress, user: c.user, port: c.port ?? 22, privateKey: pulumi.secret(c.privateKey) };
      const config = pulumi.secret(
        pulumi.all([ctx.hostUri(h.host.id), h.host.publicAddress, h.host.privateAddress]).apply(([uri, publicAddress, privateAddress]) =>
          // Through the agent's own schema, as the cloud bootstrap does: defaults written out, never a config the agent refuses.
          JSON.stringify(agentConfigSchema.parse(this.agentConfig(uri, publicAddress, privateAddress)), null, 2),
        ),
      );
      h.uninstall = new command.remote.Command(
        `${name}-uninstall`,
        { connection, delete: remove },
        // New connection details: uninstall through the old ones before the install runs through the new.
        { parent: this, deleteBeforeReplace: true },
      );
      h.install = new command.remote.Command(
        `${name}-install`,
        {
          connection,
          create,
          // The config (host URI inside) reaches the host on stdin only: never in a command line or an output.
          stdin: config,
          // Hashes, never the config itself: a new script or config replaces the resource, which runs the install again.
          triggers: [sha256Hex(script), config.apply(sha256Hex)],
        },
        { parent: this, dependsOn: [h.uninstall], additionalSecretOutputs: ["stdin"] },
      );
    });
    this.registerOutputs({ hosts: this.hosts.map((h) => ({ id: h.host.id, install: h.install?.id })) });
  }

  /** The agent config of a host: its URI, its addresses (no detection behind NAT) and the route mode. */
  private agentConfig(uri: string, publicAddress: string, privateAddress: string): AgentConfigInput {
    const mode = this.args.routeMode ?? SSH_LOCATION_DEFAULTS.routeMode;
    return {
      uris: [uri],
      provider: mode,
      ...(mode === "file" ? { file: { path: this.args.routesFile ?? SSH_LOCATION_DEFAULTS.routesFile } } : { kernel: { ...this.args.kernel } }),
      firewall: this.args.firewall ?? SSH_LOCATION_DEFAULTS.firewall,
      publicAddress,
      privateAddress,
    };
  }
}

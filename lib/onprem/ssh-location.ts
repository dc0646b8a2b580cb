// A location of existing hosts reached over SSH (offices, data centers): the component copies the
// install script (and a local package tarball, if given) to each host with @pulumi/command's
// CopyToRemote, runs it with remote.Command handing the agent its config (host URI inside) on stdin
// only, and uninstalls the agent when the location leaves the program or a host moves.
import { readFileSync } from "node:fs";
import type * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { agentConfigSchema, type AgentConfigInput } from "../../agent/contract/agent-config";
import { sha256Hex } from "../../agent/contract/signing";
import { Location, type LinkContext, type LinkHost } from "../link/location";
import { parseCidr } from "../../agent/contract/net";
import { existingLinkHosts, existingLocationSpec, type ExistingHostArgs } from "./hosts";
import { renderSshInstall, renderSshUninstall, SSH_STAGED_FILES, sshInstallCommand, sshUninstallCommand } from "./install";
import { validateSshLocationArgs } from "./validate";
import { agentBundle } from "../bootstrap/agent-bundle";
import { userAgentDelivery } from "../bootstrap/agent-source";
import { throwIfInvalid, type LocationSpec } from "../link/args";
import { optionalPeer } from "../link/optional-peer";

const loadCommand = () => optionalPeer<typeof command>("@pulumi/command", "SshLocation");

/** An SSH endpoint: who logs in where, with which key, and which host key to expect. */
export interface SshEndpointArgs {
  /** SSH user: root, or a user with passwordless sudo (see `sudo`). */
  user: pulumi.Input<string>;
  /** Private key of that user (PEM or OpenSSH format). Secret: pass a Pulumi secret (`config.requireSecret`). */
  privateKey: pulumi.Input<string>;
  /**
   * The host's SSH public key, `<type> <base64>` as in `/etc/ssh/ssh_host_ed25519_key.pub` on the
   * host (or a line of `ssh-keyscan -t ed25519 <host>` without the leading host name, checked
   * against `ssh-keygen -lf` on the host). Required: Pulumi connects as root (or a sudoer) and
   * hands over the host URI, which holds the host secret, so a connection that accepted any key
   * would give both to whoever sits on the path. Changing it re-runs nothing.
   */
  hostKey: pulumi.Input<string>;
  /**
   * @default 22
   */
  port?: pulumi.Input<number>;
}

export interface SshConnectionArgs extends SshEndpointArgs {
  /**
   * Where SSH reaches the host.
   * @default the host's publicAddress
   */
  host?: pulumi.Input<string>;
  /** A bastion to go through (SSH port forwarding): its own address, user, key and host key. */
  proxy?: SshEndpointArgs & { host: pulumi.Input<string> };
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
  /**
   * Path of a local package tarball (`npm pack`) to install instead of this library's bundle or the
   * Link's `agentPackage`: copied to every host over SFTP like the bundle, checked there against its
   * SHA-256; a new tarball re-runs the install.
   * @default this library's bundle (dist/sitelink.js), copied the same way, unless the Link names an `agentPackage`
   */
  agentTarball?: string;
}

export const SSH_LOCATION_DEFAULTS = { routeMode: "kernel", routesFile: "/etc/sitelink/routes", sudo: true, firewall: false } as const;

/** The resources of one SSH host. */
export interface SshHostResources {
  host: LinkHost;
  /** The install script, copied over SFTP into the SSH user's home. */
  script?: command.remote.CopyToRemote;
  /** The agent copied next to it: this library's bundle, or the `agentTarball`. */
  agentPackage?: command.remote.CopyToRemote;
  /** Runs the install script; replaced (so run again) when the script or the config changes, or the host moves. */
  install?: command.remote.Command;
  /** Does nothing until the location leaves the program or the host moves: then its delete command uninstalls the agent. */
  uninstall?: command.remote.Command;
}

export class SshLocation extends Location {
  readonly spec: LocationSpec;
  /** Filled when a Link takes this location. */
  readonly hosts: SshHostResources[] = [];
  private readonly args: SshLocationArgs;
  private readonly agentTarball?: { path: string; sha256: string };

  constructor(name: string, args: SshLocationArgs, opts?: pulumi.ComponentResourceOptions) {
    throwIfInvalid(`SshLocation "${name}"`, validateSshLocationArgs(name, args));
    loadCommand(); // before anything is registered: a clear error when it is not installed
    super("sitelink:index:SshLocation", name, {}, opts);
    this.args = args;
    this.spec = existingLocationSpec(name, "ssh", args);
    if (args.agentTarball !== undefined) this.agentTarball = { path: args.agentTarball, sha256: sha256Hex(readFileSync(args.agentTarball)) };
  }

  protected allocateHosts(link: string): LinkHost[] {
    this.hosts.push(...existingLinkHosts(link, this.spec, this.args.hosts).map((host) => ({ host })));
    return this.hosts.map((h) => h.host);
  }

  join(ctx: LinkContext): void {
    const command = loadCommand();
    const ipv6 = [...this.spec.routes, ...ctx.remoteRoutes].some((r) => parseCidr(r).family === 6);
    // What is copied to the hosts, if anything: the tarball given, else this library's bundle unless the Link names a package.
    const copied = this.agentTarball ?? (ctx.agentPackage === undefined ? agentBundle() : undefined);
    const agent = copied ? { staged: true as const, agentSha256: copied.sha256 } : userAgentDelivery(ctx.agentPackage!);
    const script = renderSshInstall({ agent, ipv6 });
    const sudo = this.args.sudo ?? SSH_LOCATION_DEFAULTS.sudo;
    const kernel = (this.args.routeMode ?? SSH_LOCATION_DEFAULTS.routeMode) === "kernel" ? { kernelRoutes: { cidrs: ctx.remoteRoutes, ...this.args.kernel } } : {};
    const remove = sshUninstallCommand(renderSshUninstall(kernel), sudo);
    this.hosts.forEach((h, i) => {
      const args = this.args.hosts[i]!;
      const name = `${this.spec.name}-${h.host.name}`;
      const connection = sshConnection(args.connection, args.publicAddress);
      // Where the agent lives: a change means another machine (or the same one by another way in),
      // so the old one is uninstalled and the new one installed. A new key, host key or bastion is not a move.
      const moved = [connection.host, connection.port, connection.user];
      const config = pulumi.secret(
        pulumi.all([ctx.hostUri(h.host.id), h.host.publicAddress, h.host.privateAddress]).apply(([uri, publicAddress, privateAddress]) =>
          // Through the agent's own schema, as the cloud bootstrap does: defaults written out, never a config the agent refuses.
          JSON.stringify(agentConfigSchema.parse(this.agentConfig(uri, publicAddress, privateAddress, ctx.remoteRoutes)), null, 2),
        ),
      );
      h.uninstall = new command.remote.Command(
        `${name}-uninstall`,
        // No create: an update (new routes in the script, a new key) only stores the new delete command and connection.
        { connection, delete: remove, triggers: moved, addPreviousOutputInEnv: false },
        // Replaced delete-first on a move: the old machine is uninstalled before anything reaches the new one.
        { parent: this, deleteBeforeReplace: true },
      );
      // Copied after the uninstall: on a move to the same machine its cleanup must not remove the new copies.
      const staged = { parent: this, dependsOn: [h.uninstall] };
      h.script = new command.remote.CopyToRemote(
        `${name}-script`,
        { connection, source: new pulumi.asset.StringAsset(script), remotePath: SSH_STAGED_FILES.script, triggers: moved },
        staged,
      );
      if (copied) {
        h.agentPackage = new command.remote.CopyToRemote(
          `${name}-package`,
          { connection, source: new pulumi.asset.FileAsset(copied.path), remotePath: SSH_STAGED_FILES.agent, triggers: moved },
          staged,
        );
      }
      h.install = new command.remote.Command(
        `${name}-install`,
        {
          connection,
          create: sshInstallCommand(sudo),
          // Inputs changed but no trigger did (a new key, host key or bastion): run nothing but a login.
          update: "true",
          // The config (host URI inside) reaches the host on stdin only: never in a command line, a file copy or an output.
          stdin: config,
          addPreviousOutputInEnv: false,
          // Hashes, never the config itself: a new script (it carries the package and its hash) or
          // config, or a move, replaces the resource, which runs the install again.
          triggers: [sha256Hex(script), config.apply(sha256Hex), ...moved],
        },
        { parent: this, dependsOn: [h.uninstall, h.script, ...(h.agentPackage ? [h.agentPackage] : [])], additionalSecretOutputs: ["stdin"] },
      );
    });
    this.registerOutputs({ hosts: this.hosts.map((h) => ({ id: h.host.id, install: h.install?.id })) });
  }

  override hostResources(): pulumi.CustomResource[] {
    return this.hosts.flatMap((h) => h.install ?? []);
  }

  /** The agent config of a host: its URI, its addresses (no detection behind NAT) and the route mode. */
  private agentConfig(uri: string, publicAddress: string, privateAddress: string, remoteRoutes: string[]): AgentConfigInput {
    const mode = this.args.routeMode ?? SSH_LOCATION_DEFAULTS.routeMode;
    return {
      uris: [uri],
      provider: mode,
      ...(mode === "file" ? { file: { path: this.args.routesFile ?? SSH_LOCATION_DEFAULTS.routesFile } } : { kernel: { ...this.args.kernel } }),
      firewall: this.args.firewall ?? SSH_LOCATION_DEFAULTS.firewall,
      // Only the connected locations' routes are ever pointed at this host.
      allowedRoutes: remoteRoutes,
      publicAddress,
      privateAddress,
    };
  }
}

/** @pulumi/command's connection: defaults filled in, keys made secret (the SDK secrets the whole connection as well). */
function sshConnection(c: SshConnectionArgs, publicAddress: pulumi.Input<string>) {
  const endpoint = (e: SshEndpointArgs) => ({ user: e.user, port: e.port ?? 22, privateKey: pulumi.secret(e.privateKey), hostKey: e.hostKey });
  return { host: c.host ?? publicAddress, ...endpoint(c), ...(c.proxy && { proxy: { host: c.proxy.host, ...endpoint(c.proxy) } }) };
}

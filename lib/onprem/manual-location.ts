// A location whose hosts an engineer sets up by hand: the component only declares them (for the
// topology and the peers' firewalls) and hands out each host's URI for `sitelink add-uri`.
import * as pulumi from "@pulumi/pulumi";
import { Location, type LinkContext, type LinkHost } from "../link/location";
import { existingLinkHosts, existingLocationSpec, type ExistingHostArgs } from "./hosts";
import { validateManualLocationArgs } from "./validate";
import { throwIfInvalid, type LocationSpec } from "../link/args";

export interface ManualLocationArgs {
  /** CIDRs of this location reachable through the link. */
  routes: string[];
  /** The hosts (at least one; more for failover), with the addresses they already have. */
  hosts: ExistingHostArgs[];
}

export class ManualLocation extends Location {
  readonly spec: LocationSpec;
  private readonly args: ManualLocationArgs;
  private linkHosts: LinkHost[] = [];
  private hostUris?: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: ManualLocationArgs, opts?: pulumi.ComponentResourceOptions) {
    throwIfInvalid(`ManualLocation "${name}"`, validateManualLocationArgs(name, args));
    super("sitelink:index:ManualLocation", name, {}, opts);
    this.args = args;
    this.spec = existingLocationSpec(name, "manual", args);
  }

  /**
   * Host URI of every host, by host name (a secret): run `sitelink add-uri <uri>` on that host.
   * Known once a Link has taken this location.
   */
  get uris(): pulumi.Output<Record<string, string>> {
    if (!this.hostUris) throw new Error(`ManualLocation "${this.spec.name}": uris are known once a Link takes the location`);
    return this.hostUris;
  }

  protected allocateHosts(link: string): LinkHost[] {
    this.linkHosts = existingLinkHosts(link, this.spec, this.args.hosts);
    return this.linkHosts;
  }

  join(ctx: LinkContext): void {
    const hosts = this.linkHosts;
    this.hostUris = pulumi.secret(
      pulumi.all(hosts.map((h) => ctx.hostUri(h.id))).apply((uris) => Object.fromEntries(hosts.map((h, i) => [h.name, uris[i]!]))),
    );
    this.registerOutputs({ uris: this.hostUris });
  }
}

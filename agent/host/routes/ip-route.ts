// Routes through `ip route`: the host's own table (kernel provider) or the router namespace that
// plays the cloud route table in the lab (lab provider). Every route it adds carries its own routing
// protocol id (`proto 83`), so it finds its routes again after a restart or when checking for drift.
// A route is added, never put in place of one that is not `proto 83` (an operator's static route,
// the default route): such a CIDR is refused, by name. Deletion (`ip route del CIDR <next hop>
// proto 83`) removes a route only while it is still ours and still points where we pointed it.
import { CommandError, runCommand, type CommandRunner } from "./command";
import { Failures, normalizeCidr } from "./failures";
import type { RouteProvider } from "../types";

/** rtnetlink protocol id of sitelink's routes (not among the ids iproute2 reserves or names). */
export const ROUTE_PROTO = "83";

export interface IpRouteNextHop {
  device?: string;
  via?: string;
}

interface IpRoute {
  dst?: string;
  gateway?: string;
  dev?: string;
  /** Absent for `boot` routes and when the listing filtered by protocol. */
  protocol?: string;
}

/** `ip -j route` names a default route `default` and a host route without its prefix length. */
export function routeDestination(dst: string, family: "-4" | "-6"): string {
  if (dst === "default") return family === "-4" ? "0.0.0.0/0" : "::/0";
  return dst.includes("/") ? dst : `${dst}/${family === "-4" ? 32 : 128}`;
}

export class IpRouteProvider implements RouteProvider {
  private current = new Set<string>();
  /** Routes to delete that could not be deleted yet (retried on the next apply). */
  private pendingRemoval = new Set<string>();

  constructor(
    readonly name: "kernel" | "lab",
    readonly table: "shared" | "own",
    /** Leading `ip` options, e.g. ["-n", namespace]. */
    private readonly ipOptions: string[],
    private readonly nextHop: IpRouteNextHop,
    private readonly run: CommandRunner = runCommand,
  ) {}

  async apply(cidrs: string[], opts: { previous: string[]; removeRoutes: boolean }): Promise<void> {
    const failures = new Failures(this.name);
    const desired = failures.validCidrs(cidrs);
    const wanted = new Set(desired.map(normalizeCidr));
    const applied = new Set<string>();
    for (const cidr of desired) {
      try {
        await this.pointHere(cidr);
        applied.add(cidr);
      } catch (error) {
        failures.add(`cannot point ${cidr} here`, error);
      }
    }
    if (opts.removeRoutes) {
      // Our routes still in the table count too: after a restart, nothing else remembers them.
      const owned = await this.owned([...desired, ...opts.previous]).catch((error: unknown) => {
        failures.add("cannot list this host's routes", error);
        return [];
      });
      const stale = new Map([...opts.previous, ...this.current, ...this.pendingRemoval, ...owned].map((cidr) => [normalizeCidr(cidr), cidr]));
      this.pendingRemoval = new Set();
      for (const [key, cidr] of stale) {
        if (wanted.has(key)) continue;
        try {
          await this.ip("del", cidr);
        } catch (error) {
          // ESRCH: the route is gone or points elsewhere now; either way it is not ours to delete.
          if (error instanceof CommandError && /No such process/.test(error.stderr)) continue;
          this.pendingRemoval.add(cidr);
          failures.add(`cannot delete ${cidr}`, error);
        }
      }
    }
    this.current = applied;
    failures.throwIfAny();
  }

  applied(): string[] {
    return [...this.current];
  }

  async inPlace(cidrs: string[]): Promise<boolean> {
    const owned = new Set((await this.owned(cidrs)).map(normalizeCidr));
    return cidrs.every((cidr) => owned.has(normalizeCidr(cidr)));
  }

  /**
   * Our routes in the table: proto 83 and our next hop. IPv6 is listed only when a CIDR of `relevant`
   * is IPv6 or the listing works (a host with IPv6 switched off may refuse it).
   */
  private async owned(relevant: string[]): Promise<string[]> {
    const needV6 = relevant.some((cidr) => normalizeCidr(cidr).includes(":"));
    const v4 = await this.list("-4");
    const v6 = await this.list("-6").catch((error: unknown) => {
      if (needV6) throw error;
      return [];
    });
    return [...v4, ...v6];
  }

  private async list(family: "-4" | "-6"): Promise<string[]> {
    const { stdout } = await this.run("ip", [...this.ipOptions, family, "-j", "route", "show", "proto", ROUTE_PROTO]);
    const routes = JSON.parse(stdout || "[]") as IpRoute[];
    return routes
      .filter((r) => r.dst && (!this.nextHop.via || r.gateway === this.nextHop.via) && (!this.nextHop.device || r.dev === this.nextHop.device))
      .map((r) => routeDestination(r.dst!, family));
  }

  /**
   * Adds the route, or moves one of ours (`proto 83`: this host's, or in a shared table another link
   * host's) here; a route of the same prefix that is not ours is left alone and the CIDR refused.
   */
  private async pointHere(cidr: string): Promise<void> {
    const family = normalizeCidr(cidr).includes(":") ? "-6" : "-4";
    const { stdout } = await this.run("ip", [...this.ipOptions, family, "-j", "route", "show", "exact", cidr]);
    const existing = JSON.parse(stdout || "[]") as IpRoute[];
    const foreign = existing.find((r) => r.protocol !== ROUTE_PROTO);
    if (foreign) throw new Error(`a route the agent did not make is in place (${describe(foreign)}); it is left alone`);
    await this.ip(existing.length > 0 ? "replace" : "add", cidr);
  }

  private ip(verb: "add" | "replace" | "del", cidr: string) {
    const hop = [...(this.nextHop.via ? ["via", this.nextHop.via] : []), ...(this.nextHop.device ? ["dev", this.nextHop.device] : [])];
    return this.run("ip", [...this.ipOptions, "route", verb, cidr, ...hop, "proto", ROUTE_PROTO]);
  }
}

function describe(route: IpRoute): string {
  return [route.gateway && `via ${route.gateway}`, route.dev && `dev ${route.dev}`, `proto ${route.protocol ?? "boot"}`].filter(Boolean).join(" ");
}

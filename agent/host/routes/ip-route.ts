// Routes through `ip route`: the host's own table (kernel provider) or the router namespace that
// plays the cloud route table in the lab (lab provider). Deletion names the same next hop, so the
// kernel removes a route only while it still points where we pointed it.
import { CommandError, runCommand, type CommandRunner } from "./command";
import { Failures } from "./failures";
import type { RouteProvider } from "../types";

export interface IpRouteNextHop {
  device?: string;
  via?: string;
}

export class IpRouteProvider implements RouteProvider {
  private current = new Set<string>();
  /** Routes to delete that could not be deleted yet (retried on the next apply). */
  private pendingRemoval = new Set<string>();

  constructor(
    readonly name: "kernel" | "lab",
    /** Leading `ip` options, e.g. ["-n", namespace]. */
    private readonly ipOptions: string[],
    private readonly nextHop: IpRouteNextHop,
    private readonly run: CommandRunner = runCommand,
  ) {}

  async apply(cidrs: string[], opts: { previous: string[]; removeRoutes: boolean }): Promise<void> {
    const failures = new Failures(this.name);
    const desired = failures.validCidrs(cidrs);
    const applied = new Set<string>();
    for (const cidr of desired) {
      try {
        await this.ip("replace", cidr);
        applied.add(cidr);
      } catch (error) {
        failures.add(`cannot point ${cidr} here`, error);
      }
    }
    const stale = new Set([...opts.previous, ...this.current, ...this.pendingRemoval].filter((cidr) => !desired.includes(cidr)));
    this.pendingRemoval = new Set();
    if (opts.removeRoutes) {
      for (const cidr of stale) {
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

  private ip(verb: "replace" | "del", cidr: string) {
    const hop = [...(this.nextHop.via ? ["via", this.nextHop.via] : []), ...(this.nextHop.device ? ["dev", this.nextHop.device] : [])];
    return this.run("ip", [...this.ipOptions, "route", verb, cidr, ...hop]);
  }
}

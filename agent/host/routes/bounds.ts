// The agent's own bounds on the routes the state service asks for: whatever the service (or anyone
// holding the master key) sends, a host points at itself only remote CIDRs its own config allows
// (`allowedRoutes`, each inside one of them). Without that list, anything but a default route
// (`0.0.0.0/0`, `::/0`), which must always be listed to be taken over. A refused CIDR is reported
// by name with the provider's other failures; the rest are applied.
import { cidrProblem, parseCidr, type Cidr } from "../../contract/net";
import type { RouteProvider } from "../types";
import { RouteApplyError } from "./failures";

export class BoundedRouteProvider implements RouteProvider {
  readonly name: RouteProvider["name"];
  readonly table: RouteProvider["table"];
  readonly inPlace?: (cidrs: string[]) => Promise<boolean>;
  private readonly allowed: Cidr[] | undefined;

  constructor(
    private readonly inner: RouteProvider,
    allowedRoutes: readonly string[] | undefined,
  ) {
    this.name = inner.name;
    this.table = inner.table;
    this.allowed = allowedRoutes?.map(parseCidr);
    if (inner.inPlace) this.inPlace = (cidrs) => inner.inPlace!(cidrs.filter((cidr) => this.refusal(cidr) === undefined));
  }

  async apply(cidrs: string[], opts: Parameters<RouteProvider["apply"]>[1]): Promise<void> {
    const refused = cidrs.flatMap((cidr) => this.refusal(cidr) ?? []);
    try {
      await this.inner.apply(
        cidrs.filter((cidr) => this.refusal(cidr) === undefined),
        opts,
      );
    } catch (error) {
      if (!(error instanceof RouteApplyError) || refused.length === 0) throw error;
      throw new RouteApplyError(this.name, [...refused, ...error.failures]);
    }
    if (refused.length > 0) throw new RouteApplyError(this.name, refused);
  }

  applied(): string[] {
    return this.inner.applied();
  }

  /** Why this host refuses to point `cidr` at itself; undefined when it may (a malformed CIDR is the provider's to report). */
  private refusal(cidr: string): string | undefined {
    if (cidrProblem(cidr)) return undefined;
    const route = parseCidr(cidr);
    if (this.allowed) {
      const inside = this.allowed.some((a) => a.family === route.family && route.prefix >= a.prefix && route.address.match(a.address, a.prefix));
      return inside ? undefined : `${route.text} refused: not inside this host's allowedRoutes`;
    }
    return route.prefix === 0 ? `${route.text} refused: a default route is taken over only when allowedRoutes lists it` : undefined;
  }
}

// `none`: routes are someone else's business (static routes, a router the operator manages).
import type { RouteProvider } from "../types";

export class NoneRouteProvider implements RouteProvider {
  readonly name = "none" as const;
  readonly table = "shared" as const;
  async apply(): Promise<void> {}
  applied(): string[] {
    return [];
  }
}

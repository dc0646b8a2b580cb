// `none`: routes are someone else's business (static routes, a router the operator manages).
import type { RouteProvider } from "../types";
import type { RouteProviderDescriptor } from "./descriptor";

export class NoneRouteProvider implements RouteProvider {
  readonly name = "none" as const;
  readonly table = "shared" as const;
  async apply(): Promise<void> {}
  applied(): string[] {
    return [];
  }
}

export const noneRoutes: RouteProviderDescriptor = {
  name: "none",
  flags: [],
  usage: "",
  configure: (config) => ({ ...config, provider: "none" }),
  create: () => new NoneRouteProvider(),
};

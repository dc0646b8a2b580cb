import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { agentConfigSchema } from "../../contract/agent-config";
import type { RouteProvider } from "../types";
import { FileRouteProvider } from "./file";
import { createRouteProvider } from "./index";

let dir: string;
let oldUmask: number;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "sitelink-routes-"));
  oldUmask = process.umask(0o077); // the file must still come out 0644
});
afterEach(() => {
  process.umask(oldUmask);
  rmSync(dir, { recursive: true, force: true });
});

describe("file route provider", () => {
  it("writes one CIDR per line under a header naming the via address, mode 0644, atomically", async () => {
    const path = join(dir, "sub", "routes");
    const p = createRouteProvider(agentConfigSchema.parse({ provider: "file", file: { path } }), { hostId: "h1", privateAddress: "10.0.1.5" });
    await p.apply(["10.2.0.0/16", "fd00:2::/64", "10.2.0.0/16"], { previous: [], removeRoutes: false });
    expect(readFileSync(path, "utf8")).toBe("# sitelink routes of host h1: send these networks via 10.0.1.5\n10.2.0.0/16\nfd00:2::/64\n");
    expect(statSync(path).mode & 0o777).toBe(0o644);
    expect(readdirSync(join(dir, "sub"))).toEqual(["routes"]); // no temp file left behind
    expect(p.applied()).toEqual(["10.2.0.0/16", "fd00:2::/64"]);

    await p.apply([], { previous: p.applied(), removeRoutes: false });
    expect(readFileSync(path, "utf8")).toBe("# sitelink routes of host h1: send these networks via 10.0.1.5\n");
    expect(p.applied()).toEqual([]);
  });

  it("is withdrawn by a standby, and inPlace notices a file someone changed or removed", async () => {
    const path = join(dir, "routes");
    const p = new FileRouteProvider(path, { hostId: "h1", privateAddress: "10.0.1.5" });
    expect(p.table).toBe("own");
    await p.apply(["10.2.0.0/16"]);
    expect(await p.inPlace(["10.2.0.0/16"])).toBe(true);
    expect(await p.inPlace([])).toBe(false);
    writeFileSync(path, "10.9.0.0/16\n");
    expect(await p.inPlace(["10.2.0.0/16"])).toBe(false);
    rmSync(path);
    expect(await p.inPlace(["10.2.0.0/16"])).toBe(false);
  });

  it("writes the valid CIDRs and names the bad one", async () => {
    const path = join(dir, "routes");
    const p: RouteProvider = new FileRouteProvider(path, { hostId: "h1", privateAddress: "10.0.1.5" });
    await expect(p.apply(["10.2.0.0/16", "banana"], { previous: [], removeRoutes: false })).rejects.toThrow('route provider file: "banana" is not a CIDR');
    expect(readFileSync(path, "utf8")).toContain("\n10.2.0.0/16\n");
    expect(p.applied()).toEqual(["10.2.0.0/16"]);
  });

  it("refuses to write without a via address", async () => {
    const path = join(dir, "routes");
    const p: RouteProvider = new FileRouteProvider(path, { hostId: "h1" });
    await expect(p.apply(["10.2.0.0/16"], { previous: [], removeRoutes: false })).rejects.toThrow(`route provider file: cannot write ${path}: this host's private address is unknown`);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("reports an unwritable path and keeps what it had applied", async () => {
    const p: RouteProvider = new FileRouteProvider(join(dir, "routes"), { hostId: "h1", privateAddress: "10.0.1.5" });
    await p.apply(["10.2.0.0/16"], { previous: [], removeRoutes: false });
    const blocked: RouteProvider = new FileRouteProvider(join(dir, "routes", "x"), { hostId: "h1", privateAddress: "10.0.1.5" }); // parent is a file
    await expect(blocked.apply(["10.3.0.0/16"], { previous: [], removeRoutes: false })).rejects.toThrow(/^route provider file: cannot write .*routes\/x: /);
    expect(blocked.applied()).toEqual([]);
    expect(p.applied()).toEqual(["10.2.0.0/16"]);
  });
});

describe("none route provider and the factory", () => {
  it("none does nothing and reports nothing applied", async () => {
    const p = createRouteProvider(agentConfigSchema.parse({}), { hostId: "h1" });
    expect(p.name).toBe("none");
    await p.apply(["10.2.0.0/16"], { previous: [], removeRoutes: true });
    expect(p.applied()).toEqual([]);
  });

  it("names the missing config section of the chosen provider", () => {
    for (const provider of ["gcp", "file", "lab"] as const) {
      expect(() => createRouteProvider(agentConfigSchema.parse({ provider }), { hostId: "h1" })).toThrow(`route provider ${provider}: the agent config has no "${provider}" section`);
    }
  });
});

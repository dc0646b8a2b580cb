// The agent's version (reported to the state service and printed by `sitelink version`).
// The bundle has no package.json beside it, so scripts/bundle.mjs defines __SITELINK_VERSION__;
// from source (tsx, vitest, tsc output) it is read from the nearest package.json named "sitelink".
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";

declare const __SITELINK_VERSION__: string | undefined;

let cached: string | undefined;

export function agentVersion(): string {
  if (cached) return cached;
  cached = typeof __SITELINK_VERSION__ === "string" ? __SITELINK_VERSION__ : readPackageVersion();
  return cached;
}

function readPackageVersion(): string {
  return sitelinkPackage()?.version ?? "0.0.0-unknown";
}

/** The nearest package.json named "sitelink" above `from`: its directory and version (none when there is none, e.g. in the bundle). */
export function sitelinkPackage(from: string = __dirname): { dir: string; version: string } | undefined {
  for (let dir = from; ; dir = dirname(dir)) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: string; version?: string };
      if (pkg.name === "sitelink" && pkg.version) return { dir, version: pkg.version };
    }
    if (dirname(dir) === dir) return undefined;
  }
}

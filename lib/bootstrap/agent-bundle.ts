// The agent bundle that ships inside the installed sitelink package (dist/sitelink.js): what the
// components publish for their hosts, so a host runs exactly the version of the library that
// deployed it, verified by its SHA-256.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { sitelinkPackage } from "../../agent/contract/version";

export interface AgentBundle {
  /** Absolute path of dist/sitelink.js. */
  path: string;
  /** SHA-256 of its bytes, lower-case hex: what every host verifies before installing it. */
  sha256: string;
  bytes: number;
}

/** The root of the installed sitelink package: the nearest package.json named "sitelink" above `from` (as the agent's version). */
export function sitelinkPackageRoot(from: string = __dirname): string {
  const found = sitelinkPackage(from);
  if (!found) throw new Error(`cannot find the sitelink package (no package.json named "sitelink" above ${from})`);
  return found.dir;
}

/** A file of the installed package, as text (the systemd units it ships). */
export function packagedFile(relativePath: string): string {
  return readFileSync(join(sitelinkPackageRoot(), relativePath), "utf8");
}

const cache = new Map<string, AgentBundle>();

/** dist/sitelink.js of the installed sitelink package, with its SHA-256. */
export function agentBundle(from: string = __dirname): AgentBundle {
  const path = join(sitelinkPackageRoot(from), "dist", "sitelink.js");
  if (!existsSync(path)) throw new Error(`sitelink's agent bundle is missing: ${path} does not exist (run \`npm run build\` in the sitelink package)`);
  const known = cache.get(path);
  if (known) return known;
  const data = readFileSync(path);
  const bundle = { path, sha256: createHash("sha256").update(data).digest("hex"), bytes: data.length };
  cache.set(path, bundle);
  return bundle;
}

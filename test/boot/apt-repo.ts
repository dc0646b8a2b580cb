// A flat apt repository of the Debian packages an instance installs that the base lacks, built on
// the host (which has a route to the Debian mirror) and served on the lab bridge (instances have no
// route out and no DNS). The repository is unsigned: instances list it with [trusted=yes], which is
// acceptable only because it is built here from packages the host's apt verified against the
// Debian archive keys and is served on a bridge nothing but the lab's own instances can reach.
import { createReadStream, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { createHash } from "node:crypto";
import { join, normalize } from "node:path";
import type { AddressInfo } from "node:net";
import { cachedDir, recipeHash, type CacheEntry } from "./cache";
import { run } from "./proc";

/** What the boot lab's instances install: strongSwan as the lab runs it (no libstrongswan-extra-plugins: it pulls udev). */
export const LAB_PACKAGES = [
  "strongswan-charon", "strongswan-swanctl", "libcharon-extra-plugins", "libstrongswan-standard-plugins", "iptables",
];

/**
 * The cached repository of `packages` and every dependency missing from (or too old in) the base
 * at `baseDir`: apt on the host resolves them as if it were installing onto the base (the base's
 * dpkg status replaces the host's) and only downloads.
 */
export function aptRepo(baseDir: string, packages: readonly string[] = LAB_PACKAGES, log: (line: string) => void = () => {}): Promise<CacheEntry> {
  const key = recipeHash({ base: baseDir.split("/").pop(), packages: [...packages].sort() });
  return cachedDir("apt-repo", key, async (repo) => {
    log(`apt-repo: downloading ${packages.join(" ")} and what the base lacks of their dependencies`);
    const work = join(repo, ".work");
    mkdirSync(join(work, "archives", "partial"), { recursive: true });
    await run([
      "apt-get", "-q", "-y", "--download-only", "--no-install-recommends",
      "-o", `Dir::State::status=${join(baseDir, "var/lib/dpkg/status")}`,
      "-o", `Dir::State::extended_states=${join(work, "extended_states")}`,
      "-o", `Dir::Cache::archives=${join(work, "archives")}`,
      // No binary caches: they would be built from the base's status into the host's /var/cache/apt.
      "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
      // Only downloads into our own directory: the host's dpkg lock is not ours to take.
      "-o", "Debug::NoLocking=true",
      "install", ...packages,
    ], { env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
    const debs = readdirSync(join(work, "archives")).filter((name) => name.endsWith(".deb"));
    if (debs.length === 0) throw new Error(`apt-repo: nothing to download for ${packages.join(" ")}: already in the base?`);
    for (const deb of debs) renameSync(join(work, "archives", deb), join(repo, deb));
    rmSync(work, { recursive: true });
    const scan = await run(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], { cwd: repo });
    writeFileSync(join(repo, "Packages"), scan.stdout);
    writeFileSync(join(repo, "Release"), release(repo));
    log(`apt-repo: ${debs.length} packages`);
  });
}

/** A minimal Release file: apt refuses a repository without one, even a trusted one. */
function release(repo: string): string {
  const packages = readFileSync(join(repo, "Packages"));
  return [
    "Origin: sitelink-boot-lab",
    "Label: sitelink-boot-lab",
    `Date: ${new Date().toUTCString()}`,
    "SHA256:",
    ` ${createHash("sha256").update(packages).digest("hex")} ${packages.length} Packages`,
    "",
  ].join("\n");
}

/** The line for an instance's /etc/apt/sources.list.d/ that points at a served repository. */
export function aptSourceLine(url: string): string {
  return `deb [trusted=yes] ${url} ./\n`;
}

export interface RepoServer {
  /** Base URL with a trailing slash, e.g. http://198.19.7.1:41234/ */
  url: string;
  /** Every request: who asked for what, and the answer's status. */
  requests: { remote: string; path: string; status: number }[];
  close(): Promise<void>;
}

/** Serves the files of `dir` (read-only, GET/HEAD) on `host`, an ephemeral port. */
export async function serveRepo(dir: string, host: string): Promise<RepoServer> {
  const requests: RepoServer["requests"] = [];
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? "/").split("?")[0]!);
    const relative = normalize(path).replace(/^(\.\.(\/|$))+/, "").replace(/^\/+/, "");
    const file = join(dir, relative);
    let status = 404;
    try {
      if (req.method !== "GET" && req.method !== "HEAD") status = 405;
      else if (relative && !relative.startsWith(".") && statSync(file).isFile()) status = 200;
    } catch {
      // missing: 404
    }
    requests.push({ remote: req.socket.remoteAddress ?? "", path, status });
    if (status !== 200) {
      res.writeHead(status).end();
      return;
    }
    res.writeHead(200, { "content-length": statSync(file).size, "content-type": "application/octet-stream" });
    if (req.method === "HEAD") res.end();
    else createReadStream(file).pipe(res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}/`,
    requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

// The base root filesystem every boot-lab instance starts from: Debian bookworm (minbase) with
// systemd as init and cloud-init reading a NoCloud seed. Built once with debootstrap from the
// Debian mirror the host's apt already uses, then cached; instances put an overlayfs upper layer on
// top and never write to it.
//
// Run alone to build (or find) it: `npx tsx test/boot/rootfs.ts` (root).
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { cachedDir, recipeHash, type CacheEntry } from "./cache";
import { run } from "./proc";

export const SUITE = "bookworm";

/**
 * Everything that shapes the base, as data: its hash is the cache key, so any change here
 * rebuilds. Paths are relative to the root filesystem.
 */
export const BASE_RECIPE = {
  suite: SUITE,
  variant: "minbase",
  packages: [
    "systemd", "systemd-sysv", "dbus", "cloud-init", "iproute2", "ca-certificates", "curl", "sudo",
    "ifupdown", "iputils-ping",
    // debootstrap cannot resolve cloud-init's python3-cryptography dependency without it.
    "python3-cffi-backend",
  ],
  files: {
    // Empty, so systemd writes a fresh id at every instance's first boot: with an id baked into
    // the base, every instance would share one machine id (and one journal directory).
    "etc/machine-id": "",
    // cloud-init: only the on-disk NoCloud seed the lab writes; C.UTF-8 because the default locale
    // step fails (update-locale rejects LANG=en_US.UTF-8, which minbase lacks); the lab sets the
    // addresses from outside the instance; and the apt sources stay the lab's own.
    "etc/cloud/cloud.cfg.d/90-boot-lab.cfg": [
      "datasource_list: [NoCloud, None]",
      "locale: C.UTF-8",
      "network:",
      "  config: disabled",
      "apt:",
      "  preserve_sources_list: true",
      "",
    ].join("\n"),
    // Instances have no DNS and no route out: nothing of the host's resolver config belongs here.
    "etc/resolv.conf": "# boot lab: no DNS\n",
    // The instance's only package source is the lab's local repository (see apt-repo.ts).
    "etc/apt/sources.list": "# boot lab: see /etc/apt/sources.list.d/\n",
  } as Record<string, string>,
  symlinks: {
    // dbus reads its own copy otherwise, which would also be shared by every instance.
    "var/lib/dbus/machine-id": "/etc/machine-id",
  } as Record<string, string>,
  /** Removed: nspawn -M and cloud-init set the hostname; debootstrap copied the host's. */
  remove: ["etc/hostname"],
  /** Regular files removed from these directories (the downloaded .debs and apt's lists: ~60 MB). */
  emptied: ["var/cache/apt/archives", "var/lib/apt/lists"],
};

/** The first Debian mirror the host's apt uses for `suite` (one-line .list and deb822 .sources). */
export function hostDebianMirror(suite = SUITE): string {
  const files = ["/etc/apt/sources.list"];
  try {
    for (const name of readdirSync("/etc/apt/sources.list.d").sort()) {
      if (name.endsWith(".list") || name.endsWith(".sources")) files.push(join("/etc/apt/sources.list.d", name));
    }
  } catch {
    // no sources.list.d
  }
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    const uri = file.endsWith(".sources") ? fromDeb822(text, suite) : fromOneLine(text, suite);
    if (uri) return uri;
  }
  throw new Error(`no apt source for suite ${suite} in ${files.join(", ")}`);
}

function fromOneLine(text: string, suite: string): string | undefined {
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").replace(/\[[^\]]*\]/, "").trim().split(/\s+/);
    if (line[0] === "deb" && line[2] === suite && line[1]) return line[1];
  }
  return undefined;
}

function fromDeb822(text: string, suite: string): string | undefined {
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    for (const line of stanza.split("\n")) {
      const match = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (match) fields.set(match[1]!.toLowerCase(), match[2]!.trim());
    }
    if (fields.get("enabled") === "no") continue;
    if (!(fields.get("types") ?? "").split(/\s+/).includes("deb")) continue;
    if (!(fields.get("suites") ?? "").split(/\s+/).includes(suite)) continue;
    const uri = fields.get("uris")?.split(/\s+/)[0];
    if (uri) return uri;
  }
  return undefined;
}

/** The cached base root filesystem, built first if the recipe changed or it was never built. */
export function baseRootfs(log: (line: string) => void = () => {}): Promise<CacheEntry> {
  // The mirror is not part of the key: any mirror of the suite yields the same base.
  return cachedDir("rootfs", recipeHash(BASE_RECIPE), async (target) => {
    const mirror = hostDebianMirror(BASE_RECIPE.suite);
    log(`rootfs: debootstrap ${BASE_RECIPE.suite} from ${mirror} (about 2 minutes)`);
    await run([
      "debootstrap", `--variant=${BASE_RECIPE.variant}`, `--include=${BASE_RECIPE.packages.join(",")}`,
      BASE_RECIPE.suite, target, mirror,
    ]);
    applyRecipe(target);
  });
}

function applyRecipe(root: string): void {
  for (const [path, content] of Object.entries(BASE_RECIPE.files)) {
    const file = join(root, path);
    mkdirSync(dirname(file), { recursive: true });
    rmSync(file, { force: true });
    writeFileSync(file, content);
    chmodSync(file, 0o644);
  }
  for (const [path, target] of Object.entries(BASE_RECIPE.symlinks)) {
    const link = join(root, path);
    mkdirSync(dirname(link), { recursive: true });
    rmSync(link, { force: true });
    symlinkSync(target, link);
  }
  for (const path of BASE_RECIPE.remove) rmSync(join(root, path), { force: true });
  for (const path of BASE_RECIPE.emptied) {
    const dir = join(root, path);
    for (const name of readdirSync(dir)) {
      const file = join(dir, name);
      if (name !== "lock" && statSync(file).isFile()) rmSync(file);
    }
  }
}

if (require.main === module) {
  const started = performance.now();
  baseRootfs((line) => console.log(line)).then(
    (entry) => console.log(`rootfs: ${entry.built ? "built" : "reused"} ${entry.dir} in ${((performance.now() - started) / 1000).toFixed(1)} s`),
    (error: unknown) => {
      console.error(error instanceof Error ? error.message : error);
      process.exit(1);
    },
  );
}

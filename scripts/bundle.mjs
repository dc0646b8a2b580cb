#!/usr/bin/env node
// Bundles agent/sitelink.ts into ONE self-contained file, dist/sitelink.js (Node 20+, CommonJS, with a
// shebang), so a link host needs only `node` and this file. better-sqlite3 (native) stays
// external: only `sitelink state …` needs it, and the state service modules that require it are
// evaluated lazily, so the agent commands never load them.
// Self-check: runs `node sitelink.js version` from an empty temp dir (no node_modules) and compares.
//   node scripts/bundle.mjs [--outfile PATH] [--no-check]
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const outIndex = args.indexOf("--outfile");
const outfile = resolve(outIndex === -1 ? join(root, "dist", "sitelink.js") : args[outIndex + 1]);
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));

const result = await build({
  entryPoints: [join(root, "agent", "sitelink.ts")],
  outfile,
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  external: ["better-sqlite3"],
  banner: { js: "#!/usr/bin/env node" },
  define: { __SITELINK_VERSION__: JSON.stringify(version) },
  legalComments: "none",
  // Hosts start the agent on every boot and failover drill: a minified bundle loads ~2x faster.
  minify: true,
  keepNames: true,
  logLevel: "warning",
  metafile: true,
});
chmodSync(outfile, 0o755);
const bytes = result.metafile.outputs[Object.keys(result.metafile.outputs)[0]].bytes;
process.stdout.write(`bundled ${outfile} (${(bytes / 1024 / 1024).toFixed(1)} MiB, sitelink ${version})\n`);

if (!args.includes("--no-check")) {
  const dir = mkdtempSync(join(tmpdir(), "sitelink-bundle-"));
  try {
    copyFileSync(outfile, join(dir, "sitelink.js"));
    const printed = execFileSync(process.execPath, [join(dir, "sitelink.js"), "version"], { cwd: dir, encoding: "utf8" }).trim();
    if (printed !== version) throw new Error(`self-check: \`sitelink version\` printed "${printed}", expected "${version}"`);
    process.stdout.write(`self-check: \`node sitelink.js version\` from an empty dir → ${printed}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

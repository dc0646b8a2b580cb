#!/usr/bin/env node
// Bundles agent/sitelink.ts into ONE self-contained file, dist/sitelink.js (Node 20+, CommonJS, with a
// shebang), so a host needs only `node` and this file, whose SHA-256 then covers everything it runs.
// The program is embedded as a string in a small launcher (agent/launch.ts) that runs it through
// V8's code cache (agent/code-cache.ts).
// The state service's SQLite is WebAssembly (node-sqlite3-wasm): its .wasm is embedded (binary
// loader) instead of read from beside the module; the state service modules are evaluated lazily,
// so the agent commands never decode it.
// Self-check: from an empty temp dir (no node_modules), `version` prints the package version and
// `state init` runs (it loads the state service, and with it the embedded SQLite).
//   node scripts/bundle.mjs [--outfile PATH] [--no-check]
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const outIndex = args.indexOf("--outfile");
const outfile = resolve(outIndex === -1 ? join(root, "dist", "sitelink.js") : args[outIndex + 1]);
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));

const require = createRequire(import.meta.url);
const sqliteWasm = require.resolve("node-sqlite3-wasm");

/** Hands node-sqlite3-wasm its .wasm as bytes (Emscripten's Module.wasmBinary), so it never reads a file. */
const embedSqliteWasm = {
  name: "embed-sqlite-wasm",
  setup(b) {
    b.onLoad({ filter: /node-sqlite3-wasm\.js$/ }, (args) => {
      if (args.path !== sqliteWasm) return undefined;
      const source = readFileSync(args.path, "utf8");
      if (!source.startsWith('var Module=typeof Module!="undefined"?Module:{};')) throw new Error(`${args.path}: unexpected start, cannot embed its .wasm`);
      return { contents: `var Module = { wasmBinary: require("./node-sqlite3-wasm.wasm") };\n${source}`, loader: "js", resolveDir: dirname(args.path) };
    });
  },
};

// The program: agent/sitelink.ts and everything it uses, one CommonJS text.
const inner = await build({
  entryPoints: [join(root, "agent", "sitelink.ts")],
  write: false,
  outfile: "program.js",
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  loader: { ".wasm": "binary" },
  plugins: [embedSqliteWasm],
  define: { __SITELINK_VERSION__: JSON.stringify(version) },
  legalComments: "none",
  // Hosts start the agent on every boot and failover drill: a minified bundle loads ~2x faster.
  minify: true,
  keepNames: true,
  logLevel: "warning",
});
const programText = inner.outputFiles[0].text;
const programSha256 = createHash("sha256").update(programText).digest("hex");

/** agent/launch.ts's "sitelink:program": the program as a string, run through V8's code cache. */
const embedProgram = {
  name: "embed-program",
  setup(b) {
    b.onResolve({ filter: /^sitelink:program$/ }, () => ({ path: "program", namespace: "sitelink" }));
    b.onLoad({ filter: /.*/, namespace: "sitelink" }, () => ({
      contents: `export default { source: ${JSON.stringify(programText)}, sha256: ${JSON.stringify(programSha256)} };`,
      loader: "js",
    }));
  },
};

const result = await build({
  entryPoints: [join(root, "agent", "launch.ts")],
  outfile,
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  plugins: [embedProgram],
  banner: { js: "#!/usr/bin/env node" },
  legalComments: "none",
  minify: true,
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
    const run = (...argv) => execFileSync(process.execPath, [join(dir, "sitelink.js"), ...argv], { cwd: dir, encoding: "utf8" }).trim();
    const printed = run("version");
    if (printed !== version) throw new Error(`self-check: \`sitelink version\` printed "${printed}", expected "${version}"`);
    run("state", "init", "--data", join(dir, "data"));
    process.stdout.write(`self-check from an empty dir: \`version\` → ${printed}, \`state init\` ok\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

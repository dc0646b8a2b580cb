#!/usr/bin/env node
// The package's build (`npm run build`, and `prepack`, so `npm pack` never ships a stale or empty
// dist/): a clean dist/, the library compiled by tsc (dist/lib and the agent/contract modules it
// imports; declarations, no source maps: the sources are not shipped), then the runtime bundle.
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

// Progress goes to stderr: `npm pack --json` prints its answer on stdout after prepack.
const stdio = ["ignore", process.stderr, "inherit"];
const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
rmSync(join(root, "dist"), { recursive: true, force: true });
execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { cwd: root, stdio });
execFileSync(process.execPath, [join(root, "scripts", "bundle.mjs")], { cwd: root, stdio });

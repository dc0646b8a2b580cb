// vitest globalSetup: builds dist/sitelink.js once per run, so tests that publish or install the
// agent bundle (agentBundle(), the boot lab) use the bundle of the sources under test.
import { execFileSync } from "node:child_process";
import { resolve } from "node:path";

export default function setup(): void {
  execFileSync(process.execPath, [resolve(__dirname, "../../scripts/bundle.mjs"), "--no-check"], { stdio: "inherit" });
}

import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["lib/**/*.test.ts", "agent/**/*.test.ts", "test/**/*.test.ts", "examples/**/*.test.ts"],
    // The Pulumi runtime keeps its state on `global`: one process per file.
    pool: "forks",
    // dist/sitelink.js of the sources under test: what agentBundle() publishes.
    globalSetup: ["test/support/build-bundle.ts"],
    isolate: true,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});

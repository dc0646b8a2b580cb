// The virtual module scripts/bundle.mjs gives agent/launch.ts: the bundled program and its SHA-256.
declare module "sitelink:program" {
  const program: import("./code-cache").Program;
  export default program;
}

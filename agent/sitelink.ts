// The single `sitelink` command: `sitelink state …` runs the state service's commands, everything
// else is the link agent's CLI. The state service is loaded only for `state`: the agent commands
// never pay for instantiating its (embedded, WebAssembly) SQLite.
import { runAgentCli } from "./host/cli";

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === "state") {
    // require(), not import(): this is a CommonJS module, and esbuild keeps a required module lazy.
    const state = require("./state/cli") as typeof import("./state/cli");
    return state.runStateCli(argv.slice(1));
  }
  return runAgentCli(argv);
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      // Unexpected: print the error class and message only (a stack could quote config values).
      process.stderr.write(`sitelink: internal error: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}\n`);
      process.exit(1);
    },
  );
}

// The single `sitelink` command: `sitelink state …` runs the state service's commands, everything
// else is the link agent's CLI. The state service is loaded only for `state`: it needs the native
// better-sqlite3, which a link host does not have.
import { runAgentCli } from "./host/cli";

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === "state") {
    // require(), not import(): this is a CommonJS module, and esbuild keeps a required module lazy.
    let state: typeof import("./state/cli");
    try {
      state = require("./state/cli") as typeof import("./state/cli");
    } catch (err) {
      const missing = /Cannot find module '(better-sqlite3)'/.exec((err as Error).message)?.[1];
      if (!missing) throw err;
      process.stderr.write(`sitelink: the state service needs the ${missing} package: npm install ${missing} (next to sitelink.js)\n`);
      return 1;
    }
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

// The entry of dist/sitelink.js: the program itself (agent/sitelink.ts, bundled) is embedded as a
// string and run through V8's code cache (code-cache.ts), so a restart skips compiling it.
import program from "sitelink:program";
import { runProgram } from "./code-cache";

runProgram(program, __filename);

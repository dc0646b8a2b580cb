// Run by netns.test.ts as its own process: builds a sandbox with a namespace and a process in it,
// prints the names, then waits to be killed by a signal (whose handler must clean up).
import { NetnsSandbox } from "./netns";

void (async () => {
  const sandbox = await NetnsSandbox.create("signal-fixture");
  const ns = await sandbox.addNamespace("sig");
  const child = sandbox.spawn(ns, ["sleep", "600"]);
  process.stdout.write(`${JSON.stringify({ ns, pid: child.pid, workDir: sandbox.workDir })}\n`);
  setInterval(() => undefined, 1000);
})();

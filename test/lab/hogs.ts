// Reproducible contention for `bench:failover --load N`: N processes that each keep one core busy
// beside the lab, so tails are measured under a known load instead of whatever the machine had.
// Bounded three ways: stop() ends them by PID, each ends itself when its parent is gone (a killed
// bench leaves none behind), and each ends after HOG_MAX_SECONDS whatever happens.
import { spawn, type ChildProcess } from "node:child_process";

/** No bench run takes longer; a hog that outlives it ends by itself. */
export const HOG_MAX_SECONDS = 4 * 3600;

/** Spins in 50 ms slices; between slices it checks that its parent is still the one that started it. */
const HOG_SOURCE = `
const parent = Number(process.argv[1]);
const end = Date.now() + ${HOG_MAX_SECONDS} * 1000;
for (;;) {
  const slice = Date.now() + 50;
  while (Date.now() < slice) {}
  if (process.ppid !== parent || Date.now() > end) process.exit(0);
}`;

export class CpuHogs {
  private constructor(private readonly children: ChildProcess[]) {}

  static start(count: number): CpuHogs {
    const children = Array.from({ length: count }, () =>
      spawn(process.execPath, ["-e", HOG_SOURCE, String(process.pid)], { stdio: "ignore" }),
    );
    return new CpuHogs(children);
  }

  get pids(): number[] {
    return this.children.map((child) => child.pid!);
  }

  /** Ends every hog this started (by PID) and waits until each has exited. */
  async stop(): Promise<void> {
    await Promise.all(this.children.map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once("exit", () => resolve());
      child.kill("SIGKILL");
    })));
  }
}

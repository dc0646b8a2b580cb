// Running the host tools the boot lab drives (debootstrap, ip, nsenter, apt-get): argv only, never
// a shell, so names and paths need no quoting.
import { execFile } from "node:child_process";

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Resolve with the exit code instead of throwing on a non-zero exit. */
  allowFail?: boolean;
}

/** Runs argv; throws with the command and its stderr on a non-zero exit unless allowFail. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error("run: empty argv");
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { env: opts.env ?? process.env, cwd: opts.cwd, maxBuffer: 256 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
        const result = { stdout: String(stdout), stderr: String(stderr), code };
        if (code !== 0 && !opts.allowFail) {
          const detail = (result.stderr.trim() || result.stdout.trim()).split("\n").slice(-15).join("\n");
          reject(new Error(`${argv.join(" ")} exited ${code}:\n${detail}`));
        } else {
          resolve(result);
        }
      },
    );
  });
}

/** Seconds since `start` (a performance.now() value), to one decimal. */
export function secondsSince(start: number): number {
  return Math.round((performance.now() - start) / 100) / 10;
}

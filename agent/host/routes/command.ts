// Runs host tools (ip, iptables-restore) without a shell, so no argument is ever interpreted.
import { spawn } from "node:child_process";

export interface CommandResult {
  stdout: string;
  stderr: string;
}

/** Runs `command args…`, feeding `input` on stdin; rejects with a CommandError when it exits non-zero. */
export type CommandRunner = (command: string, args: string[], input?: string) => Promise<CommandResult>;

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly args: string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${[command, ...args].join(" ")} failed (exit ${exitCode ?? "signal"}): ${stderr.trim() || "no error output"}`);
    this.name = "CommandError";
  }
}

export const runCommand: CommandRunner = (command, args, input) =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", (error) => reject(new Error(`cannot run ${command}: ${error.message}`)));
    child.on("close", (code) => (code === 0 ? resolve({ stdout, stderr }) : reject(new CommandError(command, args, code, stderr))));
    child.stdin.on("error", () => {}); // the tool may exit before reading stdin; its exit code tells the story
    child.stdin.end(input ?? "");
  });

/** A runner that runs every command inside network namespace `namespace` (lab and tests). */
export function inNetns(namespace: string, run: CommandRunner = runCommand): CommandRunner {
  return (command, args, input) => run("ip", ["netns", "exec", namespace, command, ...args], input);
}

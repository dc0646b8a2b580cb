// Unmounting whatever the lab (or a tool it ran, like debootstrap's /proc and /sys in its target)
// left mounted below a directory, before that directory is deleted: rm -rf across a live /proc or
// /sys mount would reach into the host's.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

/** Mount points at or below `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  const root = resolve(dir);
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((point): point is string => point !== undefined)
    // mountinfo escapes spaces and the like as octal (\040).
    .map((point) => point.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8))))
    .filter((point) => point === root || point.startsWith(`${root}/`))
    .sort((a, b) => b.length - a.length);
}

/** Unmounts everything at or below `dir`; lazily if busy, so cleanup never stalls on it. Sync for exit handlers. */
export function unmountUnderSync(dir: string): void {
  for (const point of mountsUnder(dir)) {
    try {
      execFileSync("umount", [point], { stdio: "ignore" });
    } catch {
      try {
        execFileSync("umount", ["-l", point], { stdio: "ignore" });
      } catch {
        // already gone
      }
    }
  }
}

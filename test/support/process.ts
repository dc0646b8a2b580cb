// Process checks the tests share.

/** True while a process with `pid` exists (signal 0 delivers nothing; it only checks). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// Checks shared by the tests of every rendered shell script (cloud bootstraps, SSH install).
import { spawnSync } from "node:child_process";
import { expect } from "vitest";

/** The script parses as bash and shellcheck has nothing to say about it. */
export function expectCleanBash(text: string): void {
  expect(spawnSync("bash", ["-n"], { input: text }).status).toBe(0);
  const check = spawnSync("shellcheck", ["-s", "bash", "-"], { input: text, encoding: "utf8" });
  expect(check.stdout).toBe("");
  expect(check.status).toBe(0);
}

/**
 * The calls START_CHARON makes under stubbed systemctl (no start time, no VICI socket): it looks at
 * charon, then restarts it.
 */
export const CHARON_RESTART_CALLS = [
  "systemctl enable strongswan-starter.service",
  "systemctl show -p ActiveEnterTimestamp --value strongswan-starter.service",
  "systemctl is-active --quiet strongswan-starter.service",
  "systemctl restart strongswan-starter.service",
] as const;

// START_CHARON's decision, run for real by bash in a temporary root with a stubbed systemctl: charon
// is restarted when it started before its plugins or settings last changed (apt starts it
// mid-install), and left alone otherwise (an existing host's tunnels). And writeFile, which keeps an
// unchanged file's time so that decision sees only real changes.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CHARON_TUNING, START_CHARON } from "./host";
import { script, section, writeFile } from "./shell";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Inputs last changed at INPUTS_AT (seconds since the epoch). */
const INPUTS_AT = Date.UTC(2026, 11, 6, 1, 0, 0) / 1000;
const INPUTS = ["etc/strongswan.d/sitelink.conf", "etc/strongswan.d/charon", "usr/lib/ipsec/plugins"];
/** As systemctl prints ActiveEnterTimestamp. */
const systemdTime = (epochSeconds: number) => {
  const iso = new Date(epochSeconds * 1000).toISOString();
  return `${["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"][new Date(epochSeconds * 1000).getUTCDay()]} ${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
};

function charonRoot(): string {
  const root = mkdtempSync(join(tmpdir(), "sl-charon-"));
  dirs.push(root);
  for (const d of ["etc/strongswan.d/charon", "usr/lib/ipsec/plugins", "var/run", "bin"]) mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, "etc/strongswan.d/sitelink.conf"), `${CHARON_TUNING}\n`);
  for (const p of INPUTS) utimesSync(join(root, p), INPUTS_AT, INPUTS_AT);
  writeFileSync(join(root, "bin/systemctl"), [
    "#!/bin/bash",
    'echo "systemctl $*" >> "$STUB_LOG"',
    'case "$1" in show) echo "$CHARON_SINCE" ;; is-active) exit "$CHARON_INACTIVE" ;; esac',
    "",
  ].join("\n"), { mode: 0o755 });
  return root;
}

function runIn(root: string, text: string, env: { since?: string; inactive?: boolean } = {}): string[] {
  const log = join(root, "calls.log");
  writeFileSync(log, "");
  const file = join(root, "script.sh");
  writeFileSync(file, text, { mode: 0o755 });
  const result = spawnSync("bash", [file], {
    env: { PATH: `${join(root, "bin")}:/usr/bin:/bin`, SITELINK_ROOT: root, STUB_LOG: log, CHARON_SINCE: env.since ?? "", CHARON_INACTIVE: env.inactive ? "3" : "0" },
    encoding: "utf8",
  });
  expect(result.stderr).toBe("");
  expect(result.status).toBe(0);
  return readFileSync(log, "utf8").trim().split("\n").filter((line) => line.startsWith("systemctl restart"));
}

const start = script("start charon", [section("Start charon.", [...START_CHARON])]);
const RESTART = ["systemctl restart strongswan-starter.service"];

describe("START_CHARON", () => {
  let root: string;
  let vici: Server;
  beforeAll(async () => {
    root = charonRoot();
    vici = createServer();
    await new Promise<void>((resolve) => vici.listen(join(root, "var/run/charon.vici"), resolve));
  });
  afterAll(() => new Promise<void>((resolve) => vici.close(() => resolve())));

  it("leaves a running charon alone when it started after its plugins and settings last changed", () => {
    expect(runIn(root, start, { since: systemdTime(INPUTS_AT + 60) })).toEqual([]);
  });

  it("restarts a charon that started before (or in the same second as) a change: apt started it mid-install", () => {
    expect(runIn(root, start, { since: systemdTime(INPUTS_AT - 60) })).toEqual(RESTART);
    expect(runIn(root, start, { since: systemdTime(INPUTS_AT) })).toEqual(RESTART);
    utimesSync(join(root, "usr/lib/ipsec/plugins"), INPUTS_AT + 120, INPUTS_AT + 120);
    expect(runIn(root, start, { since: systemdTime(INPUTS_AT + 60) })).toEqual(RESTART);
    utimesSync(join(root, "usr/lib/ipsec/plugins"), INPUTS_AT, INPUTS_AT);
  });

  it("starts a charon that is not running, or has never started", () => {
    expect(runIn(root, start, { since: systemdTime(INPUTS_AT + 60), inactive: true })).toEqual(RESTART);
    expect(runIn(root, start, { since: "" })).toEqual(RESTART);
  });

  it("restarts a charon without its VICI socket", () => {
    const bare = charonRoot();
    expect(runIn(bare, start, { since: systemdTime(INPUTS_AT + 60) })).toEqual(RESTART);
  });
});

describe("writeFile", () => {
  const path = "/etc/strongswan.d/sitelink.conf";
  const modeOf = (root: string) => (statSync(join(root, path)).mode & 0o777).toString(8);

  it("keeps a file that already holds the content as it is (time and inode), setting only its mode", () => {
    const root = charonRoot();
    const before = statSync(join(root, path));
    runIn(root, script("write", [writeFile(path, "0640", CHARON_TUNING)]));
    const after = statSync(join(root, path));
    expect([after.mtimeMs, after.ino]).toEqual([before.mtimeMs, before.ino]);
    expect(modeOf(root)).toBe("640");
  });

  it("replaces a file whose content differs, atomically, leaving no temporary file", () => {
    const root = charonRoot();
    runIn(root, script("write", [writeFile(path, "0644", "charon {\n}")]));
    expect(readFileSync(join(root, path), "utf8")).toBe("charon {\n}\n");
    expect(statSync(join(root, path)).mtimeMs).toBeGreaterThan(INPUTS_AT * 1000);
    expect(modeOf(root)).toBe("644");
    expect(() => statSync(join(root, `${path}.tmp`))).toThrow();
  });
});

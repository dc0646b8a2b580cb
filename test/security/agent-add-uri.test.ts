// S9 (issue 15): `sitelink add-uri URI` put the host secret into argv (readable by every user
// through ps and /proc) and shell history. `add-uri -` reads it from standard input; the argv form
// still works but warns. The real command, run as a process.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

const SITELINK = join(__dirname, "../../agent/sitelink.ts");
const SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQ";
const URI = `sitelink://a1:${SECRET}@198.18.0.1:9443?fp=${"ab".repeat(32)}`;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "sl-sec-uri-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function sitelink(args: string[], input = "") {
  const config = join(dir, "agent.json");
  const r = spawnSync(process.execPath, ["--import", "tsx", SITELINK, "--config", config, ...args], { input, encoding: "utf8" });
  return { code: r.status, out: r.stdout, err: r.stderr, config };
}

describe("sitelink add-uri keeps the host secret out of argv", () => {
  it("add-uri - reads the URI from standard input (one line), silently, and stores it", () => {
    const r = sitelink(["add-uri", "-"], `${URI}\n`);
    expect(r).toMatchObject({ code: 0, err: "" });
    expect(r.out).not.toContain(SECRET);
    expect(JSON.parse(readFileSync(r.config, "utf8")).uris).toEqual([URI]);
  });

  it("add-uri - with nothing on standard input fails clearly", () => {
    expect(sitelink(["add-uri", "-"], "")).toMatchObject({ code: 1, err: "sitelink: add-uri -: no host URI on standard input\n" });
  });

  it("add-uri URI still works, with a warning on stderr that argv and history show it", () => {
    const r = sitelink(["add-uri", URI]);
    expect(r.code).toBe(0);
    expect(r.err).toContain("warning: a host URI on the command line is visible to other users (ps) and kept in shell history");
    expect(r.err).toContain("sitelink add-uri -");
    expect(r.err).not.toContain(SECRET);
    expect(JSON.parse(readFileSync(r.config, "utf8")).uris).toEqual([URI]);
  });

  it("the usage recommends standard input", () => {
    expect(sitelink(["--help"]).out).toMatch(/add-uri -\s+add \(or replace\) the host URI/);
  });
});

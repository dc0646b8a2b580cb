// The `sitelink` bundle: one file that runs the agent commands with nothing but node beside it.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";

const root = join(__dirname, "..");
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
let dir: string;
let bundle: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "sl-bundle-"));
  bundle = join(dir, "sitelink.js");
  // The build script runs its own self-check (`version` from an empty dir) and fails if it does not pass.
  execFileSync(process.execPath, [join(root, "scripts", "bundle.mjs"), "--outfile", bundle], { cwd: root, stdio: "pipe" });
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sitelink(...args: string[]) {
  // cwd is the temp dir: no node_modules anywhere above /tmp.
  const env = { ...process.env };
  delete env.NODE_PATH; // nothing but node and this file
  const r = spawnSync(bundle, args, { cwd: dir, encoding: "utf8", env });
  return { code: r.status, out: r.stdout.trim(), err: r.stderr.trim() };
}

describe("dist/sitelink.js", () => {
  it("is executable with a node shebang", () => {
    expect(readFileSync(bundle, "utf8").startsWith("#!/usr/bin/env node\n")).toBe(true);
    expect(statSync(bundle).mode & 0o111).not.toBe(0);
  });

  it("runs the agent commands without node_modules", () => {
    const config = join(dir, "agent.json");
    expect(sitelink("version")).toEqual({ code: 0, out: version, err: "" });
    const uri = `sitelink://a1:c2VjcmV0LXNlY3JldC1zZWNyZXQ@198.18.0.1?fp=${"ef".repeat(32)}`;
    expect(sitelink("--config", config, "add-uri", uri)).toMatchObject({ code: 0, out: `added sitelink://a1:****@198.18.0.1:9443?fp=${"ef".repeat(32)}` });
    expect(sitelink("--config", config, "set-provider", "kernel", "--via", "10.1.0.1")).toMatchObject({ code: 0 });
    expect(sitelink("--config", config, "list")).toMatchObject({ code: 0, out: expect.stringContaining("a1:****@") });
    const empty = join(dir, "empty.json");
    expect(sitelink("--config", empty, "run", "--status", join(dir, "status.json"))).toMatchObject({
      code: 1,
      err: expect.stringContaining("no host URI: run `sitelink add-uri URI`"),
    });
    expect(sitelink("--config", config, "bogus")).toMatchObject({ code: 2, err: expect.stringContaining('unknown command "bogus"') });
  });

  it("runs the state service from the bundle alone: init, serve stores into SQLite, status reads it back", async () => {
    const data = join(dir, "state");
    expect(sitelink("state", "init", "--data", data, "--name", "127.0.0.1")).toMatchObject({ code: 0 });
    const host = (id: string) => ({ id, name: id });
    const topology = join(dir, "topology.json");
    writeFileSync(topology, JSON.stringify({ version: 1, links: [{ name: "l", locations: [{ name: "a", routes: ["10.1.0.0/16"], hosts: [host("a1")] }, { name: "b", routes: ["10.2.0.0/16"], hosts: [host("b1")] }] }] }));
    const env = { ...process.env };
    delete env.NODE_PATH;
    const serve = spawn(bundle, ["state", "serve", "--topology", topology, "--data", data, "--listen", "127.0.0.1:0"], { cwd: dir, env, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    serve.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => serve.on("exit", resolve));
    try {
      await vi.waitFor(() => expect(err).toContain('"event":"listening"'), { timeout: 20_000, interval: 50 });
    } finally {
      serve.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
    expect(statSync(join(data, "state.db")).mode & 0o777).toBe(0o600);
    const status = sitelink("state", "status", "--data", data);
    expect(status).toMatchObject({ code: 0, err: "" });
    expect(status.out).toContain("a1");
  });
});

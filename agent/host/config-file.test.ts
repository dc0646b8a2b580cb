import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig, saveConfig } from "./config-file";

let dir: string;
let path: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "sl-config-"));
  path = join(dir, "etc", "agent.json");
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const URI = "sitelink://a1:c2VjcmV0LXNlY3JldC1zZWNyZXQ@198.18.0.1:9443?fp=" + "ab".repeat(32);

async function configError(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  return (err as Error).message;
}

describe("agent config file", () => {
  it("a missing file is the default config", async () => {
    expect(await loadConfig(path)).toMatchObject({ uris: [], provider: "none", firewall: false, hostCheck: true, hostCheckPort: 9790 });
  });

  it("saves with mode 0600 (whatever the umask) and loads back what was saved", async () => {
    const old = process.umask(0o022);
    try {
      await saveConfig(path, { uris: [URI], provider: "kernel", firewall: true });
    } finally {
      process.umask(old);
    }
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await loadConfig(path)).toMatchObject({ uris: [URI], provider: "kernel", firewall: true, removeRoutes: false });
  });

  it("tightens a config file someone made readable to others", async () => {
    await saveConfig(path, { uris: [URI] });
    await chmod(path, 0o644);
    await loadConfig(path);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
  });

  it("replaces the file atomically, leaving no temp files", async () => {
    await saveConfig(path, { provider: "none" });
    await saveConfig(path, { provider: "kernel" });
    expect(await readdir(join(dir, "etc"))).toEqual(["agent.json"]);
    expect(JSON.parse(await readFile(path, "utf8")).provider).toBe("kernel");
  });

  it("names the bad field by its path", async () => {
    await saveConfig(path, {});
    await writeFile(path, JSON.stringify({ provider: "bogus", aws: { routeTableIds: ["rtb-0abc", "vpc-1"] }, mtu: 100 }));
    const message = await configError(loadConfig(path));
    expect(message).toContain(`${path}: invalid config:`);
    expect(message).toContain("provider:");
    expect(message).toContain("aws.routeTableIds.1: must be a route table id");
    expect(message).toContain("mtu:");
  });

  it("refuses unknown fields", async () => {
    await writeFile(path.replace("etc/", ""), JSON.stringify({ verifyOff: true }));
    expect(await configError(loadConfig(path.replace("etc/", "")))).toMatch(/verifyOff|Unrecognized key/);
  });

  it("broken JSON gives the position, never the text (it may hold a secret)", async () => {
    const file = join(dir, "broken.json");
    await writeFile(file, `{"uris": ["${URI}"`);
    const message = await configError(loadConfig(file));
    expect(message).toMatch(/not valid JSON/);
    expect(message).not.toContain("c2VjcmV0");
  });

  it("refuses to save an invalid config and leaves the old file", async () => {
    await saveConfig(path, { provider: "kernel" });
    await configError(saveConfig(path, { provider: "kernel", hostCheckPort: 70000 }));
    expect(JSON.parse(await readFile(path, "utf8")).hostCheckPort).toBe(9790);
  });
});

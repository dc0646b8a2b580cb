import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { loadTopologyFile, watchTopologyFile } from "./topology-source";
import { DEFAULTS } from "../contract/topology";

const dir = mkdtempSync(join(tmpdir(), "sitelink-topo-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, "topology.json");
const valid = {
  version: 1,
  links: [{ name: "l", locations: [{ name: "a", routes: ["10.1.0.0/16"], hosts: [{ id: "h1", name: "h" }] }, { name: "b", routes: ["10.2.0.0/16"], hosts: [{ id: "h2", name: "h" }] }] }],
};

describe("topology file", () => {
  it("loads a valid document with defaults filled in", () => {
    writeFileSync(file, JSON.stringify(valid));
    const result = loadTopologyFile(file);
    expect(result.ok && result.topology.links[0]!.timing.heartbeat).toBe(DEFAULTS.timing.heartbeat);
  });

  it("reports a missing file, bad JSON and schema problems as issues", () => {
    expect(loadTopologyFile(join(dir, "missing.json"))).toEqual({ ok: false, issues: [{ path: "", message: `cannot read ${join(dir, "missing.json")}: ENOENT` }] });
    writeFileSync(join(dir, "bad.json"), "{");
    const bad = loadTopologyFile(join(dir, "bad.json"));
    expect(!bad.ok && bad.issues[0]!.message).toMatch(/is not JSON/);
    writeFileSync(join(dir, "wrong.json"), JSON.stringify({ ...valid, version: 2 }));
    const wrong = loadTopologyFile(join(dir, "wrong.json"));
    expect(!wrong.ok && wrong.issues.map((i) => i.path)).toEqual(["version"]);
  });

  it("calls back on SIGHUP and once per burst of changes, including an atomic rename", async () => {
    writeFileSync(file, JSON.stringify(valid));
    const onChange = vi.fn();
    const stop = watchTopologyFile(file, onChange, { debounceMs: 50 });
    try {
      process.kill(process.pid, "SIGHUP");
      await vi.waitFor(() => expect(onChange).toHaveBeenCalledTimes(1));
      const temp = join(dir, ".topology.json.tmp");
      writeFileSync(temp, JSON.stringify(valid));
      writeFileSync(temp, JSON.stringify(valid));
      renameSync(temp, file);
      await vi.waitFor(() => expect(onChange).toHaveBeenCalledTimes(2));
      // Several debounce periods later: still one call for the whole burst.
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(onChange).toHaveBeenCalledTimes(2);
    } finally {
      stop();
    }
    expect(process.listenerCount("SIGHUP")).toBe(0);
  });
});

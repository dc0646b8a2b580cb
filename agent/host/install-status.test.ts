// The installer's status file as the agent reads it: a refusal is carried (and logged once) until an
// install succeeds; a missing file is no problem; `sitelink status` shows it.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { installProblemReader } from "./install-status";
import { createLogger } from "./log";
import { formatStatus, type AgentStatus } from "./status";

const dir = mkdtempSync(join(tmpdir(), "sitelink-install-status-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("installProblemReader", () => {
  it("reads the refusal the installer recorded, logs it once, and forgets it after a successful install", () => {
    const path = join(dir, "install-status.json");
    const lines: string[] = [];
    const read = installProblemReader(createLogger("info", (l) => lines.push(l)), path);
    expect(read()).toBeUndefined();
    const message = "agent integrity mismatch: expected a got b (s3://bucket/key)";
    writeFileSync(path, JSON.stringify({ ok: false, kind: "integrity", message }));
    expect(read()).toEqual({ kind: "integrity", message });
    expect(read()).toEqual({ kind: "integrity", message });
    expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>)).toEqual([
      expect.objectContaining({ level: "error", msg: "the installer refused a new agent; this one keeps running", kind: "integrity", problem: message }),
    ]);
    writeFileSync(path, '{"ok":true}\n');
    expect(read()).toBeUndefined();
    writeFileSync(path, "not json");
    expect(read()).toEqual({ kind: "bootstrap", message: "/etc/sitelink/install-status.json is not JSON" });
  });
});

it("sitelink status shows a refused install", () => {
  const status: AgentStatus = {
    pid: 42,
    hostId: "corp.east.a",
    agentVersion: "1.2.3",
    updatedAt: 1_000,
    stateService: { endpoint: "198.18.0.2:9443", reachable: true, lastContact: 1_000 },
    role: "standby",
    generation: 3,
    appliedGeneration: 3,
    peers: [],
    tunnels: [],
    hostChecks: [],
    routes: { provider: "aws", applied: [] },
    installProblem: { kind: "integrity", message: "agent integrity mismatch: expected a got b (s3://bucket/key)" },
  };
  expect(formatStatus(status, 2_000)).toContain("REFUSED (integrity): agent integrity mismatch: expected a got b (s3://bucket/key)");
});

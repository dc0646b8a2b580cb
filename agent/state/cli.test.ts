import { X509Certificate } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { deriveHostSecret } from "../contract/signing";
import { PinnedTestAgent, report, signedCall } from "../../test/support/state-testkit";
import { EAST_WEST, startTestStateService, type TestStateService } from "../../test/support/state-fixture";
import { DATA_FILES, formatStatus, parseListen, readMasterKey, runStateCli } from "./cli";
import { SqliteStore } from "./sqlite-store";

const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "sitelink-cli-"));
  dirs.push(dir);
  return dir;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

async function run(...argv: string[]) {
  let out = "";
  let err = "";
  const code = await runStateCli(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

describe("sitelink state CLI", () => {
  it("init writes a 0600 master key and a self-signed certificate whose fingerprint it prints", async () => {
    const dir = join(tempDir(), "data");
    const { code, out } = await run("init", "--data", dir, "--name", "state.example", "--name", "198.18.0.9");
    expect(code).toBe(0);
    expect(statSync(join(dir, DATA_FILES.masterKey)).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, DATA_FILES.key)).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(readMasterKey(join(dir, DATA_FILES.masterKey))).toHaveLength(32);
    const cert = new X509Certificate(readFileSync(join(dir, DATA_FILES.cert)));
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.subjectAltName).toBe("DNS:state.example, IP Address:198.18.0.9");
    const fingerprint = cert.fingerprint256.replace(/:/g, "").toLowerCase();
    expect(out).toContain(`fingerprint  ${fingerprint}`);
    expect(out).not.toContain(readFileSync(join(dir, DATA_FILES.masterKey), "utf8").trim());
    expect(await run("fingerprint", "--tls-cert", join(dir, DATA_FILES.cert))).toEqual({ code: 0, out: `${fingerprint}\n`, err: "" });
    // Never overwrites keys.
    const again = await run("init", "--data", dir);
    expect(again.code).toBe(1);
    expect(again.err).toContain("master.key already exists");
  });

  it("names the flag in argument errors", async () => {
    expect((await run("serve", "--data", "/nonexistent")).err).toContain("--topology is required");
    expect((await run("status", "--data")).err).toContain("--data needs a value");
    expect((await run("status", "--data", "x", "--bogus", "1")).err).toContain("unknown flag --bogus");
    expect((await run("status", "--data", "x", "--data", "y")).err).toContain("--data given twice");
    expect((await run("fingerprint", "--tls-cert", "/nonexistent/cert.pem")).err).toContain("--tls-cert: cannot read /nonexistent/cert.pem (ENOENT)");
    expect((await run("rotate-psk", "--data", tempDir(), "--link", "corp", "--pair", "aws")).err).toContain("--pair: expected two location names");
    expect((await run("status", "--data", tempDir())).err).toContain("--data: no store in");
    const bad = await run("frobnicate");
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('unknown command "frobnicate"');
    expect(() => parseListen("localhost")).toThrow("--listen");
    expect(parseListen("127.0.0.1:9443")).toEqual({ host: "127.0.0.1", port: 9443 });
    expect(parseListen("[::1]:8443")).toEqual({ host: "::1", port: 8443 });
    expect(parseListen("9443")).toEqual({ host: "0.0.0.0", port: 9443 });
    expect(() => parseListen("1.2.3.4:70000")).toThrow("--listen");
  });

  it("makes a data directory that already exists private", async () => {
    const dir = join(tempDir(), "data");
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    expect((await run("init", "--data", dir)).code).toBe(0);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  it("refuses a master key file others can read, or one that is not the base64 of 32 bytes", async () => {
    const dir = tempDir();
    const file = join(dir, "master.key");
    writeFileSync(file, Buffer.alloc(32, 1).toString("base64"), { mode: 0o644 });
    chmodSync(file, 0o644);
    expect(() => readMasterKey(file)).toThrow("--master-key-file: " + file + " is readable by group or others");
    chmodSync(file, 0o600);
    expect(readMasterKey(file)).toEqual(Buffer.alloc(32, 1));
    const must = "must hold the base64 of 32 random bytes";
    writeFileSync(file, "c2hvcnQ=");
    expect(() => readMasterKey(file)).toThrow(must);
    // Node's lenient decoder would drop the junk, or read hex as base64.
    writeFileSync(file, `${Buffer.alloc(32, 1).toString("base64").slice(0, 20)}!!${Buffer.alloc(32, 1).toString("base64").slice(20)}`);
    expect(() => readMasterKey(file)).toThrow(must);
    writeFileSync(file, Buffer.alloc(32, 1).toString("hex"));
    expect(() => readMasterKey(file)).toThrow(must);
    writeFileSync(file, Buffer.alloc(48, 1).toString("base64"));
    expect(() => readMasterKey(file)).toThrow(must);
    writeFileSync(file, `${Buffer.alloc(32, 2).toString("base64")}\n`);
    expect(readMasterKey(file)).toEqual(Buffer.alloc(32, 2));
  });

  it("serves: init, then serve answers signed polls until SIGTERM", async () => {
    const dir = tempDir();
    const data = join(dir, "data");
    expect((await run("init", "--data", data, "--name", "127.0.0.1")).code).toBe(0);
    const topologyFile = join(dir, "topology.json");
    const host = (id: string) => ({ id, name: id });
    writeFileSync(topologyFile, JSON.stringify({ version: 1, links: [{ name: "l", locations: [{ name: "a", routes: ["10.1.0.0/16"], hosts: [host("a1")] }, { name: "b", routes: ["10.2.0.0/16"], hosts: [host("b1")] }] }] }));
    let err = "";
    const serving = runStateCli(["serve", "--topology", topologyFile, "--data", data, "--listen", "127.0.0.1:0"], { out: () => {}, err: (t) => (err += t) });
    await vi.waitFor(() => expect(err).toContain('"event":"listening"'));
    const port = (JSON.parse(err.split("\n").find((l) => l.includes('"listening"'))!) as { port: number }).port;
    const fingerprint = (await run("fingerprint", "--tls-cert", join(data, DATA_FILES.cert))).out.trim();
    const agent = new PinnedTestAgent(fingerprint);
    const hostSecret = deriveHostSecret(readMasterKey(join(data, DATA_FILES.masterKey)), "a1");
    const body = JSON.stringify({ protocol: 1, hostId: "a1", generation: 0, wait: false, report: report() });
    const answer = await signedCall(`https://127.0.0.1:${port}`, agent, { hostId: "a1", secret: hostSecret, path: "/v1/poll", body });
    agent.destroy();
    expect(answer).toMatchObject({ status: 200, signed: true });
    expect(JSON.parse(answer.body)).toMatchObject({ hostId: "a1", role: "active" });
    process.emit("SIGTERM");
    expect(await serving).toBe(0);
    expect(err).toContain('"event":"stopped"');
    expect(err).not.toContain(hostSecret);
    const status = await run("status", "--data", data);
    expect(status.out).toMatch(/l\s+a\s+a1\s+active/);
  });

  it("status prints the stored hosts as a table", async () => {
    const dir = tempDir();
    const store = new SqliteStore(dir);
    const at = Date.UTC(2026, 0, 2, 3, 4, 5);
    const view = { online: true, silent: false, eligible: true, offlineSince: null, role: "standby" as const };
    await store.saveState({
      generation: 7,
      at,
      snapshot: { version: 1, generation: 7, hosts: [], locations: [] },
      hosts: [
        { ...view, hostId: "off-a", link: "corp", location: "office", status: "offline", online: false, eligible: false, lastSeen: null },
        { ...view, hostId: "aws-a", link: "corp", location: "aws", status: "active", role: "active", lastSeen: at - 1000 },
        // Kept by the engine for the data plane: a silent host others still reach, an offline host nobody could replace.
        { ...view, hostId: "aws-b", link: "corp", location: "aws", status: "active", role: "active", silent: true, lastSeen: at - 9000 },
        { ...view, hostId: "gcp-a", link: "corp", location: "gcp", status: "offline", role: "active", online: false, eligible: false, lastSeen: at - 9000 },
      ],
    });
    await store.saveReports([{ hostId: "aws-a", at, report: { agentVersion: "1", role: "active", appliedGeneration: 7, tunnels: [], hostChecks: [], routes: { provider: "none", applied: [] } } }]);
    await store.close();
    const { code, out } = await run("status", "--data", dir);
    expect(code).toBe(0);
    expect(out).toBe(
      [
        "generation 7, as stored at 2026-01-02T03:04:05Z (a running service stores roles within 2 s of a decision, last-seen times every 10 s)",
        "LINK  LOCATION  HOST   STATUS                LAST SEEN             APPLIED GEN",
        "corp  aws       aws-a  active                2026-01-02T03:04:04Z  7",
        "corp  aws       aws-b  active (silent)       2026-01-02T03:03:56Z  -",
        "corp  gcp       gcp-a  offline (keeps role)  2026-01-02T03:03:56Z  -",
        "corp  office    off-a  offline               never                 -",
        "",
      ].join("\n"),
    );
    expect(formatStatus([], 1, at)).toContain("LINK  LOCATION  HOST  STATUS  LAST SEEN  APPLIED GEN");
  });
});

describe("sitelink state status --url (from anywhere)", () => {
  let state: TestStateService;
  let agent: PinnedTestAgent;
  let masterKeyFile: string;
  let operatorKeyFile: string;

  beforeAll(async () => {
    state = await startTestStateService(EAST_WEST);
    agent = new PinnedTestAgent(state.service.fingerprint);
    const dir = tempDir();
    masterKeyFile = join(dir, "master.key");
    writeFileSync(masterKeyFile, `${state.masterKey.toString("base64")}\n`, { mode: 0o600 });
    const printed = await run("operator-key", "--master-key-file", masterKeyFile);
    expect(printed).toEqual({ code: 0, out: `${state.operatorKey}\n`, err: "" });
    operatorKeyFile = join(dir, "operator.key");
    writeFileSync(operatorKeyFile, printed.out, { mode: 0o600 });
  });

  afterAll(async () => {
    agent.destroy();
    await state?.close();
  });

  const remote = (...extra: string[]) => run("status", "--url", state.service.url, "--fingerprint", state.service.fingerprint, ...extra);
  const poll = (hostId: string, peer: string) =>
    signedCall(state.service.url, agent, {
      hostId,
      secret: state.secret(hostId),
      path: "/v1/poll",
      body: JSON.stringify({ protocol: 1, hostId, generation: 0, wait: false, report: report({ agentVersion: "0.1.0", role: "active", tunnels: [{ location: peer, state: "up" }] }) }),
    });

  it("exits 1 and says why while the link is not ready, 0 once it is", async () => {
    const waiting = await remote("--operator-key-file", operatorKeyFile);
    expect(waiting.code).toBe(1);
    expect(waiting.out).toContain(`${state.service.url} generation`);
    expect(waiting.out).toMatch(/corp\s+east\s+corp\.east\.a\s+offline\s+standby\s+never\s+-\s+-/);
    expect(waiting.out).toContain("not ready:\n  corp.east.a: never heard from\n  corp.west.a: never heard from\n");

    await poll("corp.east.a", "west");
    await poll("corp.west.a", "east");
    const ready = await remote("--master-key-file", masterKeyFile);
    expect(ready.code, ready.out + ready.err).toBe(0);
    expect(ready.out).toMatch(/corp\s+east\s+corp\.east\.a\s+active\s+active\s+\d+ s ago\s+0\.1\.0\s+west:up/);
    expect(ready.out).toMatch(/\nready\n$/);

    const json = await remote("--operator-key-file", operatorKeyFile, "--json");
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.out) as { ready: boolean; hosts: unknown[]; status: { links: unknown[] } };
    expect(parsed.ready).toBe(true);
    expect(parsed.hosts).toEqual([
      { id: "corp.east.a", ready: true, reason: "ready" },
      { id: "corp.west.a", ready: true, reason: "ready" },
    ]);
    expect(parsed.status.links).toHaveLength(1);
  });

  it("exits 1 when the service refuses or cannot be reached, never printing a key", async () => {
    const wrongKeyFile = join(tempDir(), "wrong.key");
    writeFileSync(wrongKeyFile, `${"A".repeat(43)}\n`, { mode: 0o600 });
    const refused = await remote("--operator-key-file", wrongKeyFile);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain("refused the status request: 401");
    expect(refused.err + refused.out).not.toContain(state.operatorKey);
    const pinned = await run("status", "--url", state.service.url, "--fingerprint", "ab".repeat(32), "--operator-key-file", operatorKeyFile);
    expect(pinned.code).toBe(1);
    expect(pinned.err).toContain("does not match the pinned fingerprint");
  });

  it("exits 2 on usage errors, naming the flag", async () => {
    const usage = async (args: string[], message: string) => {
      const result = await run(...args);
      expect(result.code, result.err).toBe(2);
      expect(result.err).toContain(message);
    };
    await usage(["status"], "give one of --data or --url");
    await usage(["status", "--data", "d", "--url", "https://x"], "give one of --data or --url");
    await usage(["status", "--url", "https://127.0.0.1:1", "--operator-key-file", operatorKeyFile], "--fingerprint is required with --url");
    await usage(["status", "--url", "https://127.0.0.1:1", "--fingerprint", "abc", "--operator-key-file", operatorKeyFile], "--fingerprint: must be the SHA-256");
    await usage(["status", "--url", "http://127.0.0.1:1", "--fingerprint", "ab".repeat(32), "--operator-key-file", operatorKeyFile], '--url: "http://127.0.0.1:1" is not https://host[:port]');
    await usage(["status", "--url", state.service.url, "--fingerprint", "ab".repeat(32)], "give one of --operator-key-file or --master-key-file");
    await usage(["status", "--data", "d", "--json"], "--json goes with --url, not --data");
    await usage(["status", "--url", state.service.url, "--json=yes"], "--json takes no value");
    const open = join(tempDir(), "open.key");
    writeFileSync(open, `${state.operatorKey}\n`, { mode: 0o644 });
    chmodSync(open, 0o644);
    await usage(["status", "--url", state.service.url, "--fingerprint", "ab".repeat(32), "--operator-key-file", open], "readable by group or others");
    const short = join(tempDir(), "short.key");
    writeFileSync(short, "abc\n", { mode: 0o600 });
    await usage(["status", "--url", state.service.url, "--fingerprint", "ab".repeat(32), "--operator-key-file", short], "must hold the key `sitelink state operator-key` prints");
    await usage(["operator-key"], "give one of --data or --master-key-file");
  });
});

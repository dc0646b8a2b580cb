// The pure parts of the state service component agree with what the state service itself does.
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readMasterKey, runStateCli } from "../../agent/state/cli";
import { certificateFingerprint, masterKeyBytes } from "../../lib/link/state-service";

const dir = mkdtempSync(join(tmpdir(), "sitelink-state-service-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("state service component helpers", () => {
  it("computes the fingerprint agents pin, as `sitelink state fingerprint` prints it", async () => {
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=t", "-days", "1", "-keyout", join(dir, "k"), "-out", join(dir, "c")], { stdio: "ignore" });
    const pem = readFileSync(join(dir, "c"), "utf8");
    const expected = new X509Certificate(pem).fingerprint256.replaceAll(":", "").toLowerCase();
    expect(certificateFingerprint(pem)).toBe(expected);
    let printed = "";
    const code = await runStateCli(["fingerprint", "--tls-cert", join(dir, "c")], { out: (t) => (printed += t), err: () => undefined });
    expect(code).toBe(0);
    expect(printed.replaceAll(":", "").toLowerCase()).toContain(expected);
    expect(() => certificateFingerprint("not a certificate")).toThrow("not a PEM certificate");
  });

  it("derives the same master key bytes the state service reads from its key file", () => {
    const text = `${Buffer.alloc(32, 5).toString("base64")}\n`;
    writeFileSync(join(dir, "master.key"), text, { mode: 0o600 });
    expect(masterKeyBytes(text)).toEqual(readMasterKey(join(dir, "master.key")));
  });

  it("refuses a master key that is not the base64 of 32 bytes, without quoting it", () => {
    for (const bad of [Buffer.alloc(16, 5).toString("base64"), `${Buffer.alloc(32, 5).toString("base64")}!`, "ab".repeat(32)]) {
      expect(() => masterKeyBytes(bad)).toThrow("master key must be the base64 of 32 random bytes");
      try {
        masterKeyBytes(bad);
      } catch (error) {
        expect((error as Error).message).not.toContain(bad);
      }
    }
  });
});

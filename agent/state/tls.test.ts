import { X509Certificate, generateKeyPairSync } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { certificateFingerprint, keyMatchesCertificate, selfSignedCertificate } from "./tls";

describe("selfSignedCertificate", () => {
  it("writes a valid self-signed X.509 v3 certificate with the given names", () => {
    const now = new Date("2030-01-01T00:00:00Z");
    const tls = selfSignedCertificate({ commonName: "state", names: ["state.example", "198.18.0.1", "fd00::1"], days: 30, now });
    const cert = new X509Certificate(tls.certPem);
    expect(cert.subject).toBe("CN=state");
    expect(cert.issuer).toBe("CN=state");
    expect(cert.subjectAltName).toBe("DNS:state.example, IP Address:198.18.0.1, IP Address:FD00:0:0:0:0:0:0:1");
    expect(new Date(cert.validFrom).toISOString()).toBe("2030-01-01T00:00:00.000Z");
    expect(new Date(cert.validTo).toISOString()).toBe("2030-01-31T00:00:00.000Z");
    expect(cert.ca).toBe(false);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(keyMatchesCertificate(tls.certPem, tls.keyPem)).toBe(true);
    expect(tls.fingerprint).toBe(cert.fingerprint256.replace(/:/g, "").toLowerCase());
    expect(certificateFingerprint(tls.certPem)).toBe(tls.fingerprint);
  });

  it("always encodes its random serial number as a minimal positive INTEGER", () => {
    // One serial in 256 once began with an illegal zero byte; 2,000 certificates catch that 99.96% of the time.
    const serials = Array.from({ length: 2000 }, () => new X509Certificate(selfSignedCertificate().certPem).serialNumber);
    expect(serials.filter((s) => !/^[4-7][0-9A-F]{31}$/.test(s))).toEqual([]);
    expect(new Set(serials).size).toBe(serials.length);
  });

  it("is accepted by OpenSSL", () => {
    const dir = mkdtempSync(join(tmpdir(), "sitelink-tls-"));
    try {
      const file = join(dir, "cert.pem");
      writeFileSync(file, selfSignedCertificate().certPem);
      expect(execFileSync("openssl", ["verify", "-CAfile", file, file]).toString()).toBe(`${file}: OK\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("uses GeneralizedTime after 2049 and tells a foreign key apart", () => {
    const tls = selfSignedCertificate({ now: new Date("2049-12-31T00:00:00Z"), days: 2 });
    expect(new Date(new X509Certificate(tls.certPem).validTo).toISOString()).toBe("2050-01-02T00:00:00.000Z");
    const other = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey.export({ type: "pkcs8", format: "pem" });
    expect(keyMatchesCertificate(tls.certPem, other)).toBe(false);
  });
});

// TLS material of the state service: a self-signed certificate written with node:crypto alone
// (a minimal X.509 v3 in DER, ECDSA P-256), and the SHA-256 fingerprint agents pin.
import { X509Certificate, createPrivateKey, generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { parseAddress } from "../contract/net";
import { certificateFingerprint } from "../contract/uri";

/** SHA-256 fingerprint of a PEM certificate: lower-case hex without colons, as in the host URI. */
export { certificateFingerprint };

export interface SelfSigned {
  certPem: string;
  keyPem: string;
  fingerprint: string;
}

/**
 * A self-signed server certificate. Agents pin its fingerprint rather than trust a CA, so the
 * names matter only to tools that check them; `names` go into subjectAltName (DNS or IP).
 */
export function selfSignedCertificate(opts: { commonName?: string; names?: string[]; days?: number; now?: Date } = {}): SelfSigned {
  const commonName = opts.commonName ?? "sitelink-state";
  const names = opts.names ?? [commonName];
  const now = opts.now ?? new Date();
  const notAfter = new Date(now.getTime() + (opts.days ?? 3650) * 86_400_000);
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const ecdsaWithSha256 = seq(oid("1.2.840.10045.4.3.2"));
  const name = seq(set(seq(oid("2.5.4.3"), utf8(commonName))));
  const subjectAltName = seq(
    ...names.map((n) => {
      const ip = parseAddress(n);
      return ip ? tagged(0x87, Buffer.from(ip.toByteArray())) : tagged(0x82, Buffer.from(n, "ascii"));
    }),
  );
  const extensions = tagged(
    0xa3,
    seq(
      seq(oid("2.5.29.19"), bool(true), octets(seq())), // basicConstraints: critical, not a CA
      seq(oid("2.5.29.17"), octets(subjectAltName)),
    ),
  );
  const serial = randomBytes(16);
  // A positive INTEGER in minimal DER: top bit clear, and a first byte that is not zero (a leading
  // zero byte is illegal padding when the next byte is below 0x80). 126 random bits remain.
  serial[0] = (serial[0]! & 0x3f) | 0x40;
  const tbs = seq(
    tagged(0xa0, integer(Buffer.from([2]))), // version 3
    integer(serial),
    ecdsaWithSha256,
    name,
    seq(time(now), time(notAfter)),
    name,
    publicKey.export({ type: "spki", format: "der" }),
    extensions,
  );
  const signature = sign("sha256", tbs, { key: privateKey, dsaEncoding: "der" });
  const der = seq(tbs, ecdsaWithSha256, tagged(0x03, Buffer.concat([Buffer.from([0]), signature])));
  const certPem = `-----BEGIN CERTIFICATE-----\n${der.toString("base64").replace(/(.{64})/g, "$1\n").trimEnd()}\n-----END CERTIFICATE-----\n`;
  const keyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  return { certPem, keyPem, fingerprint: certificateFingerprint(certPem) };
}

/** True when the key belongs to the certificate (catches swapped --tls-cert/--tls-key files early). */
export function keyMatchesCertificate(certPem: string | Buffer, keyPem: string | Buffer): boolean {
  return new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem));
}

// --- minimal DER ---
function tagged(tag: number, content: Buffer): Buffer {
  const n = content.length;
  const length = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), length, content]);
}
const seq = (...items: Buffer[]) => tagged(0x30, Buffer.concat(items));
const set = (...items: Buffer[]) => tagged(0x31, Buffer.concat(items));
const integer = (bytes: Buffer) => tagged(0x02, bytes);
const octets = (bytes: Buffer) => tagged(0x04, bytes);
const bool = (value: boolean) => tagged(0x01, Buffer.from([value ? 0xff : 0]));
const utf8 = (text: string) => tagged(0x0c, Buffer.from(text, "utf8"));

function oid(dotted: string): Buffer {
  const [first, second, ...rest] = dotted.split(".").map(Number) as [number, number, ...number[]];
  const bytes = [first * 40 + second];
  for (const arc of rest) {
    const chunk = [arc & 0x7f];
    for (let v = arc >> 7; v > 0; v >>= 7) chunk.unshift((v & 0x7f) | 0x80);
    bytes.push(...chunk);
  }
  return tagged(0x06, Buffer.from(bytes));
}

/** UTCTime until 2049, GeneralizedTime after (RFC 5280 4.1.2.5). */
function time(date: Date): Buffer {
  const iso = date.toISOString().replace(/[-:T]/g, "").slice(0, 14); // YYYYMMDDHHMMSS
  return date.getUTCFullYear() < 2050 ? tagged(0x17, Buffer.from(`${iso.slice(2)}Z`)) : tagged(0x18, Buffer.from(`${iso}Z`));
}

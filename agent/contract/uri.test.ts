import { describe, expect, it } from "vitest";
import { formatHostUri, parseHostUri, redactHostUri } from "./uri";

const fp = "ab".repeat(32);
const secret = "s3cr3t-SECRET_value-0123456789abcdef";

describe("host URI", () => {
  it("parses several endpoints with default and explicit ports, IPv6 in brackets", () => {
    const uri = parseHostUri(`sitelink://corp.east.a:${secret}@198.18.0.2,state.example.net:8443,[2001:db8::1]:9000?fp=${fp}`);
    expect(uri).toEqual({
      hostId: "corp.east.a",
      secret,
      endpoints: [
        { host: "198.18.0.2", port: 9443 },
        { host: "state.example.net", port: 8443 },
        { host: "2001:db8::1", port: 9000 },
      ],
      fingerprints: [fp],
    });
    expect(parseHostUri(formatHostUri(uri))).toEqual(uri);
  });

  it("normalizes colon-separated upper-case fingerprints", () => {
    const colons = fp.toUpperCase().match(/../g)!.join(":");
    expect(parseHostUri(`sitelink://h:${secret}@198.18.0.2?fp=${colons}`).fingerprints).toEqual([fp]);
  });

  it.each([
    ["https://h:x@host?fp=1", "expected sitelink://"],
    [`sitelink://h:${secret}@198.18.0.2`, "fp (SHA-256 fingerprint"],
    [`sitelink://h:${secret}@198.18.0.2?fp=1234`, "is not a SHA-256 hex digest"],
    [`sitelink://h:${secret}@198.18.0.2:99999?fp=${fp}`, "port in"],
    // Number() would read these as 1000 and 80.
    [`sitelink://h:${secret}@state:1e3?fp=${fp}`, "port in"],
    [`sitelink://h:${secret}@state:0x50?fp=${fp}`, "port in"],
    [`sitelink://h:${secret}@[2001:db8::1]:+80?fp=${fp}`, "is not valid"],
    [`sitelink://h:${secret}@bad_host?fp=${fp}`, "is not valid"],
    [`sitelink://H!:${secret}@198.18.0.2?fp=${fp}`, `host id "H!" is not valid`],
    [`sitelink://h:short@198.18.0.2?fp=${fp}`, "secret must be"],
    [`sitelink://h:${secret}@198.18.0.2?fp=${fp}&verify=off`, 'unknown parameter "verify"'],
  ])("refuses %s", (text, message) => {
    expect(() => parseHostUri(text)).toThrow(message);
  });

  it("never puts the secret in an error or the redacted form", () => {
    const text = `sitelink://h:${secret}@198.18.0.2:0?fp=${fp}`;
    expect(() => parseHostUri(text)).toThrow();
    try {
      parseHostUri(text);
    } catch (e) {
      expect(String(e)).not.toContain(secret);
    }
    // A malformed secret with a stray "@": no part of it may be taken for the host list (and quoted).
    for (const bad of [`${secret}@leaked-part`, `${secret}@leaked@part`]) {
      const error = (() => {
        try {
          parseHostUri(`sitelink://h:${bad}@198.18.0.2?fp=${fp}`);
        } catch (e) {
          return String(e);
        }
      })();
      expect(error).toBe("UriError: invalid sitelink URI: secret must be at least 16 base64url characters");
    }
    const redacted = redactHostUri(parseHostUri(`sitelink://h:${secret}@198.18.0.2?fp=${fp}`));
    expect(redacted).toBe(`sitelink://h:****@198.18.0.2:9443?fp=${fp}`);
  });
});

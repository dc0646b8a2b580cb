// Agent delivery: the bundle the components publish, the installer that verifies it on the host
// (run for real in a temporary root: sha256sum, tar, install are real; systemctl and the cloud CLIs
// stubbed), the problem reporter (a real HTTPS server on loopback checking the signature), and that
// no rendered script reaches a public registry by default.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { INSTALL_STATUS_PATH } from "../../agent/contract/install-status";
import { deriveHostSecret, NonceCache, verifyRequest } from "../../agent/contract/signing";
import { formatHostUri } from "../../agent/contract/uri";
import { selfSignedCertificate } from "../../agent/state/tls";
import { expectCleanBash } from "../../test/support/shell";
import { renderAwsAgentBootstrap, renderAwsStateBootstrap } from "../aws/bootstrap";
import { renderGcpAgentBootstrap, renderGcpStateBootstrap } from "../gcp/bootstrap";
import { validateLinkArgs } from "../link/validate";
import { renderSshInstall } from "../onprem/install";
import { agentBundle } from "./agent-bundle";
import { agentPackageSchema, userAgentDelivery } from "./agent-source";
import { INSTALL_FILES, renderInstaller, SITELINK_BUNDLE } from "./host";
import { PROBLEM_REPORTER_JS } from "./problem-reporter";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "sitelink-delivery-"));
  dirs.push(dir);
  return dir;
}
const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

describe("agentBundle", () => {
  it("is dist/sitelink.js of the sitelink package, with the SHA-256 of its bytes", () => {
    const bundle = agentBundle();
    const bytes = readFileSync(bundle.path);
    expect(bundle.path).toMatch(/\/dist\/sitelink\.js$/);
    expect(bundle).toEqual({ path: bundle.path, sha256: sha256(bytes), bytes: bytes.length });
  });

  it("names `npm run build` when the package has no bundle", () => {
    const pkg = tempDir();
    writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: "sitelink", version: "1.0.0" }));
    mkdirSync(join(pkg, "dist", "lib"), { recursive: true });
    expect(() => agentBundle(join(pkg, "dist", "lib"))).toThrow(`sitelink's agent bundle is missing: ${join(pkg, "dist", "sitelink.js")} does not exist (run \`npm run build\` in the sitelink package)`);
  });
});

describe("agentPackage", () => {
  const hash = "a".repeat(64);
  it("takes a URL or an npm spec with its SHA-256, and tells the hosts where to fetch it", () => {
    expect(userAgentDelivery({ url: "https://mirror.example/sitelink.js", sha256: hash })).toEqual({ agentSource: "https://mirror.example/sitelink.js", agentSha256: hash });
    expect(userAgentDelivery({ npmSpec: "@corp/sitelink@1.2.3", sha256: hash })).toEqual({ agentSource: "npm:@corp/sitelink@1.2.3", agentSha256: hash });
  });

  it("refuses a spec without its integrity, naming the field", () => {
    expect(agentPackageSchema.safeParse("sitelink@0.1.0").error?.issues[0]?.message).toBe(
      "must be { url, sha256 } or { npmSpec, sha256 }: a package given without its SHA-256 cannot be verified on the hosts",
    );
    const issues = validateLinkArgs("corp", { locations: [], agentPackage: "sitelink@0.1.0" } as never);
    expect(issues).toContainEqual({ path: "agentPackage", message: "must be { url, sha256 } or { npmSpec, sha256 }: a package given without its SHA-256 cannot be verified on the hosts" });
    expect(agentPackageSchema.safeParse({ npmSpec: "sitelink@1", sha256: "nope" }).success).toBe(false);
    // Each problem names its field.
    expect(validateLinkArgs("corp", { locations: [], agentPackage: { npmSpec: "sitelink@1", sha256: "A".repeat(64) } } as never)).toContainEqual({
      path: "agentPackage.sha256",
      message: "must be a SHA-256 (64 lower-case hex digits)",
    });
    // A URL lands in the hosts' plain config and messages: credentials in it are refused.
    expect(validateLinkArgs("corp", { locations: [], agentPackage: { url: "https://me:token@mirror.example/sitelink.js", sha256: hash } } as never)).toContainEqual({
      path: "agentPackage.url",
      message: "must carry no credentials (user:password@): it is stored in the hosts' plain config",
    });
  });
});

/** A temporary root with stubbed systemctl, and `aws` serving s3api get-object from `objects` (bucket/key files). */
function host() {
  const root = tempDir();
  const bin = join(root, "stub-bin");
  const objects = join(root, "objects");
  const log = join(root, "calls.log");
  mkdirSync(bin);
  mkdirSync(objects);
  mkdirSync(join(root, "etc/systemd/system"), { recursive: true });
  const stub = (name: string, body: string) => writeFileSync(join(bin, name), `#!/bin/bash\necho "${name} $*" >> "${log}"\n${body}\n`, { mode: 0o755 });
  stub("systemctl", "");
  // aws s3api get-object --region R --bucket B --key K OUT | aws ssm get-parameter … (the host URI)
  stub("aws", `if [ "$1" = s3api ]; then cp "${objects}/$6/$8" "$9"; else cat "${root}/uri"; fi`);
  mkdirSync(join(root, "usr/local/lib/sitelink"), { recursive: true });
  writeFileSync(join(root, INSTALL_FILES.reporter), PROBLEM_REPORTER_JS);
  const installer = join(root, "install-sitelink");
  writeFileSync(installer, renderInstaller({ role: "agent", s3Region: "us-east-1", readHostUri: "aws ssm get-parameter" }), { mode: 0o755 });
  const put = (key: string, data: string) => {
    mkdirSync(join(objects, "bucket", key, ".."), { recursive: true });
    writeFileSync(join(objects, "bucket", key), data);
  };
  const install = (spec: object) => {
    writeFileSync(join(root, "spec.json"), JSON.stringify(spec, null, 2));
    writeFileSync(log, "");
    const r = spawnSync("bash", [installer, join(root, "spec.json")], { env: { PATH: `${bin}:${dirname(process.execPath)}:/usr/bin:/bin`, SITELINK_ROOT: root }, encoding: "utf8" });
    return { ...r, calls: readFileSync(log, "utf8").trim().split("\n").filter(Boolean) };
  };
  return { root, put, install, read: (p: string) => readFileSync(join(root, p), "utf8") };
}

describe("the installer", () => {
  const v1 = "#!/usr/bin/env node\n// agent v1\n";
  const v2 = "#!/usr/bin/env node\n// agent v2\n";

  it("is clean under shellcheck, for both roles", () => {
    expectCleanBash(renderInstaller({ role: "agent", s3Region: "us-east-1", readHostUri: "aws ssm get-parameter" }));
    expectCleanBash(renderInstaller({ role: "state" }));
  });

  it("installs the S3 object it is told of once its SHA-256 matches, with the role's unit, and does nothing for the same one again", () => {
    const h = host();
    h.put("sitelink/agent/1/sitelink.js", v1);
    const r = h.install({ agentSource: "s3://bucket/sitelink/agent/1/sitelink.js", agentSha256: sha256(v1) });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.calls).toEqual([`aws s3api get-object --region us-east-1 --bucket bucket --key sitelink/agent/1/sitelink.js ${r.calls[0]!.split(" ").pop()}`, "systemctl daemon-reload"]);
    expect(h.read(SITELINK_BUNDLE)).toBe(v1);
    expect(h.read(INSTALL_FILES.installedSha256)).toBe(`${sha256(v1)}\n`);
    expect(JSON.parse(h.read(INSTALL_STATUS_PATH))).toEqual({ ok: true });
    expect(h.read("etc/systemd/system/sitelink-agent.service")).toBe(readFileSync(join(__dirname, "../../agent/host/sitelink-agent.service"), "utf8"));
    expect(h.install({ agentSource: "s3://bucket/sitelink/agent/1/sitelink.js", agentSha256: sha256(v1) }).calls).toEqual([]);
  });

  it("refuses an object whose bytes are not the SHA-256 it was told: the old agent stays, the refusal is logged, recorded and reported", () => {
    const h = host();
    h.put("sitelink/agent/1/sitelink.js", v1);
    expect(h.install({ agentSource: "s3://bucket/sitelink/agent/1/sitelink.js", agentSha256: sha256(v1) }).status).toBe(0);
    // Same key, other bytes: what the host's config names is v2's hash.
    h.put("sitelink/agent/2/sitelink.js", "#!/usr/bin/env node\n// tampered\n");
    writeFileSync(join(h.root, "uri"), "not a uri\n");
    const r = h.install({ agentSource: "s3://bucket/sitelink/agent/2/sitelink.js", agentSha256: sha256(v2) });
    const message = `agent integrity mismatch: expected ${sha256(v2)} got ${sha256("#!/usr/bin/env node\n// tampered\n")} (s3://bucket/sitelink/agent/2/sitelink.js)`;
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`sitelink: ${message}\n`);
    // The reporter ran (here with a URI it refuses) and its failure did not hide the refusal.
    expect(r.stderr).toContain("sitelink: problem not reported: the host URI is malformed");
    expect(r.calls).toContain("aws ssm get-parameter");
    expect(r.calls).not.toContain("systemctl daemon-reload");
    expect(h.read(SITELINK_BUNDLE)).toBe(v1);
    expect(h.read(INSTALL_FILES.installedSha256)).toBe(`${sha256(v1)}\n`);
    expect(JSON.parse(h.read(INSTALL_STATUS_PATH))).toEqual({ ok: false, kind: "integrity", message });
  });

  it("takes the bundle out of a package tarball whose SHA-256 matches (a local path is under the host's root)", () => {
    const h = host();
    const pkg = join(h.root, "pkg");
    mkdirSync(join(pkg, "package/dist"), { recursive: true });
    writeFileSync(join(pkg, "package/dist/sitelink.js"), v2);
    const tgz = join(h.root, "sitelink-1.0.0.tgz");
    spawnSync("tar", ["-czf", tgz, "-C", pkg, "package"]);
    const r = h.install({ agentSource: "/sitelink-1.0.0.tgz", agentSha256: sha256(readFileSync(tgz)) });
    expect(r.stderr).toBe("");
    expect(h.read(SITELINK_BUNDLE)).toBe(v2);
  });

  it("refuses a file that names no agent", () => {
    const r = host().install({ agentSource: "s3://bucket/x" });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/names no agentSource and agentSha256\n$/);
  });
});

describe("the problem reporter", () => {
  it("posts the problem signed with the host secret to a state service whose certificate is the pinned one; refuses any other", async () => {
    const tls = selfSignedCertificate({ names: ["127.0.0.1"] });
    const masterKey = Buffer.alloc(32, 7);
    const hostId = "corp.east.a";
    const secret = deriveHostSecret(masterKey, hostId);
    const received: { verified: unknown; body: unknown }[] = [];
    const nonces = new NonceCache();
    const server = https.createServer({ key: tls.keyPem, cert: tls.certPem }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        received.push({ verified: verifyRequest(secret, { method: req.method!, path: req.url!, body, headers: req.headers }, nonces), body: JSON.parse(body.toString()) });
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    const reporter = join(tempDir(), "report-problem.js");
    writeFileSync(reporter, PROBLEM_REPORTER_JS);
    const report = (fingerprint: string) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [reporter, "integrity", "agent integrity mismatch: expected x got y (s3://b/k)"], { stdio: ["pipe", "ignore", "pipe"] });
        let stderr = "";
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        child.on("close", (code) => resolve({ code, stderr }));
        child.stdin.end(formatHostUri({ hostId, secret, endpoints: [{ host: "127.0.0.1", port }], fingerprints: [fingerprint] }));
      });
    try {
      const ok = await report(tls.fingerprint);
      expect(ok).toEqual({ code: 0, stderr: "sitelink: problem reported to the state service (HTTP 200)\n" });
      expect(received).toEqual([{ verified: { ok: true }, body: { hostId, kind: "integrity", message: "agent integrity mismatch: expected x got y (s3://b/k)" } }]);
      const pinnedElsewhere = await report("b".repeat(64));
      expect(pinnedElsewhere.code).toBe(1);
      expect(pinnedElsewhere.stderr).toContain("the state service's certificate is not the pinned one");
      expect(pinnedElsewhere.stderr).not.toContain(secret);
      expect(received).toHaveLength(1);
    } finally {
      server.close();
    }
  });
});

describe("no rendered host script reaches a public registry by default", () => {
  const registryFetch = /\bnpm (pack|install|i|ci)\b|\bnpx\b|registry\.npmjs|\byarn\b|\bpnpm\b/;
  /** Every script a host gets, with the files it writes (installer, refresh scripts) inside it. */
  const scripts = {
    "AWS link host": renderAwsAgentBootstrap({ region: "us-east-1", parameters: { config: "/sitelink/l/a/h/config", uri: "/sitelink/l/a/h/uri" } }),
    "AWS state host": renderAwsStateBootstrap({ region: "us-east-1", volumeId: "vol-0123456789abcdef0", port: 9443, parameters: { agent: "a", topology: "t", tlsCert: "c", tlsKey: "k", masterKey: "m" } }),
    "GCP link host": renderGcpAgentBootstrap({ project: "p", uriSecret: "s" }),
    "GCP state host": renderGcpStateBootstrap({ project: "p", secrets: { agent: "a", topology: "t", tlsCert: "c", tlsKey: "k", masterKey: "m" }, diskDeviceName: "d", port: 9443 }),
    "SSH host (bundle copied)": renderSshInstall({ agent: { staged: true, agentSha256: "a".repeat(64) }, ipv6: false }),
  };
  // The installer's `npm:SPEC` branch runs only for a package the user names. The state host's
  // SQLite is in the bundle: nothing else is installed beside it.
  const allowed = [/^ {2}npm:\*\) .*npm pack/];
  for (const [name, text] of Object.entries(scripts)) {
    it(name, () => {
      const offending = text.split("\n").filter((line) => registryFetch.test(line) && !allowed.some((a) => a.test(line)));
      expect(offending).toEqual([]);
    });
  }
});

it("the installer's source patterns are safe in a shell: no agentSource with quotes or spaces is accepted", () => {
  expect(existsSync(agentBundle().path)).toBe(true);
  expect(() => userAgentDelivery({ url: "https://x/$(reboot)", sha256: "a".repeat(64) })).toThrow();
});

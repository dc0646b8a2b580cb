// The rendered boot scripts: valid bash, clean under shellcheck, and — run in a temporary root with
// stubbed apt-get, snap, node, curl, gpg, npm, aws, gcloud and systemctl (tar, install, mktemp and
// sha256sum are real) — running exactly the commands and writing exactly the files the hosts need,
// then keeping the agent (verified against its SHA-256) and files in step with what Pulumi keeps in the cloud.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { agentConfigSchema } from "../../agent/contract/agent-config";
import { INSTALL_STATUS_PATH } from "../../agent/contract/install-status";
import { DEFAULT_STATUS_PATH } from "../../agent/contract/status";
import { CHARON_RESTART_CALLS, expectCleanBash } from "../../test/support/shell";
import { renderAwsAgentBootstrap as renderAgentBootstrap, renderAwsStateBootstrap as renderStateBootstrap } from "../aws/bootstrap";
import { GCP_AGENT_ATTRIBUTES, renderGcpAgentBootstrap, renderGcpStateBootstrap } from "../gcp/bootstrap";
import { CHARON_TUNING, HOST_PACKAGES, INSTALL_FILES, PACKAGED_BUNDLE, PACKAGED_UNITS, REFRESH_RANDOM_DELAY_SECONDS, REFRESH_SECONDS, SITELINK_BIN, SITELINK_DIR } from "./host";
import { AGENT_FILES, renderAgentConfig } from "./link-host";
import { STATE_FILES } from "./state-host";

const REPO = resolve(__dirname, "../..");
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "sitelink-bootstrap-"));
  dirs.push(dir);
  return dir;
}

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

/** An agent bundle as the location publishes it: S3 object keyed by its SHA-256 (agentObjectKey). */
function bundle(label: string) {
  const text = `#!/usr/bin/env node\n// sitelink ${label}\n`;
  const hash = sha256(text);
  return { text, sha256: hash, key: `sitelink/agent/${hash}/sitelink.js` };
}
const AGENT_BUCKET = "sitelink-agent-0123456789";
const v1 = bundle("1.2.3");
const v2 = bundle("1.2.4");
/** What a host's config names: the object in the location's bucket and its SHA-256. */
const s3Agent = (b: ReturnType<typeof bundle>) => ({ agentSource: `s3://${AGENT_BUCKET}/${b.key}`, agentSha256: b.sha256 });

const agentConfig = {
  ...s3Agent(v1),
  uriSources: [{ kind: "aws-ssm" as const, parameter: "/sitelink/corp/east/a/uri", region: "us-east-1" }],
  provider: "aws" as const,
  aws: { routeTableIds: ["rtb-0123456789abcdef0"], region: "us-east-1" },
  publicAddress: "203.0.113.10",
  privateAddress: "10.0.0.10",
};

const agentOptions = { region: "us-east-1", parameters: { config: "/sitelink/corp/east/a/config", uri: "/sitelink/corp/east/a/uri" } };

const stateOptions = {
  region: "us-west-2",
  volumeId: "vol-0123456789abcdef0",
  port: 9443,
  parameters: {
    agent: "/sitelink/corp/state/agent",
    topology: "/sitelink/corp/state/topology",
    tlsCert: "/sitelink/corp/state/tls-cert",
    masterKey: "/sitelink/corp/state/master-key",
    tlsKey: "/sitelink/corp/state/tls-key",
  },
};

/** What the stores hold: one file per item name (`/` as `_`); an object is named BUCKET/KEY, a URL by itself. */
class Store {
  readonly dir = tempDir();
  set(name: string, value: string | Buffer): this {
    writeFileSync(join(this.dir, name.replaceAll("/", "_")), value);
    return this;
  }
  /** An S3 or GCS object of the agent bucket. */
  object(b: ReturnType<typeof bundle>, data: string = b.text): this {
    return this.set(`${AGENT_BUCKET}/${b.key}`, data);
  }
  unset(name: string): void {
    rmSync(join(this.dir, name.replaceAll("/", "_")));
  }
}

/**
 * Stub commands that log their argv to $STUB_LOG. `npm install --prefix P` leaves P/node_modules/NAME;
 * the cloud CLIs and curl print or download what `store` holds. `aws` is there once `snap install
 * aws-cli` ran, as on stock Ubuntu.
 */
function stubs(store: Store, bodies: Record<string, string> = {}): { bin: string; log: string } {
  const dir = tempDir();
  const bin = join(dir, "bin");
  const snaps = join(dir, "snaps");
  mkdirSync(bin);
  mkdirSync(snaps);
  const log = join(dir, "calls.log");
  writeFileSync(log, "");
  const value = (nameExpr: string, missing: number, out?: string) => `cat "${store.dir}/$(echo "${nameExpr}" | tr / _)"${out ? ` > ${out}` : ""} || exit ${missing}`;
  const defaults: Record<string, string> = {
    "apt-get": "",
    // snap install NAME --classic
    snap: `if [ "$2" = aws-cli ]; then cp "${snaps}/aws" "${bin}/aws"; fi`,
    sysctl: "",
    systemctl: "",
    node: "echo v18.19.1",
    // -fsSL -o FILE URL: NodeSource's armored key, or what the store holds for URL; otherwise the metadata server: the attribute the URL names.
    curl: [
      'if [ "$2" = -o ]; then',
      `  case "$4" in https://deb.nodesource.com/*) echo "ARMORED KEY" > "$3" ;; *) ${value("$4", 22, '"$3"')} ;; esac`,
      `else url=\${*: -1}; ${value("${url##*/}", 22)}; fi`,
    ].join("\n"),
    // --batch --yes --dearmor -o OUT IN
    gpg: `echo "BINARY KEY" > "$5"`,
    // A default deployment never runs npm: a call would show in the call lists.
    npm: "",
    // aws ssm get-parameter --region R --name N … | aws s3api get-object --region R --bucket B --key K OUT
    aws: `if [ "$1" = s3api ]; then ${value("$6/$8", 254, '"$9"')}; else ${value("$6", 254)}; echo; fi`,
    // gcloud secrets versions access latest --project P --secret NAME (no newline, as gcloud prints it) | gcloud storage cp --quiet gs://B/O OUT
    gcloud: `if [ "$1" = storage ]; then ${value("${4#gs://}", 1, '"$5"')}; else ${value("$8", 1)}; fi`,
    sleep: "",
  };
  for (const [name, body] of Object.entries({ ...defaults, ...bodies })) {
    writeFileSync(join(name === "aws" ? snaps : bin, name), `#!/bin/bash\necho "${name} $*" >> "$STUB_LOG"\n${body}\n`, { mode: 0o755 });
  }
  return { bin, log };
}

function run(script: string, root: string, s: { bin: string; log: string }, args: string[] = []) {
  writeFileSync(s.log, "");
  const file = join(tempDir(), "script.sh");
  writeFileSync(file, script, { mode: 0o755 });
  const result = spawnSync("bash", [file, ...args], {
    env: { PATH: `${s.bin}:/usr/bin:/bin:/usr/sbin:/sbin`, SITELINK_ROOT: root, STUB_LOG: s.log },
    encoding: "utf8",
  });
  // The installer's work directory (mktemp -d) as $work.
  const calls = readFileSync(s.log, "utf8").replace(/\/tmp\/tmp\.\w+\//g, "$work/");
  return { ...result, calls: calls.trim().split("\n").filter(Boolean) };
}

/** A root with the directories an Ubuntu image has. */
function ubuntuRoot(): string {
  const root = tempDir();
  for (const d of ["etc/sysctl.d", "etc/systemd/system", "etc/apt/sources.list.d", "dev"]) mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, "etc/fstab"), "LABEL=cloudimg-rootfs / ext4 defaults 0 1\n");
  return root;
}

/** The content a script writes to `path` (its heredoc). */
function writtenFile(script: string, path: string): string {
  const escaped = path.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  const match = new RegExp(`cat > "\\$root${escaped}\\.tmp" <<'SITELINK_EOF'\\n([\\s\\S]*?)\\nSITELINK_EOF`).exec(script);
  if (!match) throw new Error(`the script writes no ${path}`);
  return match[1]!;
}

const mode = (path: string) => (statSync(path).mode & 0o7777).toString(8);
const read = (root: string, path: string) => readFileSync(join(root, path), "utf8");
/** Files left in a directory (temporary files would show here). */
const list = (root: string, path: string) => readdirSync(join(root, path)).sort();

const NODESOURCE_CALLS = (root: string) => [
  "apt-get update -q",
  "apt-get install -y -q ca-certificates curl gnupg",
  `curl -fsSL -o ${root}/etc/apt/keyrings/nodesource.gpg.asc https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key`,
  `gpg --batch --yes --dearmor -o ${root}/etc/apt/keyrings/nodesource.gpg ${root}/etc/apt/keyrings/nodesource.gpg.asc`,
  "apt-get update -q",
  "apt-get install -y -q nodejs",
];

/** A package tarball laid out as `npm pack` makes it, holding `bundleText` as its dist/sitelink.js. */
function packageTarball(bundleText: string): Buffer {
  const dir = tempDir();
  mkdirSync(join(dir, "package", dirname(PACKAGED_BUNDLE)), { recursive: true });
  writeFileSync(join(dir, "package", PACKAGED_BUNDLE), bundleText);
  execFileSync("tar", ["-czf", join(dir, "p.tgz"), "-C", dir, "package"]);
  return readFileSync(join(dir, "p.tgz"));
}

const ssm = (region: string, name: string) => `aws ssm get-parameter --region ${region} --name ${name} --with-decryption --query Parameter.Value --output text`;
/** The installer fetching a bundle from the location's bucket, with the host's role. */
const getObject = (region: string, b: ReturnType<typeof bundle>) => `aws s3api get-object --region ${region} --bucket ${AGENT_BUCKET} --key ${b.key} $work/fetched`;

describe("AWS link host bootstrap", () => {
  const script = renderAgentBootstrap(agentOptions);
  const refresh = writtenFile(script, AGENT_FILES.refreshScript);
  const config = renderAgentConfig(agentConfig);
  const store = () => new Store().object(v1).object(v2).set(agentOptions.parameters.config, config);

  it("is valid bash and clean under shellcheck, and so are the installer and refresh script it writes", () => {
    for (const text of [script, refresh, writtenFile(script, INSTALL_FILES.installer)]) expectCleanBash(text);
  });

  it("on stock Ubuntu 24.04 (Node 18): Node.js 22 from NodeSource, the agent its config names from the private S3 object (verified), its config from Parameter Store", () => {
    const root = ubuntuRoot();
    const result = run(script, root, stubs(store()));
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.calls).toEqual([
      "apt-get update -q",
      `apt-get install -y -q ${HOST_PACKAGES.join(" ")}`,
      "snap install aws-cli --classic",
      "node --version",
      ...NODESOURCE_CALLS(root),
      `sysctl --load ${root}/etc/sysctl.d/90-sitelink.conf`,
      ssm("us-east-1", "/sitelink/corp/east/a/config"),
      // Only the bundle, from the location's bucket with the host's role: no registry, no dependencies.
      getObject("us-east-1", v1),
      "systemctl daemon-reload",
      "systemctl try-restart sitelink-agent.service",
      "systemctl daemon-reload",
      // No VICI socket in the test root: charon is restarted, as after apt started it too early.
      ...CHARON_RESTART_CALLS,
      "systemctl enable --now sitelink-agent.service",
      "systemctl enable --now sitelink-agent-refresh.timer",
    ]);
    // NodeSource's repository, pinned to its own key.
    expect(read(root, "etc/apt/sources.list.d/nodesource.list")).toBe("deb [signed-by=/etc/apt/keyrings/nodesource.gpg] https://deb.nodesource.com/node_22.x nodistro main\n");
    expect(read(root, "etc/apt/keyrings/nodesource.gpg")).toBe("BINARY KEY\n");
    expect(mode(join(root, "etc/apt/keyrings/nodesource.gpg"))).toBe("644");
    expect(list(root, "etc/apt/keyrings")).toEqual(["nodesource.gpg"]);
    // The verified bundle in SITELINK_DIR, the command linked to it, the agent's unit as the package ships it.
    expect(read(root, `${SITELINK_DIR}/sitelink.js`)).toBe(v1.text);
    expect(mode(join(root, `${SITELINK_DIR}/sitelink.js`))).toBe("755");
    expect(lstatSync(join(root, SITELINK_BIN)).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(root, SITELINK_BIN))).toBe("/usr/local/lib/sitelink/sitelink.js");
    expect(read(root, "etc/systemd/system/sitelink-agent.service")).toBe(read(REPO, PACKAGED_UNITS.agent));
    expect(list(root, SITELINK_DIR)).toEqual(["agent-sha256", "install-sitelink", "refresh-agent", "report-problem.js", "sitelink.js"]);
    expect(read(root, INSTALL_FILES.installedSha256)).toBe(`${v1.sha256}\n`);
    expect(JSON.parse(read(root, INSTALL_STATUS_PATH))).toEqual({ ok: true });
    // The config is the parameter's value, 0600 in a 0700 directory.
    expect(mode(join(root, "etc/sitelink"))).toBe("700");
    expect(mode(join(root, AGENT_FILES.config))).toBe("600");
    expect(read(root, AGENT_FILES.config)).toBe(`${config}\n`);
    expect(list(root, "etc/sitelink")).toEqual(["agent.json", "install-status.json"]);
    expect(read(root, "etc/sysctl.d/90-sitelink.conf")).toBe("net.ipv4.ip_forward = 1\nnet.ipv6.conf.all.forwarding = 1\nnet.ipv6.conf.all.accept_ra = 2\n");
    expect(read(root, "etc/strongswan.d/sitelink.conf")).toBe(`${CHARON_TUNING}\n`);
    expect(read(root, AGENT_FILES.refreshScript)).toBe(`${refresh}\n`);
    expect(read(root, "etc/systemd/system/sitelink-agent-refresh.service")).toBe(
      "[Unit]\nDescription=sitelink: refresh the sitelink agent and its config from Parameter Store\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\nType=oneshot\nEnvironment=HOME=/root\nExecStart=/usr/local/lib/sitelink/refresh-agent\n",
    );
    expect(read(root, "etc/systemd/system/sitelink-agent-refresh.timer")).toBe(
      "[Unit]\nDescription=sitelink: refresh the sitelink agent and its config\n\n[Timer]\nOnBootSec=0\nOnUnitActiveSec=30s\nRandomizedDelaySec=30s\nAccuracySec=1s\n\n[Install]\nWantedBy=timers.target\n",
    );
    // A link host has no native module and nothing else from npm.
    expect(existsSync(join(root, SITELINK_DIR, "node_modules"))).toBe(false);
  });

  it("uses the host's own Node.js when it is 20 or newer: no repository added", () => {
    const root = ubuntuRoot();
    const result = run(script, root, stubs(store(), { node: "echo v22.11.0" }));
    expect(result.status).toBe(0);
    expect(result.calls.filter((c) => /^(curl|gpg)|nodejs|ca-certificates/.test(c))).toEqual([]);
    expect(existsSync(join(root, "etc/apt/sources.list.d/nodesource.list"))).toBe(false);
  });

  it("with nodeSource preinstalled, stops with a clear error on an image without Node.js >= 20, adding no repository", () => {
    const root = ubuntuRoot();
    const preinstalled = renderAgentBootstrap({ ...agentOptions, nodeSource: "preinstalled" });
    expectCleanBash(preinstalled);
    const result = run(preinstalled, root, stubs(store(), { node: "exit 127" }));
    expect(result.status).toBe(1);
    expect(result.stderr).toBe("sitelink: this host needs Node.js >= 20 and has none; nodeSource preinstalled adds no repository\n");
    expect(result.calls.filter((c) => /^(curl|gpg|npm|aws)/.test(c))).toEqual([]);
    expect(run(preinstalled, ubuntuRoot(), stubs(store(), { node: "echo v20.0.0" })).status).toBe(0);
  });

  it("retries network steps, and gives up after ten attempts", () => {
    const counter = join(tempDir(), "count");
    // apt-get update fails twice (a mirror not reachable yet), then works.
    const flaky = `n=$(cat ${counter} 2>/dev/null || echo 0); echo $((n + 1)) > ${counter}; if [ "$1" = update ] && [ "$n" -lt 2 ]; then exit 100; fi`;
    const result = run(script, ubuntuRoot(), stubs(store(), { "apt-get": flaky, node: "echo v22.0.0" }));
    expect(result.status).toBe(0);
    expect(result.calls.slice(0, 5)).toEqual(["apt-get update -q", "sleep 6", "apt-get update -q", "sleep 6", "apt-get update -q"]);
    expect(result.stderr).toBe("sitelink: attempt 1 of 'apt-get update -q' failed\nsitelink: attempt 2 of 'apt-get update -q' failed\n");

    const failed = run(script, ubuntuRoot(), stubs(store(), { "apt-get": "exit 100" }));
    expect(failed.status).toBe(1);
    expect(failed.calls.filter((c) => c.startsWith("apt-get"))).toHaveLength(10);
    expect(failed.calls.some((c) => /^(npm|aws)/.test(c))).toBe(false);
  });

  it("refresh: nothing happens while the parameters are unchanged; a new config is written and the agent restarted", () => {
    const root = ubuntuRoot();
    const values = store();
    const s = stubs(values, { node: "echo v22.0.0" });
    expect(run(script, root, s).status).toBe(0);
    const configIno = statSync(join(root, AGENT_FILES.config)).ino;

    let result = run(refresh, root, s);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.calls).toEqual([ssm("us-east-1", "/sitelink/corp/east/a/config")]);
    expect(statSync(join(root, AGENT_FILES.config)).ino).toBe(configIno);

    const next = renderAgentConfig({ ...agentConfig, aws: { routeTableIds: ["rtb-0123456789abcdef0", "rtb-0fedcba9876543210"], region: "us-east-1" } });
    values.set(agentOptions.parameters.config, next);
    result = run(refresh, root, s);
    expect(result.status).toBe(0);
    // Same agent: nothing fetched.
    expect(result.calls).toEqual([ssm("us-east-1", "/sitelink/corp/east/a/config"), "systemctl try-restart sitelink-agent.service"]);
    expect(read(root, AGENT_FILES.config)).toBe(`${next}\n`);
    expect(mode(join(root, AGENT_FILES.config))).toBe("600");
    expect(read(root, `${SITELINK_DIR}/sitelink.js`)).toBe(v1.text);
  });

  it("refresh: an active host restarts its agent only after a whole refresh window, so its standbys go first", () => {
    const root = ubuntuRoot();
    const values = store();
    const s = stubs(values, { node: "echo v22.0.0" });
    expect(run(script, root, s).status).toBe(0);
    const status = join(root, DEFAULT_STATUS_PATH);
    mkdirSync(dirname(status), { recursive: true });
    const restart = (role: "active" | "standby", routeTable: string) => {
      writeFileSync(status, `${JSON.stringify({ hostId: "a", role, generation: 3 }, null, 2)}\n`);
      values.set(agentOptions.parameters.config, renderAgentConfig({ ...agentConfig, aws: { routeTableIds: [routeTable], region: "us-east-1" } }));
      const result = run(refresh, root, s);
      expect(result.status).toBe(0);
      return result.calls.filter((c) => !c.startsWith("aws "));
    };
    expect(restart("standby", "rtb-0fedcba9876543210")).toEqual(["systemctl try-restart sitelink-agent.service"]);
    expect(restart("active", "rtb-0123456789abcdef0")).toEqual([`sleep ${REFRESH_SECONDS + REFRESH_RANDOM_DELAY_SECONDS}`, "systemctl try-restart sitelink-agent.service"]);
  });

  it("refresh: a config naming a new agent installs it (verified) before the config is recorded; one that cannot be fetched or verified keeps the old agent and config, and is tried again", () => {
    const root = ubuntuRoot();
    const uri = "sitelink://corp.east.a:secret@203.0.113.1?fp=00";
    const values = store().set(agentOptions.parameters.uri, uri);
    // The reporter's node keeps what it got on stdin.
    const reporterInput = join(tempDir(), "stdin");
    const s = stubs(values, { node: `if [ "$1" = --version ]; then echo v22.0.0; else cat > ${reporterInput}; fi` });
    expect(run(script, root, s).status).toBe(0);
    const configCall = ssm("us-east-1", "/sitelink/corp/east/a/config");

    const next = renderAgentConfig({ ...agentConfig, ...s3Agent(v2) });
    values.set(agentOptions.parameters.config, next);
    let result = run(refresh, root, s);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.calls).toEqual([configCall, getObject("us-east-1", v2), "systemctl daemon-reload", "systemctl try-restart sitelink-agent.service"]);
    expect(read(root, `${SITELINK_DIR}/sitelink.js`)).toBe(v2.text);
    expect(read(root, INSTALL_FILES.installedSha256)).toBe(`${v2.sha256}\n`);
    expect(read(root, AGENT_FILES.config)).toBe(`${next}\n`);

    // An object that is not there (yet): the fetch fails, on every run, and nothing moves.
    const v3 = bundle("1.2.5");
    const missing = renderAgentConfig({ ...agentConfig, ...s3Agent(v3) });
    values.set(agentOptions.parameters.config, missing);
    for (let attempt = 0; attempt < 2; attempt++) {
      result = run(refresh, root, s);
      expect(result.status).not.toBe(0);
      expect(result.calls).toEqual([configCall, getObject("us-east-1", v3)]);
    }
    expect(read(root, AGENT_FILES.config)).toBe(`${next}\n`);

    // Bytes that are not the SHA-256 the config names: refused, recorded, reported with the host's URI on stdin; the old agent stays.
    values.object(v3, "#!/usr/bin/env node\n// tampered\n");
    const message = `agent integrity mismatch: expected ${v3.sha256} got ${sha256("#!/usr/bin/env node\n// tampered\n")} (s3://${AGENT_BUCKET}/${v3.key})`;
    for (let attempt = 0; attempt < 2; attempt++) {
      result = run(refresh, root, s);
      expect(result.status).not.toBe(0);
      expect(result.stderr).toContain(`sitelink: ${message}\n`);
      expect(result.calls.slice(0, 2)).toEqual([configCall, getObject("us-east-1", v3)]);
      // Both ends of one pipe: the URI goes to the reporter on stdin, never on its command line.
      expect(result.calls.slice(2).sort()).toEqual([ssm("us-east-1", "/sitelink/corp/east/a/uri"), `node ${root}${INSTALL_FILES.reporter} integrity ${message}`].sort());
      expect(readFileSync(reporterInput, "utf8")).toBe(`${uri}\n`);
    }
    expect(JSON.parse(read(root, INSTALL_STATUS_PATH))).toEqual({ ok: false, kind: "integrity", message });
    expect(read(root, `${SITELINK_DIR}/sitelink.js`)).toBe(v2.text);
    expect(read(root, INSTALL_FILES.installedSha256)).toBe(`${v2.sha256}\n`);
    expect(read(root, AGENT_FILES.config)).toBe(`${next}\n`);
    expect(list(root, SITELINK_DIR)).toEqual(["agent-sha256", "install-sitelink", "refresh-agent", "report-problem.js", "sitelink.js"]);

    // The right bytes arrive: installed, and the refusal is cleared.
    values.object(v3);
    result = run(refresh, root, s);
    expect(result.status).toBe(0);
    expect(read(root, `${SITELINK_DIR}/sitelink.js`)).toBe(v3.text);
    expect(JSON.parse(read(root, INSTALL_STATUS_PATH))).toEqual({ ok: true });
  });

  it("refresh: a parameter it cannot read leaves the file as it was and no temporary file", () => {
    const root = ubuntuRoot();
    const values = store();
    const s = stubs(values, { node: "echo v22.0.0" });
    expect(run(script, root, s).status).toBe(0);
    values.unset(agentOptions.parameters.config);
    const result = run(refresh, root, s);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("sitelink: cannot read parameter /sitelink/corp/east/a/config");
    expect(read(root, AGENT_FILES.config)).toBe(`${config}\n`);
    expect(list(root, "etc/sitelink")).toEqual(["agent.json", "install-status.json"]);
  });
});

describe("agent config", () => {
  it("is the agent's own schema with defaults written out, and never carries a host URI", () => {
    expect(JSON.parse(renderAgentConfig(agentConfig))).toEqual(agentConfigSchema.parse(agentConfig));
    expect(() => renderAgentConfig({ ...agentConfig, uris: ["sitelink://x:secret@h?fp=00"] })).toThrow(
      "config.uris: a cloud host's config must not carry host URIs (they hold the host secret); use uriSources",
    );
    expect(() => renderAgentConfig({ ...agentConfig, aws: { routeTableIds: ["nope"] } })).toThrow("must be a route table id (rtb-…)");
  });
});

describe("GCP link host startup script", () => {
  const script = renderGcpAgentBootstrap({ project: "proj-1", uriSecret: "sitelink-g-a-0123abcd-uri" });
  const config = renderAgentConfig({
    agentSource: `gs://${AGENT_BUCKET}/${v1.key}`,
    agentSha256: v1.sha256,
    uriSources: [{ kind: "gcp-secret-manager", name: "projects/proj-1/secrets/sitelink-g-a-0123abcd-uri/versions/latest" }],
    provider: "gcp",
    gcp: { network: "https://www.googleapis.com/compute/v1/projects/proj-1/global/networks/net-a", project: "proj-1" },
    publicAddress: "198.51.100.7",
    privateAddress: "10.0.0.7",
  });
  const metadata = (name: string) => `curl -fsS -H Metadata-Flavor: Google http://metadata.google.internal/computeMetadata/v1/instance/attributes/${name}`;

  it("is valid bash and clean under shellcheck, and so is its refresh script", () => {
    expectCleanBash(script);
    expectCleanBash(writtenFile(script, AGENT_FILES.refreshScript));
  });

  it("holds nothing of its host but the name of its URI secret (to report a refused agent): no address, no value", () => {
    expect(renderGcpAgentBootstrap({ project: "proj-1", uriSecret: "sitelink-g-a-0123abcd-uri", nodeSource: "nodesource" })).toBe(script);
    expect(renderGcpAgentBootstrap({ project: "proj-2", uriSecret: "sitelink-g-b-4567ef01-uri" })).toBe(script.replaceAll("proj-1", "proj-2").replaceAll("sitelink-g-a-0123abcd-uri", "sitelink-g-b-4567ef01-uri"));
    expect(script).not.toMatch(/\d+\.\d+\.\d+\.\d+|projects\//);
  });

  it("reads its config from the instance's metadata and the agent it names from the private GCS object (verified), the same at every boot", () => {
    const root = ubuntuRoot();
    const values = new Store().object(v1).set(GCP_AGENT_ATTRIBUTES.config, config);
    const s = stubs(values, { node: "echo v22.0.0" });
    const first = run(script, root, s);
    expect(first.stderr).toBe("");
    expect(first.status).toBe(0);
    const boot = ["apt-get update -q", `apt-get install -y -q ${HOST_PACKAGES.join(" ")}`, "node --version", `sysctl --load ${root}/etc/sysctl.d/90-sitelink.conf`];
    const start = ["systemctl daemon-reload", ...CHARON_RESTART_CALLS, "systemctl enable --now sitelink-agent.service", "systemctl enable --now sitelink-agent-refresh.timer"];
    expect(first.calls).toEqual([
      ...boot,
      metadata("sitelink-agent-config"),
      `gcloud storage cp --quiet gs://${AGENT_BUCKET}/${v1.key} $work/fetched`,
      "systemctl daemon-reload",
      "systemctl try-restart sitelink-agent.service",
      ...start,
    ]);
    // The attribute's exact value (the metadata server adds no newline).
    expect(read(root, AGENT_FILES.config)).toBe(config);
    expect(mode(join(root, AGENT_FILES.config))).toBe("600");
    expect(read(root, "etc/systemd/system/sitelink-agent-refresh.service")).toContain("Description=sitelink: refresh the sitelink agent and its config from instance metadata\n");
    expect(read(root, `${SITELINK_DIR}/sitelink.js`)).toBe(v1.text);
    // GCE runs the startup script at every boot: nothing changed, nothing reinstalled or restarted.
    const files = () => [AGENT_FILES.config, `${SITELINK_DIR}/sitelink.js`, "etc/systemd/system/sitelink-agent.service"].map((f) => [f, read(root, f), statSync(join(root, f)).ino]);
    const before = files();
    const second = run(script, root, s);
    expect(second.status).toBe(0);
    expect(second.calls).toEqual([...boot, metadata("sitelink-agent-config"), ...start]);
    expect(files()).toEqual(before);
  });
});

describe("state service bootstrap", () => {
  const script = renderStateBootstrap(stateOptions);
  const fetchScript = writtenFile(script, STATE_FILES.fetchScript);
  const p = stateOptions.parameters;
  // A package the user names by URL: a tarball (npm pack layout) whose dist/sitelink.js is the bundle.
  const url = "https://example.com/sitelink-1.2.3.tgz?x=1&y=2";
  const tarball = packageTarball("#!/usr/bin/env node\n// sitelink 1.2.3 from its package\n");
  const store = () =>
    new Store()
      .set(url, tarball)
      .object(v2)
      .set(p.agent, JSON.stringify({ agentSource: url, agentSha256: sha256(tarball) }))
      .set(p.topology, '{"version":1}')
      .set(p.tlsCert, "CERT")
      .set(p.tlsKey, "KEY")
      .set(p.masterKey, "MASTER");
  const disk = { systemctl: "", mountpoint: "exit 1", mount: "", "mkfs.ext4": "", blkid: `if [ "$1" = -s ]; then echo 1111-2222; else exit 2; fi`, node: "echo v22.11.0" };
  const fetchCalls = ["agent", "master-key", "tls-key", "tls-cert"].map((n) => ssm("us-west-2", `/sitelink/corp/state/${n}`));

  it("is valid bash and clean under shellcheck, and so are the installer and fetch script it writes", () => {
    for (const text of [script, fetchScript, writtenFile(script, INSTALL_FILES.installer)]) expectCleanBash(text);
  });

  it("formats and mounts the data volume once, installs the service (the bundle alone), the fetcher, its timer and the drop-in", () => {
    const root = ubuntuRoot();
    // A block device node the stubs never open (blkid, mkfs and mount are stubs).
    execFileSync("mknod", [join(root, "dev/xvdf"), "b", "7", "250"]);
    const s = stubs(store(), disk);
    const result = run(script, root, s);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    const device = join(root, "dev/xvdf");
    expect(result.calls).toEqual([
      "snap install aws-cli --classic",
      "node --version",
      `blkid ${device}`,
      `mkfs.ext4 -q -L sitelink-data ${device}`,
      `blkid -s UUID -o value ${device}`,
      `mountpoint -q ${root}/var/lib/private/sitelink-state`,
      `mount ${root}/var/lib/private/sitelink-state`,
      fetchCalls[0],
      `curl -fsSL -o $work/fetched ${url}`,
      "systemctl daemon-reload",
      ...fetchCalls.slice(1),
      "systemctl try-restart sitelink-state.service",
      ssm("us-west-2", "/sitelink/corp/state/topology"),
      "systemctl daemon-reload",
      "systemctl enable --now sitelink-state-files.timer",
      "systemctl enable --now sitelink-state.service",
    ]);
    expect(read(root, "etc/fstab")).toBe("LABEL=cloudimg-rootfs / ext4 defaults 0 1\nUUID=1111-2222 /var/lib/private/sitelink-state ext4 defaults,nofail 0 2\n");
    expect(mode(join(root, "var/lib/private"))).toBe("700");
    expect(mode(join(root, STATE_FILES.credentials))).toBe("700");
    expect(mode(join(root, STATE_FILES.fetchScript))).toBe("755");
    expect(read(root, STATE_FILES.fetchScript)).toBe(`${fetchScript}\n`);
    // The state service's SQLite is in the bundle: nothing from npm beside it.
    expect(existsSync(join(root, SITELINK_DIR, "node_modules"))).toBe(false);
    expect(read(root, `${SITELINK_DIR}/sitelink.js`)).toBe("#!/usr/bin/env node\n// sitelink 1.2.3 from its package\n");
    expect(JSON.parse(read(root, INSTALL_STATUS_PATH))).toEqual({ ok: true });
    expect(read(root, "etc/systemd/system/sitelink-state.service")).toBe(read(REPO, PACKAGED_UNITS.state));
    expect(existsSync(join(root, "etc/systemd/system/sitelink-agent.service"))).toBe(false);
    expect(read(root, "etc/systemd/system/sitelink-state.service.d/10-sitelink-aws.conf")).toBe(
      [
        "[Unit]",
        "Wants=sitelink-state-files.service",
        "After=sitelink-state-files.service",
        "RequiresMountsFor=/var/lib/private/sitelink-state",
        "",
        "[Service]",
        "LoadCredential=master.key:/etc/sitelink/credentials/master.key",
        "LoadCredential=tls.key:/etc/sitelink/credentials/tls.key",
        "LoadCredential=tls.crt:/etc/sitelink/credentials/tls.crt",
        "ExecStartPre=",
        "ExecStart=",
        "ExecStart=/usr/local/bin/sitelink state serve --topology /etc/sitelink/topology.json --data /var/lib/sitelink-state --tls-cert %d/tls.crt --tls-key %d/tls.key --master-key-file %d/master.key --listen 0.0.0.0:9443",
        "",
      ].join("\n"),
    );
    // One host: no random delay needed.
    expect(read(root, "etc/systemd/system/sitelink-state-files.timer")).toBe(
      "[Unit]\nDescription=sitelink: refresh the state service's package and files\n\n[Timer]\nOnBootSec=0\nOnUnitActiveSec=30s\nAccuracySec=1s\n\n[Install]\nWantedBy=timers.target\n",
    );

    // A second boot (new instance, same volume): the filesystem is kept and fstab not duplicated.
    const again = run(script, root, stubs(store(), { ...disk, mountpoint: "", blkid: "echo found" }));
    expect(again.status).toBe(0);
    expect(again.calls.filter((c) => /^(mkfs|mount )/.test(c))).toEqual([]);
    expect(read(root, "etc/fstab").match(/sitelink-state/g)).toHaveLength(1);
  });

  it("never formats a volume it cannot probe", () => {
    const root = ubuntuRoot();
    execFileSync("mknod", [join(root, "dev/xvdf"), "b", "7", "250"]);
    const result = run(script, root, stubs(store(), { ...disk, blkid: "exit 4" }));
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(`sitelink: cannot probe ${join(root, "dev/xvdf")} (blkid exit 4)\n`);
    expect(result.calls.some((c) => c.startsWith("mkfs"))).toBe(false);
  });

  it("fails clearly when the data volume never appears", () => {
    const result = run(script, ubuntuRoot(), stubs(store(), disk));
    expect(result.status).toBe(1);
    expect(result.stderr).toBe("sitelink: data volume vol0123456789abcdef0 never appeared\n");
  });

  it("keeps agent and files in step with Parameter Store: rewrites only changes, restarts only for new keys or a new agent", () => {
    const root = ubuntuRoot();
    execFileSync("mknod", [join(root, "dev/xvdf"), "b", "7", "250"]);
    const values = store();
    const s = stubs(values, disk);
    expect(run(script, root, s).status).toBe(0);
    expect(read(root, STATE_FILES.masterKey)).toBe("MASTER\n");
    expect(read(root, STATE_FILES.topology)).toBe('{"version":1}\n');
    expect([STATE_FILES.masterKey, STATE_FILES.tlsKey, STATE_FILES.tlsCert, STATE_FILES.topology].map((f) => mode(join(root, f)))).toEqual(["600", "600", "600", "644"]);
    const topologyCall = ssm("us-west-2", "/sitelink/corp/state/topology");

    // A new topology: rewritten (a new file, which the service notices), no restart.
    const before = statSync(join(root, STATE_FILES.topology)).ino;
    values.set(p.topology, '{"version":1,"new":true}');
    let result = run(fetchScript, root, s);
    expect(result.stderr).toBe("");
    expect(result.calls).toEqual([...fetchCalls, topologyCall]);
    expect(read(root, STATE_FILES.topology)).toBe('{"version":1,"new":true}\n');
    expect(statSync(join(root, STATE_FILES.topology)).ino).not.toBe(before);

    // Nothing new: nothing rewritten.
    const unchanged = statSync(join(root, STATE_FILES.topology)).ino;
    result = run(fetchScript, root, s);
    expect(result.calls).toEqual([...fetchCalls, topologyCall]);
    expect(statSync(join(root, STATE_FILES.topology)).ino).toBe(unchanged);

    // A new agent (the location's own bundle): installed, verified, with its native module, then the service restarted.
    values.set(p.agent, JSON.stringify(s3Agent(v2)));
    result = run(fetchScript, root, s);
    expect(result.calls).toEqual([
      fetchCalls[0],
      getObject("us-west-2", v2),
      "systemctl daemon-reload",
      ...fetchCalls.slice(1),
      "systemctl try-restart sitelink-state.service",
      topologyCall,
    ]);

    // A failed read leaves the old file and no temp file behind.
    values.unset(p.topology);
    result = run(fetchScript, root, s);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("sitelink: cannot read parameter /sitelink/corp/state/topology");
    expect(read(root, STATE_FILES.topology)).toBe('{"version":1,"new":true}\n');
    expect(read(root, `${SITELINK_DIR}/sitelink.js`)).toBe(v2.text);
    expect(list(root, "etc/sitelink")).toEqual(["agent-source.json", "credentials", "install-status.json", "topology.json"]);
  });
});

describe("GCP state service startup script", () => {
  const gcpState = {
    project: "proj-1",
    secrets: { agent: "sl-state-agent", topology: "sl-state-topology", tlsCert: "sl-state-tls-cert", tlsKey: "sl-state-tls-key", masterKey: "sl-state-master-key" },
    diskDeviceName: "sitelink-state",
    port: 9443,
  };
  const script = renderGcpStateBootstrap(gcpState);
  const fetchScript = writtenFile(script, STATE_FILES.fetchScript);
  const secret = (name: string) => `gcloud secrets versions access latest --project proj-1 --secret ${name}`;
  const store = () =>
    Object.entries({ "sl-state-agent": JSON.stringify({ agentSource: `gs://${AGENT_BUCKET}/${v1.key}`, agentSha256: v1.sha256 }), "sl-state-topology": "{}", "sl-state-tls-cert": "CERT", "sl-state-tls-key": "KEY", "sl-state-master-key": "MASTER" }).reduce((s, [k, v]) => s.set(k, v), new Store().object(v1));
  const disk = { mountpoint: "exit 1", mount: "", "mkfs.ext4": "", blkid: `if [ "$1" = -s ]; then echo 3333-4444; else exit 2; fi`, node: "echo v22.0.0" };

  it("is valid bash and clean under shellcheck, and so is the script it installs", () => {
    for (const text of [script, fetchScript]) expectCleanBash(text);
  });

  it("mounts the persistent disk by its device name, reads the agent's name and files from Secret Manager and the agent from GCS, installs the GCP drop-in", () => {
    const root = ubuntuRoot();
    mkdirSync(join(root, "dev/disk/by-id"), { recursive: true });
    writeFileSync(join(root, "etc/fstab"), "");
    execFileSync("mknod", [join(root, "dev/disk/by-id/google-sitelink-state"), "b", "7", "251"]);
    const result = run(script, root, stubs(store(), disk));
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    const device = join(root, "dev/disk/by-id/google-sitelink-state");
    expect(result.calls.slice(0, 10)).toEqual([
      "snap install google-cloud-cli --classic",
      "node --version",
      `blkid ${device}`,
      `mkfs.ext4 -q -L sitelink-data ${device}`,
      `blkid -s UUID -o value ${device}`,
      `mountpoint -q ${root}/var/lib/private/sitelink-state`,
      `mount ${root}/var/lib/private/sitelink-state`,
      secret("sl-state-agent"),
      `gcloud storage cp --quiet gs://${AGENT_BUCKET}/${v1.key} $work/fetched`,
      "systemctl daemon-reload",
    ]);
    expect(read(root, `${SITELINK_DIR}/sitelink.js`)).toBe(v1.text);
    expect(read(root, "etc/fstab")).toBe("UUID=3333-4444 /var/lib/private/sitelink-state ext4 defaults,nofail 0 2\n");
    expect(read(root, "etc/systemd/system/sitelink-state.service.d/10-sitelink-gcp.conf")).toContain(
      "ExecStart=/usr/local/bin/sitelink state serve --topology /etc/sitelink/topology.json --data /var/lib/sitelink-state --tls-cert %d/tls.crt --tls-key %d/tls.key --master-key-file %d/master.key --listen 0.0.0.0:9443\n",
    );
    expect(read(root, "etc/systemd/system/sitelink-state-files.service")).toContain("Description=sitelink: refresh the state service's package and files from Secret Manager\n");
    // gcloud prints the value without a newline: the file holds exactly the secret's value.
    expect(read(root, STATE_FILES.masterKey)).toBe("MASTER");
  });

  it("fails clearly when the disk never appears", () => {
    const result = run(script, ubuntuRoot(), stubs(store(), disk));
    expect(result.status).toBe(1);
    expect(result.stderr).toBe("sitelink: data disk sitelink-state never appeared\n");
  });

  it("reads the latest version of each secret, restarting the service only for new keys", () => {
    const root = ubuntuRoot();
    mkdirSync(join(root, "dev/disk/by-id"), { recursive: true });
    execFileSync("mknod", [join(root, "dev/disk/by-id/google-sitelink-state"), "b", "7", "251"]);
    const values = store();
    const s = stubs(values, disk);
    expect(run(script, root, s).status).toBe(0);
    values.set("sl-state-topology", '{"new":true}');
    let result = run(fetchScript, root, s);
    expect(result.calls).toEqual(["agent", "master-key", "tls-key", "tls-cert", "topology"].map((n) => secret(`sl-state-${n}`)));
    expect(read(root, STATE_FILES.topology)).toBe('{"new":true}');
    values.set("sl-state-tls-key", "KEY2");
    result = run(fetchScript, root, s);
    expect(result.calls.filter((c) => c.startsWith("systemctl"))).toEqual(["systemctl try-restart sitelink-state.service"]);
    values.unset("sl-state-tls-key");
    result = run(fetchScript, root, s);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("sitelink: cannot read secret sl-state-tls-key");
  });
});

describe("what the installer takes from the package", () => {
  const pkg = JSON.parse(read(REPO, "package.json")) as { files: string[]; dependencies: Record<string, string>; engines: { node: string } };

  it("is shipped by the npm `files` list: the bundle and both units", () => {
    const shipped = (path: string) => pkg.files.some((f) => path === f || path.startsWith(`${f}/`));
    for (const path of [PACKAGED_BUNDLE, ...Object.values(PACKAGED_UNITS)]) expect(shipped(path), path).toBe(true);
  });

  it("needs nothing installed beside the bundle (no native module), and a Node.js the package's engines accept", () => {
    expect(Object.keys(pkg.dependencies).sort()).toEqual(["ipaddr.js", "zod"]);
    expect(pkg.engines.node).toBe(">=20");
  });
});

// The rendered boot scripts: valid bash, clean under shellcheck, and — run in a temporary root with
// stubbed apt-get, snap, node, curl, gpg, npm, aws, gcloud and systemctl (tar, install and mktemp
// are real) — running exactly the commands and writing exactly the files the hosts need, then
// keeping package and files in step with what Pulumi keeps in the cloud.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { agentConfigSchema } from "../../agent/contract/agent-config";
import { DEFAULT_STATUS_PATH } from "../../agent/contract/status";
import { expectCleanBash } from "../../test/support/shell";
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

const agentConfig = {
  uriSources: [{ kind: "aws-ssm" as const, parameter: "/sitelink/corp/east/a/uri", region: "us-east-1" }],
  provider: "aws" as const,
  aws: { routeTableIds: ["rtb-0123456789abcdef0"], region: "us-east-1" },
  publicAddress: "203.0.113.10",
  privateAddress: "10.0.0.10",
};

const agentOptions = { region: "us-east-1", parameters: { package: "/sitelink/corp/east/a/package", config: "/sitelink/corp/east/a/config" } };

const stateOptions = {
  region: "us-west-2",
  volumeId: "vol-0123456789abcdef0",
  port: 9443,
  parameters: {
    package: "/sitelink/corp/state/package",
    topology: "/sitelink/corp/state/topology",
    tlsCert: "/sitelink/corp/state/tls-cert",
    masterKey: "/sitelink/corp/state/master-key",
    tlsKey: "/sitelink/corp/state/tls-key",
  },
};

/** What the stores hold: one file per item name (`/` as `_`). */
class Store {
  readonly dir = tempDir();
  set(name: string, value: string): this {
    writeFileSync(join(this.dir, name.replaceAll("/", "_")), value);
    return this;
  }
  unset(name: string): void {
    rmSync(join(this.dir, name.replaceAll("/", "_")));
  }
}

/**
 * Stub commands that log their argv to $STUB_LOG. npm packs a tarball laid out like the real one
 * (the repository's units, a bundle naming the spec it was packed from; `sitelink@broken` fails);
 * the cloud CLIs print what `store` holds.
 */
function stubs(store: Store, bodies: Record<string, string> = {}): { bin: string; log: string } {
  const dir = tempDir();
  const bin = join(dir, "bin");
  mkdirSync(bin);
  const log = join(dir, "calls.log");
  writeFileSync(log, "");
  const value = (nameExpr: string, missing: number) => `cat "${store.dir}/$(echo "${nameExpr}" | tr / _)" || exit ${missing}`;
  const defaults: Record<string, string> = {
    "apt-get": "",
    snap: "",
    sysctl: "",
    systemctl: "",
    node: "echo v18.19.1",
    // -fsSL -o FILE URL: NodeSource's armored key; otherwise the metadata server: the attribute the URL names.
    curl: `if [ "$2" = -o ]; then echo "ARMORED KEY" > "$3"; else url=\${*: -1}; ${value("${url##*/}", 22)}; fi`,
    // --batch --yes --dearmor -o OUT IN
    gpg: `echo "BINARY KEY" > "$5"`,
    npm: [
      'spec=${*: -1}',
      'if [ "$1" = pack ]; then',
      '  if [ "$spec" = sitelink@broken ]; then echo "npm error 404 $spec" >&2; exit 1; fi',
      '  d=$(mktemp -d); mkdir -p "$d/package/dist" "$d/package/agent/host" "$d/package/agent/state"',
      `  printf '#!/usr/bin/env node\\n// %s\\n' "$spec" > "$d/package/${PACKAGED_BUNDLE}"`,
      `  cp "${REPO}/${PACKAGED_UNITS.agent}" "$d/package/${PACKAGED_UNITS.agent}"; cp "${REPO}/${PACKAGED_UNITS.state}" "$d/package/${PACKAGED_UNITS.state}"`,
      '  tar -czf sitelink-9.9.9.tgz -C "$d" package; rm -rf "$d"',
      'fi',
    ].join("\n"),
    // aws ssm get-parameter --region R --name N …
    aws: `${value("$6", 254)}; echo`,
    // gcloud secrets versions access latest --project P --secret NAME (no newline, as gcloud prints it)
    gcloud: value("$8", 1),
    sleep: "",
  };
  for (const [name, body] of Object.entries({ ...defaults, ...bodies })) {
    writeFileSync(join(bin, name), `#!/bin/bash\necho "${name} $*" >> "$STUB_LOG"\n${body}\n`, { mode: 0o755 });
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
  return { ...result, calls: readFileSync(s.log, "utf8").trim().split("\n").filter(Boolean) };
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

const ssm = (region: string, name: string) => `aws ssm get-parameter --region ${region} --name ${name} --with-decryption --query Parameter.Value --output text`;

describe("AWS link host bootstrap", () => {
  const script = renderAgentBootstrap(agentOptions);
  const refresh = writtenFile(script, AGENT_FILES.refreshScript);
  const config = renderAgentConfig(agentConfig);
  const store = () => new Store().set(agentOptions.parameters.package, "sitelink@1.2.3").set(agentOptions.parameters.config, config);

  it("is valid bash and clean under shellcheck, and so are the installer and refresh script it writes", () => {
    for (const text of [script, refresh, writtenFile(script, INSTALL_FILES.installer)]) expectCleanBash(text);
  });

  it("on stock Ubuntu 24.04 (Node 18): Node.js 22 from NodeSource, the agent from its package tarball alone, its config from Parameter Store", () => {
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
      ssm("us-east-1", "/sitelink/corp/east/a/package"),
      // Only the tarball: no `npm install`, so none of the library's dependencies (the Pulumi SDKs).
      "npm pack --loglevel=error sitelink@1.2.3",
      "systemctl daemon-reload",
      ssm("us-east-1", "/sitelink/corp/east/a/config"),
      "systemctl try-restart sitelink-agent.service",
      "systemctl daemon-reload",
      "systemctl enable --now strongswan-starter.service",
      "systemctl enable --now sitelink-agent.service",
      "systemctl enable --now sitelink-agent-refresh.timer",
    ]);
    // NodeSource's repository, pinned to its own key.
    expect(read(root, "etc/apt/sources.list.d/nodesource.list")).toBe("deb [signed-by=/etc/apt/keyrings/nodesource.gpg] https://deb.nodesource.com/node_22.x nodistro main\n");
    expect(read(root, "etc/apt/keyrings/nodesource.gpg")).toBe("BINARY KEY\n");
    expect(mode(join(root, "etc/apt/keyrings/nodesource.gpg"))).toBe("644");
    expect(list(root, "etc/apt/keyrings")).toEqual(["nodesource.gpg"]);
    // The bundle and the units in SITELINK_DIR, the command linked to the bundle, the agent's unit installed from there.
    expect(read(root, `${SITELINK_DIR}/sitelink.js`)).toBe("#!/usr/bin/env node\n// sitelink@1.2.3\n");
    expect(mode(join(root, `${SITELINK_DIR}/sitelink.js`))).toBe("755");
    expect(lstatSync(join(root, SITELINK_BIN)).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(root, SITELINK_BIN))).toBe("/usr/local/lib/sitelink/sitelink.js");
    expect(read(root, "etc/systemd/system/sitelink-agent.service")).toBe(read(REPO, PACKAGED_UNITS.agent));
    expect(list(root, SITELINK_DIR)).toEqual(["install-sitelink", "package-spec", "refresh-agent", "sitelink-agent.service", "sitelink-state.service", "sitelink.js"]);
    expect(read(root, INSTALL_FILES.packageSpec)).toBe("sitelink@1.2.3\n");
    // The config is the parameter's value, 0600 in a 0700 directory.
    expect(mode(join(root, "etc/sitelink"))).toBe("700");
    expect(mode(join(root, AGENT_FILES.config))).toBe("600");
    expect(read(root, AGENT_FILES.config)).toBe(`${config}\n`);
    expect(list(root, "etc/sitelink")).toEqual(["agent.json"]);
    expect(read(root, "etc/sysctl.d/90-sitelink.conf")).toBe("net.ipv4.ip_forward = 1\nnet.ipv6.conf.all.forwarding = 1\nnet.ipv6.conf.all.accept_ra = 2\n");
    expect(read(root, "etc/strongswan.d/sitelink.conf")).toBe(`${CHARON_TUNING}\n`);
    expect(read(root, AGENT_FILES.refreshScript)).toBe(`${refresh}\n`);
    expect(read(root, "etc/systemd/system/sitelink-agent-refresh.service")).toBe(
      "[Unit]\nDescription=sitelink: refresh the sitelink agent's package and config from Parameter Store\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\nType=oneshot\nEnvironment=HOME=/root\nExecStart=/usr/local/lib/sitelink/refresh-agent\n",
    );
    expect(read(root, "etc/systemd/system/sitelink-agent-refresh.timer")).toBe(
      "[Unit]\nDescription=sitelink: refresh the sitelink agent's package and config\n\n[Timer]\nOnBootSec=0\nOnUnitActiveSec=30s\nRandomizedDelaySec=30s\nAccuracySec=1s\n\n[Install]\nWantedBy=timers.target\n",
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
    expect(failed.calls.some((c) => c.startsWith("npm"))).toBe(false);
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
    expect(result.calls).toEqual([ssm("us-east-1", "/sitelink/corp/east/a/package"), ssm("us-east-1", "/sitelink/corp/east/a/config")]);
    expect(statSync(join(root, AGENT_FILES.config)).ino).toBe(configIno);

    const next = renderAgentConfig({ ...agentConfig, aws: { routeTableIds: ["rtb-0123456789abcdef0", "rtb-0fedcba9876543210"], region: "us-east-1" } });
    values.set(agentOptions.parameters.config, next);
    result = run(refresh, root, s);
    expect(result.status).toBe(0);
    expect(result.calls).toEqual([ssm("us-east-1", "/sitelink/corp/east/a/package"), ssm("us-east-1", "/sitelink/corp/east/a/config"), "systemctl try-restart sitelink-agent.service"]);
    expect(read(root, AGENT_FILES.config)).toBe(`${next}\n`);
    expect(mode(join(root, AGENT_FILES.config))).toBe("600");
    expect(read(root, `${SITELINK_DIR}/sitelink.js`)).toContain("sitelink@1.2.3");
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

  it("refresh: a new package spec is installed, then recorded; a failed install keeps the old one and is tried again", () => {
    const root = ubuntuRoot();
    const values = store();
    const s = stubs(values, { node: "echo v22.0.0" });
    expect(run(script, root, s).status).toBe(0);

    values.set(agentOptions.parameters.package, "sitelink@1.2.4");
    let result = run(refresh, root, s);
    expect(result.status).toBe(0);
    expect(result.calls).toEqual([
      ssm("us-east-1", "/sitelink/corp/east/a/package"),
      "npm pack --loglevel=error sitelink@1.2.4",
      "systemctl daemon-reload",
      ssm("us-east-1", "/sitelink/corp/east/a/config"),
      "systemctl try-restart sitelink-agent.service",
    ]);
    expect(read(root, `${SITELINK_DIR}/sitelink.js`)).toBe("#!/usr/bin/env node\n// sitelink@1.2.4\n");
    expect(read(root, INSTALL_FILES.packageSpec)).toBe("sitelink@1.2.4\n");

    values.set(agentOptions.parameters.package, "sitelink@broken");
    for (let attempt = 0; attempt < 2; attempt++) {
      result = run(refresh, root, s);
      expect(result.status).not.toBe(0);
      expect(result.stderr).toContain("npm error 404 sitelink@broken");
      // Tried again on every run, never restarting the agent nor recording the spec it could not install.
      expect(result.calls).toEqual([ssm("us-east-1", "/sitelink/corp/east/a/package"), "npm pack --loglevel=error sitelink@broken"]);
    }
    expect(read(root, INSTALL_FILES.packageSpec)).toBe("sitelink@1.2.4\n");
    expect(read(root, `${SITELINK_DIR}/sitelink.js`)).toContain("sitelink@1.2.4");
    expect(list(root, SITELINK_DIR)).toEqual(["install-sitelink", "package-spec", "refresh-agent", "sitelink-agent.service", "sitelink-state.service", "sitelink.js"]);
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
    expect(list(root, "etc/sitelink")).toEqual(["agent.json"]);
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
  const script = renderGcpAgentBootstrap();
  const config = renderAgentConfig({
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

  it("holds nothing of its host: every host of every location gets the same script", () => {
    expect(renderGcpAgentBootstrap({ nodeSource: "nodesource" })).toBe(script);
    expect(script).not.toMatch(/\d+\.\d+\.\d+\.\d+|projects\//);
  });

  it("reads package and config from the instance's metadata, the same at every boot", () => {
    const root = ubuntuRoot();
    const values = new Store().set(GCP_AGENT_ATTRIBUTES.package, "sitelink@1.2.3").set(GCP_AGENT_ATTRIBUTES.config, config);
    const s = stubs(values, { node: "echo v22.0.0" });
    const first = run(script, root, s);
    expect(first.stderr).toBe("");
    expect(first.status).toBe(0);
    const boot = ["apt-get update -q", `apt-get install -y -q ${HOST_PACKAGES.join(" ")}`, "node --version", `sysctl --load ${root}/etc/sysctl.d/90-sitelink.conf`];
    const start = ["systemctl daemon-reload", "systemctl enable --now strongswan-starter.service", "systemctl enable --now sitelink-agent.service", "systemctl enable --now sitelink-agent-refresh.timer"];
    expect(first.calls).toEqual([
      ...boot,
      metadata("sitelink-agent-package"),
      "npm pack --loglevel=error sitelink@1.2.3",
      "systemctl daemon-reload",
      metadata("sitelink-agent-config"),
      "systemctl try-restart sitelink-agent.service",
      ...start,
    ]);
    // The attribute's exact value (the metadata server adds no newline).
    expect(read(root, AGENT_FILES.config)).toBe(config);
    expect(mode(join(root, AGENT_FILES.config))).toBe("600");
    expect(read(root, "etc/systemd/system/sitelink-agent-refresh.service")).toContain("Description=sitelink: refresh the sitelink agent's package and config from instance metadata\n");
    // GCE runs the startup script at every boot: nothing changed, nothing reinstalled or restarted.
    const files = () => [AGENT_FILES.config, `${SITELINK_DIR}/sitelink.js`, "etc/systemd/system/sitelink-agent.service"].map((f) => [f, read(root, f), statSync(join(root, f)).ino]);
    const before = files();
    const second = run(script, root, s);
    expect(second.status).toBe(0);
    expect(second.calls).toEqual([...boot, metadata("sitelink-agent-package"), metadata("sitelink-agent-config"), ...start]);
    expect(files()).toEqual(before);
  });
});

describe("state service bootstrap", () => {
  const script = renderStateBootstrap(stateOptions);
  const fetchScript = writtenFile(script, STATE_FILES.fetchScript);
  const p = stateOptions.parameters;
  const store = () => new Store().set(p.package, "https://example.com/sitelink-1.2.3.tgz?x=1&y=2").set(p.topology, '{"version":1}').set(p.tlsCert, "CERT").set(p.tlsKey, "KEY").set(p.masterKey, "MASTER");
  const disk = { systemctl: "", mountpoint: "exit 1", mount: "", "mkfs.ext4": "", blkid: `if [ "$1" = -s ]; then echo 1111-2222; else exit 2; fi`, node: "echo v22.11.0" };
  const fetchCalls = ["package", "master-key", "tls-key", "tls-cert"].map((n) => ssm("us-west-2", `/sitelink/corp/state/${n}`));

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
      "npm pack --loglevel=error https://example.com/sitelink-1.2.3.tgz?x=1&y=2",
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
    expect(read(root, `${SITELINK_DIR}/sitelink.js`)).toContain("https://example.com/sitelink-1.2.3.tgz?x=1&y=2");
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

  it("keeps package and files in step with Parameter Store: rewrites only changes, restarts only for new keys or a new package", () => {
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

    // A new package: installed with its native module, then the service restarted.
    values.set(p.package, "sitelink@1.2.4");
    result = run(fetchScript, root, s);
    expect(result.calls).toEqual([
      fetchCalls[0],
      "npm pack --loglevel=error sitelink@1.2.4",
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
    expect(list(root, "etc/sitelink")).toEqual(["credentials", "topology.json"]);
  });
});

describe("GCP state service startup script", () => {
  const gcpState = {
    project: "proj-1",
    secrets: { package: "sl-state-package", topology: "sl-state-topology", tlsCert: "sl-state-tls-cert", tlsKey: "sl-state-tls-key", masterKey: "sl-state-master-key" },
    diskDeviceName: "sitelink-state",
    port: 9443,
  };
  const script = renderGcpStateBootstrap(gcpState);
  const fetchScript = writtenFile(script, STATE_FILES.fetchScript);
  const secret = (name: string) => `gcloud secrets versions access latest --project proj-1 --secret ${name}`;
  const store = () =>
    Object.entries({ "sl-state-package": "sitelink@1.2.3", "sl-state-topology": "{}", "sl-state-tls-cert": "CERT", "sl-state-tls-key": "KEY", "sl-state-master-key": "MASTER" }).reduce((s, [k, v]) => s.set(k, v), new Store());
  const disk = { mountpoint: "exit 1", mount: "", "mkfs.ext4": "", blkid: `if [ "$1" = -s ]; then echo 3333-4444; else exit 2; fi`, node: "echo v22.0.0" };

  it("is valid bash and clean under shellcheck, and so is the script it installs", () => {
    for (const text of [script, fetchScript]) expectCleanBash(text);
  });

  it("mounts the persistent disk by its device name, reads the package and files from Secret Manager, installs the GCP drop-in", () => {
    const root = ubuntuRoot();
    mkdirSync(join(root, "dev/disk/by-id"), { recursive: true });
    writeFileSync(join(root, "etc/fstab"), "");
    execFileSync("mknod", [join(root, "dev/disk/by-id/google-sitelink-state"), "b", "7", "251"]);
    const result = run(script, root, stubs(store(), disk));
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    const device = join(root, "dev/disk/by-id/google-sitelink-state");
    expect(result.calls.slice(0, 9)).toEqual([
      "snap install google-cloud-cli --classic",
      "node --version",
      `blkid ${device}`,
      `mkfs.ext4 -q -L sitelink-data ${device}`,
      `blkid -s UUID -o value ${device}`,
      `mountpoint -q ${root}/var/lib/private/sitelink-state`,
      `mount ${root}/var/lib/private/sitelink-state`,
      secret("sl-state-package"),
      "npm pack --loglevel=error sitelink@1.2.3",
    ]);
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
    expect(result.calls).toEqual(["package", "master-key", "tls-key", "tls-cert", "topology"].map((n) => secret(`sl-state-${n}`)));
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

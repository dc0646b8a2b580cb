// The rendered bootstrap scripts: valid bash, clean under shellcheck, and — run in a temporary root
// with stubbed system commands — writing exactly the files the hosts need.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { agentConfigSchema } from "../agent/host/config";
import { expectCleanBash } from "../test/support/shell";
import { CHARON_TUNING, HOST_PACKAGES, renderAgentBootstrap, renderGcpAgentBootstrap, renderGcpStateBootstrap, renderStateBootstrap, STATE_FILES } from "./bootstrap";

const REPO = resolve(__dirname, "..");
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "sitelink-bootstrap-"));
  dirs.push(dir);
  return dir;
}

const agentOptions = {
  agentPackage: "sitelink@1.2.3",
  ipv6: false,
  config: {
    uriSources: [{ kind: "aws-ssm" as const, parameter: "/sitelink/corp/east/a/uri", region: "us-east-1" }],
    provider: "aws" as const,
    aws: { routeTableIds: ["rtb-0123456789abcdef0"], region: "us-east-1" },
    publicAddress: "203.0.113.10",
  },
};

const stateOptions = {
  agentPackage: "https://example.com/sitelink-1.2.3.tgz?x=1&y=2",
  region: "us-west-2",
  volumeId: "vol-0123456789abcdef0",
  port: 9443,
  parameters: { topology: "/sitelink/corp/state/topology", tlsCert: "/sitelink/corp/state/tls-cert", masterKey: "/sitelink/corp/state/master-key", tlsKey: "/sitelink/corp/state/tls-key" },
};

/** Writes stub commands that log their argv to $STUB_LOG; `bodies` gives some a behaviour. */
function stubs(bodies: Record<string, string>): { bin: string; log: string } {
  const dir = tempDir();
  const bin = join(dir, "bin");
  mkdirSync(bin);
  const log = join(dir, "calls.log");
  writeFileSync(log, "");
  for (const [name, body] of Object.entries(bodies)) {
    writeFileSync(join(bin, name), `#!/bin/bash\necho "${name} $*" >> "$STUB_LOG"\n${body}\n`, { mode: 0o755 });
  }
  return { bin, log };
}

/** A global npm root whose `sitelink` package is this repository (so the packaged units are the real ones). */
function npmRoot(): string {
  const root = tempDir();
  symlinkSync(REPO, join(root, "sitelink"));
  return root;
}

function run(script: string, root: string, s: { bin: string; log: string }, env: Record<string, string> = {}) {
  const file = join(tempDir(), "user-data.sh");
  writeFileSync(file, script, { mode: 0o755 });
  const result = spawnSync("bash", [file], {
    env: { PATH: `${s.bin}:/usr/bin:/bin:/usr/sbin:/sbin`, SITELINK_ROOT: root, STUB_LOG: s.log, ...env },
    encoding: "utf8",
  });
  return { ...result, calls: readFileSync(s.log, "utf8").trim().split("\n") };
}

/** The fetch script a state bootstrap writes (its heredoc body). */
const installedFetchScript = (script: string) =>
  /cat > "\$root\/usr\/local\/lib\/sitelink\/fetch-state-files.tmp" <<'SITELINK_EOF'\n([\s\S]*?)\nSITELINK_EOF/.exec(script)![1]!;

const mode = (path: string) => (statSync(path).mode & 0o7777).toString(8);

describe("agent bootstrap", () => {
  const script = renderAgentBootstrap(agentOptions);

  it("is valid bash and clean under shellcheck", () => {
    expectCleanBash(script);
  });

  it("installs the packages, writes the config 0600, enables forwarding and the packaged unit", () => {
    const root = tempDir();
    mkdirSync(join(root, "etc/sysctl.d"), { recursive: true });
    mkdirSync(join(root, "etc/systemd/system"), { recursive: true });
    const s = stubs({ "apt-get": "", sysctl: "", systemctl: "", npm: `if [ "$1" = root ]; then echo ${npmRoot()}; fi` });
    const result = run(script, root, s);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.calls).toEqual([
      "apt-get update -q",
      `apt-get install -y -q ${HOST_PACKAGES.join(" ")}`,
      "npm install --global --no-fund --no-audit sitelink@1.2.3",
      `sysctl --load ${root}/etc/sysctl.d/90-sitelink.conf`,
      "npm root --global",
      "systemctl daemon-reload",
      "systemctl enable --now strongswan-starter.service",
      "systemctl enable --now sitelink-agent.service",
    ]);
    expect(readFileSync(join(root, "etc/sysctl.d/90-sitelink.conf"), "utf8")).toBe("net.ipv4.ip_forward = 1\n");
    expect(readFileSync(join(root, "etc/strongswan.d/sitelink.conf"), "utf8")).toBe(`${CHARON_TUNING}\n`);
    expect(mode(join(root, "etc/strongswan.d/sitelink.conf"))).toBe("644");
    const configFile = join(root, "etc/sitelink/agent.json");
    expect(mode(join(root, "etc/sitelink"))).toBe("700");
    expect(mode(configFile)).toBe("600");
    const config = JSON.parse(readFileSync(configFile, "utf8"));
    expect(config).toEqual(agentConfigSchema.parse(agentOptions.config));
    expect(config.uris).toEqual([]);
    // One source of truth: the unit installed is the one the package ships.
    expect(readFileSync(join(root, "etc/systemd/system/sitelink-agent.service"), "utf8")).toBe(readFileSync(join(REPO, "agent/host/sitelink-agent.service"), "utf8"));
  });

  it("retries network steps, and gives up after ten attempts", () => {
    const root = tempDir();
    mkdirSync(join(root, "etc/sysctl.d"), { recursive: true });
    mkdirSync(join(root, "etc/systemd/system"), { recursive: true });
    const counter = join(tempDir(), "count");
    // apt-get update fails twice (a mirror not reachable yet), then works.
    const flaky = `n=$(cat ${counter} 2>/dev/null || echo 0); echo $((n + 1)) > ${counter}; if [ "$1" = update ] && [ "$n" -lt 2 ]; then exit 100; fi`;
    const s = stubs({ "apt-get": flaky, sleep: "", sysctl: "", systemctl: "", npm: `if [ "$1" = root ]; then echo ${npmRoot()}; fi` });
    const result = run(script, root, s);
    expect(result.status).toBe(0);
    expect(result.calls.slice(0, 5)).toEqual(["apt-get update -q", "sleep 6", "apt-get update -q", "sleep 6", "apt-get update -q"]);
    expect(result.stderr).toBe("sitelink: attempt 1 of 'apt-get update -q' failed\nsitelink: attempt 2 of 'apt-get update -q' failed\n");

    const down = stubs({ "apt-get": "exit 100", sleep: "" });
    const failed = run(script, tempDir(), down);
    expect(failed.status).toBe(1);
    expect(failed.calls.filter((c) => c.startsWith("apt-get"))).toHaveLength(10);
    expect(failed.calls.some((c) => c.startsWith("npm"))).toBe(false);
  });

  it("forwards IPv6 only when asked", () => {
    expect(renderAgentBootstrap({ ...agentOptions, ipv6: true })).toContain("net.ipv4.ip_forward = 1\nnet.ipv6.conf.all.forwarding = 1\nnet.ipv6.conf.all.accept_ra = 2\n");
    expect(script).not.toContain("ipv6");
  });

  it("refuses a config that carries a host URI or fails the agent's schema", () => {
    expect(() => renderAgentBootstrap({ ...agentOptions, config: { ...agentOptions.config, uris: ["sitelink://x:secret@h?fp=00"] } })).toThrow(
      "config.uris: a bootstrap must not carry host URIs (they hold the host secret); use uriSources",
    );
    expect(() => renderAgentBootstrap({ ...agentOptions, config: { ...agentOptions.config, aws: { routeTableIds: ["nope"] } } })).toThrow("must be a route table id (rtb-…)");
  });
});

describe("GCP startup script", () => {
  const gcpOptions = {
    agentPackage: "sitelink@1.2.3",
    ipv6: false,
    uriSecretVersion: "projects/proj-1/secrets/sitelink-g-a-0123abcd-uri/versions/latest",
    network: "https://www.googleapis.com/compute/v1/projects/proj-1/global/networks/net-a",
    project: "proj-1",
    publicAddress: "198.51.100.7",
    privateAddress: "10.0.0.7",
  };
  const script = renderGcpAgentBootstrap(gcpOptions);

  it("is valid bash and clean under shellcheck", () => {
    expectCleanBash(script);
  });

  it("installs what the AWS bootstrap installs and configures the agent for Secret Manager and GCP routes, the same at every boot", () => {
    const root = tempDir();
    mkdirSync(join(root, "etc/sysctl.d"), { recursive: true });
    mkdirSync(join(root, "etc/systemd/system"), { recursive: true });
    const s = stubs({ "apt-get": "", sysctl: "", systemctl: "", npm: `if [ "$1" = root ]; then echo ${npmRoot()}; fi` });
    const expectedCalls = [
      "apt-get update -q",
      `apt-get install -y -q ${HOST_PACKAGES.join(" ")}`,
      "npm install --global --no-fund --no-audit sitelink@1.2.3",
      `sysctl --load ${root}/etc/sysctl.d/90-sitelink.conf`,
      "npm root --global",
      "systemctl daemon-reload",
      "systemctl enable --now strongswan-starter.service",
      "systemctl enable --now sitelink-agent.service",
    ];
    const files = () =>
      ["etc/sysctl.d/90-sitelink.conf", "etc/strongswan.d/sitelink.conf", "etc/sitelink/agent.json", "etc/systemd/system/sitelink-agent.service"].map((f) => [f, readFileSync(join(root, f), "utf8"), mode(join(root, f))]);
    const first = run(script, root, s);
    expect(first.stderr).toBe("");
    expect(first.status).toBe(0);
    expect(first.calls).toEqual(expectedCalls);
    expect(readFileSync(join(root, "etc/strongswan.d/sitelink.conf"), "utf8")).toBe(`${CHARON_TUNING}\n`);
    const config = JSON.parse(readFileSync(join(root, "etc/sitelink/agent.json"), "utf8"));
    expect(config).toEqual(
      agentConfigSchema.parse({
        uriSources: [{ kind: "gcp-secret-manager", name: gcpOptions.uriSecretVersion }],
        provider: "gcp",
        gcp: { network: gcpOptions.network, project: "proj-1" },
        publicAddress: "198.51.100.7",
        privateAddress: "10.0.0.7",
      }),
    );
    expect(mode(join(root, "etc/sitelink/agent.json"))).toBe("600");
    // GCE runs the startup script at every boot: a second run changes nothing.
    const before = files();
    writeFileSync(s.log, "");
    const second = run(script, root, s);
    expect(second.status).toBe(0);
    expect(second.calls).toEqual(expectedCalls);
    expect(files()).toEqual(before);
  });

  it("refuses a secret version that is not a full Secret Manager version name", () => {
    expect(() => renderGcpAgentBootstrap({ ...gcpOptions, uriSecretVersion: "sitelink-uri" })).toThrow("must be projects/P/secrets/S/versions/V");
  });
});

describe("state service bootstrap", () => {
  const script = renderStateBootstrap(stateOptions);
  const fetchScript = installedFetchScript(script);

  it("is valid bash and clean under shellcheck, and so is the script it installs", () => {
    for (const text of [script, fetchScript]) expectCleanBash(text);
  });

  it("formats and mounts the data volume once, installs the fetcher, its timer and the service drop-in", () => {
    const root = tempDir();
    for (const d of ["etc/systemd/system", "dev"]) mkdirSync(join(root, d), { recursive: true });
    writeFileSync(join(root, "etc/fstab"), "LABEL=cloudimg-rootfs / ext4 defaults 0 1\n");
    // A block device node the stubs never open (blkid, mkfs and mount are stubs).
    execFileSync("mknod", [join(root, "dev/xvdf"), "b", "7", "250"]);
    const s = stubs({
      "apt-get": "",
      snap: "",
      systemctl: "",
      mountpoint: "exit 1",
      mount: "",
      "mkfs.ext4": "",
      // No filesystem yet (exit 2), then its UUID.
      blkid: `if [ "$1" = -s ]; then echo 1111-2222; else exit 2; fi`,
      npm: `if [ "$1" = root ]; then echo ${npmRoot()}; fi`,
    });
    const result = run(script, root, s);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    const device = join(root, "dev/xvdf");
    expect(result.calls).toEqual([
      "apt-get update -q",
      "apt-get install -y -q nodejs npm",
      "snap install aws-cli --classic",
      "npm install --global --no-fund --no-audit https://example.com/sitelink-1.2.3.tgz?x=1&y=2",
      `blkid ${device}`,
      `mkfs.ext4 -q -L sitelink-data ${device}`,
      `blkid -s UUID -o value ${device}`,
      `mountpoint -q ${root}/var/lib/private/sitelink-state`,
      `mount ${root}/var/lib/private/sitelink-state`,
      "npm root --global",
      "systemctl daemon-reload",
      "systemctl start sitelink-state-files.service",
      "systemctl enable --now sitelink-state-files.timer",
      "systemctl enable --now sitelink-state.service",
    ]);
    expect(readFileSync(join(root, "etc/fstab"), "utf8")).toBe(
      "LABEL=cloudimg-rootfs / ext4 defaults 0 1\nUUID=1111-2222 /var/lib/private/sitelink-state ext4 defaults,nofail 0 2\n",
    );
    expect(mode(join(root, "var/lib/private"))).toBe("700");
    expect(mode(join(root, STATE_FILES.credentials))).toBe("700");
    expect(mode(join(root, STATE_FILES.fetchScript))).toBe("755");
    expect(readFileSync(join(root, STATE_FILES.fetchScript), "utf8")).toBe(`${fetchScript}\n`);
    expect(readFileSync(join(root, "etc/systemd/system/sitelink-state.service"), "utf8")).toBe(readFileSync(join(REPO, "agent/state/sitelink-state.service"), "utf8"));
    expect(readFileSync(join(root, "etc/systemd/system/sitelink-state.service.d/10-sitelink-aws.conf"), "utf8")).toBe(
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
    expect(readFileSync(join(root, "etc/systemd/system/sitelink-state-files.timer"), "utf8")).toContain("OnUnitActiveSec=30s\n");

    // A second boot (new instance, same volume): the filesystem is kept and fstab not duplicated.
    writeFileSync(s.log, "");
    const again = run(script, root, { ...s, bin: stubs({ "apt-get": "", snap: "", systemctl: "", mountpoint: "", mount: "", "mkfs.ext4": "", blkid: "echo found", npm: `if [ "$1" = root ]; then echo ${npmRoot()}; fi` }).bin });
    expect(again.status).toBe(0);
    expect(again.calls.filter((c) => /^(mkfs|mount )/.test(c))).toEqual([]);
    expect(readFileSync(join(root, "etc/fstab"), "utf8").match(/sitelink-state/g)).toHaveLength(1);
  });

  it("never formats a volume it cannot probe", () => {
    const root = tempDir();
    mkdirSync(join(root, "dev"), { recursive: true });
    execFileSync("mknod", [join(root, "dev/xvdf"), "b", "7", "250"]);
    const s = stubs({ "apt-get": "", snap: "", npm: "", "mkfs.ext4": "", blkid: "exit 4" });
    const result = run(script, root, s);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(`sitelink: cannot probe ${join(root, "dev/xvdf")} (blkid exit 4)\n`);
    expect(result.calls.some((c) => c.startsWith("mkfs"))).toBe(false);
  });

  it("fails clearly when the data volume never appears", () => {
    const root = tempDir();
    const s = stubs({ "apt-get": "", snap: "", npm: "", sleep: "" });
    const result = run(script, root, s);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe("sitelink: data volume vol0123456789abcdef0 never appeared\n");
  });

  it("keeps the files in step with Parameter Store: rewrites only changes, restarts only for new keys", () => {
    const root = tempDir();
    mkdirSync(join(root, STATE_FILES.credentials), { recursive: true });
    const values = tempDir();
    const set = (name: string, value: string) => writeFileSync(join(values, name.replaceAll("/", "_")), value);
    set(stateOptions.parameters.topology, '{"version":1}');
    set(stateOptions.parameters.tlsCert, "CERT");
    set(stateOptions.parameters.tlsKey, "KEY");
    set(stateOptions.parameters.masterKey, "MASTER");
    // aws ssm get-parameter --region R --name N …: prints the value stored for N.
    const s = stubs({ aws: `name=$6; cat "${values}/$(echo "$name" | tr / _)" || exit 254; echo`, systemctl: "" });
    const runFetch = () => {
      writeFileSync(s.log, "");
      return run(fetchScript, root, s);
    };
    let result = runFetch();
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.calls[0]).toBe("aws ssm get-parameter --region us-west-2 --name /sitelink/corp/state/master-key --with-decryption --query Parameter.Value --output text");
    expect(result.calls.at(-2)).toBe("systemctl try-restart sitelink-state.service");
    expect(readFileSync(join(root, STATE_FILES.masterKey), "utf8")).toBe("MASTER\n");
    expect(readFileSync(join(root, STATE_FILES.topology), "utf8")).toBe('{"version":1}\n');
    expect([STATE_FILES.masterKey, STATE_FILES.tlsKey, STATE_FILES.tlsCert, STATE_FILES.topology].map((f) => mode(join(root, f)))).toEqual(["600", "600", "600", "644"]);

    const before = statSync(join(root, STATE_FILES.topology)).ino;
    set(stateOptions.parameters.topology, '{"version":1,"new":true}');
    result = runFetch();
    expect(result.calls.filter((c) => c.startsWith("systemctl"))).toEqual([]);
    expect(readFileSync(join(root, STATE_FILES.topology), "utf8")).toBe('{"version":1,"new":true}\n');
    expect(statSync(join(root, STATE_FILES.topology)).ino).not.toBe(before);

    const unchanged = statSync(join(root, STATE_FILES.topology)).ino;
    result = runFetch();
    expect(statSync(join(root, STATE_FILES.topology)).ino).toBe(unchanged);

    // A failed read leaves the old file and no temp file behind.
    rmSync(join(values, stateOptions.parameters.topology.replaceAll("/", "_")));
    result = runFetch();
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("sitelink: cannot read parameter /sitelink/corp/state/topology");
    expect(readFileSync(join(root, STATE_FILES.topology), "utf8")).toBe('{"version":1,"new":true}\n');
    expect(execFileSync("ls", [join(root, "etc/sitelink")], { encoding: "utf8" }).split("\n").filter(Boolean)).toEqual(["credentials", "topology.json"]);
  });
});

describe("GCP state service startup script", () => {
  const gcpState = {
    agentPackage: "sitelink@1.2.3",
    project: "proj-1",
    secrets: { topology: "sl-state-topology", tlsCert: "sl-state-tls-cert", tlsKey: "sl-state-tls-key", masterKey: "sl-state-master-key" },
    diskDeviceName: "sitelink-state",
    port: 9443,
  };
  const script = renderGcpStateBootstrap(gcpState);
  const fetchScript = installedFetchScript(script);

  it("is valid bash and clean under shellcheck, and so is the script it installs", () => {
    for (const text of [script, fetchScript]) expectCleanBash(text);
  });

  it("mounts the persistent disk by its device name, installs the gcloud fetcher and the GCP drop-in", () => {
    const root = tempDir();
    for (const d of ["etc/systemd/system", "dev/disk/by-id"]) mkdirSync(join(root, d), { recursive: true });
    writeFileSync(join(root, "etc/fstab"), "");
    execFileSync("mknod", [join(root, "dev/disk/by-id/google-sitelink-state"), "b", "7", "251"]);
    const s = stubs({
      "apt-get": "",
      snap: "",
      systemctl: "",
      mountpoint: "exit 1",
      mount: "",
      "mkfs.ext4": "",
      blkid: `if [ "$1" = -s ]; then echo 3333-4444; else exit 2; fi`,
      npm: `if [ "$1" = root ]; then echo ${npmRoot()}; fi`,
    });
    const result = run(script, root, s);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    const device = join(root, "dev/disk/by-id/google-sitelink-state");
    expect(result.calls.slice(0, 7)).toEqual([
      "apt-get update -q",
      "apt-get install -y -q nodejs npm",
      "snap install google-cloud-cli --classic",
      "npm install --global --no-fund --no-audit sitelink@1.2.3",
      `blkid ${device}`,
      `mkfs.ext4 -q -L sitelink-data ${device}`,
      `blkid -s UUID -o value ${device}`,
    ]);
    expect(readFileSync(join(root, "etc/fstab"), "utf8")).toBe("UUID=3333-4444 /var/lib/private/sitelink-state ext4 defaults,nofail 0 2\n");
    expect(readFileSync(join(root, "etc/systemd/system/sitelink-state.service.d/10-sitelink-gcp.conf"), "utf8")).toContain("ExecStart=/usr/local/bin/sitelink state serve --topology /etc/sitelink/topology.json --data /var/lib/sitelink-state --tls-cert %d/tls.crt --tls-key %d/tls.key --master-key-file %d/master.key --listen 0.0.0.0:9443\n");
    expect(readFileSync(join(root, "etc/systemd/system/sitelink-state-files.service"), "utf8")).toContain("Description=sitelink: refresh the state service's files from Secret Manager\n");
  });

  it("fails clearly when the disk never appears", () => {
    const s = stubs({ "apt-get": "", snap: "", npm: "", sleep: "" });
    const result = run(script, tempDir(), s);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe("sitelink: data disk sitelink-state never appeared\n");
  });

  it("reads the latest version of each secret, restarting the service only for new keys", () => {
    const root = tempDir();
    mkdirSync(join(root, STATE_FILES.credentials), { recursive: true });
    const values = tempDir();
    for (const [name, value] of Object.entries({ "sl-state-topology": "{}", "sl-state-tls-cert": "CERT", "sl-state-tls-key": "KEY", "sl-state-master-key": "MASTER" })) writeFileSync(join(values, name), value);
    // gcloud secrets versions access latest --project P --secret NAME: prints the stored value (no newline, as gcloud does).
    const s = stubs({ gcloud: `cat "${values}/$8" || exit 1`, systemctl: "" });
    let result = run(fetchScript, root, s);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.calls[0]).toBe("gcloud secrets versions access latest --project proj-1 --secret sl-state-master-key");
    expect(result.calls.filter((c) => c.startsWith("systemctl"))).toEqual(["systemctl try-restart sitelink-state.service"]);
    expect(readFileSync(join(root, STATE_FILES.masterKey), "utf8")).toBe("MASTER");
    expect(readFileSync(join(root, STATE_FILES.topology), "utf8")).toBe("{}");
    writeFileSync(s.log, "");
    writeFileSync(join(values, "sl-state-topology"), '{"new":true}');
    result = run(fetchScript, root, s);
    expect(result.calls.filter((c) => c.startsWith("systemctl"))).toEqual([]);
    expect(readFileSync(join(root, STATE_FILES.topology), "utf8")).toBe('{"new":true}');
    rmSync(join(values, "sl-state-tls-key"));
    result = run(fetchScript, root, s);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("sitelink: cannot read secret sl-state-tls-key");
  });
});

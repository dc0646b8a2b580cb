// The boot lab end to end with a trivial user data: two instances boot, cloud-init installs
// strongswan-swanctl from the lab's apt repository and reads the fake S3, SSM and IMDS, the
// instances ping each other over the bridge, then everything is removed again.
//
//   npx tsx test/boot/smoke.ts        (root; the first run builds the cached root filesystem)
import { spawnSync } from "node:child_process";
import { aptRepo, serveRepo, type RepoServer } from "./apt-repo";
import { FakeCloud } from "./fake-cloud";
import { BootLab, exec, failedUnits, journal, waitCloudInit, type Instance } from "./instance";
import { baseRootfs } from "./rootfs";

const BUCKET = "boot-lab";
const OBJECT = "hello.txt";
const OBJECT_BODY = "hello from the fake object store\n";
const PARAMETER = "/boot-lab/greeting";
const PARAMETER_VALUE = "hello from the fake parameter store";

const started = performance.now();
function log(line: string): void {
  console.log(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}`);
}

function userData(cloudUrl: string): string {
  return `#!/bin/bash
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q strongswan-swanctl
curl -fsS -o /root/object "${cloudUrl}/${BUCKET}/${OBJECT}"
curl -fsS -X POST -H 'X-Amz-Target: AmazonSSM.GetParameter' -H 'Content-Type: application/x-amz-json-1.1' \\
  -d '{"Name":"${PARAMETER}"}' -o /root/parameter.json "${cloudUrl}/"
token=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token)
curl -fsS -H "X-aws-ec2-metadata-token: $token" -o /root/instance-id http://169.254.169.254/latest/meta-data/instance-id
`;
}

interface Check {
  instance: string;
  what: string;
  ok: boolean;
  detail: string;
}

async function checkInstance(instance: Instance, peer: Instance, cloud: FakeCloud, repo: RepoServer): Promise<Check[]> {
  const checks: Check[] = [];
  const check = (what: string, ok: boolean, detail = "") => checks.push({ instance: instance.name, what, ok, detail });
  const cat = async (path: string) => (await exec(instance, ["cat", path], { allowFail: true })).stdout;

  const failed = await failedUnits(instance);
  check("no failed systemd units", failed.length === 0, failed.join(" "));
  // swanctl --version asks the (not running) daemon: ask dpkg instead.
  const swanctl = await exec(instance, ["dpkg-query", "-W", "-f", "${Status} ${Version}", "strongswan-swanctl"], { allowFail: true });
  const fromLab = repo.requests.some((r) => r.remote === instance.address && r.path.endsWith(".deb") && r.status === 200);
  check("strongswan-swanctl installed from the lab repo", swanctl.stdout.startsWith("install ok installed") && fromLab, swanctl.stdout.trim());
  check("S3 object fetched", (await cat("/root/object")) === OBJECT_BODY);
  const parameter = await cat("/root/parameter.json");
  check("SSM parameter read", parameter.includes(PARAMETER_VALUE), parameter.slice(0, 80));
  check("IMDSv2 at 169.254.169.254 answered its own instance id", (await cat("/root/instance-id")) === instance.instanceId, instance.instanceId);
  const node = await exec(instance, ["node", "-v"], { allowFail: true });
  check("host Node bind-mounted", /^v(\d+)/.exec(node.stdout)?.[1] !== undefined && Number(/^v(\d+)/.exec(node.stdout)![1]) >= 20, node.stdout.trim());
  const ping = await exec(instance, ["ping", "-c", "1", "-W", "2", peer.address], { allowFail: true });
  check(`ping ${peer.name} (${peer.address}) over the bridge`, ping.code === 0, /time=\S+ ms/.exec(ping.stdout)?.[0] ?? ping.stderr.trim());
  // A route lookup only: no packet leaves even if a route out ever appeared.
  const outside = await exec(instance, ["ip", "-4", "route", "get", "203.0.113.1"], { allowFail: true });
  check("no route out of the lab", outside.code !== 0, outside.stderr.trim() || outside.stdout.trim());
  const machineId = await cat("/etc/machine-id");
  check("machine id of its own", machineId.trim().length === 32 && machineId !== (await exec(peer, ["cat", "/etc/machine-id"])).stdout, machineId.trim());
  return checks;
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error("boot smoke: needs root (debootstrap, nspawn, namespaces, mounts)");
    return 1;
  }
  const missing = ["debootstrap", "systemd-nspawn", "dpkg-scanpackages", "iptables", "nsenter", "journalctl"].filter(
    (tool) => spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0,
  );
  if (missing.length > 0) {
    console.error(`boot smoke: missing ${missing.join(", ")}; see test/boot/README.md for the apt-get line`);
    return 1;
  }
  const base = await baseRootfs(log);
  log(`rootfs: ${base.built ? "built" : "reused"} in ${base.seconds} s (${base.dir})`);
  const packages = await aptRepo(base.dir, undefined, log);
  log(`apt repo: ${packages.built ? "built" : "reused"} in ${packages.seconds} s (${packages.dir})`);

  const lab = await BootLab.create(base.dir, log);
  let cloud: FakeCloud | undefined;
  let repo: RepoServer | undefined;
  try {
    log(`lab ${lab.id}: bridge ${lab.bridge} ${lab.bridgeAddress}/24`);
    cloud = await FakeCloud.start(lab.bridgeAddress);
    repo = await serveRepo(packages.dir, lab.bridgeAddress);
    cloud.putObject(BUCKET, OBJECT, OBJECT_BODY);
    cloud.setParameter(PARAMETER, PARAMETER_VALUE);
    log(`fake cloud ${cloud.url}, apt repo ${repo.url}`);

    const instances: Instance[] = [];
    for (const name of ["i1", "i2"]) {
      const instance = await lab.prepare({ name, userData: userData(cloud.url), aptRepoUrl: repo.url, imdsPort: cloud.port });
      cloud.addInstance({ instanceId: instance.instanceId, localIpv4: instance.address, role: "boot-lab" });
      lab.start(instance);
      instances.push(instance);
      log(`${name}: ${instance.instanceId} at ${instance.address} booting`);
    }
    const results = await Promise.all(instances.map(async (instance) => ({ instance, ...(await waitCloudInit(instance)) })));
    for (const { instance, status, seconds } of results) log(`${instance.name}: cloud-init ${status} ${seconds} s after launch`);

    const checks: Check[] = results.map(({ instance, status }) => ({ instance: instance.name, what: "cloud-init done", ok: status === "done", detail: status }));
    for (const [index, instance] of instances.entries()) {
      checks.push(...(await checkInstance(instance, instances[(index + 1) % instances.length]!, cloud, repo)));
    }
    const failedInstances = new Set(checks.filter((c) => !c.ok).map((c) => c.instance));
    for (const instance of instances) {
      if (failedInstances.has(instance.name)) console.log(`--- ${instance.name}: cloud-init and failed units (journal) ---\n${await journal(instance, ["-p", "warning", "-o", "short-monotonic"])}`);
    }

    console.log("\nBoot lab smoke");
    console.log(`  rootfs          ${base.built ? "built" : "cached"}, ${base.seconds} s`);
    console.log(`  apt repo        ${packages.built ? "built" : "cached"}, ${packages.seconds} s`);
    for (const { instance, status, seconds } of results) console.log(`  ${instance.name.padEnd(15)} cloud-init ${status} at ${seconds} s after launch`);
    console.log(`  requests        imds ${cloud.requestsOf("imds").length}, ssm ${cloud.requestsOf("ssm").length}, s3 ${cloud.requestsOf("s3").length}, apt ${repo.requests.length}`);
    for (const c of checks) console.log(`  ${c.ok ? "ok  " : "FAIL"} ${c.instance} ${c.what}${c.detail ? `: ${c.detail}` : ""}`);
    const failures = checks.filter((c) => !c.ok).length;
    console.log(failures === 0 ? `\nPASS (${checks.length} checks)` : `\nFAIL: ${failures} of ${checks.length} checks`);
    return failures === 0 ? 0 : 1;
  } finally {
    const stopping = performance.now();
    await lab.cleanup();
    await cloud?.close();
    await repo?.close();
    log(`cleaned up in ${((performance.now() - stopping) / 1000).toFixed(1)} s`);
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof Error ? error.stack ?? error.message : error);
    process.exit(1);
  },
);

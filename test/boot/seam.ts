// The seam: everything the boot lab adds to an instance that the components did not render, each
// the thinnest stand-in for what a real EC2 instance has. The user data itself stays exactly what
// the components render. Listed (with why) in test/boot/README.md, "The seam".
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { InstanceSpec } from "./instance";
import { run } from "./proc";

/** Where instances find the lab CA (readable under the agent unit's ProtectSystem=strict and ProtectHome). */
export const LAB_CA_PATH = "/usr/local/share/boot-lab/ca.pem";

/** The AWS API names hosts call: the CLI (SSM, S3) and the agent's SDK (SSM, EC2). */
export function awsEndpointNames(region: string): string[] {
  return ["ssm", "s3", "ec2"].map((service) => `${service}.${region}.amazonaws.com`);
}

export interface LabTls {
  /** The lab CA's certificate: what instances trust. */
  caPem: string;
  /** Key and certificate of the fake cloud's HTTPS listener, signed by the lab CA, naming `names`. */
  key: string;
  cert: string;
}

/** A throwaway CA and a server certificate for `names`, made with openssl in a temp dir (removed after). */
export function labTls(names: string[]): LabTls {
  const dir = mkdtempSync(join(tmpdir(), "slboot-ca-"));
  const openssl = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
  try {
    openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=sitelink boot lab CA", "-days", "2",
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", "-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${names[0]}`, "-keyout", "server.key", "-out", "server.csr"]);
    writeFileSync(join(dir, "ext"), `subjectAltName=${names.map((n) => `DNS:${n}`).join(",")}\nextendedKeyUsage=serverAuth\n`);
    openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "ext", "-out", "server.pem"]);
    return { caPem: readFileSync(join(dir, "ca.pem"), "utf8"), key: readFileSync(join(dir, "server.key"), "utf8"), cert: readFileSync(join(dir, "server.pem"), "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Files every lab instance gets before it boots:
 * - /etc/hosts maps the AWS API names to the fake cloud on the bridge (instances have no DNS);
 * - the lab CA, and /root/.aws/config pointing the AWS CLI at it (`ca_bundle`) with path-style S3
 *   (a bucket name as a host name would need a DNS entry per bucket);
 * - a drop-in giving sitelink-agent.service NODE_EXTRA_CA_CERTS (the agent's SDK: the unit has
 *   ProtectHome, and Node reads no CA config of the CLI's);
 * - charon with kernel-libipsec (userspace ESP): this machine's kernel has no ESP (no
 *   CONFIG_INET_ESP); Debian ships the plugin with `load = no`, a later file of the same directory wins.
 */
export function seamFiles(region: string, bridgeAddress: string, caPem: string): NonNullable<InstanceSpec["files"]> {
  return [
    { path: "/etc/hosts", content: ["127.0.0.1 localhost", "::1 localhost", ...awsEndpointNames(region).map((name) => `${bridgeAddress} ${name}`), ""].join("\n") },
    { path: LAB_CA_PATH, content: caPem },
    { path: "/root/.aws/config", mode: 0o600, content: ["[default]", `ca_bundle = ${LAB_CA_PATH}`, "s3 =", "    addressing_style = path", ""].join("\n") },
    { path: "/etc/systemd/system/sitelink-agent.service.d/90-boot-lab.conf", content: ["[Service]", `Environment=NODE_EXTRA_CA_CERTS=${LAB_CA_PATH}`, ""].join("\n") },
    { path: "/etc/strongswan.d/charon/zz-boot-lab-libipsec.conf", content: "kernel-libipsec {\n    load = yes\n}\n" },
  ];
}

/**
 * Vendor data (cloud-init's channel for the image vendor, merged beside the user data): the AWS CLI
 * from the lab's apt repository, before the user data runs (its snap line is skipped when `aws` exists).
 */
export const SEAM_VENDOR_DATA = ["#cloud-config", "packages:", "  - awscli", ""].join("\n");

/** The Debian packages the lab's apt repository serves: the hosts' strongSwan and the CLI of the seam. */
export const BOOT_PACKAGES = [
  "strongswan-charon", "strongswan-starter", "strongswan-swanctl", "libstrongswan-standard-plugins", "libcharon-extra-plugins", "iptables", "awscli",
];

/**
 * A site network behind a host: a veth pair in the instance's namespace (this kernel has no dummy
 * interfaces), `address` on site0. Traffic from it to a peer's site enters the tunnel.
 */
export async function addSiteInterface(ns: string, addressWithPrefix: string): Promise<void> {
  await run(["ip", "-n", ns, "link", "add", "site0", "type", "veth", "peer", "name", "site1"]);
  await run(["ip", "-n", ns, "addr", "add", addressWithPrefix, "dev", "site0"]);
  await run(["ip", "-n", ns, "link", "set", "site0", "up"]);
  await run(["ip", "-n", ns, "link", "set", "site1", "up"]);
}

// Builds the example program under Pulumi mocks: a VPC and an office host installed over SSH.
import { beforeAll, describe, expect, it } from "vitest";
import { isSecretValue, named, one, plain, settle, setupMocks, valueOf } from "../../test/components/harness";

type Program = typeof import("./index.js");
let program: Program;
const KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nEXAMPLEKEYdoNotLeak\n-----END OPENSSH PRIVATE KEY-----\n";

beforeAll(async () => {
  // What `pulumi config set` would give the program (the key set with --secret).
  process.env.PULUMI_CONFIG = JSON.stringify({
    "project:officePublicAddress": "198.18.5.1",
    "project:officePrivateAddress": "10.20.0.2",
    "project:officeSshUser": "admin",
    "project:officeRouteMode": "file",
    "project:officeSshKey": KEY,
  });
  process.env.PULUMI_CONFIG_SECRET_KEYS = JSON.stringify(["project:officeSshKey"]);
  await setupMocks();
  program = await import("./index.js");
  await valueOf(program.hosts);
  await settle();
});

describe("examples/aws-office", () => {
  it("links the VPC's two hosts and the office host, the state service in the VPC", async () => {
    expect((await valueOf(program.hosts)).map((h) => [h.id, h.publicAddress === "198.18.5.1", h.role])).toEqual([
      ["corp.vpc.a", false, "active"],
      ["corp.vpc.b", false, "standby"],
      ["corp.office.gw", true, "active"],
    ]);
    expect(await valueOf(program.stateUrl)).toMatch(/^https:\/\/203\.0\.113\.\d+:9443$/);
    expect(named("vpc-route", "aws:ec2/route:Route").map((r) => r.inputs.destinationCidrBlock)).toEqual(["10.20.0.0/16", "10.20.0.0/16"]);
  });

  it("admits the office's public address to the VPC hosts on the link ports only", () => {
    const fromOffice = named("vpc-in-").filter((r) => r.inputs.cidrIpv4 === "198.18.5.1/32");
    expect(fromOffice.map((r) => [r.name, r.inputs.ipProtocol, r.inputs.fromPort, r.inputs.toPort])).toEqual([
      ["vpc-in-ike-corp.office.gw", "udp", 500, 500],
      ["vpc-in-natt-corp.office.gw", "udp", 4500, 4500],
      ["vpc-in-check-corp.office.gw", "tcp", 9790, 9790],
    ]);
  });

  it("installs the office host over SSH in IPsec-router mode, the key and URI secret", () => {
    const install = one("office-gw-install", "command:remote:Command").inputs;
    if (!isSecretValue(install.stdin) || !isSecretValue(install.connection)) throw new Error("stdin and connection must be secret");
    const config = JSON.parse(String(install.stdin.value));
    expect(config).toMatchObject({ provider: "file", file: { path: "/etc/sitelink/routes" }, publicAddress: "198.18.5.1", privateAddress: "10.20.0.2" });
    expect(install.connection.value).toEqual({ host: "198.18.5.1", port: 22, user: "admin", privateKey: KEY });
    expect(String(install.create).startsWith("sudo -n bash -c '#!/bin/bash\n")).toBe(true);
    const text = JSON.stringify(named("office").map((r) => plain(r.inputs)));
    expect(text).not.toContain("EXAMPLEKEYdoNotLeak");
    expect(text).not.toContain("sitelink://");
    expect(one("office-gw-uninstall", "command:remote:Command").inputs.delete).toMatch(/^sudo -n bash -c '#!\/bin\/bash\n# sitelink link host uninstall/);
  });
});

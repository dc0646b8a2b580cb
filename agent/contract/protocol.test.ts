import { describe, expect, it } from "vitest";
import { formatPath } from "./topology";
import { desiredStateSchema, hostReportSchema, pollAnswerSchema, type DesiredState, type HostReport } from "./protocol";

const key = Buffer.alloc(32, 7).toString("base64");

function desired(overrides: Record<string, unknown> = {}): DesiredState {
  return {
    protocol: 1,
    generation: 3,
    hostId: "aws-a",
    link: "corp",
    location: "aws",
    role: "active",
    activeHost: "aws-a",
    peers: [
      {
        location: "office",
        activeHost: { id: "off-a", publicAddress: "198.18.2.1" },
        hosts: [{ id: "off-a", publicAddress: "198.18.2.1" }],
        localSubnets: ["10.1.0.0/16"],
        remoteSubnets: ["10.2.0.0/16"],
        psk: key,
        ike: ["aes128-sha256-x25519", "default"],
        esp: ["aes128gcm128-x25519", "default"],
        initiator: true,
      },
    ],
    firewall: { allow: ["198.18.2.1"] },
    hostCheck: { key: Buffer.alloc(32, 9).toString("base64url"), targets: [{ hostId: "off-a", address: "198.18.2.1", port: 9790, scope: "peer" }] },
    routes: { pointHere: ["10.2.0.0/16"] },
    timing: { heartbeat: 1, probeInterval: 0.25, probeTimeout: 0.4 },
    etag: "0123456789abcdef".repeat(4),
    serverTime: 1,
    ...overrides,
  } as DesiredState;
}

/** The paths a schema refuses, or [] when it accepts. */
function refused(schema: typeof desiredStateSchema | typeof hostReportSchema, value: unknown): string[] {
  const parsed = schema.safeParse(value);
  return parsed.success ? [] : parsed.error.issues.map((i) => formatPath(i.path));
}

describe("desired state (what an agent accepts)", () => {
  it("accepts a well-formed state", () => {
    expect(desiredStateSchema.parse(desired())).toEqual(desired());
  });

  it("refuses a signed answer as a whole for one bad field", () => {
    const peer = desired().peers[0]!;
    expect(refused(desiredStateSchema, desired({ timing: { heartbeat: 4e6, probeInterval: 0.25, probeTimeout: 0.4 } }))).toEqual(["timing.heartbeat"]);
    expect(refused(desiredStateSchema, desired({ timing: { heartbeat: 1, probeInterval: 0.01, probeTimeout: 11 } }))).toEqual(["timing.probeInterval", "timing.probeTimeout"]);
    expect(refused(desiredStateSchema, desired({ routes: { pointHere: ["10.2.0.1/16", "banana"] } }))).toEqual(["routes.pointHere[0]", "routes.pointHere[1]"]);
    expect(refused(desiredStateSchema, desired({ peers: [{ ...peer, remoteSubnets: ["::ffff:10.0.0.0/104"], psk: "short", ike: ["3des-md5-modp1024"] }] }))).toEqual([
      "peers[0].remoteSubnets[0]",
      "peers[0].psk",
      "peers[0].ike[0]",
    ]);
    expect(refused(desiredStateSchema, desired({ firewall: { allow: ["0.0.0.0", "fe80::1%eth0", "1.2.3"] } }))).toEqual(["firewall.allow[0]", "firewall.allow[1]", "firewall.allow[2]"]);
    expect(refused(desiredStateSchema, desired({ hostId: "A B", link: "Corp", hostCheck: { key: "!".repeat(44), targets: [] } }))).toEqual(["hostId", "link", "hostCheck.key"]);
  });

  it("normalizes CIDRs and addresses", () => {
    const peer = desired().peers[0]!;
    const parsed = desiredStateSchema.parse(desired({ peers: [{ ...peer, localSubnets: ["10.0.0.0/08"], hosts: [{ id: "off-a", publicAddress: "2001:DB8:0::1" }] }] }));
    expect(parsed.peers[0]!.localSubnets).toEqual(["10.0.0.0/8"]);
    expect(parsed.peers[0]!.hosts[0]!.publicAddress).toBe("2001:db8::1");
  });
});

describe("poll answer", () => {
  const unchanged = { protocol: 1, generation: 4, hostId: "aws-a", unchanged: true, etag: "ab".repeat(32), serverTime: 2 };

  it("is an unchanged state when it says so, and then nothing else", () => {
    expect(pollAnswerSchema(unchanged).parse(unchanged)).toEqual(unchanged);
    const mixed = { ...desired(), unchanged: true };
    expect(pollAnswerSchema(mixed).safeParse(mixed).success).toBe(false);
    expect(refused(pollAnswerSchema({ unchanged: false }) as typeof desiredStateSchema, { ...unchanged, unchanged: false })).toContain("unchanged");
  });

  it("is a whole desired state otherwise, with its etag", () => {
    expect(pollAnswerSchema(desired()).parse(desired())).toEqual(desired());
    expect(refused(desiredStateSchema, desired({ etag: "not hex" }))).toEqual(["etag"]);
  });
});

describe("host report (what the service accepts)", () => {
  const base: HostReport = { agentVersion: "1", role: "standby", appliedGeneration: 0, tunnels: [], hostChecks: [], routes: { provider: "none", applied: [] } };

  it("takes an optional host-check port", () => {
    expect(hostReportSchema.parse({ ...base, hostCheckPort: 19790 }).hostCheckPort).toBe(19790);
    expect(refused(hostReportSchema, { ...base, hostCheckPort: 0 })).toEqual(["hostCheckPort"]);
    expect(refused(hostReportSchema, { ...base, hostCheckPort: 65536 })).toEqual(["hostCheckPort"]);
    expect(refused(hostReportSchema, { ...base, hostCheckPort: 9790.5 })).toEqual(["hostCheckPort"]);
  });

  it("refuses addresses no peer could use, and takes any age of a result (the service clamps it)", () => {
    expect(refused(hostReportSchema, { ...base, publicAddress: "::", privateAddress: "::ffff:10.0.0.1" })).toEqual(["publicAddress", "privateAddress"]);
    const check = { target: "off-a", reachable: false, failures: 2, ageMs: 1e12 };
    expect(hostReportSchema.parse({ ...base, hostChecks: [check] }).hostChecks[0]!.ageMs).toBe(1e12);
    expect(refused(hostReportSchema, { ...base, routes: { provider: "kernel", applied: ["10.0.0.0/33"] } })).toEqual(["routes.applied[0]"]);
  });
});

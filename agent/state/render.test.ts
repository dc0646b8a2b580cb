import { describe, expect, it } from "vitest";
import { parseTopology } from "../contract/topology";
import { desiredStateSchema } from "../contract/protocol";
import { Allowlist, LinkIndex, allowedAddresses, desiredStateJson, renderHost, type RenderInput, type ReportedHost } from "./render";

const topology = parseTopology({
  version: 1,
  links: [
    {
      name: "corp",
      locations: [
        {
          name: "aws",
          routes: ["10.1.0.0/16"],
          hosts: [
            { id: "aws-a", name: "a", publicAddress: "198.18.1.1", privateAddress: "10.1.0.10" },
            { id: "aws-b", name: "b", publicAddress: "198.18.1.2", privateAddress: "10.1.0.11" },
          ],
        },
        // The office hosts' addresses are known only from their reports.
        // Handed out normalized, never as written.
        { name: "office", routes: ["10.2.0.0/16", "10.3.0.0/024"], hosts: [{ id: "off-a", name: "a" }] },
        { name: "gcp", routes: ["10.4.0.0/16"], hosts: [{ id: "gcp-a", name: "a", publicAddress: "198.18.4.1" }] },
      ],
      // No gcp–office tunnel.
      connections: [
        ["aws", "office"],
        ["gcp", "aws"],
      ],
      cipher: { ike: "aes256-sha256-x25519" },
      timing: { heartbeat: 2 },
    },
  ],
});
const link = topology.links[0]!;
const index = new LinkIndex(link);

const active: Record<string, string | null> = { aws: "aws-a", office: "off-a", gcp: null };
const reported: Record<string, ReportedHost> = {
  "off-a": { publicAddress: "198.18.2.1", privateAddress: "10.2.0.5" },
  // A reported address differing from the topology's: the topology wins, the reported one is not allowed.
  "aws-b": { publicAddress: "198.18.1.99" },
};

/** Base64 of 32 bytes, as the service makes them, but recognisable. */
const pskOf = (a: string, b: string) => Buffer.from(`psk-of-${[a, b].sort().join("-")}`.padEnd(32, "-")).toString("base64");
const HOST_CHECK_KEY = Buffer.from("hostcheck-key-of-corp".padEnd(32, "-")).toString("base64url");

function input(hostId: string, role: "active" | "standby", overrides: Partial<RenderInput> = {}): RenderInput {
  return {
    index,
    hostId,
    role,
    activeHost: (location) => active[location] ?? null,
    inService: () => true,
    reported: (id) => reported[id],
    psk: pskOf,
    hostCheckKey: HOST_CHECK_KEY,
    ...overrides,
  };
}

const allow = ["10.1.0.10", "10.1.0.11", "10.2.0.5", "198.18.1.1", "198.18.1.2", "198.18.2.1", "198.18.4.1"];

/** The link's allowlist from every host's topology and reported addresses. */
function allowlistOf(report: (id: string) => ReportedHost | undefined): string[] {
  const list = new Allowlist();
  for (const [id, { host }] of index.hosts) list.set(id, allowedAddresses(host, report(id)));
  return list.addresses();
}

/** A host's whole desired state, as the service answers it. */
function renderDesiredState(i: RenderInput) {
  return { ...renderHost(i), firewall: { allow: allowlistOf(i.reported) } };
}
const timing = { heartbeat: 2, probeInterval: 0.25, probeTimeout: 0.4 };

describe("renderDesiredState", () => {
  it("gives an active host one peer entry per connected location", () => {
    const state = renderDesiredState(input("aws-a", "active"));
    expect(state).toEqual({
      protocol: 1,
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
          remoteSubnets: ["10.2.0.0/16", "10.3.0.0/24"],
          psk: pskOf("aws", "office"),
          ike: ["aes256-sha256-x25519", "default"],
          esp: ["aes128gcm128-x25519", "default"],
          initiator: true,
        },
        {
          location: "gcp",
          activeHost: null,
          hosts: [{ id: "gcp-a", publicAddress: "198.18.4.1" }],
          localSubnets: ["10.1.0.0/16"],
          remoteSubnets: ["10.4.0.0/16"],
          psk: pskOf("aws", "gcp"),
          ike: ["aes256-sha256-x25519", "default"],
          esp: ["aes128gcm128-x25519", "default"],
          initiator: true,
        },
      ],
      firewall: { allow },
      hostCheck: {
        key: HOST_CHECK_KEY,
        targets: [
          { hostId: "aws-b", address: "10.1.0.11", port: 9790, scope: "location" },
          { hostId: "off-a", address: "198.18.2.1", port: 9790, scope: "peer" },
          { hostId: "gcp-a", address: "198.18.4.1", port: 9790, scope: "peer" },
        ],
      },
      routes: { pointHere: ["10.2.0.0/16", "10.3.0.0/24", "10.4.0.0/16"] },
      timing,
    });
    const { firewall, ...host } = state;
    const answer = desiredStateJson(JSON.stringify(host), JSON.stringify(firewall.allow), 3, 1, "ab".repeat(32));
    expect(desiredStateSchema.parse(JSON.parse(answer))).toEqual({ ...state, generation: 3, etag: "ab".repeat(32), serverTime: 1 });
  });

  it("gives a standby host no peers and no routes, but its probe targets", () => {
    expect(renderDesiredState(input("aws-b", "standby"))).toEqual({
      protocol: 1,
      hostId: "aws-b",
      link: "corp",
      location: "aws",
      role: "standby",
      activeHost: "aws-a",
      peers: [],
      firewall: { allow },
      hostCheck: {
        key: HOST_CHECK_KEY,
        targets: [
          { hostId: "aws-a", address: "10.1.0.10", port: 9790, scope: "location" },
          { hostId: "off-a", address: "198.18.2.1", port: 9790, scope: "peer" },
          { hostId: "gcp-a", address: "198.18.4.1", port: 9790, scope: "peer" },
        ],
      },
      routes: { pointHere: [] },
      timing,
    });
  });

  it("initiates only toward higher location names and offers only the preferred proposals when forced", () => {
    const forced = new LinkIndex({ ...link, cipher: { ...link.cipher, force: true } });
    const state = renderHost(input("off-a", "active", { index: forced }));
    expect(state.peers.map((p) => [p.location, p.initiator, p.ike, p.esp])).toEqual([
      ["aws", false, ["aes256-sha256-x25519"], ["aes128gcm128-x25519"]],
    ]);
    // Not connected to gcp: neither a tunnel nor a probe of it.
    expect(state.hostCheck.targets.map((t) => t.hostId)).toEqual(["aws-a", "aws-b"]);
    expect(state.routes.pointHere).toEqual(["10.1.0.0/16"]);
  });

  it("leaves out addresses nobody knows", () => {
    const state = renderDesiredState(input("aws-a", "active", { reported: () => undefined }));
    expect(state.peers[0]!.activeHost).toEqual({ id: "off-a" });
    expect(state.peers[0]!.hosts).toEqual([{ id: "off-a" }]);
    expect(state.hostCheck.targets.map((t) => t.hostId)).toEqual(["aws-b", "gcp-a"]);
    expect(state.firewall.allow).toEqual(["10.1.0.10", "10.1.0.11", "198.18.1.1", "198.18.1.2", "198.18.4.1"]);
  });

  it("lists only the peer hosts in service: one that left cannot take the tunnel back", () => {
    // aws-a is active; aws-b went offline.
    const state = renderHost(input("gcp-a", "active", { inService: (id) => id !== "aws-b" }));
    expect(state.peers[0]!.hosts).toEqual([{ id: "aws-a", publicAddress: "198.18.1.1" }]);
    // Out of service, it is still probed: that is how the service sees it come back.
    expect(state.hostCheck.targets.map((t) => t.hostId)).toEqual(["aws-a", "aws-b"]);
    expect(renderHost(input("gcp-a", "active")).peers[0]!.hosts.map((h) => h.id)).toEqual(["aws-a", "aws-b"]);
  });

  it("refuses a host that is not in the link", () => {
    expect(() => renderHost(input("nobody", "standby"))).toThrow('host "nobody" is not in link "corp"');
  });

  it("names each probe target's reported host-check port, 9790 when it reports none", () => {
    const withPorts = (id: string) => (id === "aws-a" ? { hostCheckPort: 19790 } : id === "off-a" ? { ...reported["off-a"], hostCheckPort: 9999 } : reported[id]);
    const state = renderHost(input("aws-b", "standby", { reported: withPorts }));
    expect(state.hostCheck.targets.map((t) => [t.hostId, t.port])).toEqual([["aws-a", 19790], ["off-a", 9999], ["gcp-a", 9790]]);
  });

  it("indexes who an event in a location concerns: its hosts and those of the connected locations", () => {
    expect(index.neighbourhood("aws")).toEqual(["aws-a", "aws-b", "off-a", "gcp-a"]);
    expect(index.neighbourhood("office")).toEqual(["off-a", "aws-a", "aws-b"]);
    expect(index.neighbourhood("gone")).toEqual([]);
  });
});

describe("Allowlist", () => {
  it("counts each address per host and says when the list changed", () => {
    const list = new Allowlist();
    expect(list.set("a", ["198.18.0.1", "10.0.0.1"])).toBe(true);
    expect(list.set("b", ["198.18.0.1"])).toBe(false);
    expect(list.set("a", ["10.0.0.1"])).toBe(false); // b still has 198.18.0.1
    expect(list.addresses()).toEqual(["10.0.0.1", "198.18.0.1"]);
    expect(list.set("b", [])).toBe(true);
    expect(list.set("a", ["10.0.0.2"])).toBe(true);
    expect(list.addresses()).toEqual(["10.0.0.2"]);
    expect(list.set("a", ["10.0.0.2"])).toBe(false);
  });
});

import { describe, expect, it } from "vitest";
import { parseTopology } from "../../lib/topology";
import { desiredStateSchema } from "../protocol";
import { renderDesiredState, type HostAddresses, type RenderInput } from "./render";

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
        { name: "office", routes: ["10.2.0.0/16", "10.3.0.0/24"], hosts: [{ id: "off-a", name: "a" }] },
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

const active: Record<string, string | null> = { aws: "aws-a", office: "off-a", gcp: null };
const reported: Record<string, HostAddresses> = {
  "off-a": { publicAddress: "198.18.2.1", privateAddress: "10.2.0.5" },
  // A reported address differing from the topology's: the topology wins for peers, both are allowed.
  "aws-b": { publicAddress: "198.18.1.99" },
};

function input(hostId: string, role: "active" | "standby", overrides: Partial<RenderInput> = {}): RenderInput {
  return {
    link,
    hostId,
    role,
    activeHost: (location) => active[location] ?? null,
    reported: (id) => reported[id],
    psk: (a, b) => `psk-of-${[a, b].sort().join("-")}-padded-to-32-characters`,
    hostCheckKey: "hostcheck-key-of-corp-padded-to-32-chars",
    ...overrides,
  };
}

const allow = ["10.1.0.10", "10.1.0.11", "10.2.0.5", "198.18.1.1", "198.18.1.2", "198.18.1.99", "198.18.2.1", "198.18.4.1"];
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
          psk: "psk-of-aws-office-padded-to-32-characters",
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
          psk: "psk-of-aws-gcp-padded-to-32-characters",
          ike: ["aes256-sha256-x25519", "default"],
          esp: ["aes128gcm128-x25519", "default"],
          initiator: true,
        },
      ],
      firewall: { allow },
      hostCheck: {
        key: "hostcheck-key-of-corp-padded-to-32-chars",
        targets: [
          { hostId: "aws-b", address: "10.1.0.11", port: 9790, scope: "location" },
          { hostId: "off-a", address: "198.18.2.1", port: 9790, scope: "peer" },
          { hostId: "gcp-a", address: "198.18.4.1", port: 9790, scope: "peer" },
        ],
      },
      routes: { pointHere: ["10.2.0.0/16", "10.3.0.0/24", "10.4.0.0/16"] },
      timing,
    });
    expect(desiredStateSchema.safeParse({ ...state, generation: 3, serverTime: 1 }).success).toBe(true);
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
        key: "hostcheck-key-of-corp-padded-to-32-chars",
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
    const forced = { ...link, cipher: { ...link.cipher, force: true } };
    const state = renderDesiredState(input("off-a", "active", { link: forced }));
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

  it("refuses a host that is not in the link", () => {
    expect(() => renderDesiredState(input("nobody", "standby"))).toThrow('host "nobody" is not in link "corp"');
  });
});

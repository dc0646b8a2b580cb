import { describe, expect, it } from "vitest";
import type { PeerLocation } from "../../contract/protocol";
import { IpsecConfigError, connName, renderIpsec, type SelfAddresses } from "./render";

const PSK = "cHJlLXNoYXJlZC1rZXktb2YtdGhlLWVhc3Qtd2VzdC1wYWlyLTEyMzQ=";

const west = (over: Partial<PeerLocation> = {}): PeerLocation => ({
  location: "west",
  activeHost: { id: "w2", publicAddress: "198.18.0.3" },
  hosts: [
    { id: "w1", publicAddress: "198.18.0.2" },
    { id: "w2", publicAddress: "198.18.0.3" },
  ],
  localSubnets: ["10.1.0.0/24"],
  remoteSubnets: ["10.2.0.0/24", "10.3.0.0/16"],
  psk: PSK,
  ike: ["aes128-sha256-x25519", "aes256-sha256-x25519"],
  esp: ["aes128gcm128-x25519"],
  initiator: true,
  ...over,
});

const self: SelfAddresses = { hostId: "e1", publicAddress: "198.18.0.1", privateAddress: "10.1.0.5" };
const onlyPrivateIsLocal = { isLocalAddress: (address: string) => address === "10.1.0.5" };
const publicIsLocal = { isLocalAddress: (address: string) => address === "198.18.0.1" };

describe("renderIpsec", () => {
  it("renders one prefixed IKEv2 connection per peer location; the initiator names only the active host", () => {
    const { conns } = renderIpsec([west()], self, publicIsLocal);
    expect(conns).toHaveLength(1);
    const conn = conns[0]!;
    expect(conn.name).toBe("sitelink-west");
    expect(conn.activeAddress).toBe("198.18.0.3");
    expect(conn.config).toEqual({
      version: 2,
      local_addrs: ["198.18.0.1"],
      remote_addrs: ["198.18.0.3"],
      proposals: ["aes128-sha256-x25519", "aes256-sha256-x25519"],
      mobike: false,
      encap: false,
      dpd_delay: "2s",
      keyingtries: 0,
      unique: "replace",
      local: { auth: "psk", id: "198.18.0.1" },
      remote: { auth: "psk", id: "198.18.0.3" },
      children: {
        "sitelink-west": {
          mode: "tunnel",
          local_ts: ["10.1.0.0/24"],
          remote_ts: ["10.2.0.0/24", "10.3.0.0/16"],
          esp_proposals: ["aes128gcm128-x25519"],
          start_action: "start",
          dpd_action: "restart",
          close_action: "start",
        },
      },
    });
    expect([...conn.hostsByAddress]).toEqual([
      ["198.18.0.2", "w1"],
      ["198.18.0.3", "w2"],
    ]);
  });

  it("lets only the initiator start; the responder waits for any peer host, whichever is active, and forgets a dead one", () => {
    const responder = (activeHost: PeerLocation["activeHost"]) => renderIpsec([west({ initiator: false, activeHost })], self, publicIsLocal).conns[0]!;
    const { config, digest } = responder({ id: "w2", publicAddress: "198.18.0.3" });
    expect((config.children as never)["sitelink-west"]).toMatchObject({ start_action: "none", dpd_action: "clear", close_action: "none" });
    expect(config.remote).toEqual({ auth: "psk", id: "%any" });
    expect(config.remote_addrs).toEqual(["198.18.0.2", "198.18.0.3"]);
    // A failover in the peer location reloads nothing on the responder while the new host's IKE comes in.
    expect(responder({ id: "w1", publicAddress: "198.18.0.2" }).digest).toBe(digest);
  });

  it("binds IKE to the private address behind 1:1 NAT but keeps the public address as identity", () => {
    const conn = renderIpsec([west()], self, onlyPrivateIsLocal).conns[0]!;
    expect(conn.config.local_addrs).toEqual(["10.1.0.5"]);
    expect(conn.config.local).toEqual({ auth: "psk", id: "198.18.0.1" });
    const neither = renderIpsec([west()], self, { isLocalAddress: () => false }).conns[0]!;
    expect(neither.config.local_addrs).toEqual(["%any"]);
  });

  it("loads one PSK per peer location, owned by this host's identity and the peer hosts it admits", () => {
    const responder = renderIpsec([west({ initiator: false })], self, publicIsLocal).secrets;
    expect(responder).toEqual([{ id: "sitelink-west", owners: ["198.18.0.1", "198.18.0.2", "198.18.0.3"], data: PSK, digest: expect.any(String) }]);
    const initiator = renderIpsec([west()], self, publicIsLocal).secrets;
    expect(initiator).toEqual([{ id: "sitelink-west", owners: ["198.18.0.1", "198.18.0.3"], data: PSK, digest: expect.any(String) }]);
  });

  it("changes the digest exactly when the connection changes", () => {
    const digest = (peer: PeerLocation) => renderIpsec([peer], self, publicIsLocal).conns[0]!.digest;
    expect(digest(west())).toBe(digest(west()));
    expect(digest(west({ activeHost: { id: "w1", publicAddress: "198.18.0.2" } }))).not.toBe(digest(west()));
    expect(digest(west({ remoteSubnets: ["10.2.0.0/24"] }))).not.toBe(digest(west()));
    // The PSK is not part of the connection; it has its own digest.
    expect(digest(west({ psk: `${PSK}x` }))).toBe(digest(west()));
    const secretDigest = (peer: PeerLocation) => renderIpsec([peer], self, publicIsLocal).secrets[0]!.digest;
    expect(secretDigest(west({ psk: `${PSK}x` }))).not.toBe(secretDigest(west()));
  });

  it("leaves the initiator's connection as it is when only the peer's standby hosts change", () => {
    const digest = (peer: PeerLocation) => renderIpsec([peer], self, publicIsLocal).conns[0]!.digest;
    const standbyAdded = (over: Partial<PeerLocation>) => west({ ...over, hosts: [...west().hosts, { id: "w3", publicAddress: "198.18.0.4" }] });
    const moved = (over: Partial<PeerLocation>) => west({ ...over, hosts: [{ id: "w1", publicAddress: "198.18.0.9" }, west().hosts[1]!] });
    expect(digest(standbyAdded({}))).toBe(digest(west()));
    expect(digest(moved({}))).toBe(digest(west()));
    // The responder must admit them: its connection changes (charon keeps a responder's SAs on reload).
    expect(digest(standbyAdded({ initiator: false }))).not.toBe(digest(west({ initiator: false })));
  });

  it("keeps the host order when the peer location has no active host", () => {
    const conn = renderIpsec([west({ activeHost: null })], self, publicIsLocal).conns[0]!;
    expect(conn.config.remote_addrs).toEqual(["198.18.0.2"]);
    expect(conn.activeAddress).toBeUndefined();
    const responder = renderIpsec([west({ activeHost: null, initiator: false })], self, publicIsLocal).conns[0]!;
    expect(responder.config.remote_addrs).toEqual(["198.18.0.2", "198.18.0.3"]);
  });

  it("skips a peer location none of whose hosts has a public address, or none in service", () => {
    const rendered = renderIpsec([west({ hosts: [{ id: "w1" }], activeHost: { id: "w1" } })], self, publicIsLocal);
    expect(rendered.conns).toEqual([]);
    expect(rendered.secrets).toEqual([]);
    expect(rendered.skipped).toEqual([{ location: "west", reason: "no host of the location has a public address" }]);
    const gone = renderIpsec([west({ hosts: [], activeHost: null })], self, publicIsLocal);
    expect([gone.conns, gone.skipped]).toEqual([[], [{ location: "west", reason: "no host of the location is in service" }]]);
  });

  it("names the bad field and never the PSK", () => {
    const cases: [PeerLocation[], SelfAddresses, string][] = [
      [[west()], { hostId: "e1" }, "ipsec: self.publicAddress is required (or self.privateAddress when the host has no public address)"],
      [[west({ location: "West!" })], self, 'ipsec: peers[0].location "West!" is not a location name'],
      [[west({ remoteSubnets: ["10.2.0.1/24"] })], self, 'ipsec: peers[0].remoteSubnets[0] "10.2.0.1/24" has host bits set (did you mean 10.2.0.0/24?)'],
      [[west({ localSubnets: [] })], self, "ipsec: peers[0].localSubnets is empty"],
      [[west(), west()], self, 'ipsec: peers[1].location "west" appears twice'],
      [[west({ hosts: [{ id: "w1", publicAddress: "not-an-ip" }] })], self, "ipsec: peers[0].hosts[0].publicAddress is not an address"],
    ];
    for (const [peers, me, message] of cases) {
      let caught: unknown;
      try {
        renderIpsec(peers, me, publicIsLocal);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(IpsecConfigError);
      expect((caught as Error).message).toBe(message);
      expect((caught as Error).message).not.toContain(PSK);
    }
  });

  it("prefixes every name it renders", () => {
    expect(connName("east")).toBe("sitelink-east");
  });
});

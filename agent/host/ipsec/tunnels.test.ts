import { describe, expect, it } from "vitest";
import { TunnelTracker } from "./tunnels";

const hosts = new Map([
  ["198.18.0.2", "w1"],
  ["198.18.0.3", "w2"],
]);

function tracker() {
  let clock = 1000;
  const t = new TunnelTracker(() => clock);
  t.watch([{ name: "sitelink-west", location: "west", hostsByAddress: hosts }]);
  return { t, tick: (ms: number) => (clock += ms) };
}

const ike = (id: string, address: string, extra: Record<string, unknown> = {}) => ({
  uniqueid: id,
  state: "ESTABLISHED",
  "remote-host": address,
  "remote-id": address,
  ...extra,
});
const child = (id: string) => ({ [`sitelink-west-${id}`]: { name: "sitelink-west", uniqueid: id, state: "INSTALLED" } });

describe("TunnelTracker", () => {
  it("starts down and goes connecting → up → down with ike/child events", () => {
    const { t, tick } = tracker();
    expect(t.reports()).toEqual([{ location: "west", state: "down", since: 1000 }]);
    tick(5);
    expect(t.event("ike-updown", { up: "yes", "sitelink-west": ike("1", "198.18.0.2") })).toBe(true);
    expect(t.reports()).toEqual([{ location: "west", state: "connecting", since: 1005 }]);
    tick(5);
    expect(t.event("child-updown", { up: "yes", "sitelink-west": ike("1", "198.18.0.2", { "child-sas": child("1") }) })).toBe(true);
    expect(t.reports()).toEqual([{ location: "west", state: "up", peerHost: "w1", peerAddress: "198.18.0.2", since: 1010 }]);
    tick(5);
    expect(t.event("child-updown", { up: "no", "sitelink-west": ike("1", "198.18.0.2", { "child-sas": child("1") }) })).toBe(true);
    expect(t.reports()[0]!.state).toBe("connecting");
    expect(t.event("ike-updown", { up: "no", "sitelink-west": ike("1", "198.18.0.2") })).toBe(true);
    expect(t.reports()).toEqual([{ location: "west", state: "down", since: 1015 }]);
  });

  it("stays down when charon reports the children down after their deleted IKE_SA", () => {
    const { t } = tracker();
    t.event("child-updown", { up: "yes", "sitelink-west": ike("1", "198.18.0.2", { "child-sas": child("1") }) });
    t.event("ike-updown", { up: "no", "sitelink-west": ike("1", "198.18.0.2") });
    t.event("child-updown", { up: "no", "sitelink-west": ike("1", "198.18.0.2", { "child-sas": child("1") }) });
    expect(t.reports()[0]!.state).toBe("down");
    expect(t.isDown("sitelink-west")).toBe(true);
  });

  it("ignores other connections (an operator's own) and reports no change for them", () => {
    const { t } = tracker();
    expect(t.event("child-updown", { up: "yes", "my-own-vpn": ike("9", "192.0.2.1", { "child-sas": child("9") }) })).toBe(false);
    expect(t.reports()[0]!.state).toBe("down");
  });

  it("stays up across IKE and CHILD rekeys", () => {
    const { t } = tracker();
    t.event("child-updown", { up: "yes", "sitelink-west": ike("1", "198.18.0.2", { "child-sas": child("1") }) });
    expect(t.event("ike-rekey", { "sitelink-west": { old: ike("1", "198.18.0.2"), new: ike("2", "198.18.0.2") } })).toBe(false);
    expect(t.event("child-rekey", { "sitelink-west": ike("2", "198.18.0.2", { "child-sas": { x: { old: { uniqueid: "1" }, new: { uniqueid: "5" } } } }) })).toBe(false);
    expect(t.reports()[0]!.state).toBe("up");
    // the rekeyed child is the one that counts now
    t.event("child-updown", { up: "no", "sitelink-west": ike("2", "198.18.0.2", { "child-sas": child("5") }) });
    expect(t.reports()[0]!.state).toBe("connecting");
  });

  it("rebuilds from a list-sas listing, installed children only", () => {
    const { t } = tracker();
    t.event("child-updown", { up: "yes", "sitelink-west": ike("1", "198.18.0.2", { "child-sas": child("1") }) });
    const installing = { "sitelink-west-7": { uniqueid: "7", state: "INSTALLING" } };
    expect(t.resync([{ "sitelink-west": ike("4", "198.18.0.3", { "child-sas": installing }) }])).toBe(true);
    expect(t.reports()[0]!.state).toBe("connecting");
    t.resync([{ "sitelink-west": ike("4", "198.18.0.3", { "child-sas": child("7") }) }]);
    expect(t.reports()[0]).toMatchObject({ state: "up", peerHost: "w2", peerAddress: "198.18.0.3" });
  });

  it("names IKE_SAs with hosts other than the active one as stale", () => {
    const { t } = tracker();
    t.event("ike-updown", { up: "yes", "sitelink-west": ike("1", "198.18.0.2") });
    t.event("ike-updown", { up: "yes", "sitelink-west": ike("2", "198.18.0.3") });
    expect(t.staleIkeSas("sitelink-west", "198.18.0.3")).toEqual(["1"]);
    expect(t.staleIkeSas("sitelink-west", "198.18.0.2")).toEqual(["2"]);
    expect(t.staleIkeSas("sitelink-other", "198.18.0.2")).toEqual([]);
  });

  it("drops locations no longer watched and keeps `since` of those that stay", () => {
    const { t, tick } = tracker();
    tick(100);
    t.watch([
      { name: "sitelink-west", location: "west", hostsByAddress: hosts },
      { name: "sitelink-north", location: "north", hostsByAddress: new Map() },
    ]);
    expect(t.reports()).toEqual([
      { location: "west", state: "down", since: 1000 },
      { location: "north", state: "down", since: 1100 },
    ]);
    t.watch([]);
    expect(t.reports()).toEqual([]);
  });
});

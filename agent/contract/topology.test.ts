import { describe, expect, it } from "vitest";
import { DEFAULTS, TopologyError, checkTopology, connectedPairs, defaultCrashConfirm, hostAddressSchema, parseTopology, routeSchema, TIMING_PRESETS, type TopologyInput } from "./topology";

function doc(overrides: Record<string, unknown> = {}): TopologyInput {
  return {
    version: 1,
    links: [
      {
        name: "corp",
        locations: [
          { name: "east", routes: ["10.0.0.0/16"], hosts: [{ id: "corp.east.a", name: "a", priority: 2 }, { id: "corp.east.b", name: "b" }] },
          { name: "west", routes: ["10.1.0.0/16", "fd00:1::/64"], hosts: [{ id: "corp.west.a", name: "a", publicAddress: "198.18.2.1" }] },
        ],
        ...overrides,
      },
    ],
  } as TopologyInput;
}

function issuesOf(input: unknown) {
  const result = checkTopology(input);
  if (result.ok) throw new Error("expected the document to be refused");
  return result.issues;
}

describe("address and route fields", () => {
  const address = (text: string) => {
    const r = hostAddressSchema.safeParse(text);
    return r.success ? r.data : r.error.issues[0]!.message;
  };

  it("takes canonical IPv4 as written and normalizes IPv6", () => {
    expect(address("10.0.0.5")).toBe("10.0.0.5");
    expect(address("255.255.255.255")).toBe("255.255.255.255");
    expect(address("2001:DB8:0::1")).toBe("2001:db8::1");
  });

  it("refuses what is not one usable host address, with the reason", () => {
    expect(address("0.0.0.0")).toMatch(/unspecified/);
    expect(address("::")).toMatch(/unspecified/);
    expect(address("010.0.0.5")).toMatch(/IPv4 or IPv6/);
    expect(address("256.0.0.1")).toMatch(/IPv4 or IPv6/);
    expect(address("10.0.0")).toMatch(/IPv4 or IPv6/);
    expect(address("fe80::1%eth0")).toMatch(/zone id/);
    expect(address("::ffff:10.0.0.5")).toMatch(/write it as IPv4 \(10\.0\.0\.5\)/);
  });

  it("normalizes routes and names the problem of a bad one", () => {
    expect(routeSchema.parse("fd00:1:0::/64")).toBe("fd00:1::/64");
    expect(routeSchema.safeParse("10.0.0.1/16").error?.issues[0]!.message).toMatch(/host bits set/);
  });
});

describe("topology document", () => {
  it("fills every default", () => {
    const t = parseTopology(doc());
    const link = t.links[0]!;
    expect(link.cipher).toEqual({ ike: "aes128-sha256-x25519", esp: "aes128gcm128-x25519", force: false });
    expect(link.timing).toEqual(DEFAULTS.timing);
    expect(link.locations[0]!.hosts[1]).toEqual({ id: "corp.east.b", name: "b", priority: 1, timeout: 5, backoff: 10 });
    expect(link.locations[1]!.hosts[0]!.publicAddress).toBe("198.18.2.1");
  });

  it("needs two locations per link and one host and one route per location", () => {
    expect(issuesOf(doc({ locations: [{ name: "east", routes: [], hosts: [] }] }))).toEqual([
      { path: "links[0].locations[0].routes", message: "a location needs at least one route" },
      { path: "links[0].locations[0].hosts", message: "a location needs at least one host" },
      { path: "links[0].locations", message: "a link needs at least two locations" },
    ]);
  });

  it("refuses duplicate link, location, host names and host ids", () => {
    const bad = {
      version: 1,
      links: [
        {
          name: "corp",
          locations: [
            { name: "east", routes: ["10.0.0.0/16"], hosts: [{ id: "h1", name: "a" }, { id: "h2", name: "a" }] },
            { name: "east", routes: ["10.1.0.0/16"], hosts: [{ id: "h1", name: "b" }] },
          ],
        },
        {
          name: "corp",
          locations: [
            { name: "x", routes: ["10.8.0.0/16"], hosts: [{ id: "h2", name: "a" }] },
            { name: "y", routes: ["10.9.0.0/16"], hosts: [{ id: "h3", name: "a" }] },
          ],
        },
      ],
    };
    expect(issuesOf(bad)).toEqual([
      { path: "links[0].locations[0].hosts[1].name", message: 'duplicate host name in this location "a" (first at links[0].locations[0].hosts[0].name)' },
      { path: "links[0].locations[1].name", message: 'duplicate location name "east" (first at links[0].locations[0].name)' },
      { path: "links[0].locations[1].hosts[0].id", message: 'duplicate host id "h1" (first at links[0].locations[0].hosts[0].id)' },
      { path: "links[1].name", message: 'duplicate link name "corp" (first at links[0].name)' },
      { path: "links[1].locations[0].hosts[0].id", message: 'duplicate host id "h2" (first at links[0].locations[0].hosts[1].id)' },
    ]);
  });

  it("refuses invalid CIDRs with the reason", () => {
    const issues = issuesOf(doc({
      locations: [
        { name: "east", routes: ["10.0.0.0/33", "10.0.0.1/16", "banana", "300.0.0.0/8", "10.0.0.0"], hosts: [{ id: "e", name: "a" }] },
        { name: "west", routes: ["10.1.0.0/16"], hosts: [{ id: "w", name: "a" }] },
      ],
    }));
    expect(issues).toEqual([
      { path: "links[0].locations[0].routes[0]", message: '"10.0.0.0/33" has a prefix longer than /32' },
      { path: "links[0].locations[0].routes[1]", message: '"10.0.0.1/16" has host bits set (did you mean 10.0.0.0/16?)' },
      { path: "links[0].locations[0].routes[2]", message: '"banana" is not a CIDR (expected address/prefix, e.g. 10.0.0.0/16)' },
      { path: "links[0].locations[0].routes[3]", message: '"300.0.0.0/8" has an invalid address' },
      { path: "links[0].locations[0].routes[4]", message: '"10.0.0.0" is not a CIDR (expected address/prefix, e.g. 10.0.0.0/16)' },
    ]);
  });

  it("refuses overlapping routes across the locations of a link, IPv4 and IPv6", () => {
    const issues = issuesOf(doc({
      locations: [
        { name: "east", routes: ["10.0.0.0/16", "fd00::/16"], hosts: [{ id: "e", name: "a" }] },
        { name: "west", routes: ["10.0.128.0/24", "fd00:1::/64", "10.1.0.0/16"], hosts: [{ id: "w", name: "a" }] },
      ],
    }));
    expect(issues).toEqual([
      { path: "links[0].locations[1].routes[0]", message: '10.0.128.0/24 overlaps 10.0.0.0/16 of location "east" (links[0].locations[0].routes[0])' },
      { path: "links[0].locations[1].routes[1]", message: 'fd00:1::/64 overlaps fd00::/16 of location "east" (links[0].locations[0].routes[1])' },
    ]);
  });

  it("allows the same CIDR in two different links", () => {
    const base = doc();
    const second = { ...base.links[0]!, name: "lab", locations: base.links[0]!.locations.map((l) => ({ ...l, hosts: l.hosts.map((h) => ({ ...h, id: `lab.${h.id}` })) })) };
    expect(checkTopology({ ...base, links: [base.links[0], second] }).ok).toBe(true);
  });

  it("bounds priority, timeout and backoff", () => {
    const issues = issuesOf(doc({
      locations: [
        { name: "east", routes: ["10.0.0.0/16"], hosts: [{ id: "e", name: "a", priority: 0, timeout: 0.5, backoff: -1 }] },
        { name: "west", routes: ["10.1.0.0/16"], hosts: [{ id: "w", name: "a", priority: 1.5, timeout: 601, backoff: 3601 }] },
      ],
    }));
    expect(issues.map((i) => i.path)).toEqual([
      "links[0].locations[0].hosts[0].priority",
      "links[0].locations[0].hosts[0].timeout",
      "links[0].locations[0].hosts[0].backoff",
      "links[0].locations[1].hosts[0].priority",
      "links[0].locations[1].hosts[0].timeout",
      "links[0].locations[1].hosts[0].backoff",
    ]);
  });

  it("refuses connections naming unknown locations or a location with itself", () => {
    const issues = issuesOf(doc({ connections: [["east", "north"], ["west", "west"]] }));
    expect(issues).toEqual([
      { path: "links[0].connections[0][1]", message: 'unknown location "north"' },
      { path: "links[0].connections[1]", message: 'a location cannot connect to itself ("west")' },
    ]);
  });

  it("refuses unknown cipher strings and unknown fields", () => {
    const issues = issuesOf(doc({ cipher: { ike: "3des-md5-modp1024", esp: "aes128gcm128-x25519" }, color: "blue" }));
    expect(issues.map((i) => i.path)).toEqual(["links[0].cipher.ike", "links[0]"]);
    expect(issues[0]!.message).toContain('expected one of "aes128-sha256-x25519"');
    expect(issues[1]!.message).toContain('"color"');
  });

  it("refuses bad names, ids and addresses", () => {
    const issues = issuesOf(doc({
      name: "Corp_Link",
      locations: [
        { name: "-east", routes: ["10.0.0.0/16"], hosts: [{ id: "a:b@c", name: "a", publicAddress: "1.2.3" }] },
        { name: "west", routes: ["10.1.0.0/16"], hosts: [{ id: "w", name: "a", privateAddress: "10.1.0.256" }] },
      ],
    }));
    expect(issues.map((i) => i.path)).toEqual([
      "links[0].name",
      "links[0].locations[0].name",
      "links[0].locations[0].hosts[0].id",
      "links[0].locations[0].hosts[0].publicAddress",
      "links[0].locations[1].hosts[0].privateAddress",
    ]);
  });

  it("throws one error that lists every bad field by path", () => {
    const bad = doc({ name: "BAD", connections: [["east", "nowhere"], ["east", "west"]] });
    expect(() => parseTopology(bad)).toThrowError(TopologyError);
    try {
      parseTopology(bad);
    } catch (e) {
      expect((e as TopologyError).message).toBe(
        "invalid topology:\n" +
          "  links[0].name: link name must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'\n" +
          '  links[0].connections[0][1]: unknown location "nowhere"',
      );
    }
  });

  it("refuses documents that are not objects or have another version", () => {
    expect(issuesOf(null)[0]!.path).toBe("");
    expect(issuesOf({ version: 2, links: [] }).map((i) => i.path)).toEqual(["version", "links"]);
  });

  it("pairs locations as a full mesh unless connections are listed", () => {
    const three = { locations: ["a", "b", "c"].map((name) => ({ name })) };
    expect(connectedPairs(three as never)).toEqual([["a", "b"], ["a", "c"], ["b", "c"]]);
    expect(connectedPairs({ ...three, connections: [["a", "b"], ["b", "a"], ["c", "a"]] } as never)).toEqual([["a", "b"], ["c", "a"]]);
  });

  it("derives crashConfirm from the heartbeat when the document leaves it out", () => {
    expect(DEFAULTS.timing.crashConfirm).toBe(defaultCrashConfirm(DEFAULTS.timing));
    expect(parseTopology(doc({ timing: { heartbeat: 2 } })).links[0]!.timing).toEqual({ heartbeat: 2, probeInterval: 0.25, probeTimeout: 0.4, crashConfirm: 2.5 });
    // Never shorter than two failed probes: 2 × 0.4 s + 0.25 s.
    expect(parseTopology(doc({ timing: { heartbeat: 0.2 } })).links[0]!.timing.crashConfirm).toBe(1.05);
    expect(parseTopology(doc({ timing: { crashConfirm: 3 } })).links[0]!.timing.crashConfirm).toBe(3);
  });

  /** One location with one host of the given timeout, and the given link timing. */
  const timed = (timing: Record<string, number | string>, timeout?: number) =>
    doc({
      timing,
      locations: [
        { name: "east", routes: ["10.0.0.0/16"], hosts: [{ id: "e", name: "a", ...(timeout === undefined ? {} : { timeout }) }] },
        { name: "west", routes: ["10.1.0.0/16"], hosts: [{ id: "w", name: "a", timeout: 60 }] },
      ],
    });

  it("refuses a host timeout shorter than two heartbeats", () => {
    expect(issuesOf(timed({ heartbeat: 10 }))).toEqual([
      { path: "links[0].locations[0].hosts[0].timeout", message: "5 s must be at least 2 × timing.heartbeat (20 s): polls arrive up to a heartbeat apart" },
    ]);
    expect(checkTopology(timed({ heartbeat: 2.5 })).ok).toBe(true);
  });

  it("refuses a host timeout that is not longer than crashConfirm", () => {
    expect(issuesOf(timed({ crashConfirm: 3 }, 3))).toEqual([
      { path: "links[0].locations[0].hosts[0].timeout", message: "3 s must be longer than timing.crashConfirm (3 s): the timeout is the backstop behind crash confirmation" },
    ]);
    expect(checkTopology(timed({ crashConfirm: 3 }, 3.1)).ok).toBe(true);
  });

  it("refuses a crashConfirm too close to the heartbeat", () => {
    expect(issuesOf(timed({ heartbeat: 0.2, crashConfirm: 0.44, probeTimeout: 0.1, probeInterval: 0.05 }))).toEqual([
      { path: "links[0].timing.crashConfirm", message: "0.44 s must be at least timing.heartbeat + 0.25 s (0.45 s): a healthy host's poll may arrive that late" },
    ]);
    // The old default (heartbeat 1 s, crashConfirm 1.2 s) left 0.2 s for a round trip and a busy agent.
    expect(issuesOf(timed({ heartbeat: 1, crashConfirm: 1.2 })).map((i) => i.path)).toEqual(["links[0].timing.crashConfirm"]);
    expect(checkTopology(timed({ heartbeat: 1, crashConfirm: 1.25 })).ok).toBe(true);
  });

  it("fills timing from a preset, lets fields beside it override it, and checks the result", () => {
    const timingOf = (timing: Record<string, number | string>) => parseTopology(timed(timing)).links[0]!.timing;
    expect(timingOf({})).toEqual({ heartbeat: 0.5, probeInterval: 0.25, probeTimeout: 0.4, crashConfirm: 1.05 });
    expect(timingOf({ preset: "standard" })).toEqual(timingOf({}));
    expect(timingOf({ preset: "fast" })).toEqual({ ...TIMING_PRESETS.fast, crashConfirm: 0.75 });
    expect(timingOf({ preset: "fast", heartbeat: 0.5 })).toEqual({ heartbeat: 0.5, probeInterval: 0.04, probeTimeout: 0.08, crashConfirm: 1 });
    // The rules between fields take the preset's values for the fields left out.
    expect(issuesOf(timed({ preset: "fast", crashConfirm: 0.45 }))).toEqual([
      { path: "links[0].timing.crashConfirm", message: "0.45 s must be at least timing.heartbeat + 0.25 s (0.5 s): a healthy host's poll may arrive that late" },
    ]);
    expect(issuesOf(timed({ preset: "quick" })).map((i) => i.path)).toEqual(["links[0].timing.preset"]);
  });

  it("refuses probe timings under which two failed probes do not fit in crashConfirm", () => {
    expect(issuesOf(timed({ probeTimeout: 0.7, crashConfirm: 1.5 }))).toEqual([
      {
        path: "links[0].timing.probeTimeout",
        message: "2 × 0.7 s + timing.probeInterval (0.25 s) must not exceed timing.crashConfirm (1.5 s): the two failed probes that confirm a crash must fit in it",
      },
    ]);
    expect(checkTopology(timed({ probeTimeout: 0.625, crashConfirm: 1.5 })).ok).toBe(true);
    // Left out, crashConfirm grows to fit them.
    expect(parseTopology(timed({ probeTimeout: 0.7 })).links[0]!.timing.crashConfirm).toBe(1.65);
  });

  it("checks timing rules only between fields that are themselves valid, reporting everything at once", () => {
    // heartbeat is out of range, so nothing is compared with it; the other rules still report.
    const issues = issuesOf(timed({ heartbeat: 100, crashConfirm: 1.1, probeInterval: 0.3, probeTimeout: 0.6 }, 1));
    expect(issues.map((i) => i.path)).toEqual(["links[0].timing.heartbeat", "links[0].timing.probeTimeout", "links[0].locations[0].hosts[0].timeout"]);
    expect(issues[1]!.message).toMatch(/^2 × 0\.6 s \+ timing.probeInterval \(0\.3 s\) must not exceed timing.crashConfirm \(1\.1 s\)/);
    expect(issues[2]!.message).toMatch(/^1 s must be longer than timing.crashConfirm \(1\.1 s\)/);
  });

  it("refuses host addresses with a zone id, the unspecified address and IPv4-mapped IPv6, and normalizes the rest", () => {
    const hosts = ["fe80::1%eth0", "0.0.0.0", "::", "::ffff:198.18.0.1"].map((publicAddress, i) => ({ id: `e${i}`, name: `a${i}`, publicAddress }));
    const issues = issuesOf(doc({
      locations: [
        { name: "east", routes: ["10.0.0.0/16"], hosts },
        { name: "west", routes: ["10.1.0.0/16"], hosts: [{ id: "w", name: "a" }] },
      ],
    }));
    expect(issues).toEqual([
      { path: "links[0].locations[0].hosts[0].publicAddress", message: "must be an address without a zone id (%...)" },
      { path: "links[0].locations[0].hosts[1].publicAddress", message: "must not be the unspecified address (0.0.0.0 or ::)" },
      { path: "links[0].locations[0].hosts[2].publicAddress", message: "must not be the unspecified address (0.0.0.0 or ::)" },
      { path: "links[0].locations[0].hosts[3].publicAddress", message: "is an IPv4-mapped IPv6 address: write it as IPv4 (198.18.0.1)" },
    ]);
    const t = parseTopology(doc({
      locations: [
        { name: "east", routes: ["10.0.0.0/16"], hosts: [{ id: "e", name: "a", publicAddress: "2001:DB8:0::1", privateAddress: "10.0.0.5" }] },
        { name: "west", routes: ["10.1.0.0/16"], hosts: [{ id: "w", name: "a" }] },
      ],
    }));
    expect(t.links[0]!.locations[0]!.hosts[0]).toMatchObject({ publicAddress: "2001:db8::1", privateAddress: "10.0.0.5" });
  });

  it("refuses a public address shared across locations and a private address shared within one", () => {
    const issues = issuesOf(doc({
      locations: [
        {
          name: "east",
          routes: ["10.0.0.0/16"],
          // Two hosts of one location behind one NAT may share a public address.
          hosts: [
            { id: "e1", name: "a", publicAddress: "198.18.0.1", privateAddress: "10.0.0.5" },
            { id: "e2", name: "b", publicAddress: "198.18.0.1", privateAddress: "10.0.0.5" },
          ],
        },
        { name: "west", routes: ["10.1.0.0/16"], hosts: [{ id: "w", name: "a", publicAddress: "198.18.0.1", privateAddress: "10.0.0.5" }] },
      ],
    }));
    expect(issues).toEqual([
      { path: "links[0].locations[0].hosts[1].privateAddress", message: 'duplicate private address in this location "10.0.0.5" (first at links[0].locations[0].hosts[0].privateAddress)' },
      { path: "links[0].locations[1].hosts[0].publicAddress", message: "198.18.0.1 is also the public address of a host of another location (links[0].locations[0].hosts[0].publicAddress)" },
    ]);
  });

  it("normalizes routes and refuses IPv4-mapped IPv6 routes, which would hide an overlap", () => {
    const t = parseTopology(doc({
      locations: [
        { name: "east", routes: ["10.0.0.0/08", "FD00:1:0::/64"], hosts: [{ id: "e", name: "a" }] },
        { name: "west", routes: ["11.0.0.0/16"], hosts: [{ id: "w", name: "a" }] },
      ],
    }));
    expect(t.links[0]!.locations[0]!.routes).toEqual(["10.0.0.0/8", "fd00:1::/64"]);
    const issues = issuesOf(doc({
      locations: [
        { name: "east", routes: ["10.0.0.0/8"], hosts: [{ id: "e", name: "a" }] },
        { name: "west", routes: ["::ffff:10.0.0.0/104"], hosts: [{ id: "w", name: "a" }] },
      ],
    }));
    expect(issues).toEqual([
      { path: "links[0].locations[1].routes[0]", message: '"::ffff:10.0.0.0/104" is an IPv4-mapped IPv6 network: write it as IPv4 (10.0.0.0/8)' },
    ]);
  });

  it("refuses an empty connection list and a location in no connection", () => {
    expect(issuesOf(doc({ connections: [] }))).toEqual([
      { path: "links[0].connections", message: "lists no pair: omit connections for a full mesh, or list the pairs that get a tunnel" },
    ]);
    const three = doc({
      connections: [["east", "west"]],
      locations: [
        { name: "east", routes: ["10.0.0.0/16"], hosts: [{ id: "e", name: "a" }] },
        { name: "west", routes: ["10.1.0.0/16"], hosts: [{ id: "w", name: "a" }] },
        { name: "north", routes: ["10.2.0.0/16"], hosts: [{ id: "n", name: "a" }] },
      ],
    });
    expect(issuesOf(three)).toEqual([
      { path: "links[0].locations[2].name", message: 'location "north" is in no connection, so it would get no tunnel (add a pair with it, or remove it)' },
    ]);
  });
});

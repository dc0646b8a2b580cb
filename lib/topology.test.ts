import { describe, expect, it } from "vitest";
import { DEFAULTS, TopologyError, checkTopology, connectedPairs, parseTopology, type TopologyInput } from "./topology";

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
    const bad = doc({ name: "BAD", connections: [["east", "nowhere"]] });
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
});

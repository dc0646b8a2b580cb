import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeMessage, encodeMessage, ViciDecodeError, ViciEncodeError, type ViciSection } from "./message";

const ascii = (text: string) => [...Buffer.from(text, "ascii")];

// The encoding example of strongSwan's src/libcharon/plugins/vici/README.md, byte for byte.
const README_EXAMPLE = Buffer.from([
  3, 4, ...ascii("key1"), 0, 6, ...ascii("value1"),
  1, 8, ...ascii("section1"),
  1, 11, ...ascii("sub-section"),
  3, 4, ...ascii("key2"), 0, 6, ...ascii("value2"),
  2,
  4, 5, ...ascii("list1"),
  5, 0, 5, ...ascii("item1"),
  5, 0, 5, ...ascii("item2"),
  6,
  2,
]);
const README_TREE = { key1: "value1", section1: { "sub-section": { key2: "value2" }, list1: ["item1", "item2"] } };

describe("VICI message codec", () => {
  it("encodes the README example to its exact bytes", () => {
    expect(encodeMessage(README_TREE)).toEqual(README_EXAMPLE);
  });

  it("decodes the README example", () => {
    expect(decodeMessage(README_EXAMPLE)).toEqual(README_TREE);
  });

  it("encodes numbers and booleans as strings, yes/no, and skips undefined keys", () => {
    const bytes = encodeMessage({ version: 2, mobike: false, force: true, skip: undefined, empty: [] });
    expect(decodeMessage(bytes)).toEqual({ version: "2", mobike: "no", force: "yes", empty: [] });
    expect(bytes).toEqual(
      Buffer.from([
        3, 7, ...ascii("version"), 0, 1, ...ascii("2"),
        3, 6, ...ascii("mobike"), 0, 2, ...ascii("no"),
        3, 5, ...ascii("force"), 0, 3, ...ascii("yes"),
        4, 5, ...ascii("empty"), 6,
      ]),
    );
  });

  it("keeps UTF-8 text and a __proto__ key as plain data", () => {
    const decoded = decodeMessage(encodeMessage({ "ключ": "значение", __proto__x: "a" }));
    expect(decoded).toEqual({ "ключ": "значение", __proto__x: "a" });
    const proto = decodeMessage(Buffer.from([3, 9, ...ascii("__proto__"), 0, 1, ...ascii("x")]));
    expect(Object.keys(proto)).toEqual(["__proto__"]);
    expect(Object.getPrototypeOf(proto)).toBe(Object.prototype);
  });

  it("round-trips any tree of sections, lists and values (property)", () => {
    const key = fc.string({ minLength: 1, maxLength: 20, unit: "grapheme-ascii" });
    const value = fc.string({ maxLength: 40 });
    const tree = fc.letrec((tie) => ({
      section: fc.dictionary(key, fc.oneof({ depthSize: "small" }, value, fc.array(value, { maxLength: 4 }), tie("section")), {
        maxKeys: 5,
      }),
    })).section as fc.Arbitrary<ViciSection>;
    fc.assert(
      fc.property(tree, (message) => {
        expect(decodeMessage(encodeMessage(message))).toEqual(message);
      }),
    );
  });

  it("rejects malformed messages with the offset and the problem", () => {
    const cases: [number[], RegExp][] = [
      [[3, 4, ...ascii("key1"), 0, 6, ...ascii("val")], /byte 8: truncated value/],
      [[3, 9, ...ascii("key")], /truncated name/],
      [[1, 1, ...ascii("s")], /1 unterminated section/],
      [[2], /byte 0: section end without a section/],
      [[4, 1, ...ascii("l"), 3, 1, ...ascii("k"), 0, 0], /byte 3: element type 3 inside a list/],
      [[4, 1, ...ascii("l"), 5, 0, 0], /unterminated list/],
      [[5, 0, 0], /list item outside a list/],
      [[6], /list end without a list/],
      [[9], /unknown element type 9/],
      [[3, 1, ...ascii("k"), 0, 0, 3, 1, ...ascii("k"), 0, 0], /duplicate key "k"/],
    ];
    for (const [bytes, message] of cases) {
      expect(() => decodeMessage(Buffer.from(bytes))).toThrow(ViciDecodeError);
      expect(() => decodeMessage(Buffer.from(bytes))).toThrow(message);
    }
  });

  it("names the key when a message cannot be encoded, never the value", () => {
    const secret = "s".repeat(70_000);
    expect(() => encodeMessage({ conn: { psk: secret } })).toThrow(ViciEncodeError);
    try {
      encodeMessage({ conn: { psk: secret } });
    } catch (error) {
      expect((error as Error).message).toBe("cannot encode VICI message at conn.psk: value longer than 65535 bytes");
    }
    expect(() => encodeMessage({ ["k".repeat(256)]: "v" })).toThrow(/key names must be 1-255 bytes/);
    expect(() => encodeMessage({ list: [{ nested: "x" }] as never })).toThrow("cannot encode VICI message at list[0]: list items must be strings");
    expect(() => encodeMessage({ none: null as never })).toThrow("at none: unsupported value type null");
  });
});

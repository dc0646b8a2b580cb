import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { encodeMessage } from "./message";
import { MAX_SEGMENT_BYTES, PacketType, SegmentReader, decodePacket, encodePacket } from "./packet";

const ascii = (text: string) => [...Buffer.from(text, "ascii")];

describe("VICI packets", () => {
  it("frames a named command request: length, type, name length, name, message", () => {
    const body = encodeMessage({ name: "x" });
    expect(encodePacket({ type: PacketType.CMD_REQUEST, name: "unload-conn", body })).toEqual(
      Buffer.from([0, 0, 0, 22, 0, 11, ...ascii("unload-conn"), 3, 4, ...ascii("name"), 0, 1, ...ascii("x")]),
    );
  });

  it("frames unnamed replies and event registrations", () => {
    expect(encodePacket({ type: PacketType.CMD_RESPONSE, body: Buffer.alloc(0) })).toEqual(Buffer.from([0, 0, 0, 1, 1]));
    expect(encodePacket({ type: PacketType.EVENT_REGISTER, name: "ike-updown", body: Buffer.alloc(0) })).toEqual(
      Buffer.from([0, 0, 0, 12, 3, 10, ...ascii("ike-updown")]),
    );
  });

  it("decodes what it encodes, for every packet type", () => {
    for (const type of Object.values(PacketType)) {
      const named = [PacketType.CMD_REQUEST, PacketType.EVENT_REGISTER, PacketType.EVENT_UNREGISTER, PacketType.EVENT].includes(type as never);
      const packet = { type, ...(named ? { name: "list-sa" } : {}), body: encodeMessage({ a: "b" }) };
      expect(decodePacket(encodePacket(packet).subarray(4))).toEqual(packet);
    }
  });

  it("refuses a name on unnamed types and none on named ones", () => {
    expect(() => encodePacket({ type: PacketType.CMD_RESPONSE, name: "x", body: Buffer.alloc(0) })).toThrow(/takes no name/);
    expect(() => encodePacket({ type: PacketType.EVENT, body: Buffer.alloc(0) })).toThrow(/needs name/);
  });

  it("rejects unknown packet types and truncated names", () => {
    expect(() => decodePacket(Buffer.from([8]))).toThrow(/unknown packet type 8/);
    expect(() => decodePacket(Buffer.from([7, 5, 0x61]))).toThrow(/truncated packet name/);
    expect(() => decodePacket(Buffer.alloc(0))).toThrow(/empty packet/);
  });

  it("reassembles segments however the stream splits them (property)", () => {
    const packets = fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 6 });
    fc.assert(
      fc.property(packets, fc.array(fc.nat(400), { maxLength: 10 }), (payloads, cuts) => {
        const stream = Buffer.concat(
          payloads.map((p) => {
            const length = Buffer.alloc(4);
            length.writeUInt32BE(p.length);
            return Buffer.concat([length, Buffer.from(p)]);
          }),
        );
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((x, y) => x - y);
        const reader = new SegmentReader();
        const out: Buffer[] = [];
        let from = 0;
        for (const to of [...points, stream.length]) {
          out.push(...reader.push(stream.subarray(from, to)));
          from = to;
        }
        expect(out.map((b) => [...b])).toEqual(payloads.map((p) => [...p]));
      }),
    );
  });

  it("refuses a segment over 512 KiB before buffering it", () => {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_SEGMENT_BYTES + 1);
    expect(() => new SegmentReader().push(header)).toThrow(/exceeds 524288/);
    expect(() => encodePacket({ type: PacketType.CMD_RESPONSE, body: Buffer.alloc(MAX_SEGMENT_BYTES) })).toThrow(/exceeds/);
  });
});

// The VICI transport and packet layers: each packet is a 32-bit big-endian length, then one byte
// of packet type, then (for named types) a 1-byte name length and the name, then a message.
import { ViciDecodeError } from "./message";

export const PacketType = {
  CMD_REQUEST: 0,
  CMD_RESPONSE: 1,
  CMD_UNKNOWN: 2,
  EVENT_REGISTER: 3,
  EVENT_UNREGISTER: 4,
  EVENT_CONFIRM: 5,
  EVENT_UNKNOWN: 6,
  EVENT: 7,
} as const;
export type PacketType = (typeof PacketType)[keyof typeof PacketType];

/** charon refuses segments larger than this (512 KiB). */
export const MAX_SEGMENT_BYTES = 512 * 1024;

const NAMED: ReadonlySet<number> = new Set([PacketType.CMD_REQUEST, PacketType.EVENT_REGISTER, PacketType.EVENT_UNREGISTER, PacketType.EVENT]);

export interface Packet {
  type: PacketType;
  /** Command or event name, for named packet types. */
  name?: string;
  /** The encoded message (empty when there is none). */
  body: Buffer;
}

/** One length-prefixed segment holding a packet. */
export function encodePacket(packet: Packet): Buffer {
  const named = NAMED.has(packet.type);
  if (named !== (packet.name !== undefined)) {
    throw new Error(`VICI packet type ${packet.type} ${named ? "needs" : "takes no"} name`);
  }
  const name = named ? Buffer.from(packet.name!, "ascii") : Buffer.alloc(0);
  if (named && (name.length === 0 || name.length > 255)) throw new Error(`VICI packet name must be 1-255 bytes`);
  const header = named ? Buffer.from([packet.type, name.length]) : Buffer.from([packet.type]);
  const length = header.length + name.length + packet.body.length;
  if (length > MAX_SEGMENT_BYTES) throw new Error(`VICI packet of ${length} bytes exceeds ${MAX_SEGMENT_BYTES}`);
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(length);
  return Buffer.concat([prefix, header, name, packet.body]);
}

/** Parses one segment's payload (without the length prefix). */
export function decodePacket(segment: Buffer): Packet {
  if (segment.length < 1) throw new ViciDecodeError(0, "empty packet");
  const type = segment[0]!;
  if (type > PacketType.EVENT) throw new ViciDecodeError(0, `unknown packet type ${type}`);
  if (!NAMED.has(type)) return { type: type as PacketType, body: segment.subarray(1) };
  if (segment.length < 2) throw new ViciDecodeError(1, "truncated packet name length");
  const nameLength = segment[1]!;
  if (segment.length < 2 + nameLength) throw new ViciDecodeError(2, "truncated packet name");
  return {
    type: type as PacketType,
    name: segment.toString("ascii", 2, 2 + nameLength),
    body: segment.subarray(2 + nameLength),
  };
}

/** Reassembles segments from a byte stream that may split or merge them arbitrarily. */
export class SegmentReader {
  private pending: Buffer = Buffer.alloc(0);

  /** Feeds bytes; returns every segment now complete. Throws on a segment over the size limit. */
  push(chunk: Buffer): Buffer[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const segments: Buffer[] = [];
    while (this.pending.length >= 4) {
      const length = this.pending.readUInt32BE(0);
      if (length > MAX_SEGMENT_BYTES) throw new ViciDecodeError(0, `segment of ${length} bytes exceeds ${MAX_SEGMENT_BYTES}`);
      if (this.pending.length < 4 + length) break;
      segments.push(this.pending.subarray(4, 4 + length));
      this.pending = this.pending.subarray(4 + length);
    }
    return segments;
  }
}

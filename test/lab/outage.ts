// Reads a prober log (see probe.ts) and answers: what was lost, and how long until traffic flowed again.
export interface ProbePacket {
  seq: number;
  sentAt: number;
  /** Undefined when no reply came back. */
  recvAt?: number;
}

/** Parses `s <seq> <ms>` / `r <seq> <ms>` lines; ignores a torn last line. */
export function parseProbeLog(text: string): ProbePacket[] {
  const packets = new Map<number, ProbePacket>();
  for (const line of text.split("\n")) {
    const match = /^([sr]) (\d+) (\d+(?:\.\d+)?)$/.exec(line);
    if (!match) continue;
    const seq = Number(match[2]);
    const at = Number(match[3]);
    if (match[1] === "s") packets.set(seq, { ...packets.get(seq), seq, sentAt: at });
    else {
      const known = packets.get(seq);
      // A duplicate reply keeps the first arrival.
      if (known && known.recvAt === undefined) known.recvAt = at;
    }
  }
  return [...packets.values()].sort((a, b) => a.seq - b.seq);
}

export interface OutageReport {
  /** Packets sent in the window that never came back. */
  lost: number;
  /** Packets sent in the window. */
  sent: number;
  /**
   * Ms from `from` to the first reply of a packet sent after the first loss; 0 when nothing was lost;
   * undefined when traffic never flowed again within the window.
   */
  outageMs: number | undefined;
  /**
   * Ms from the first lost packet's send to the first reply after it: how long traffic stood still,
   * for changes without a fault instant (a host taking its role back). 0 when nothing was lost.
   */
  gapMs: number | undefined;
}

/**
 * Outage after a fault at `from`: the first packet sent at or after `from` that is lost starts it;
 * the first reply to a packet sent later ends it. Packets sent after `settleBefore` are ignored,
 * since their replies may still be on the way when the log is read.
 */
export function measureOutage(packets: ProbePacket[], from: number, settleBefore: number): OutageReport {
  const window = packets.filter((p) => p.sentAt >= from && p.sentAt < settleBefore);
  const lost = window.filter((p) => p.recvAt === undefined);
  const firstLost = lost[0];
  if (!firstLost) return { lost: 0, sent: window.length, outageMs: 0, gapMs: 0 };
  const replies = window.filter((p) => p.seq > firstLost.seq && p.recvAt !== undefined).map((p) => p.recvAt!);
  const restoredAt = replies.length > 0 ? Math.min(...replies) : undefined;
  return {
    lost: lost.length,
    sent: window.length,
    outageMs: restoredAt === undefined ? undefined : restoredAt - from,
    gapMs: restoredAt === undefined ? undefined : restoredAt - firstLost.sentAt,
  };
}

/** Ms from `from` to the first reply of any packet sent at or after `from`, or undefined. */
export function firstReplyAfter(packets: ProbePacket[], from: number): number | undefined {
  const replies = packets.filter((p) => p.sentAt >= from && p.recvAt !== undefined).map((p) => p.recvAt!);
  return replies.length > 0 ? Math.min(...replies) - from : undefined;
}

export interface Summary {
  runs: number;
  median: number;
  max: number;
  min: number;
}

export function summarize(values: number[]): Summary {
  if (values.length === 0) throw new Error("no values to summarize");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { runs: sorted.length, median, max: sorted[sorted.length - 1]!, min: sorted[0]! };
}

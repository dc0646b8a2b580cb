import { describe, expect, it } from "vitest";
import { firstReplyAfter, measureOutage, parseProbeLog, summarize, type ProbePacket } from "./outage";

/** Packets every 10 ms from t=0; `lostSeqs` never come back, the others after 2 ms. */
function stream(count: number, lostSeqs: (seq: number) => boolean): ProbePacket[] {
  return Array.from({ length: count }, (_, seq) => ({ seq, sentAt: seq * 10, ...(lostSeqs(seq) ? {} : { recvAt: seq * 10 + 2 }) }));
}

describe("parseProbeLog", () => {
  it("pairs sends with their first reply and ignores torn or foreign lines", () => {
    const log = "s 0 1000.5\ns 1 1010.25\nr 0 1002.75\nnoise\nr 0 1009\ns 2 1020\nr 2";
    expect(parseProbeLog(log)).toEqual([
      { seq: 0, sentAt: 1000.5, recvAt: 1002.75 },
      { seq: 1, sentAt: 1010.25 },
      { seq: 2, sentAt: 1020 },
    ]);
  });
});

describe("measureOutage", () => {
  it("measures from the fault to the first reply after the loss", () => {
    // Fault at t=95; packets 10..59 (sent 100..590) lost; packet 60 (sent 600) back at 602.
    const report = measureOutage(stream(100, (s) => s >= 10 && s < 60), 95, 990);
    expect(report).toEqual({ lost: 50, sent: 89, outageMs: 602 - 95, gapMs: 602 - 100 });
  });

  it("reports no outage when nothing was lost", () => {
    expect(measureOutage(stream(50, () => false), 100, 400)).toEqual({ lost: 0, sent: 30, outageMs: 0, gapMs: 0 });
  });

  it("reports an outage that never ended as undefined", () => {
    expect(measureOutage(stream(50, (s) => s >= 20), 150, 500)).toMatchObject({ outageMs: undefined, gapMs: undefined, lost: 30 });
  });

  it("ignores losses before the fault and packets too young to judge", () => {
    const report = measureOutage(stream(100, (s) => s < 5 || s >= 95), 100, 900);
    expect(report).toEqual({ lost: 0, sent: 80, outageMs: 0, gapMs: 0 });
  });
});

describe("firstReplyAfter and summarize", () => {
  it("finds the first packet through after a start", () => {
    expect(firstReplyAfter(stream(100, (s) => s < 42), 100)).toBe(422 - 100);
    expect(firstReplyAfter(stream(10, () => true), 0)).toBeUndefined();
  });

  it("gives median, min and max", () => {
    expect(summarize([5, 1, 3])).toEqual({ runs: 3, median: 3, min: 1, max: 5 });
    expect(summarize([4, 1, 3, 2])).toEqual({ runs: 4, median: 2.5, min: 1, max: 4 });
    expect(() => summarize([])).toThrow("no values");
  });
});

// Packet capture on the lab's internet bridge: proves that site traffic crosses only as ESP in UDP
// and never in the clear.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { NetnsSandbox } from "../support/netns";
import { waitFor } from "./lab";

const BRIDGE = "br0";
/** Replies still on the wire when the caller stops are counted too. */
const DRAIN_MS = 200;

export interface CaptureCounts {
  /** ESP-in-UDP datagrams (UDP 4500 with a non-zero SPI, i.e. not IKE). */
  esp: number;
  /** Any packet whose IP header carries a site (10.x) address: site traffic in the clear. */
  clear: number;
}

/** Filters of the two counts; exported so the unit test can check them against tcpdump's grammar. */
export const FILTERS = {
  // The first four bytes after the UDP header are the SPI for ESP, zero (non-ESP marker) for IKE.
  esp: "udp port 4500 and udp[8:4] != 0",
  clear: "ip net 10.0.0.0/8",
} as const;

export interface Capture {
  /** Stops the capture and counts what it saw. */
  stop(): Promise<CaptureCounts>;
}

export async function startCapture(sandbox: NetnsSandbox, internetNs: string, name: string): Promise<Capture> {
  const pcap = join(sandbox.workDir, `${name}.pcap`);
  const log = join(sandbox.workDir, `${name}.tcpdump.log`);
  // Immediate mode and -U hand every packet to the file at once: a stop right after the traffic
  // would otherwise lose what still sits in the capture buffer.
  const child = sandbox.spawn(internetNs, ["tcpdump", "-n", "--immediate-mode", "-U", "-i", BRIDGE, "-w", pcap], { logFile: log });
  await waitFor("tcpdump to listen", 10_000, () => existsSync(log) && readFileSync(log, "utf8").includes("listening on"));
  return {
    stop: async () => {
      await new Promise((r) => setTimeout(r, DRAIN_MS));
      if (child.pid) await sandbox.kill(child.pid, "SIGINT");
      return { esp: await count(sandbox, internetNs, pcap, FILTERS.esp), clear: await count(sandbox, internetNs, pcap, FILTERS.clear) };
    },
  };
}

async function count(sandbox: NetnsSandbox, ns: string, pcap: string, filter: string): Promise<number> {
  const result = await sandbox.exec(ns, ["tcpdump", "-n", "-r", pcap, filter]);
  return result.stdout.split("\n").filter((line) => line.trim() !== "").length;
}

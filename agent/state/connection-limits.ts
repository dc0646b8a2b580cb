// What a connection may cost the state service. Agents hold one keep-alive connection each and
// poll again at once; anything that connects and then dawdles (no ClientHello, headers dripped a
// byte at a time) or opens connections by the thousand must not use up the descriptors that
// legitimate polls and the store need.
import { readFileSync } from "node:fs";
import type { Server } from "node:net";

export interface ConnectionLimits {
  /** Open connections at most (more are closed at once). */
  maxConnections: number;
  /** Open connections at most from one source address. */
  perAddress: number;
  /** A TLS handshake not done by then is dropped. */
  handshakeTimeoutMs: number;
  /** A request whose headers are not all in by then is answered 408 and closed. */
  headersTimeoutMs: number;
  /** A request not read whole (headers and body) by then is answered 408 and closed. A held poll is past that. */
  requestTimeoutMs: number;
  /** An idle kept-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
}

/** Descriptors kept for the store, the topology file and logging when connections are many. */
const RESERVED_DESCRIPTORS = 256;

/**
 * The defaults:
 * - maxConnections: the process's open-file limit less RESERVED_DESCRIPTORS (the systemd unit sets
 *   65536), so connections alone never make the store fail with EMFILE;
 * - perAddress 256: hosts behind one NAT share a source address, each holding one connection (two
 *   for a moment while it reconnects); 256 leaves room for a location of over a hundred hosts
 *   behind one address while a single address cannot take a real share of maxConnections;
 * - a handshake takes one round trip and under a millisecond of CPU: 5 s is plenty even across
 *   continents and while every agent reconnects after a restart;
 * - headers 10 s and the whole request 15 s: a poll is a few kB sent at once;
 * - keep-alive 15 s: agents poll again as soon as they applied an answer; an idle connection past
 *   that only costs them a new handshake.
 */
export function connectionDefaults(): ConnectionLimits {
  return {
    maxConnections: Math.max(1024, openFileLimit() - RESERVED_DESCRIPTORS),
    perAddress: 256,
    handshakeTimeoutMs: 5_000,
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 15_000,
    keepAliveTimeoutMs: 15_000,
  };
}

/** The soft open-file limit of this process (Linux); 65536, the unit's, where it cannot be read. */
function openFileLimit(): number {
  try {
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"));
    const soft = Number(line?.split(/\s{2,}/)[1]);
    return Number.isFinite(soft) && soft > 0 ? soft : 65_536;
  } catch {
    return 65_536;
  }
}

/** Closes a new connection at once when its source address already holds `perAddress`. */
export function capConnectionsPerAddress(server: Server, perAddress: number): void {
  const open = new Map<string, number>();
  server.on("connection", (socket) => {
    const address = socket.remoteAddress ?? "";
    const count = open.get(address) ?? 0;
    if (count >= perAddress) {
      socket.destroy();
      return;
    }
    open.set(address, count + 1);
    socket.once("close", () => {
      const left = open.get(address)! - 1;
      if (left === 0) open.delete(address);
      else open.set(address, left);
    });
  });
}

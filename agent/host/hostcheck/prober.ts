// The host-check prober: probes every target the state service names, each on its own schedule
// (a probe every probeInterval, whether or not the last one has answered), keeps the verdict of the
// newest probe per target and tells listeners at once when a target flips, or when its failures in
// a row reach DOWN_AFTER_FAILURES (what the state service needs to confirm a crash). Probes overlap
// (at most MAX_IN_FLIGHT per target) so that a silent target's second failure comes one interval
// after its first, not one timeout.
import { connect, type Socket } from "node:net";
import { DOWN_AFTER_FAILURES } from "../../contract/topology";
import type { DesiredState, HostCheckResult, HostCheckTarget } from "../../contract/protocol";
import { errorMessage, type Logger } from "../log";
import type { HostChecker } from "../types";
import { assertHostId, encodeChallenge, MAX_LINE_BYTES, newChallenge, verifyAnswer } from "./protocol";

/** Probes of one target at once: a long timeout over a short interval must not pile up sockets. */
export const MAX_IN_FLIGHT = 3;

export type ProbeFailure = "refused" | "timeout" | "impostor" | "malformed" | "closed" | "unreachable";
export type ProbeOutcome = { ok: true; rttMs: number } | { ok: false; reason: ProbeFailure; detail?: string };

/**
 * One authenticated probe: connect, send a fresh challenge, verify the answer. A refused
 * connection fails at once; silence fails after `timeoutMs`; a wrong key or host id is an impostor.
 */
export function probe(target: Pick<HostCheckTarget, "hostId" | "address" | "port">, selfId: string, key: string, timeoutMs: number): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    const started = performance.now();
    const challenge = newChallenge(selfId);
    let socket: Socket;
    try {
      socket = connect({ host: target.address, port: target.port, noDelay: true });
    } catch (error) {
      // e.g. a port out of range: a bad target, reported like any unreachable one
      return resolve({ ok: false, reason: "unreachable", detail: errorMessage(error) });
    }
    let received = Buffer.alloc(0);
    let settled = false;
    const timer = setTimeout(() => finish({ ok: false, reason: "timeout" }), timeoutMs);
    const finish = (outcome: ProbeOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    socket.on("connect", () => socket.write(encodeChallenge(challenge)));
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const end = received.indexOf(0x0a);
      if (end < 0) {
        if (received.length > MAX_LINE_BYTES) finish({ ok: false, reason: "malformed" });
        return;
      }
      const verdict = verifyAnswer(key, challenge, target.hostId, received.subarray(0, end).toString("latin1"));
      if (verdict === "ok") finish({ ok: true, rttMs: performance.now() - started });
      else finish({ ok: false, reason: verdict === "malformed" ? "malformed" : "impostor", detail: verdict });
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      const refused = error.code === "ECONNREFUSED";
      finish({ ok: false, reason: refused ? "refused" : "unreachable", detail: error.code ?? error.message });
    });
    socket.on("close", () => finish({ ok: false, reason: "closed" }));
  });
}

interface TargetState {
  target: HostCheckTarget;
  reachable?: boolean;
  rttMs?: number;
  failures: number;
  /** Wall-clock time of the last result (ms since epoch). */
  at?: number;
  /** Probes started so far, and the number of the newest one whose outcome is recorded. */
  started: number;
  recorded: number;
  inFlight: number;
  timer?: NodeJS.Timeout;
  removed: boolean;
}

export interface HostCheckProberOptions {
  /** This host's id, sent in every challenge. */
  hostId: string;
  log?: Logger;
  /** @default Date.now */
  now?: () => number;
}

export class HostCheckProber implements HostChecker {
  private readonly states = new Map<string, TargetState>();
  private readonly listeners: Array<() => void> = [];
  private key = "";
  private timing: DesiredState["timing"] | undefined;
  private closed = false;
  private readonly now: () => number;

  constructor(private readonly options: HostCheckProberOptions) {
    assertHostId(options.hostId);
    this.now = options.now ?? Date.now;
  }

  /** Replaces the target set; targets that stay (same host id) keep their history and schedule. */
  setTargets(targets: HostCheckTarget[], key: string, timing: DesiredState["timing"]): void {
    if (this.closed) throw new Error("host check prober is closed");
    this.key = key;
    this.timing = timing;
    const wanted = new Map(targets.map((target) => [target.hostId, target]));
    for (const [hostId, state] of this.states) {
      if (wanted.has(hostId)) continue;
      state.removed = true;
      clearTimeout(state.timer);
      this.states.delete(hostId);
    }
    for (const [hostId, target] of wanted) {
      const state = this.states.get(hostId);
      if (state) state.target = target; // a new address takes effect with the next probe
      else {
        const fresh: TargetState = { target, failures: 0, started: 0, recorded: 0, inFlight: 0, removed: false };
        this.states.set(hostId, fresh);
        void this.run(fresh);
      }
    }
  }

  /** The latest verdict of every target probed at least once. */
  results(): HostCheckResult[] {
    const now = this.now();
    const out: HostCheckResult[] = [];
    for (const state of this.states.values()) {
      if (state.reachable === undefined || state.at === undefined) continue;
      out.push({
        target: state.target.hostId,
        reachable: state.reachable,
        ...(state.reachable && state.rttMs !== undefined ? { rttMs: Math.round(state.rttMs * 1000) / 1000 } : {}),
        failures: state.failures,
        ageMs: Math.max(0, now - state.at),
      });
    }
    return out;
  }

  /** Called when a target's first verdict arrives, whenever it flips, and when its failures reach DOWN_AFTER_FAILURES. */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const state of this.states.values()) {
      state.removed = true;
      clearTimeout(state.timer);
    }
    this.states.clear();
  }

  private async run(state: TargetState): Promise<void> {
    if (state.removed || this.closed || !this.timing) return;
    const { probeInterval, probeTimeout } = this.timing;
    state.timer = setTimeout(() => void this.run(state), probeInterval * 1000);
    state.timer.unref();
    if (state.inFlight >= MAX_IN_FLIGHT) return;
    const probeNumber = ++state.started;
    state.inFlight++;
    const outcome = await probe(state.target, this.options.hostId, this.key, probeTimeout * 1000);
    state.inFlight--;
    // A probe overtaken by a newer one's outcome (a slow answer, a late timeout) is old news.
    if (state.removed || this.closed || probeNumber < state.recorded) return;
    state.recorded = probeNumber;
    this.record(state, outcome);
  }

  private record(state: TargetState, outcome: ProbeOutcome): void {
    const before = state.reachable;
    state.at = this.now();
    state.reachable = outcome.ok;
    state.rttMs = outcome.ok ? outcome.rttMs : undefined;
    state.failures = outcome.ok ? 0 : state.failures + 1;
    const flipped = before !== state.reachable;
    // Reaching the down threshold is news too: the state service confirms a crash only on that many failures.
    if (!flipped && state.failures !== DOWN_AFTER_FAILURES) return;
    if (flipped) {
      const { hostId, address, port } = state.target;
      if (outcome.ok) this.options.log?.info("host check target reachable", { target: hostId, address, port, rttMs: outcome.rttMs });
      else this.options.log?.warn("host check target unreachable", { target: hostId, address, port, reason: outcome.reason, detail: outcome.detail });
    }
    for (const listener of this.listeners) {
      try {
        listener();
      } catch (error) {
        this.options.log?.error("host check change listener failed", { error: errorMessage(error) });
      }
    }
  }
}

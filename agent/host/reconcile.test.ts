import { afterEach, describe, expect, it, vi } from "vitest";
import type { DesiredState, HostCheckResult, HostCheckTarget, PeerLocation, TunnelReport } from "../contract/protocol";
import { PROTOCOL_VERSION } from "../contract/protocol";
import { ReconcileLoop, TUNNELS_HEAD_START_MS, type ReconcileDeps, type ReconcileOptions } from "./reconcile";
import { StateClientError, type PollInput, type StateApi } from "./state-client";
import type { Firewall, HostChecker, IpsecDriver, MssClamp, RouteProvider } from "./types";
import { createLogger } from "./log";

// In-memory fakes of the agent's seams: the loop is tested here; the real seams have their own tests
// and meet the loop in the namespace lab.

interface PollCall {
  input: PollInput;
  signal: AbortSignal | undefined;
  /** When the loop sent it (performance.now()). */
  at: number;
  /** Answered or failed by the test. */
  done: boolean;
  resolve(d: DesiredState): void;
  reject(e: Error): void;
}

const turn = () => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

class FakeState implements StateApi {
  readonly hostId = "a1";
  readonly endpoint = "127.0.0.1:9443";
  readonly offlines: string[] = [];
  readonly calls: PollCall[] = [];

  poll(input: PollInput, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<DesiredState> {
    return new Promise((resolve, reject) => {
      const call: PollCall = {
        input: structuredClone(input),
        signal: opts.signal,
        at: performance.now(),
        done: false,
        resolve: (d) => ((call.done = true), resolve(d)),
        reject: (e) => ((call.done = true), reject(e)),
      };
      opts.signal?.addEventListener("abort", () => reject(new StateClientError("aborted", "aborted")));
      this.calls.push(call);
    });
  }

  /** The poll the loop has out now, once everything in flight settled (earlier ones were aborted). */
  async held(): Promise<PollCall> {
    for (;;) {
      await turn();
      const live = this.calls.filter((c) => !c.done && !c.signal?.aborted);
      if (live.length > 0) return live.at(-1)!;
    }
  }

  /** Answers the poll out now with `d`, then settles like the service would (see settle). */
  async answer(d: DesiredState): Promise<PollCall> {
    (await this.held()).resolve(d);
    return this.settle(d);
  }

  /** Answers polls that ask for an answer at once (an urgent report) with `d`; returns the next long-poll. */
  async settle(d: DesiredState): Promise<PollCall> {
    for (;;) {
      const call = await this.held();
      if (call.input.wait) return call;
      call.resolve(d);
    }
  }

  async offline(reason: string) {
    this.offlines.push(reason);
    return { protocol: PROTOCOL_VERSION as 1, generation: 0 };
  }

  close() {}
}

/** Closes a fake's gate (its applies wait on it); the returned function opens it again. */
function closeGate(fake: { gate: Promise<void> | undefined }): () => void {
  let release!: () => void;
  fake.gate = new Promise((resolve) => (release = resolve));
  return () => {
    fake.gate = undefined;
    release();
  };
}

class FakeIpsec implements IpsecDriver {
  applied: PeerLocation[][] = [];
  state: TunnelReport[] = [];
  listeners: (() => void)[] = [];
  validate(peers: PeerLocation[]) {
    const bad = peers.findIndex((p) => p.location === "bad");
    if (bad >= 0) throw new Error(`ipsec: peers[${bad}].location "bad" is refused`);
  }
  /** While set, apply waits for it (a busy or hung charon). */
  gate: Promise<void> | undefined;
  async apply(peers: PeerLocation[]) {
    this.applied.push(peers);
    await this.gate;
    this.state = peers.map((p) => ({ location: p.location, state: "connecting" }));
  }
  /** Holds every apply until the returned function is called. */
  hold(): () => void {
    return closeGate(this);
  }
  tunnels() {
    return this.state;
  }
  onChange(l: () => void) {
    this.listeners.push(l);
  }
  async close() {}
}

class FakeRoutes implements RouteProvider {
  readonly name = "lab" as const;
  table: "shared" | "own" = "shared";
  calls: { cidrs: string[]; previous: string[]; removeRoutes: boolean }[] = [];
  /** The link host addresses each apply was given. */
  linkHosts: (string[] | undefined)[] = [];
  current: string[] = [];
  failNext = 0;
  error = "route table rtb-0abc is busy";
  /** While set, apply waits for it (a slow cloud API). */
  gate: Promise<void> | undefined;
  /** Drift check; undefined = the provider has none (the cloud ones). */
  inPlace: ((cidrs: string[]) => Promise<boolean>) | undefined;
  async apply(cidrs: string[], opts: { previous: string[]; removeRoutes: boolean; linkHosts?: string[] }) {
    this.calls.push({ cidrs, previous: opts.previous, removeRoutes: opts.removeRoutes });
    this.linkHosts.push(opts.linkHosts);
    await this.gate;
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error(this.error);
    }
    this.current = [...cidrs];
  }
  applied() {
    return this.current;
  }
  /** Holds every apply until the returned function is called. */
  hold(): () => void {
    return closeGate(this);
  }
}

class FakeFirewall implements Firewall {
  calls: (string[] | "remove")[] = [];
  intact = true;
  async apply(allow: string[]) {
    this.calls.push(allow);
    this.intact = true;
  }
  async inPlace() {
    return this.intact;
  }
  async remove() {
    this.calls.push("remove");
  }
}

class FakeMss implements MssClamp {
  calls: ([number, string[]] | "remove")[] = [];
  failNext = 0;
  async apply(mtu: number, cidrs: string[]) {
    this.calls.push([mtu, cidrs]);
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error("iptables-restore: line 3 failed");
    }
  }
  async inPlace() {
    return true;
  }
  async remove() {
    this.calls.push("remove");
  }
}

class FakeChecker implements HostChecker {
  targets: HostCheckTarget[][] = [];
  allowed: (readonly string[])[] = [];
  current: HostCheckResult[] = [];
  listeners: (() => void)[] = [];
  setTargets(targets: HostCheckTarget[], _key: string, _timing: unknown, allow: readonly string[]) {
    this.targets.push(targets);
    this.allowed.push(allow);
  }
  results() {
    return this.current;
  }
  onChange(l: () => void) {
    this.listeners.push(l);
  }
  async close() {}
}

const PSK = "cHNrLXBzay1wc2stcHNrLXBzay1wc2stcHNrLXBzay0xMjM0NTY3OA==";
const HC_KEY = "aG9zdC1jaGVjay1rZXktaG9zdC1jaGVjay1rZXktMTIzNDU2Nzg5MA==";

function peer(location: string): PeerLocation {
  return {
    location,
    activeHost: { id: `${location}1`, publicAddress: "198.18.0.20" },
    hosts: [{ id: `${location}1`, publicAddress: "198.18.0.20" }],
    localSubnets: ["10.1.0.0/16"],
    remoteSubnets: ["10.2.0.0/16"],
    psk: PSK,
    ike: ["aes128-sha256-x25519"],
    esp: ["aes128gcm128-x25519"],
    initiator: true,
  };
}

function desired(generation: number, role: "active" | "standby", over: Partial<DesiredState> = {}): DesiredState {
  return {
    protocol: PROTOCOL_VERSION,
    generation,
    hostId: "a1",
    link: "corp",
    location: "east",
    role,
    activeHost: role === "active" ? "a1" : "a2",
    peers: role === "active" ? [peer("west")] : [],
    firewall: { allow: ["198.18.0.20", "198.18.0.10"] },
    hostCheck: { key: HC_KEY, targets: [{ hostId: "a2", address: "10.1.0.12", port: 9790, scope: "location" }] },
    routes: { pointHere: role === "active" ? ["10.2.0.0/16"] : [] },
    timing: { heartbeat: 1, probeInterval: 0.25, probeTimeout: 0.4 },
    etag: "e".repeat(64),
    serverTime: Date.now(),
    ...over,
  };
}

function setup(options: Partial<ReconcileOptions> = {}, deps: Partial<ReconcileDeps> = {}) {
  const state = new FakeState();
  const ipsec = new FakeIpsec();
  const routes = new FakeRoutes();
  const firewall = new FakeFirewall();
  const checker = new FakeChecker();
  const mss = new FakeMss();
  const lines: string[] = [];
  const loop = new ReconcileLoop({
    state,
    ipsec,
    routes,
    firewall,
    mss,
    checker,
    self: { hostId: "a1", publicAddress: "198.18.0.10", privateAddress: "10.1.0.11", hostCheckPort: 9791 },
    options: { firewall: false, removeRoutes: false, hostCheck: true, ...options },
    agentVersion: "9.9.9",
    log: createLogger("debug", (l) => lines.push(l)),
    retryInitialMs: 1,
    // A failed part is retried with the very next answer (which a failure asks for at once), unless a test says otherwise.
    applyRetryMs: { initial: 0, max: 0 },
    ...deps,
  });
  const done = loop.start();
  loops.push(loop);
  const logs = () => lines.map((l) => JSON.parse(l) as { level: string; msg: string; [field: string]: unknown });
  return { state, ipsec, routes, firewall, mss, checker, loop, done, lines, logs };
}

const loops: ReconcileLoop[] = [];
afterEach(async () => {
  await Promise.all(loops.splice(0).map((l) => l.stop("test over")));
});

describe("reconcile loop", () => {
  it("first poll does not wait, reports identity, addresses and the host-check port", async () => {
    const { state } = setup();
    const call = await state.held();
    expect(call.input).toMatchObject({
      generation: 0,
      wait: false,
      report: { agentVersion: "9.9.9", publicAddress: "198.18.0.10", privateAddress: "10.1.0.11", hostCheckPort: 9791, role: "standby", appliedGeneration: 0 },
    });
  });

  it("carries what the installer refused in its reports while it lasts (installProblem), and nothing once an install succeeds", async () => {
    let problem: { kind: "integrity"; message: string } | undefined = { kind: "integrity", message: "agent integrity mismatch: expected a got b (s3://b/k)" };
    const { state } = setup({}, { installProblem: () => problem });
    const first = await state.held();
    expect(first.input.report.installProblem).toEqual(problem);
    problem = undefined;
    first.resolve(desired(1, "standby"));
    const next = await state.held();
    expect("installProblem" in next.input.report).toBe(false);
  });

  it("standby → active applies peers and routes, and the next long-poll reports them", async () => {
    const { state, ipsec, routes } = setup();
    const second = await state.answer(desired(1, "standby"));
    expect(second.input).toMatchObject({ generation: 1, wait: true, report: { role: "standby", appliedGeneration: 1 } });
    expect(ipsec.applied).toEqual([[]]);
    expect(routes.calls).toEqual([]);

    const third = await state.answer(desired(2, "active"));
    expect(ipsec.applied).toEqual([[], [peer("west")]]);
    expect(routes.calls).toEqual([{ cidrs: ["10.2.0.0/16"], previous: [], removeRoutes: false }]);
    // The link's host addresses, so a cloud provider can tell a link host's route from a foreign one.
    expect(routes.linkHosts).toEqual([["198.18.0.20", "198.18.0.10"]]);
    expect(third.input).toMatchObject({
      generation: 2,
      wait: true,
      report: { role: "active", appliedGeneration: 2, tunnels: [{ location: "west", state: "connecting" }], routes: { provider: "lab", applied: ["10.2.0.0/16"] } },
    });
    expect(third.input.report.routes.error).toBeUndefined();
  });

  it("active → standby removes the peers, never writes cloud routes, and no longer reports them", async () => {
    const { state, ipsec, routes } = setup();
    await state.answer(desired(1, "active"));
    const third = await state.answer(desired(2, "standby"));
    expect(ipsec.applied).toEqual([[peer("west")], []]);
    expect(routes.calls).toHaveLength(1);
    expect(routes.applied()).toEqual(["10.2.0.0/16"]); // the provider still knows them, for a later promotion
    expect(third.input.report).toMatchObject({ role: "standby", appliedGeneration: 2, routes: { applied: [] } });
  });

  it("a standby withdraws the routes of a local provider (kernel routes, routes file)", async () => {
    const { state, routes } = setup();
    routes.table = "own";
    await state.answer(desired(1, "active"));
    const second = await state.answer(desired(2, "standby"));
    expect(routes.calls).toEqual([
      { cidrs: ["10.2.0.0/16"], previous: [], removeRoutes: false },
      { cidrs: [], previous: ["10.2.0.0/16"], removeRoutes: true },
    ]);
    expect(second.input.report).toMatchObject({ role: "standby", appliedGeneration: 2, routes: { applied: [] } });
    await state.answer(desired(3, "standby"));
    expect(routes.calls).toHaveLength(2); // once
  });

  it("hands the link's host addresses to the host-check listener, with the firewall off too", async () => {
    const { state, checker, firewall } = setup();
    await state.answer(desired(1, "active"));
    expect(firewall.calls).toEqual(["remove"]); // firewall off: no chain, only a leftover check
    expect(checker.allowed).toEqual([["198.18.0.20", "198.18.0.10"]]);
  });

  it("a repeated desired state changes nothing (diff, not re-apply)", async () => {
    const { state, ipsec, routes, checker } = setup();
    await state.answer(desired(1, "active"));
    await state.answer(desired(1, "active", { serverTime: Date.now() + 1000 }));
    expect(ipsec.applied).toHaveLength(1);
    expect(routes.calls).toHaveLength(1);
    expect(checker.targets).toHaveLength(1);
  });

  it("promoted again after a standby spell, it writes its routes again", async () => {
    const { state, routes } = setup({ removeRoutes: true });
    await state.answer(desired(1, "active"));
    await state.answer(desired(2, "standby"));
    routes.current = []; // the new active host took them over
    await state.answer(desired(3, "active"));
    expect(routes.calls.map((c) => c.cidrs)).toEqual([["10.2.0.0/16"], ["10.2.0.0/16"]]);
  });

  it("with remove-routes, CIDRs no longer desired are passed as previous", async () => {
    const { state, routes } = setup({ removeRoutes: true });
    await state.answer(desired(1, "active", { routes: { pointHere: ["10.2.0.0/16", "10.3.0.0/16"] } }));
    await state.answer(desired(2, "active", { routes: { pointHere: ["10.2.0.0/16"] } }));
    expect(routes.calls[1]).toEqual({ cidrs: ["10.2.0.0/16"], previous: ["10.2.0.0/16", "10.3.0.0/16"], removeRoutes: true });
  });

  it("gives the tunnels a head start: the other parts start once the tunnel part is done", async () => {
    const { state, ipsec, routes, firewall } = setup();
    const release = ipsec.hold();
    await state.answer(desired(1, "active"));
    await vi.waitFor(() => expect(ipsec.applied).toHaveLength(1));
    // No `ip` or `iptables` process competes with the tunnels' VICI round trips yet.
    expect(routes.calls).toEqual([]);
    expect(firewall.calls).toEqual([]);
    release();
    await vi.waitFor(() => expect(routes.calls.map((c) => c.cidrs)).toEqual([["10.2.0.0/16"]]));
  });

  it("a hung charon holds the routes up for the head start only", async () => {
    const { state, ipsec, routes } = setup();
    ipsec.hold(); // never released
    const answeredAt = Date.now();
    await state.answer(desired(1, "active"));
    await vi.waitFor(() => expect(routes.calls.map((c) => c.cidrs)).toEqual([["10.2.0.0/16"]]), { timeout: 5_000 });
    expect(Date.now() - answeredAt).toBeGreaterThanOrEqual(TUNNELS_HEAD_START_MS - 5);
  });

  it("a slow apply never holds up the heartbeat; applies queue, and only the newest answer waits", async () => {
    const { state, routes } = setup();
    const release = routes.hold();
    // The long-poll goes out while the routes are still being written, and reports what is done so far.
    let held = await state.answer(desired(1, "active"));
    expect(held.input).toMatchObject({ generation: 1, wait: true, report: { role: "active", appliedGeneration: 0 } });
    held = await state.answer(desired(1, "active"));
    held = await state.answer(desired(2, "active", { routes: { pointHere: ["10.2.0.0/16", "10.3.0.0/16"] } }));
    held = await state.answer(desired(3, "active", { routes: { pointHere: ["10.4.0.0/16"] } }));
    expect(held.input).toMatchObject({ generation: 3, wait: true, report: { appliedGeneration: 0 } });
    expect(routes.calls.map((c) => c.cidrs)).toEqual([["10.2.0.0/16"]]);

    release();
    // The finished applies are reported at once (the held long-poll is aborted for it).
    const after = await state.settle(desired(3, "active", { routes: { pointHere: ["10.4.0.0/16"] } }));
    expect(held.signal?.aborted).toBe(true);
    expect(routes.calls.map((c) => c.cidrs)).toEqual([["10.2.0.0/16"], ["10.4.0.0/16"]]); // generation 2 was superseded
    expect(after.input.report).toMatchObject({ appliedGeneration: 3, routes: { applied: ["10.4.0.0/16"] } });
  });

  it("an unreachable service keeps tunnels and routes, retries without waiting, and logs once", async () => {
    const { state, ipsec, routes, firewall, logs } = setup();
    let call = await state.answer(desired(1, "active"));
    expect(call.input.wait).toBe(true);
    for (let i = 0; i < 4; i++) {
      call.reject(new StateClientError("unreachable", "127.0.0.1:9443: ECONNREFUSED"));
      call = await state.held();
      expect(call.input.wait).toBe(false);
    }
    expect(call.input).toMatchObject({ wait: false, generation: 1, report: { role: "active", appliedGeneration: 1 } });
    expect(ipsec.applied).toEqual([[peer("west")]]);
    expect(routes.calls).toHaveLength(1);
    expect(firewall.calls).toEqual(["remove"]); // the one leftover check of the first answer
    const warnings = logs().filter((l) => l.level === "warn");
    expect(warnings.map((w) => w.msg)).toEqual(["state service unreachable: keeping tunnels and routes as they are"]);
    await state.answer(desired(1, "active"));
    expect(logs().some((l) => l.msg === "state service reachable again")).toBe(true);
  });

  it("waits longer after each failed poll", async () => {
    const { state } = setup({}, { retryInitialMs: 20 });
    let call = await state.answer(desired(1, "standby"));
    const gaps: number[] = [];
    for (let i = 0; i < 5; i++) {
      const failedAt = performance.now();
      call.reject(new StateClientError("unreachable", "127.0.0.1:9443: ECONNREFUSED"));
      call = await state.held();
      gaps.push(call.at - failedAt);
    }
    // 20 ms doubled per failure (less 20 % jitter at most): 16, 32, 64, 128, 256 ms at least.
    gaps.forEach((gap, i) => expect(gap).toBeGreaterThanOrEqual(0.8 * 20 * 2 ** i - 2));
  });

  it("a refused answer (bad signature) changes nothing on the host", async () => {
    const { state, ipsec, routes, checker, logs } = setup();
    (await state.held()).reject(new StateClientError("bad-signature", "127.0.0.1:9443: mis-signed answer (HTTP 200)"));
    const next = await state.held();
    expect(next.input).toMatchObject({ generation: 0, wait: false, report: { role: "standby", appliedGeneration: 0 } });
    expect(ipsec.applied).toEqual([]);
    expect(routes.calls).toEqual([]);
    expect(checker.targets).toEqual([]);
    expect(logs().find((l) => l.level === "warn")).toMatchObject({ msg: "state service answer refused: nothing changed on this host", kind: "bad-signature" });
  });

  it("a signed answer whose peers cannot be applied is refused whole: nothing changes, polling goes on", async () => {
    const { state, ipsec, routes, firewall, checker, mss, logs } = setup({ firewall: true, mtu: 1400 });
    const bad = desired(1, "active", { peers: [peer("west"), peer("bad")] });
    const held = await state.answer(bad);
    // Seen, so the service holds the next poll instead of answering the same at once.
    expect(held.input).toMatchObject({ generation: 1, wait: true, report: { role: "standby", appliedGeneration: 0 } });
    await state.answer(bad);
    expect([ipsec.applied, routes.calls, firewall.calls, checker.targets, mss.calls]).toEqual([[], [], [], [], []]);
    const refusals = logs().filter((l) => l.msg === "desired state refused: nothing changed on this host");
    expect(refusals).toEqual([expect.objectContaining({ level: "error", generation: 1, error: 'ipsec: peers[1].location "bad" is refused' })]);
    const good = await state.answer(desired(2, "active"));
    expect(good.input.report).toMatchObject({ role: "active", appliedGeneration: 2 });
    expect(ipsec.applied).toEqual([[peer("west")]]);
  });

  it("an urgent change aborts the held long-poll and reports at once", async () => {
    const { state, checker } = setup();
    const held = await state.answer(desired(1, "standby"));
    expect(held.input.wait).toBe(true);
    checker.current = [{ target: "a2", reachable: false, failures: 3, ageMs: 5 }];
    checker.listeners.forEach((l) => l());
    expect(held.signal?.aborted).toBe(true);
    const urgent = await state.held();
    expect(urgent.input).toMatchObject({ wait: false, generation: 1, report: { hostChecks: [{ target: "a2", reachable: false, failures: 3 }] } });
  });

  it("a failed route apply is reported and retried without re-applying what worked", async () => {
    const { state, ipsec, routes } = setup({}, { applyRetryMs: { initial: 30, max: 30 } });
    routes.failNext = 1;
    const second = await state.answer(desired(1, "active"));
    expect(second.input.report).toMatchObject({ appliedGeneration: 0, routes: { error: "route table rtb-0abc is busy", applied: [] } });
    await sleep(45);
    const third = await state.answer(desired(1, "active"));
    expect(ipsec.applied).toHaveLength(1);
    expect(routes.calls).toHaveLength(2);
    expect(third.input.report).toMatchObject({ appliedGeneration: 1, routes: { applied: ["10.2.0.0/16"] } });
    expect(third.input.report.routes.error).toBeUndefined();
  });

  it("backs off a failing part, logs each error once, and tries a new desired state at once", async () => {
    const { state, routes, logs, loop } = setup({}, { applyRetryMs: { initial: 100, max: 400 } });
    routes.failNext = 100;
    await state.answer(desired(1, "active"));
    for (let i = 0; i < 3; i++) await state.answer(desired(1, "active"));
    expect(routes.calls).toHaveLength(1);
    await sleep(130); // past the first delay (100 ms ± 20 %)
    await state.answer(desired(1, "active"));
    await state.answer(desired(1, "active"));
    expect(routes.calls).toHaveLength(2); // the second delay is twice as long
    routes.error = "RequestLimitExceeded";
    await state.answer(desired(2, "active", { routes: { pointHere: ["10.2.0.0/16", "10.3.0.0/16"] } }));
    expect(routes.calls).toHaveLength(3);
    const errors = logs().filter((l) => l.level === "error");
    expect(errors.map((l) => [l.msg, l.error])).toEqual([
      ["applying routes failed", "route table rtb-0abc is busy"],
      ["applying routes failed", "RequestLimitExceeded"],
    ]);
    // A config reload (the operator fixed something) tries again at once.
    loop.updateOptions({ firewall: false, removeRoutes: false, hostCheck: true });
    await state.settle(desired(2, "active", { routes: { pointHere: ["10.2.0.0/16", "10.3.0.0/16"] } }));
    expect(routes.calls).toHaveLength(4);
  });

  it("restores what someone changed on the host (drift), without a new desired state", async () => {
    const { state, firewall, routes, logs } = setup({ firewall: true }, { verifyMs: 20 });
    routes.table = "own"; // e.g. kernel routes
    let intactRoutes = true;
    routes.inPlace = async () => intactRoutes;
    await state.answer(desired(1, "active"));
    expect(firewall.calls).toHaveLength(1);
    firewall.intact = false; // e.g. `iptables -F INPUT` dropped our jump
    intactRoutes = false; // e.g. `ip route del`
    await vi.waitFor(() => expect(firewall.calls).toHaveLength(2), { timeout: 2_000, interval: 10 });
    await vi.waitFor(() => expect(routes.calls).toHaveLength(2), { timeout: 2_000, interval: 10 });
    expect(firewall.calls[1]).toEqual(["198.18.0.10", "198.18.0.20"]);
    expect(routes.calls[1]!.cidrs).toEqual(["10.2.0.0/16"]);
    const restored = logs().filter((l) => l.msg === "changed on this host by someone else: restoring it");
    expect(restored.map((l) => l.part).sort()).toEqual(["firewall", "routes"]);
  });

  it("a drift check never retries a failed part, nor writes a shared route table (cloud, lab) itself", async () => {
    const { state, routes, mss } = setup({ mtu: 1400 }, { verifyMs: 10, applyRetryMs: { initial: 60_000, max: 60_000 } });
    routes.inPlace = async () => {
      throw new Error("DescribeRouteTables: RequestLimitExceeded"); // unreadable is no reason to write
    };
    mss.failNext = 1;
    await state.answer(desired(1, "active"));
    const asked = state.calls.filter((c) => !c.input.wait).length;
    await sleep(100); // ~10 drift checks
    expect(mss.calls).toHaveLength(1);
    expect(routes.calls).toHaveLength(1);
    expect(state.calls.filter((c) => !c.input.wait)).toHaveLength(asked); // nor asks for a fresh answer
  });

  it("a host just made active checks the shared route table again soon, not only at the periodic check", async () => {
    const { state, routes } = setup({}, { verifyMs: 600_000, promotionChecksMs: [50] });
    let checks = 0;
    routes.inPlace = async () => (checks++, true);
    await state.answer(desired(1, "active"));
    await vi.waitFor(() => expect(checks).toBe(1), { timeout: 2_000, interval: 10 });
    await state.answer(desired(2, "active", { routes: { pointHere: ["10.2.0.0/16", "10.3.0.0/16"] } }));
    await sleep(100);
    expect(checks).toBe(1); // only a promotion brings the extra checks
  });

  it("a shared route table someone else changed is written back only once a fresh answer says this host is still active", async () => {
    // A host active a moment ago (its last apply ran late) pointed the routes at itself after we did.
    const { state, routes, logs } = setup({}, { verifyMs: 20 });
    let ours = true;
    routes.inPlace = async () => ours;
    await state.answer(desired(1, "active"));
    expect(routes.calls).toHaveLength(1);
    ours = false;
    const urgent = async () => {
      for (;;) {
        const call = await state.held();
        if (!call.input.wait) return call;
        await sleep(5);
      }
    };
    const ask = await urgent(); // the drift check asks the service instead of writing
    expect(routes.calls).toHaveLength(1);
    expect(logs().some((l) => l.msg === "changed by someone else: restoring it once a fresh answer says this host is still active")).toBe(true);
    ours = true; // the write below puts it back
    ask.resolve(desired(1, "active"));
    await vi.waitFor(() => expect(routes.calls).toHaveLength(2), { timeout: 2_000, interval: 10 });
    expect(routes.calls[1]!.cidrs).toEqual(["10.2.0.0/16"]);

    // Demoted meanwhile: the fresh answer says standby, and the table is left to the new active host.
    ours = false;
    (await urgent()).resolve(desired(2, "standby"));
    await sleep(100);
    expect(routes.calls).toHaveLength(2);
  });

  it("firewall-on applies the allow list; firewall-off (reload) removes the rules", async () => {
    const { state, firewall, loop } = setup({ firewall: true });
    const held = await state.answer(desired(1, "standby"));
    expect(firewall.calls).toEqual([["198.18.0.10", "198.18.0.20"]]);
    loop.updateOptions({ firewall: false, removeRoutes: false, hostCheck: true });
    expect(held.signal?.aborted).toBe(true);
    await state.settle(desired(1, "standby"));
    await state.answer(desired(1, "standby"));
    expect(firewall.calls).toEqual([["198.18.0.10", "198.18.0.20"], "remove"]);
  });

  it("with firewall off, rules left by an earlier run are removed once, and a failure there is not an error", async () => {
    const { state, firewall, logs } = setup();
    firewall.remove = async () => {
      firewall.calls.push("remove");
      throw new Error("iptables: command not found");
    };
    await state.answer(desired(1, "standby"));
    const third = await state.answer(desired(2, "standby"));
    expect(firewall.calls).toEqual(["remove"]);
    expect(third.input.report.appliedGeneration).toBe(2);
    expect(logs().filter((l) => l.level === "error")).toEqual([]);
  });

  it("set-mtu clamps the peers' remote subnets and follows the desired state", async () => {
    const { state, mss } = setup({ mtu: 1400 });
    await state.answer(desired(1, "active"));
    await state.answer(desired(2, "active", { serverTime: Date.now() + 1 })); // nothing changed
    const south = { ...peer("south"), remoteSubnets: ["10.4.0.0/16", "10.2.0.0/16"] };
    await state.answer(desired(3, "active", { peers: [peer("west"), south] }));
    const fifth = await state.answer(desired(4, "standby"));
    expect(mss.calls).toEqual([
      [1400, ["10.2.0.0/16"]],
      [1400, ["10.2.0.0/16", "10.4.0.0/16"]],
      [1400, []], // a standby carries no traffic: an empty chain
    ]);
    expect(fifth.input.report.appliedGeneration).toBe(4);
  });

  it("mtu off (reload) removes the clamp; a changed mtu re-applies it", async () => {
    const { state, mss, loop } = setup({ mtu: 1400 });
    await state.answer(desired(1, "active"));
    loop.updateOptions({ firewall: false, removeRoutes: false, hostCheck: true, mtu: 1300 });
    await state.settle(desired(1, "active"));
    loop.updateOptions({ firewall: false, removeRoutes: false, hostCheck: true });
    await state.settle(desired(1, "active"));
    await state.answer(desired(2, "active"));
    expect(mss.calls).toEqual([[1400, ["10.2.0.0/16"]], [1300, ["10.2.0.0/16"]], "remove"]);
  });

  it("without mtu, a clamp left by an earlier run is removed once, and a failure there is not an error", async () => {
    const { state, mss, logs } = setup();
    mss.remove = async () => {
      mss.calls.push("remove");
      throw new Error("iptables: command not found");
    };
    await state.answer(desired(1, "active"));
    const third = await state.answer(desired(2, "active"));
    expect(mss.calls).toEqual(["remove"]);
    expect(third.input.report.appliedGeneration).toBe(2);
    expect(logs().filter((l) => l.level === "error")).toEqual([]);
  });

  it("a failed clamp is logged, holds back appliedGeneration and is retried with the next answer", async () => {
    const { state, mss, logs } = setup({ mtu: 1400 }, { applyRetryMs: { initial: 30, max: 30 } });
    mss.failNext = 1;
    const second = await state.answer(desired(1, "active"));
    expect(second.input.report.appliedGeneration).toBe(0);
    expect(logs().find((l) => l.level === "error")).toMatchObject({ msg: "tcp mss clamp change failed" });
    await sleep(45);
    const third = await state.answer(desired(1, "active"));
    expect(mss.calls).toEqual([
      [1400, ["10.2.0.0/16"]],
      [1400, ["10.2.0.0/16"]],
    ]);
    expect(third.input.report.appliedGeneration).toBe(1);
  });

  it("host-check off gives the checker no targets", async () => {
    const { state, checker } = setup({ hostCheck: false });
    await state.answer(desired(1, "standby"));
    expect(checker.targets).toEqual([[]]);
  });

  it("stop sends offline, exits the loop and leaves the tunnels up", async () => {
    const { state, ipsec, loop, done } = setup();
    const held = await state.answer(desired(1, "active"));
    await loop.stop("SIGTERM");
    await done;
    expect(held.signal?.aborted).toBe(true);
    expect(state.offlines).toEqual(["SIGTERM"]);
    expect(ipsec.applied).toEqual([[peer("west")]]);
  });

  it("stop does not wait for a hung apply", async () => {
    const { state, routes, loop, done } = setup();
    routes.hold(); // never released
    await state.answer(desired(1, "active"));
    const started = performance.now();
    await loop.stop("SIGTERM");
    await done;
    expect(state.offlines).toEqual(["SIGTERM"]);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it("never logs the PSK or the host-check key", async () => {
    const { state, lines } = setup();
    await state.answer(desired(1, "active"));
    await state.answer(desired(2, "standby"));
    const all = lines.join("");
    expect(all).not.toContain(PSK);
    expect(all).not.toContain(HC_KEY);
    expect(all).toContain("tunnels applied");
  });
});

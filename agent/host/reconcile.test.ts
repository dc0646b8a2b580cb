import { afterEach, describe, expect, it } from "vitest";
import type { DesiredState, HostCheckResult, HostCheckTarget, PeerLocation, TunnelReport } from "../protocol";
import { PROTOCOL_VERSION } from "../protocol";
import { ReconcileLoop, type ReconcileOptions } from "./reconcile";
import { StateClientError, type PollInput, type StateApi } from "./state-client";
import type { Firewall, HostChecker, IpsecDriver, MssClamp, RouteProvider } from "./types";
import { createLogger } from "./log";

// In-memory fakes of the agent's seams: the loop is tested here; the real seams have their own tests
// and meet the loop in the namespace lab.

interface PollCall {
  input: PollInput;
  signal: AbortSignal | undefined;
  resolve(d: DesiredState): void;
  reject(e: Error): void;
}

class FakeState implements StateApi {
  readonly hostId = "a1";
  readonly endpoint = "127.0.0.1:9443";
  readonly offlines: string[] = [];
  private queue: PollCall[] = [];
  private waiting: ((c: PollCall) => void)[] = [];

  poll(input: PollInput, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<DesiredState> {
    return new Promise((resolve, reject) => {
      const call: PollCall = { input: structuredClone(input), signal: opts.signal, resolve, reject };
      opts.signal?.addEventListener("abort", () => reject(new StateClientError("aborted", "aborted")));
      const waiter = this.waiting.shift();
      if (waiter) waiter(call);
      else this.queue.push(call);
    });
  }

  next(): Promise<PollCall> {
    const call = this.queue.shift();
    return call ? Promise.resolve(call) : new Promise((resolve) => this.waiting.push(resolve));
  }

  async offline(reason: string) {
    this.offlines.push(reason);
    return { protocol: PROTOCOL_VERSION as 1, generation: 0 };
  }

  close() {}
}

class FakeIpsec implements IpsecDriver {
  applied: PeerLocation[][] = [];
  state: TunnelReport[] = [];
  listeners: (() => void)[] = [];
  async apply(peers: PeerLocation[]) {
    this.applied.push(peers);
    this.state = peers.map((p) => ({ location: p.location, state: "connecting" }));
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
  calls: { cidrs: string[]; previous: string[]; removeRoutes: boolean }[] = [];
  current: string[] = [];
  failNext = 0;
  async apply(cidrs: string[], opts: { previous: string[]; removeRoutes: boolean }) {
    this.calls.push({ cidrs, ...opts });
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error("route table rtb-0abc is busy");
    }
    this.current = [...cidrs];
  }
  applied() {
    return this.current;
  }
}

class FakeFirewall implements Firewall {
  calls: (string[] | "remove")[] = [];
  async apply(allow: string[]) {
    this.calls.push(allow);
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
  async remove() {
    this.calls.push("remove");
  }
}

class FakeChecker implements HostChecker {
  targets: HostCheckTarget[][] = [];
  current: HostCheckResult[] = [];
  listeners: (() => void)[] = [];
  setTargets(targets: HostCheckTarget[]) {
    this.targets.push(targets);
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
    serverTime: Date.now(),
    ...over,
  };
}

function setup(options: Partial<ReconcileOptions> = {}) {
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
    self: { hostId: "a1", publicAddress: "198.18.0.10", privateAddress: "10.1.0.11" },
    options: { firewall: false, removeRoutes: false, hostCheck: true, ...options },
    agentVersion: "9.9.9",
    log: createLogger("debug", (l) => lines.push(l)),
    retryInitialMs: 1,
  });
  const done = loop.start();
  loops.push(loop);
  const logs = () => lines.map((l) => JSON.parse(l) as { level: string; msg: string });
  return { state, ipsec, routes, firewall, mss, checker, loop, done, lines, logs };
}

const loops: ReconcileLoop[] = [];
afterEach(async () => {
  await Promise.all(loops.splice(0).map((l) => l.stop("test over")));
});

describe("reconcile loop", () => {
  it("first poll does not wait, reports identity and addresses", async () => {
    const { state } = setup();
    const call = await state.next();
    expect(call.input).toMatchObject({
      generation: 0,
      wait: false,
      report: { agentVersion: "9.9.9", publicAddress: "198.18.0.10", privateAddress: "10.1.0.11", role: "standby", appliedGeneration: 0 },
    });
  });

  it("standby → active applies peers and routes, and the next long-poll reports them", async () => {
    const { state, ipsec, routes } = setup();
    (await state.next()).resolve(desired(1, "standby"));
    const second = await state.next();
    expect(second.input).toMatchObject({ generation: 1, wait: true, report: { role: "standby", appliedGeneration: 1 } });
    expect(ipsec.applied).toEqual([[]]);
    expect(routes.calls).toEqual([]);

    second.resolve(desired(2, "active"));
    const third = await state.next();
    expect(ipsec.applied).toEqual([[], [peer("west")]]);
    expect(routes.calls).toEqual([{ cidrs: ["10.2.0.0/16"], previous: [], removeRoutes: false }]);
    expect(third.input).toMatchObject({
      generation: 2,
      wait: true,
      report: { role: "active", appliedGeneration: 2, tunnels: [{ location: "west", state: "connecting" }], routes: { provider: "lab", applied: ["10.2.0.0/16"] } },
    });
    expect(third.input.report.routes.error).toBeUndefined();
  });

  it("active → standby removes the peers but never writes routes", async () => {
    const { state, ipsec, routes } = setup();
    (await state.next()).resolve(desired(1, "active"));
    (await state.next()).resolve(desired(2, "standby"));
    const third = await state.next();
    expect(ipsec.applied).toEqual([[peer("west")], []]);
    expect(routes.calls).toHaveLength(1);
    expect(third.input.report).toMatchObject({ role: "standby", appliedGeneration: 2 });
  });

  it("a repeated desired state changes nothing (diff, not re-apply)", async () => {
    const { state, ipsec, routes, checker } = setup();
    (await state.next()).resolve(desired(1, "active"));
    (await state.next()).resolve(desired(1, "active", { serverTime: Date.now() + 1000 }));
    await state.next();
    expect(ipsec.applied).toHaveLength(1);
    expect(routes.calls).toHaveLength(1);
    expect(checker.targets).toHaveLength(1);
  });

  it("promoted again after a standby spell, it writes its routes again", async () => {
    const { state, routes } = setup({ removeRoutes: true });
    (await state.next()).resolve(desired(1, "active"));
    (await state.next()).resolve(desired(2, "standby"));
    routes.current = []; // the new active host took them over
    (await state.next()).resolve(desired(3, "active"));
    await state.next();
    expect(routes.calls.map((c) => c.cidrs)).toEqual([["10.2.0.0/16"], ["10.2.0.0/16"]]);
  });

  it("with remove-routes, CIDRs no longer desired are passed as previous", async () => {
    const { state, routes } = setup({ removeRoutes: true });
    (await state.next()).resolve(desired(1, "active", { routes: { pointHere: ["10.2.0.0/16", "10.3.0.0/16"] } }));
    (await state.next()).resolve(desired(2, "active", { routes: { pointHere: ["10.2.0.0/16"] } }));
    await state.next();
    expect(routes.calls[1]).toEqual({ cidrs: ["10.2.0.0/16"], previous: ["10.2.0.0/16", "10.3.0.0/16"], removeRoutes: true });
  });

  it("an unreachable service keeps tunnels and routes, retries without waiting, and logs once", async () => {
    const { state, ipsec, routes, firewall, logs } = setup();
    (await state.next()).resolve(desired(1, "active"));
    for (let i = 0; i < 4; i++) {
      const call = await state.next();
      expect(call.input.wait).toBe(i === 0);
      call.reject(new StateClientError("unreachable", "127.0.0.1:9443: ECONNREFUSED"));
    }
    const recovered = await state.next();
    expect(recovered.input).toMatchObject({ wait: false, generation: 1, report: { role: "active", appliedGeneration: 1 } });
    expect(ipsec.applied).toEqual([[peer("west")]]);
    expect(routes.calls).toHaveLength(1);
    expect(firewall.calls).toEqual(["remove"]); // the one leftover check of the first answer
    const warnings = logs().filter((l) => l.level === "warn");
    expect(warnings.map((w) => w.msg)).toEqual(["state service unreachable: keeping tunnels and routes as they are"]);
    recovered.resolve(desired(1, "active"));
    await state.next();
    expect(logs().some((l) => l.msg === "state service reachable again")).toBe(true);
  });

  it("a refused answer (bad signature) changes nothing on the host", async () => {
    const { state, ipsec, routes, checker, logs } = setup();
    (await state.next()).reject(new StateClientError("bad-signature", "127.0.0.1:9443: mis-signed answer (HTTP 200)"));
    const next = await state.next();
    expect(next.input).toMatchObject({ generation: 0, wait: false, report: { role: "standby", appliedGeneration: 0 } });
    expect(ipsec.applied).toEqual([]);
    expect(routes.calls).toEqual([]);
    expect(checker.targets).toEqual([]);
    expect(logs().find((l) => l.level === "warn")).toMatchObject({ msg: "state service answer refused: nothing changed on this host", kind: "bad-signature" });
  });

  it("an urgent change aborts the held long-poll and reports at once", async () => {
    const { state, checker } = setup();
    (await state.next()).resolve(desired(1, "standby"));
    const held = await state.next();
    expect(held.input.wait).toBe(true);
    checker.current = [{ target: "a2", reachable: false, failures: 3, ageMs: 5 }];
    checker.listeners.forEach((l) => l());
    expect(held.signal?.aborted).toBe(true);
    const urgent = await state.next();
    expect(urgent.input).toMatchObject({ wait: false, generation: 1, report: { hostChecks: [{ target: "a2", reachable: false, failures: 3 }] } });
  });

  it("a failed route apply is reported and retried without re-applying what worked", async () => {
    const { state, ipsec, routes } = setup();
    routes.failNext = 1;
    (await state.next()).resolve(desired(1, "active"));
    const second = await state.next();
    expect(second.input.report).toMatchObject({ appliedGeneration: 0, routes: { error: "route table rtb-0abc is busy", applied: [] } });
    second.resolve(desired(1, "active"));
    const third = await state.next();
    expect(ipsec.applied).toHaveLength(1);
    expect(routes.calls).toHaveLength(2);
    expect(third.input.report).toMatchObject({ appliedGeneration: 1, routes: { applied: ["10.2.0.0/16"] } });
    expect(third.input.report.routes.error).toBeUndefined();
  });

  it("firewall-on applies the allow list; firewall-off (reload) removes the rules", async () => {
    const { state, firewall, loop } = setup({ firewall: true });
    (await state.next()).resolve(desired(1, "standby"));
    const held = await state.next();
    expect(firewall.calls).toEqual([["198.18.0.10", "198.18.0.20"]]);
    loop.updateOptions({ firewall: false, removeRoutes: false, hostCheck: true });
    expect(held.signal?.aborted).toBe(true);
    (await state.next()).resolve(desired(1, "standby"));
    (await state.next()).resolve(desired(1, "standby"));
    await state.next();
    expect(firewall.calls).toEqual([["198.18.0.10", "198.18.0.20"], "remove"]);
  });

  it("with firewall off, rules left by an earlier run are removed once, and a failure there is not an error", async () => {
    const { state, firewall, logs } = setup();
    firewall.remove = async () => {
      firewall.calls.push("remove");
      throw new Error("iptables: command not found");
    };
    (await state.next()).resolve(desired(1, "standby"));
    (await state.next()).resolve(desired(2, "standby"));
    const third = await state.next();
    expect(firewall.calls).toEqual(["remove"]);
    expect(third.input.report.appliedGeneration).toBe(2);
    expect(logs().filter((l) => l.level === "error")).toEqual([]);
  });

  it("set-mtu clamps the peers' remote subnets and follows the desired state", async () => {
    const { state, mss } = setup({ mtu: 1400 });
    (await state.next()).resolve(desired(1, "active"));
    (await state.next()).resolve(desired(2, "active", { serverTime: Date.now() + 1 })); // nothing changed
    const south = { ...peer("south"), remoteSubnets: ["10.4.0.0/16", "10.2.0.0/16"] };
    (await state.next()).resolve(desired(3, "active", { peers: [peer("west"), south] }));
    (await state.next()).resolve(desired(4, "standby"));
    const fifth = await state.next();
    expect(mss.calls).toEqual([
      [1400, ["10.2.0.0/16"]],
      [1400, ["10.2.0.0/16", "10.4.0.0/16"]],
      [1400, []], // a standby carries no traffic: an empty chain
    ]);
    expect(fifth.input.report.appliedGeneration).toBe(4);
  });

  it("mtu off (reload) removes the clamp; a changed mtu re-applies it", async () => {
    const { state, mss, loop } = setup({ mtu: 1400 });
    (await state.next()).resolve(desired(1, "active"));
    await state.next();
    loop.updateOptions({ firewall: false, removeRoutes: false, hostCheck: true, mtu: 1300 });
    (await state.next()).resolve(desired(1, "active"));
    await state.next();
    loop.updateOptions({ firewall: false, removeRoutes: false, hostCheck: true });
    (await state.next()).resolve(desired(1, "active"));
    (await state.next()).resolve(desired(2, "active"));
    await state.next();
    expect(mss.calls).toEqual([[1400, ["10.2.0.0/16"]], [1300, ["10.2.0.0/16"]], "remove"]);
  });

  it("without mtu, a clamp left by an earlier run is removed once, and a failure there is not an error", async () => {
    const { state, mss, logs } = setup();
    mss.remove = async () => {
      mss.calls.push("remove");
      throw new Error("iptables: command not found");
    };
    (await state.next()).resolve(desired(1, "active"));
    (await state.next()).resolve(desired(2, "active"));
    const third = await state.next();
    expect(mss.calls).toEqual(["remove"]);
    expect(third.input.report.appliedGeneration).toBe(2);
    expect(logs().filter((l) => l.level === "error")).toEqual([]);
  });

  it("a failed clamp is logged, holds back appliedGeneration and is retried with the next answer", async () => {
    const { state, mss, logs } = setup({ mtu: 1400 });
    mss.failNext = 1;
    (await state.next()).resolve(desired(1, "active"));
    const second = await state.next();
    expect(second.input.report.appliedGeneration).toBe(0);
    expect(logs().find((l) => l.level === "error")).toMatchObject({ msg: "tcp mss clamp change failed" });
    second.resolve(desired(1, "active"));
    const third = await state.next();
    expect(mss.calls).toEqual([
      [1400, ["10.2.0.0/16"]],
      [1400, ["10.2.0.0/16"]],
    ]);
    expect(third.input.report.appliedGeneration).toBe(1);
  });

  it("host-check off gives the checker no targets", async () => {
    const { state, checker } = setup({ hostCheck: false });
    (await state.next()).resolve(desired(1, "standby"));
    await state.next();
    expect(checker.targets).toEqual([[]]);
  });

  it("stop sends offline, exits the loop and leaves the tunnels up", async () => {
    const { state, ipsec, loop, done } = setup();
    (await state.next()).resolve(desired(1, "active"));
    const held = await state.next();
    await loop.stop("SIGTERM");
    await done;
    expect(held.signal?.aborted).toBe(true);
    expect(state.offlines).toEqual(["SIGTERM"]);
    expect(ipsec.applied).toEqual([[peer("west")]]);
  });

  it("never logs the PSK or the host-check key", async () => {
    const { state, lines } = setup();
    (await state.next()).resolve(desired(1, "active"));
    (await state.next()).resolve(desired(2, "standby"));
    await state.next();
    const all = lines.join("");
    expect(all).not.toContain(PSK);
    expect(all).not.toContain(HC_KEY);
    expect(all).toContain("tunnels applied");
  });
});

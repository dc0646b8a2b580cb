// The IpsecDriver against real charons in network namespaces, with real IKEv2/ESP (userspace ESP
// through kernel-libipsec) between them. One lab, steps in order: each step starts from the
// state the previous one left.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StrongswanDriver } from "../../agent/host/ipsec/driver";
import { createLogger } from "../../agent/host/log";
import { ViciSession, type SharedSecret, type TerminateOptions } from "../../agent/host/vici/session";
import type { ViciInput } from "../../agent/host/vici/message";
import { startCharon } from "../support/charon";
import { requireRoot } from "../support/netns";
import { createIpsecLab, eastSeenFromWest, pingSite, selfOf, westSeenFromEast, type IpsecLab, type LabHost } from "./lab";

/** A session that records the commands that change charon's configuration. */
class RecordingSession extends ViciSession {
  readonly loads: string[] = [];
  override loadConn(name: string, config: ViciInput): Promise<void> {
    this.loads.push(`load-conn ${name}`);
    return super.loadConn(name, config);
  }
  override loadShared(secret: SharedSecret): Promise<void> {
    this.loads.push(`load-shared ${secret.id}`);
    return super.loadShared(secret);
  }
  override unloadConn(name: string): Promise<void> {
    this.loads.push(`unload-conn ${name}`);
    return super.unloadConn(name);
  }
  readonly terminated: string[] = [];
  override terminate(opts: TerminateOptions): Promise<void> {
    this.terminated.push(opts.ikeId ?? opts.ike ?? "?");
    return super.terminate(opts);
  }
}

const logLines: string[] = [];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const log = createLogger("debug", (line) => logLines.push(line));

function driverFor(host: LabHost, session?: ViciSession, checkMs?: number): StrongswanDriver {
  return StrongswanDriver.start({
    viciSocket: host.charon.viciSocket,
    log,
    isLocalAddress: (address) => address === host.publicAddress,
    session,
    checkMs,
  });
}

/** Packet counters of the lab internet interface: IKE/ESP in UDP 4500, and plaintext site ICMP. */
async function wireCounters(lab: IpsecLab, host: LabHost): Promise<{ udp4500: number; plainIcmp: number }> {
  const out = (await lab.sandbox.exec(host.ns, ["iptables", "-w", "-nvxL", "OUTPUT"])).stdout;
  const count = (tag: string) => Number(out.split("\n").find((line) => line.includes(tag))?.trim().split(/\s+/)[0] ?? NaN);
  return { udp4500: count("sl-udp4500"), plainIcmp: count("sl-plain-icmp") };
}

describe.skipIf(!requireRoot())("StrongswanDriver against real charons (needs root: network namespaces)", () => {
  let lab: IpsecLab;
  let a: StrongswanDriver;
  let b: StrongswanDriver;
  let c: StrongswanDriver;
  const sessionA = () => new RecordingSession(lab.a.charon.viciSocket);
  let recorded: RecordingSession;
  const changes: string[] = [];

  beforeAll(async () => {
    lab = await createIpsecLab("ipsec-driver");
    for (const [tag, match] of [
      ["sl-udp4500", ["-p", "udp", "--dport", "4500"]],
      ["sl-plain-icmp", ["-p", "icmp", "-s", "10.0.0.0/8"]],
    ] as const) {
      await lab.sandbox.exec(lab.a.ns, ["iptables", "-w", "-A", "OUTPUT", "-o", "eth0", ...match, "-m", "comment", "--comment", tag]);
    }
    recorded = sessionA();
    a = driverFor(lab.a, recorded);
    b = driverFor(lab.b);
    c = driverFor(lab.c);
    a.onChange(() => changes.push(a.tunnels()[0]?.state ?? "none"));
  });

  afterAll(async () => {
    await Promise.all([a?.close(), b?.close(), c?.close()]);
    await lab?.cleanup();
  });

  it("brings the tunnel up and carries site traffic as ESP in UDP 4500, never in plain", async () => {
    await b.apply([eastSeenFromWest(lab)], selfOf(lab.b));
    await c.apply([eastSeenFromWest(lab)], selfOf(lab.c));
    await a.apply([westSeenFromEast(lab, lab.b)], selfOf(lab.a));

    await expect.poll(() => a.tunnels(), { timeout: 10_000 }).toEqual([
      { location: "west", state: "up", peerHost: "b", peerAddress: lab.b.publicAddress, since: expect.any(Number) },
    ]);
    await expect.poll(() => b.tunnels()[0]?.state, { timeout: 10_000 }).toBe("up");
    expect(b.tunnels()[0]).toMatchObject({ location: "east", peerHost: "a", peerAddress: lab.a.publicAddress });
    expect(c.tunnels()).toEqual([{ location: "east", state: "down", since: expect.any(Number) }]);
    expect(changes).toContain("up");

    const before = await wireCounters(lab, lab.a);
    await expect.poll(() => pingSite(lab, lab.a, lab.b), { timeout: 5_000 }).toBe(true);
    const after = await wireCounters(lab, lab.a);
    expect(after.udp4500).toBeGreaterThan(before.udp4500);
    expect(after.plainIcmp).toBe(0);
  });

  it("re-applying the same state makes no load or unload call", async () => {
    const loadsBefore = recorded.loads.length;
    await a.apply([westSeenFromEast(lab, lab.b)], selfOf(lab.a));
    await a.apply([westSeenFromEast(lab, lab.b)], selfOf(lab.a));
    expect(recorded.loads.slice(loadsBefore)).toEqual([]);
    expect(recorded.loads).toEqual(["load-shared sitelink-west", "load-conn sitelink-west"]);
  });

  it("a standby joining or moving in the peer location leaves the initiator's tunnel alone", async () => {
    const vici = new ViciSession(lab.a.charon.viciSocket);
    try {
      const ids = async () => (await vici.listSas()).map((sa) => (sa["sitelink-west"] as { uniqueid: string }).uniqueid);
      const before = await ids();
      expect(before).toHaveLength(1);
      const loads = recorded.loads.length;
      changes.length = 0;
      const west = westSeenFromEast(lab, lab.b);
      const d = { id: "d", publicAddress: "198.18.0.9" };
      await a.apply([{ ...west, hosts: [...west.hosts, d] }], selfOf(lab.a)); // d joins as a standby
      await a.apply([{ ...west, hosts: [west.hosts[0]!, { id: "c", publicAddress: "198.18.0.8" }, d] }], selfOf(lab.a)); // c moved
      // charon restarts an initiator whose connection is reloaded (load-conn): nothing may be reloaded.
      expect(recorded.loads.slice(loads)).toEqual([]);
      await sleep(500); // a restart would show within milliseconds
      expect(await ids()).toEqual(before);
      expect(changes).toEqual([]);
      await a.apply([west], selfOf(lab.a));
      expect(recorded.loads.slice(loads)).toEqual([]);
    } finally {
      vici.close();
    }
  });

  it("after an agent restart it adopts the running tunnel without tearing it down, and drops leftovers", async () => {
    const vici = new ViciSession(lab.a.charon.viciSocket);
    try {
      // A leftover of the crashed agent: a connection for a location no longer connected.
      await vici.loadConn("sitelink-north", { version: 2, remote_addrs: ["198.18.0.9"], local: { auth: "psk" }, remote: { auth: "psk" } });
      const idsBefore = (await vici.listSas()).map((sa) => sa["sitelink-west"]).map((ike) => (ike as { uniqueid: string }).uniqueid);

      await a.close();
      recorded = sessionA();
      a = driverFor(lab.a, recorded);
      a.onChange(() => changes.push(a.tunnels()[0]?.state ?? "none"));
      await a.apply([westSeenFromEast(lab, lab.b)], selfOf(lab.a));
      await expect.poll(() => a.tunnels()[0], { timeout: 5_000 }).toMatchObject({ state: "up", peerHost: "b" });

      expect(recorded.loads).toEqual(["load-shared sitelink-west", "unload-conn sitelink-north", "load-conn sitelink-west"]);
      expect(await vici.getConns()).toEqual(["sitelink-west"]);
      const idsAfter = (await vici.listSas()).map((sa) => sa["sitelink-west"]).map((ike) => (ike as { uniqueid: string }).uniqueid);
      expect(idsAfter).toEqual(idsBefore);
    } finally {
      vici.close();
    }
  });

  it("never touches an operator's own connection, and restores its own by itself after swanctl dropped them", async () => {
    const file = join(lab.a.charon.dir, "operator.conf");
    writeFileSync(
      file,
      `connections {
  operator-vpn {
    remote_addrs = 198.18.0.200
    local { auth = psk }
    remote { auth = psk }
    children { office { remote_ts = 10.200.0.0/24 } }
  }
}
secrets { ike-operator { secret = operator-own-secret-0123456789 } }
`,
    );
    await lab.sandbox.exec(lab.a.ns, ["swanctl", "--load-all", "--file", file, "--uri", `unix://${lab.a.charon.viciSocket}`]);
    const vici = new ViciSession(lab.a.charon.viciSocket);
    try {
      // swanctl --load-all unloads every connection and secret not in its files: ours too.
      expect(await vici.getConns()).toEqual(["operator-vpn"]);
      // No apply from the test (no new desired state): the driver's periodic check puts them back.
      await expect.poll(async () => (await vici.getConns()).sort(), { timeout: 10_000 }).toEqual(["operator-vpn", "sitelink-west"]);
      expect((await vici.getShared()).sort()).toEqual(["ike-operator", "sitelink-west"]);
      await expect.poll(() => a.tunnels()[0]?.state, { timeout: 10_000 }).toBe("up");
      expect(logLines.some((line) => line.includes("charon lost sitelink connections or secrets"))).toBe(true);

      await a.apply([], selfOf(lab.a));
      expect(await vici.getConns()).toEqual(["operator-vpn"]);
      expect(await vici.getShared()).toEqual(["ike-operator"]);
    } finally {
      vici.close();
    }
  });

  it("unloading the connection stops the traffic and reports the tunnel gone", async () => {
    expect(a.tunnels()).toEqual([]);
    await expect.poll(() => b.tunnels()[0]?.state, { timeout: 10_000 }).toBe("down");
    expect(await pingSite(lab, lab.a, lab.b)).toBe(false);
  });

  it("reports down when the tunnel is terminated, and heals on the next apply", async () => {
    await a.apply([westSeenFromEast(lab, lab.b)], selfOf(lab.a));
    await expect.poll(() => a.tunnels()[0]?.state, { timeout: 10_000 }).toBe("up");
    changes.length = 0;
    const vici = new ViciSession(lab.b.charon.viciSocket);
    try {
      await vici.terminate({ ike: "sitelink-east", timeout: 5_000 });
    } finally {
      vici.close();
    }
    // The initiator's close_action starts it again; the flip through down is what the events show.
    await expect.poll(() => changes.includes("down") || changes.includes("connecting"), { timeout: 10_000 }).toBe(true);
    await expect.poll(() => a.tunnels()[0]?.state, { timeout: 10_000 }).toBe("up");

    const own = new ViciSession(lab.a.charon.viciSocket);
    try {
      await own.terminate({ ike: "sitelink-west", timeout: 5_000 });
    } finally {
      own.close();
    }
    await expect.poll(() => a.tunnels()[0]?.state, { timeout: 10_000 }).toBe("down");
    await a.apply([westSeenFromEast(lab, lab.b)], selfOf(lab.a));
    await expect.poll(() => a.tunnels()[0]?.state, { timeout: 10_000 }).toBe("up");
  });

  it("moves the tunnel to the peer location's new active host at once", async () => {
    // west fails over from b to c: b (now standby) drops its tunnels, a re-initiates to c.
    await b.apply([], selfOf(lab.b));
    await a.apply([westSeenFromEast(lab, lab.c)], selfOf(lab.a));
    await expect.poll(() => a.tunnels()[0], { timeout: 10_000 }).toMatchObject({ state: "up", peerHost: "c", peerAddress: lab.c.publicAddress });
    await expect.poll(() => c.tunnels()[0]?.state, { timeout: 10_000 }).toBe("up");
    await expect.poll(() => pingSite(lab, lab.a, lab.c), { timeout: 5_000 }).toBe(true);
    const vici = new ViciSession(lab.a.charon.viciSocket);
    try {
      const peers = (await vici.listSas()).map((sa) => (sa["sitelink-west"] as { "remote-host": string })["remote-host"]);
      expect(peers).toEqual([lab.c.publicAddress]);
    } finally {
      vici.close();
    }
  });

  it("closes an IKE_SA with a peer host that is no longer active (responder side)", async () => {
    // East fails over from a to a2 (198.18.0.50, not in the lab): c must drop its SA with a at
    // once rather than keep it until DPD. a, no longer an east host as far as c knows, cannot
    // come back in.
    const a2 = { id: "a2", publicAddress: "198.18.0.50" };
    const vici = new ViciSession(lab.c.charon.viciSocket);
    try {
      await expect.poll(async () => (await vici.listSas()).length, { timeout: 10_000 }).toBe(1);
      await c.apply([{ ...eastSeenFromWest(lab), activeHost: a2, hosts: [a2] }], selfOf(lab.c));
      await expect.poll(() => c.tunnels()[0]?.state, { timeout: 10_000 }).toBe("down");
      expect(await vici.listSas()).toEqual([]);
    } finally {
      vici.close();
    }
    await c.apply([eastSeenFromWest(lab)], selfOf(lab.c));
  });

  it("notices a peer that died without a word (SIGKILL) through DPD", async () => {
    // The initiator gave up on c while c refused it; the next apply starts it again.
    await a.apply([westSeenFromEast(lab, lab.c)], selfOf(lab.a));
    await expect.poll(() => a.tunnels()[0]?.state, { timeout: 15_000 }).toBe("up");
    await lab.c.charon.stop("SIGKILL");
    await expect.poll(() => a.tunnels()[0]?.state, { timeout: 20_000 }).not.toBe("up");
  });

  it("puts its connections back by itself when charon restarts", async () => {
    await b.apply([eastSeenFromWest(lab)], selfOf(lab.b));
    await a.apply([westSeenFromEast(lab, lab.b)], selfOf(lab.a));
    await expect.poll(() => a.tunnels()[0]?.state, { timeout: 10_000 }).toBe("up");
    const loads = recorded.loads.length;
    changes.length = 0;
    await lab.a.charon.stop("SIGKILL");
    await expect.poll(() => changes, { timeout: 10_000 }).toContain("down");
    lab.a.charon = await startCharon(lab.sandbox, lab.a.ns);
    // No apply from the test: the driver notices charon is back and re-applies the last state.
    await expect.poll(() => a.tunnels()[0]?.state, { timeout: 15_000 }).toBe("up");
    expect(recorded.loads.slice(loads)).toEqual(["load-shared sitelink-west", "load-conn sitelink-west"]);
    await expect.poll(() => pingSite(lab, lab.a, lab.b), { timeout: 5_000 }).toBe(true);
  });

  it("tries again when the peer refused it because its own agent was not ready yet", async () => {
    await a.apply([], selfOf(lab.a));
    await b.apply([], selfOf(lab.b));
    const vici = new ViciSession(lab.a.charon.viciSocket);
    try {
      await a.apply([westSeenFromEast(lab, lab.b)], selfOf(lab.a));
      // b has no connection for east: it refuses, and charon does not retry by itself.
      await expect.poll(async () => (await vici.listSas()).length, { timeout: 10_000 }).toBe(0);
      expect(a.tunnels()[0]?.state).toBe("down");
      await b.apply([eastSeenFromWest(lab)], selfOf(lab.b));
      await expect.poll(() => a.tunnels()[0]?.state, { timeout: 10_000 }).toBe("up");
    } finally {
      vici.close();
    }
  });

  it("retries a refused initiation within its first seconds, not only at the periodic check", async () => {
    // Both ends apply a new state at once (agents starting, a failover): the initiator's first
    // IKE_SA_INIT may reach the peer before the peer loaded its connection.
    await a.close();
    await b.apply([], selfOf(lab.b));
    // No SA left from the previous test (b's unload does not always reach a in time): the new driver
    // would find it up and have nothing to initiate.
    const vici = new ViciSession(lab.a.charon.viciSocket);
    try {
      // One that b's DELETE removes meanwhile is no longer there to terminate: the poll below is the check.
      for (const sa of await vici.listSas()) for (const name of Object.keys(sa)) await vici.terminate({ ike: name, force: true, timeout: -1 }).catch(() => undefined);
      await expect.poll(async () => (await vici.listSas()).length, { timeout: 10_000 }).toBe(0);
    } finally {
      vici.close();
    }
    const quick = driverFor(lab.a, undefined, 600_000); // no periodic check during the test
    const logged = logLines.length;
    try {
      await quick.apply([westSeenFromEast(lab, lab.b)], selfOf(lab.a));
      // b refuses until it applies: the driver initiates again on its own, long before its periodic
      // check (quick retries at 0.2, 0.6, 1.4 s after the first initiation).
      await expect.poll(() => logLines.slice(logged).some((line) => line.includes("initiating again")), { timeout: 3_000 }).toBe(true);
      await b.apply([eastSeenFromWest(lab)], selfOf(lab.b));
      await expect.poll(() => quick.tunnels()[0]?.state, { timeout: 10_000 }).toBe("up");
    } finally {
      await quick.close();
      recorded = sessionA();
      a = driverFor(lab.a, recorded);
      a.onChange(() => changes.push(a.tunnels()[0]?.state ?? "none"));
      await a.apply([westSeenFromEast(lab, lab.b)], selfOf(lab.a));
      // The next tests start from a tunnel that is up, as before this one.
      await expect.poll(() => a.tunnels()[0]?.state, { timeout: 10_000 }).toBe("up");
    }
  });

  it("refuses a bad desired state, naming the field, before changing anything", async () => {
    const vici = new ViciSession(lab.a.charon.viciSocket);
    try {
      const loads = recorded.loads.length;
      const bad = { ...westSeenFromEast(lab, lab.b), remoteSubnets: ["10.2.0.1/24"] };
      await expect(a.apply([bad], selfOf(lab.a))).rejects.toThrow(/^ipsec: peers\[0\]\.remoteSubnets\[0\] "10.2.0.1\/24" has host bits set/);
      expect(recorded.loads.slice(loads)).toEqual([]);
      expect(await vici.getConns()).toEqual(["sitelink-west"]);
      expect(a.tunnels()[0]?.state).toBe("up");
    } finally {
      vici.close();
    }
  });

  it("as responder, drops the SA with the peer's crashed active host as soon as it is told the new one", async () => {
    // Roles flipped: west initiates. b is west's active host, crashes, and c takes over; a still
    // holds b's SA (DPD would take seconds) next to c's new one until the new state arrives.
    lab.c.charon = await startCharon(lab.sandbox, lab.c.ns); // it died in the DPD step
    const eastAsResponder = { ...westSeenFromEast(lab, lab.b), initiator: false };
    const westAsInitiator = { ...eastSeenFromWest(lab), initiator: true };
    await a.apply([eastAsResponder], selfOf(lab.a));
    await b.apply([westAsInitiator], selfOf(lab.b));
    await expect.poll(() => a.tunnels()[0], { timeout: 10_000 }).toMatchObject({ state: "up", peerHost: "b" });

    const vici = new ViciSession(lab.a.charon.viciSocket);
    const sas = async () =>
      (await vici.listSas()).map((entry) => entry["sitelink-west"] as { uniqueid: string; "remote-host": string });
    try {
      // c's SA comes up first and b crashes just before a is told: were b killed first, a's DPD
      // could drop b's SA on its own (after ~4 s) before c's arrived on a loaded machine.
      await c.apply([westAsInitiator], selfOf(lab.c));
      await expect.poll(async () => (await sas()).map((sa) => sa["remote-host"]).sort(), { timeout: 10_000 }).toEqual([
        lab.b.publicAddress,
        lab.c.publicAddress,
      ]);
      await lab.b.charon.stop("SIGKILL");
      const staleId = (await sas()).find((sa) => sa["remote-host"] === lab.b.publicAddress)!.uniqueid;
      const terminatedBefore = recorded.terminated.length;

      await a.apply([{ ...eastAsResponder, activeHost: { id: lab.c.id, publicAddress: lab.c.publicAddress } }], selfOf(lab.a));
      expect(recorded.terminated.slice(terminatedBefore)).toEqual([staleId]);
      await expect.poll(async () => (await sas()).map((sa) => sa["remote-host"]), { timeout: 10_000 }).toEqual([lab.c.publicAddress]);
      await expect.poll(() => a.tunnels()[0], { timeout: 10_000 }).toMatchObject({ state: "up", peerHost: "c" });
      await expect.poll(() => pingSite(lab, lab.a, lab.c), { timeout: 5_000 }).toBe(true);
    } finally {
      vici.close();
    }
  });

  it("as responder, keeps the tunnel when a standby joins the peer location, and admits a new active host at once", async () => {
    lab.b.charon = await startCharon(lab.sandbox, lab.b.ns); // it died in the previous step
    await expect.poll(() => b.apply([], selfOf(lab.b)).then(() => true, () => false), { timeout: 10_000 }).toBe(true);
    const cOnly = { ...westSeenFromEast(lab, lab.c), hosts: [{ id: lab.c.id, publicAddress: lab.c.publicAddress }], initiator: false };
    const westAsInitiator = { ...eastSeenFromWest(lab), initiator: true };
    await a.apply([cOnly], selfOf(lab.a));
    await expect.poll(() => a.tunnels()[0], { timeout: 10_000 }).toMatchObject({ state: "up", peerHost: "c" });
    const vici = new ViciSession(lab.a.charon.viciSocket);
    try {
      const ids = async () => (await vici.listSas()).map((sa) => (sa["sitelink-west"] as { uniqueid: string }).uniqueid);
      await expect.poll(ids, { timeout: 10_000 }).toHaveLength(1);
      const before = await ids();
      const loads = recorded.loads.length;
      changes.length = 0;
      // b joins west as a standby: the responder's connection now admits it too (a reload, which
      // charon does without touching a responder's SAs).
      await a.apply([{ ...cOnly, hosts: [...cOnly.hosts, { id: lab.b.id, publicAddress: lab.b.publicAddress }] }], selfOf(lab.a));
      expect(recorded.loads.slice(loads)).toEqual(["load-shared sitelink-west", "load-conn sitelink-west"]);
      await sleep(500);
      expect(await ids()).toEqual(before);
      expect(changes).toEqual([]);
      // West fails over to b before a hears of it from the state service: b's IKE is admitted at once.
      await c.apply([], selfOf(lab.c));
      await b.apply([westAsInitiator], selfOf(lab.b));
      await expect.poll(() => a.tunnels()[0], { timeout: 10_000 }).toMatchObject({ state: "up", peerHost: "b" });
      await expect.poll(() => pingSite(lab, lab.a, lab.b), { timeout: 5_000 }).toBe(true);
    } finally {
      vici.close();
    }
  });

  it("never logs the PSK", () => {
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.join("\n")).not.toContain(lab.psk);
  });
});

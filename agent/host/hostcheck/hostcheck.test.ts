import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { HostCheckTarget } from "../../contract/protocol";
import { createLogger } from "../log";
import { HostCheckListener } from "./listener";
import { HostCheckProber, MAX_IN_FLIGHT, probe } from "./prober";
import { answerMac, encodeAnswer, encodeChallenge, newChallenge, parseChallenge, verifyAnswer } from "./protocol";

const KEY = "k".repeat(43);
const OTHER_KEY = "x".repeat(43);
const LOOPBACK = ["127.0.0.1"];
const TIMING = { heartbeat: 1, probeInterval: 0.05, probeTimeout: 0.5 };

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function listener(hostId: string, key: string | null = KEY): Promise<{ listener: HostCheckListener; port: number }> {
  const l = new HostCheckListener({ hostId, key: key ?? undefined, allow: LOOPBACK, port: 0, host: "127.0.0.1" });
  const { port } = await l.start();
  cleanups.push(() => l.close());
  return { listener: l, port };
}

function prober(hostId = "probe-host"): HostCheckProber {
  const p = new HostCheckProber({ hostId });
  cleanups.push(() => p.close());
  return p;
}

function target(hostId: string, port: number, address = "127.0.0.1"): HostCheckTarget {
  return { hostId, address, port, scope: "location" };
}

/** A port that was just free: bound, then closed again. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A plain TCP server for misbehaving peers; its connections are cut on cleanup. */
async function tcpServer(onConnection: (socket: Socket) => void): Promise<number> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => {
    sockets.forEach((socket) => socket.destroy());
    server.close();
  });
  return (server.address() as AddressInfo).port;
}

/** Polls until `predicate` holds (for counters that change without an onChange call). */
function until(predicate: () => boolean): Promise<void> {
  return vi.waitFor(() => expect(predicate()).toBe(true), { timeout: 20_000, interval: 10 });
}

/** Resolves once `predicate` holds after an onChange call (the prober calls it on first verdict and flips). */
function changed(p: HostCheckProber, predicate: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    if (predicate()) return resolve();
    p.onChange(() => {
      if (predicate()) resolve();
    });
  });
}

/** Sends raw bytes, returns everything the server sent back before closing. */
function raw(port: number, data: Buffer | string, opts: { end?: boolean } = {}): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    let out = "";
    socket.on("data", (chunk) => (out += chunk.toString("latin1")));
    socket.on("error", () => {});
    socket.on("close", () => resolve(out));
    socket.write(data);
    if (opts.end) socket.end();
  });
}

describe("host check protocol", () => {
  it("binds the answer to client, nonce and server host id", () => {
    const challenge = newChallenge("a");
    const line = `SLHC1 b ${answerMac(KEY, challenge, "b")}`;
    expect(verifyAnswer(KEY, challenge, "b", line)).toBe("ok");
    expect(verifyAnswer(OTHER_KEY, challenge, "b", line)).toBe("bad-mac");
    expect(verifyAnswer(KEY, challenge, "c", line)).toBe("wrong-host");
    expect(verifyAnswer(KEY, newChallenge("a"), "b", line)).toBe("bad-mac");
    expect(verifyAnswer(KEY, challenge, "b", "ok")).toBe("malformed");
    // A challenge line echoed back is never a valid answer.
    expect(verifyAnswer(KEY, challenge, "a", encodeChallenge(challenge).trim())).toBe("malformed");
  });
});

describe("host check listener and probe on loopback", () => {
  it("a valid peer is reachable, with its RTT", async () => {
    const { port } = await listener("peer-1");
    const outcome = await probe(target("peer-1", port), "me", KEY, 1000);
    expect(outcome.ok).toBe(true);
    if (outcome.ok) expect(outcome.rttMs).toBeGreaterThan(0);
  });

  it("a peer with another key is an impostor", async () => {
    const { port } = await listener("peer-1", OTHER_KEY);
    expect(await probe(target("peer-1", port), "me", KEY, 1000)).toMatchObject({ ok: false, reason: "impostor", detail: "bad-mac" });
  });

  it("a different host answering on the target's address is an impostor", async () => {
    const { port } = await listener("peer-2");
    expect(await probe(target("peer-1", port), "me", KEY, 1000)).toMatchObject({ ok: false, reason: "impostor", detail: "wrong-host" });
  });

  it("a server answering a bare ok is not accepted", async () => {
    const port = await tcpServer((socket) => socket.end("ok\n"));
    expect(await probe(target("peer-1", port), "me", KEY, 1000)).toMatchObject({ ok: false, reason: "malformed" });
  });

  it("a closed port is refused without waiting for the timeout", async () => {
    const port = await closedPort();
    // The timeout is far beyond the test timeout: only an immediate refusal lets this finish.
    expect(await probe(target("peer-1", port), "me", KEY, 600_000)).toMatchObject({ ok: false, reason: "refused" });
  });

  it("a silent server counts as a timeout", async () => {
    const port = await tcpServer(() => {});
    expect(await probe(target("peer-1", port), "me", KEY, 100)).toEqual({ ok: false, reason: "timeout" });
  });

  it("a listener without a key yet answers nothing", async () => {
    const { port, listener: l } = await listener("peer-1", null);
    expect(await probe(target("peer-1", port), "me", KEY, 1000)).toMatchObject({ ok: false, reason: "closed" });
    l.update({ key: KEY });
    expect(await probe(target("peer-1", port), "me", KEY, 1000)).toMatchObject({ ok: true });
  });

  it("survives garbage, oversized lines, half lines and binary noise, and still answers", async () => {
    const { port } = await listener("peer-1");
    expect(await raw(port, "hello\n")).toBe("");
    expect(await raw(port, "SLHC1 me nothex\n")).toBe("");
    expect(await raw(port, `SLHC1 me ${"a".repeat(32)} extra\n`)).toBe("");
    expect(await raw(port, "A".repeat(100_000))).toBe("");
    expect(await raw(port, Buffer.from([0, 255, 10, 13, 0]))).toBe("");
    expect(await raw(port, "SLHC1 me", { end: true })).toBe("");
    const challenge = newChallenge("me");
    const answer = await raw(port, encodeChallenge(challenge));
    expect(verifyAnswer(KEY, challenge, "peer-1", answer.trim())).toBe("ok");
  });

  it("refuses a host id that cannot travel on the wire, naming the field", () => {
    expect(() => new HostCheckListener({ hostId: "two words", key: KEY })).toThrow('host check: hostId "two words" must be');
    expect(() => new HostCheckProber({ hostId: "" })).toThrow('host check: hostId "" must be');
  });

  it("a target the socket layer rejects outright is unreachable, not a crash", async () => {
    expect(await probe(target("peer-1", 70_000), "me", KEY, 1000)).toMatchObject({ ok: false, reason: "unreachable" });
  });

  it("answers with a new key at once, and serves again after a close (host-check off, then on)", async () => {
    const { port, listener: l } = await listener("peer-1");
    l.update({ key: OTHER_KEY });
    expect(await probe(target("peer-1", port), "me", OTHER_KEY, 1000)).toMatchObject({ ok: true });
    expect(await probe(target("peer-1", port), "me", KEY, 1000)).toMatchObject({ ok: false, reason: "impostor" });
    await l.close();
    expect(await probe(target("peer-1", port), "me", OTHER_KEY, 1000)).toMatchObject({ ok: false, reason: "refused" });
    const { port: again } = await l.start();
    expect(await probe(target("peer-1", again), "me", OTHER_KEY, 1000)).toMatchObject({ ok: true });
  });
});

describe("host check prober", () => {
  it("reports a reachable peer with RTT, then flips and notifies when the peer stops", async () => {
    const { port, listener: l } = await listener("peer-1");
    const p = prober();
    let changes = 0;
    p.onChange(() => changes++);
    p.setTargets([target("peer-1", port)], KEY, TIMING);
    await changed(p, () => p.results()[0]?.reachable === true);
    const [up] = p.results();
    expect(up).toMatchObject({ target: "peer-1", reachable: true, failures: 0 });
    expect(up!.rttMs).toBeGreaterThan(0);
    expect(up!.ageMs).toBeGreaterThanOrEqual(0);
    expect(changes).toBe(1);

    await l.close();
    await changed(p, () => p.results()[0]?.reachable === false);
    const [down] = p.results();
    expect(down).toMatchObject({ target: "peer-1", reachable: false, failures: 1 });
    expect(down!.rttMs).toBeUndefined();
    expect(changes).toBe(2);
  });

  it("counts failures in a row and keeps history for targets that stay", async () => {
    const { port: goodPort } = await listener("peer-1");
    const badPort = await closedPort();
    const p = prober();
    p.setTargets([target("peer-1", goodPort), target("peer-2", badPort)], KEY, TIMING);
    await until(() => (p.results().find((r) => r.target === "peer-2")?.failures ?? 0) >= 3);

    // peer-2 stays (history kept), peer-1 leaves, peer-3 (wrong key) joins.
    const { port: impostorPort } = await listener("peer-3", OTHER_KEY);
    p.setTargets([target("peer-2", badPort), target("peer-3", impostorPort)], KEY, TIMING);
    const peer2 = p.results().find((r) => r.target === "peer-2");
    expect(peer2?.failures).toBeGreaterThanOrEqual(3);
    expect(p.results().map((r) => r.target)).not.toContain("peer-1");
    await changed(p, () => p.results().some((r) => r.target === "peer-3"));
    expect(p.results().find((r) => r.target === "peer-3")).toMatchObject({ reachable: false });
  });

  it("notifies again when a target's failures reach the count that confirms a crash, and not after", async () => {
    const p = prober();
    const seen: number[] = [];
    p.onChange(() => seen.push(p.results()[0]!.failures));
    p.setTargets([target("peer-1", await closedPort())], KEY, TIMING);
    await until(() => (p.results()[0]?.failures ?? 0) >= 4);
    expect(seen).toEqual([1, 2]);
  });

  it("keeps probing a silent target every interval while earlier probes wait for their timeout, a few at a time", async () => {
    let open = 0;
    let mostOpen = 0;
    let connections = 0;
    const port = await tcpServer((socket) => {
      connections++;
      mostOpen = Math.max(mostOpen, ++open);
      socket.on("close", () => open--);
    });
    const p = prober();
    const failuresSeen: number[] = [];
    p.onChange(() => failuresSeen.push(p.results()[0]!.failures));
    // A silent target: each probe waits out 0.5 s, and a new one starts every 0.05 s.
    p.setTargets([target("peer-1", port)], KEY, TIMING);
    await changed(p, () => (p.results()[0]?.failures ?? 0) >= 2);
    // Serial probes would never overlap; unbounded ones would have ~10 open (0.5 s / 0.05 s). The
    // server may see a cut connection close a moment after the prober opened the next one.
    expect(mostOpen).toBeGreaterThanOrEqual(2);
    expect(mostOpen).toBeLessThanOrEqual(MAX_IN_FLIGHT + 1);
    expect(connections).toBeGreaterThan(2);
    expect(failuresSeen).toEqual([1, 2]);
  });

  it("a late answer to an older probe does not overwrite the newer probes' failures", async () => {
    // The first probe is answered correctly but 0.3 s late; every later one is cut at once.
    let first = true;
    const port = await tcpServer((socket) => {
      if (!first) return socket.destroy();
      first = false;
      socket.once("data", (chunk: Buffer) => {
        const challenge = parseChallenge(chunk.toString("latin1").trim());
        setTimeout(() => socket.write(encodeAnswer(KEY, challenge!, "peer-1")), 300);
      });
    });
    const p = prober();
    const verdicts: boolean[] = [];
    p.onChange(() => verdicts.push(p.results()[0]!.reachable));
    p.setTargets([target("peer-1", port)], KEY, TIMING);
    await until(() => (p.results()[0]?.failures ?? 0) >= 3);
    await new Promise((resolve) => setTimeout(resolve, 400)); // the late answer has come and gone
    expect(verdicts).not.toContain(true);
    expect(p.results()[0]!.failures).toBeGreaterThanOrEqual(3);
  });

  it("a target that comes back resets its failure count", async () => {
    const port = await closedPort();
    const p = prober();
    p.setTargets([target("peer-1", port)], KEY, TIMING);
    await until(() => (p.results()[0]?.failures ?? 0) >= 2);
    const l = new HostCheckListener({ hostId: "peer-1", key: KEY, allow: LOOPBACK, port, host: "127.0.0.1" });
    await l.start();
    cleanups.push(() => l.close());
    await changed(p, () => p.results()[0]?.reachable === true);
    expect(p.results()[0]).toMatchObject({ reachable: true, failures: 0 });
  });

  it("logs flips with target and reason, never the key", async () => {
    const lines: string[] = [];
    const log = createLogger("debug", (line) => lines.push(line));
    const l = new HostCheckListener({ hostId: "peer-1", key: KEY, allow: LOOPBACK, port: 0, host: "127.0.0.1", log });
    const { port } = await l.start();
    cleanups.push(() => l.close());
    const p = new HostCheckProber({ hostId: "probe-host", log });
    cleanups.push(() => p.close());
    p.setTargets([target("peer-1", port)], KEY, TIMING);
    await changed(p, () => p.results()[0]?.reachable === true);
    await raw(port, "garbage\n");
    l.update({ key: OTHER_KEY });
    await changed(p, () => p.results()[0]?.reachable === false);
    const events = lines.map((line) => JSON.parse(line) as { msg: string; target?: string; reason?: string });
    expect(events).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ msg: "host check target reachable", target: "peer-1" }),
        expect.objectContaining({ msg: "host check request refused", why: "not a challenge" }),
        expect.objectContaining({ msg: "host check target unreachable", target: "peer-1", reason: "impostor" }),
      ]),
    );
    for (const line of lines) {
      expect(line).not.toContain(KEY);
      expect(line).not.toContain(OTHER_KEY);
    }
  });

  it("stops probing after close", async () => {
    const { port } = await listener("peer-1");
    const p = prober();
    p.setTargets([target("peer-1", port)], KEY, TIMING);
    await changed(p, () => p.results().length === 1);
    await p.close();
    expect(p.results()).toEqual([]);
    expect(() => p.setTargets([], KEY, TIMING)).toThrow(/closed/);
  });
});

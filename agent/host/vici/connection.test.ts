// The client's protocol handling against a scripted VICI peer on a real unix socket: ordering,
// streaming, errors, timeouts, reconnects. (The commands themselves are tested against a real
// charon in vici.charon.test.ts.)
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ViciCommandError, ViciConnection, ViciConnectionError } from "./connection";
import { ViciSubscription } from "./events";
import { decodeMessage, encodeMessage, type ViciInput, type ViciSection } from "./message";
import { PacketType, SegmentReader, decodePacket, encodePacket, type Packet } from "./packet";
import { ViciSession } from "./session";

interface Seen {
  type: number;
  name?: string;
  message: ViciSection;
}

type Script = (packet: Seen, peer: { send(p: Packet): void; socket: Socket }) => void;

const reply = (message: ViciInput = {}): Packet => ({ type: PacketType.CMD_RESPONSE, body: encodeMessage(message) });
const event = (name: string, message: ViciInput): Packet => ({ type: PacketType.EVENT, name, body: encodeMessage(message) });
const confirm: Packet = { type: PacketType.EVENT_CONFIRM, body: Buffer.alloc(0) };

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** A VICI peer on a fresh unix socket that answers each packet through `script`. */
async function peer(script: Script): Promise<{ path: string; seen: Seen[]; sockets: Socket[]; server: Server }> {
  const dir = mkdtempSync(join(tmpdir(), "vici-test-"));
  const path = join(dir, "charon.vici");
  const seen: Seen[] = [];
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    const reader = new SegmentReader();
    socket.on("error", () => undefined);
    socket.on("data", (chunk) => {
      for (const segment of reader.push(chunk)) {
        const packet = decodePacket(segment);
        const entry = { type: packet.type, name: packet.name, message: decodeMessage(packet.body) };
        seen.push(entry);
        script(entry, { send: (p) => socket.write(encodePacket(p)), socket });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { path, seen, sockets, server };
}

const echo: Script = (packet, { send }) => {
  if (packet.type === PacketType.CMD_REQUEST) send(reply({ command: packet.name!, ...packet.message }));
  else send(confirm);
};

describe("ViciConnection", () => {
  it("sends a named request and returns the decoded response", async () => {
    const { path, seen } = await peer(echo);
    const conn = await ViciConnection.connect(path);
    await expect(conn.request("load-conn", { c: { version: 2, remote_addrs: ["198.18.0.2"] } })).resolves.toEqual({
      command: "load-conn",
      c: { version: "2", remote_addrs: ["198.18.0.2"] },
    });
    expect(seen).toEqual([{ type: PacketType.CMD_REQUEST, name: "load-conn", message: { c: { version: "2", remote_addrs: ["198.18.0.2"] } } }]);
    conn.close();
  });

  it("throws charon's errmsg on success=no, without echoing the request", async () => {
    const { path } = await peer((_, { send }) => send(reply({ success: "no", errmsg: "loading shared key failed" })));
    const conn = await ViciConnection.connect(path);
    const failure = conn.request("load-shared", { data: "TOP-SECRET-PSK" });
    await expect(failure).rejects.toThrow(ViciCommandError);
    await expect(failure).rejects.toThrow("VICI load-shared failed: loading shared key failed");
    await failure.catch((error: Error) => expect(error.message).not.toContain("TOP-SECRET"));
    // The connection stays usable after a command error.
    expect(conn.closed).toBe(false);
    conn.close();
  });

  it("reports an unknown command", async () => {
    const { path } = await peer((_, { send }) => send({ type: PacketType.CMD_UNKNOWN, body: Buffer.alloc(0) }));
    const conn = await ViciConnection.connect(path);
    await expect(conn.request("no-such")).rejects.toThrow("VICI no-such failed: unknown command");
    conn.close();
  });

  it("streams: registers the event, collects it until the response, unregisters", async () => {
    const { path, seen } = await peer((packet, { send }) => {
      if (packet.type !== PacketType.CMD_REQUEST) return send(confirm);
      send(event("list-sa", { "sitelink-west": { uniqueid: "1" } }));
      send(event("ike-updown", { up: "yes" })); // not part of the stream
      send(event("list-sa", { other: { uniqueid: "2" } }));
      send(reply());
    });
    const conn = await ViciConnection.connect(path);
    await expect(conn.streamed("list-sas", "list-sa", { noblock: true })).resolves.toEqual([
      { "sitelink-west": { uniqueid: "1" } },
      { other: { uniqueid: "2" } },
    ]);
    expect(seen.map((s) => [s.type, s.name])).toEqual([
      [PacketType.EVENT_REGISTER, "list-sa"],
      [PacketType.CMD_REQUEST, "list-sas"],
      [PacketType.EVENT_UNREGISTER, "list-sa"],
    ]);
    conn.close();
  });

  it("unregisters the stream's event also when the command fails", async () => {
    const { path, seen } = await peer((packet, { send }) => {
      if (packet.type === PacketType.CMD_REQUEST) send(reply({ success: "no", errmsg: "busy" }));
      else send(confirm);
    });
    const conn = await ViciConnection.connect(path);
    await expect(conn.streamed("list-conns", "list-conn")).rejects.toThrow("busy");
    expect(seen.map((s) => s.type)).toEqual([PacketType.EVENT_REGISTER, PacketType.CMD_REQUEST, PacketType.EVENT_UNREGISTER]);
    conn.close();
  });

  it("runs one command at a time: a second waits for the first reply", async () => {
    let release!: () => void;
    const { path, seen } = await peer((packet, { send }) => {
      if (packet.name === "slow") release = () => send(reply({ who: "slow" }));
      else send(reply({ who: packet.name! }));
    });
    const conn = await ViciConnection.connect(path);
    const slow = conn.request("slow");
    const fast = conn.request("fast");
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(seen.map((s) => s.name)).toEqual(["slow"]);
    release();
    await expect(slow).resolves.toEqual({ who: "slow" });
    await expect(fast).resolves.toEqual({ who: "fast" });
    conn.close();
  });

  it("delivers events that arrive while a command is outstanding", async () => {
    const { path } = await peer((packet, { send }) => {
      if (packet.type !== PacketType.CMD_REQUEST) return send(confirm);
      send(event("child-updown", { up: "yes", "sitelink-west": { uniqueid: "3" } }));
      send(reply());
    });
    const conn = await ViciConnection.connect(path);
    const events: [string, ViciSection][] = [];
    conn.onEvent((name, message) => events.push([name, message]));
    await conn.register("child-updown");
    await conn.request("initiate", { child: "x" });
    expect(events).toEqual([["child-updown", { up: "yes", "sitelink-west": { uniqueid: "3" } }]]);
    conn.close();
  });

  it("reports an unknown event registration", async () => {
    const { path } = await peer((_, { send }) => send({ type: PacketType.EVENT_UNKNOWN, body: Buffer.alloc(0) }));
    const conn = await ViciConnection.connect(path);
    await expect(conn.register("no-such-event")).rejects.toThrow("VICI register no-such-event failed: unknown event");
    conn.close();
  });

  it("gives up on a silent peer after the timeout and closes the connection", async () => {
    const { path } = await peer(() => undefined);
    const conn = await ViciConnection.connect(path);
    await expect(conn.request("version", {}, 100)).rejects.toThrow("VICI version: no reply within 100 ms");
    expect(conn.closed).toBe(true);
    await expect(conn.request("version")).rejects.toThrow(ViciConnectionError);
  });

  it("fails the outstanding command when the peer hangs up", async () => {
    const { path } = await peer((_, { socket }) => socket.destroy());
    const conn = await ViciConnection.connect(path);
    await expect(conn.request("version")).rejects.toThrow(ViciConnectionError);
    expect(conn.closed).toBe(true);
  });

  it("closes on garbage from the peer", async () => {
    const { path } = await peer((_, { socket }) => socket.write(Buffer.from([0, 0, 0, 1, 42])));
    const conn = await ViciConnection.connect(path);
    await expect(conn.request("version")).rejects.toThrow(/unknown packet type 42/);
    expect(conn.closed).toBe(true);
  });

  it("fails to connect to a missing socket with the path in the error", async () => {
    await expect(ViciConnection.connect("/nonexistent/charon.vici")).rejects.toThrow(/VICI socket \/nonexistent\/charon.vici: .*ENOENT/);
  });
});

describe("ViciSession", () => {
  it("reconnects on the next command after the connection was lost", async () => {
    const { path, sockets } = await peer(echo);
    const session = new ViciSession(path);
    await expect(session.getConns()).resolves.toEqual([]);
    sockets[0]!.destroy();
    await new Promise((resolve) => setTimeout(resolve, 20));
    await session.unloadConn("sitelink-x");
    expect(sockets).toHaveLength(2);
    session.close();
  });

  it("sends the documented keys for initiate, terminate and load-shared", async () => {
    const { path, seen } = await peer(echo);
    const session = new ViciSession(path);
    await session.initiate({ child: "c", ike: "i", timeout: -1 });
    await session.terminate({ ikeId: "7", force: true, timeout: -1 });
    await session.loadShared({ id: "sitelink-west", type: "IKE", data: "k", owners: ["198.18.0.1", "198.18.0.2"] });
    expect(seen.map((s) => [s.name, s.message])).toEqual([
      ["initiate", { child: "c", ike: "i", timeout: "-1" }],
      ["terminate", { "ike-id": "7", force: "yes", timeout: "-1" }],
      ["load-shared", { id: "sitelink-west", type: "IKE", data: "k", owners: ["198.18.0.1", "198.18.0.2"] }],
    ]);
    session.close();
  });
});

describe("ViciSubscription", () => {
  it("re-registers after the connection drops and runs onConnect each time", async () => {
    const { path, seen, sockets } = await peer((_, { send }) => send(confirm));
    const received: string[] = [];
    let connects = 0;
    const disconnects: string[] = [];
    const subscription = ViciSubscription.start(path, ["ike-updown", "child-updown"], (name) => received.push(name), {
      onConnect: () => connects++,
      onDisconnect: (error) => disconnects.push(error.message),
      retryMs: { min: 10, max: 50 },
    });
    await expect.poll(() => connects, { timeout: 5_000 }).toBe(1);
    sockets[0]!.write(encodePacket(event("ike-updown", { up: "yes" })));
    sockets[0]!.destroy();
    await expect.poll(() => connects, { timeout: 5_000 }).toBe(2);
    sockets[1]!.write(encodePacket(event("child-updown", { up: "no" })));
    await expect.poll(() => received, { timeout: 5_000 }).toEqual(["ike-updown", "child-updown"]);
    expect(seen.map((s) => s.name)).toEqual(["ike-updown", "child-updown", "ike-updown", "child-updown"]);
    expect(disconnects).toHaveLength(1);
    subscription.close();
  });

  it("keeps trying until the socket appears", async () => {
    const dir = mkdtempSync(join(tmpdir(), "vici-test-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, "late.vici");
    let failures = 0;
    let connects = 0;
    const subscription = ViciSubscription.start(path, ["ike-updown"], () => undefined, {
      onConnect: () => connects++,
      onDisconnect: () => failures++,
      retryMs: { min: 10, max: 20 },
    });
    await expect.poll(() => failures, { timeout: 5_000 }).toBeGreaterThan(1);
    const server = createServer((socket) => {
      const reader = new SegmentReader();
      socket.on("data", (chunk) => reader.push(chunk).forEach(() => socket.write(encodePacket(confirm))));
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    cleanups.push(() => server.close());
    await expect.poll(() => connects, { timeout: 5_000 }).toBe(1);
    subscription.close();
  });
});

// The host-check server: answers one challenge per connection with this host's id and an HMAC
// under the link-wide key. One exchange per connection keeps the server stateless, bounds what a
// stranger can hold open, and makes every probe a fresh TCP handshake — which is what tells a
// prober that the peer's kernel and agent are both alive. Garbage, oversized lines and silent
// clients are cut off; nothing a client sends can make it throw.
//
// Only link hosts may hold a connection (the allowlist the state service hands out, whether or not
// the agent's firewall is on): anyone else is cut off on accept, so a flood of idle sockets from
// outside the link holds no slot. A link address holds at most `maxPerSource` at once, so one host
// cannot crowd out the others, and a silent client is cut off after about a probe timeout (a
// prober sends its challenge as soon as it connects and gives up after that time anyway).
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import ipaddr from "ipaddr.js";
import { DEFAULT_HOST_CHECK_PORT } from "../../contract/protocol";
import { DEFAULTS } from "../../contract/topology";
import type { Logger } from "../log";
import { assertHostId, encodeAnswer, MAX_LINE_BYTES, parseChallenge } from "./protocol";

export interface HostCheckListenerOptions {
  /** This host's id, sent in every answer. */
  hostId: string;
  /** Link-wide host-check key; until it is known the listener closes connections without answering. */
  key?: string;
  /** Addresses of the link's hosts, the only sources admitted; until known, every connection is cut off on accept. */
  allow?: readonly string[];
  /** @default 9790 */
  port?: number;
  /** Address to bind. @default all addresses (IPv6 and IPv4) */
  host?: string;
  /** A client must send its challenge within this time: about the link's probe timeout. @default the default probe timeout (400 ms) */
  requestTimeoutMs?: number;
  /** Connections served at once; Node closes any beyond that at once. @default 256 */
  maxConnections?: number;
  /** Connections one source address may hold at once; more are cut off on accept. @default 8 */
  maxPerSource?: number;
  log?: Logger;
}

/** What changes with the desired state: the key, the admitted addresses and the probe timeout. */
export type HostCheckListenerSettings = Pick<HostCheckListenerOptions, "key" | "allow" | "requestTimeoutMs">;

export class HostCheckListener {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly options: HostCheckListenerOptions;
  private allowed = new Set<string>();
  /** Open connections per source address. */
  private readonly perSource = new Map<string, number>();

  constructor(options: HostCheckListenerOptions) {
    assertHostId(options.hostId);
    this.options = { ...options };
    this.update({ allow: options.allow });
  }

  /** Starts listening; resolves with the bound address (useful with port 0). */
  async start(): Promise<AddressInfo> {
    if (this.server) throw new Error("host check listener already started");
    const server = createServer({ allowHalfOpen: false }, (socket) => this.serve(socket));
    server.maxConnections = this.options.maxConnections ?? 256;
    const port = this.options.port ?? DEFAULT_HOST_CHECK_PORT;
    await new Promise<void>((resolve, reject) => {
      server.once("error", (error) => reject(new Error(`host check: cannot listen on ${this.options.host ?? "*"}:${port}: ${error.message}`)));
      server.listen({ port, host: this.options.host }, () => resolve());
    });
    server.on("error", (error) => this.options.log?.warn("host check listener error", { error: error.message }));
    this.server = server;
    return server.address() as AddressInfo;
  }

  /**
   * Applies the settings given, from now on (no restart needed): connections in flight answer with
   * the new key; a source taken off the allowlist can no longer connect.
   */
  update(settings: HostCheckListenerSettings): void {
    if ("key" in settings) this.options.key = settings.key;
    if ("requestTimeoutMs" in settings) this.options.requestTimeoutMs = settings.requestTimeoutMs;
    if ("allow" in settings) this.allowed = new Set((settings.allow ?? []).flatMap((address) => sourceKey(address) ?? []));
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private serve(socket: Socket): void {
    socket.on("error", () => {}); // resets from clients are normal; the close handler cleans up
    const source = sourceKey(socket.remoteAddress);
    const held = source === undefined ? 0 : (this.perSource.get(source) ?? 0);
    // Not logged: a flood would turn every refusal into a log line.
    if (source === undefined || !this.allowed.has(source) || held >= (this.options.maxPerSource ?? 8)) return void socket.destroy();
    this.perSource.set(source, held + 1);
    this.sockets.add(socket);
    socket.on("close", () => {
      this.sockets.delete(socket);
      const left = (this.perSource.get(source) ?? 1) - 1;
      if (left > 0) this.perSource.set(source, left);
      else this.perSource.delete(source);
    });
    socket.setNoDelay(true);
    socket.setTimeout(this.options.requestTimeoutMs ?? DEFAULTS.timing.probeTimeout * 1000, () => socket.destroy());
    let received = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const end = received.indexOf(0x0a);
      if (end < 0) {
        if (received.length > MAX_LINE_BYTES) this.reject(socket, "line too long");
        return;
      }
      socket.off("data", onData);
      const challenge = end <= MAX_LINE_BYTES ? parseChallenge(received.subarray(0, end).toString("latin1")) : undefined;
      const key = this.options.key;
      if (!challenge) return this.reject(socket, "not a challenge");
      if (!key) return this.reject(socket, "no key yet");
      socket.end(encodeAnswer(key, challenge, this.options.hostId));
    };
    socket.on("data", onData);
  }

  private reject(socket: Socket, why: string): void {
    this.options.log?.debug("host check request refused", { why, from: socket.remoteAddress });
    socket.destroy();
  }
}

/** One spelling per address: IPv4-mapped IPv6 (a dual-stack socket's view of IPv4) as IPv4, IPv6 compressed. */
function sourceKey(address: string | undefined): string | undefined {
  if (!address || !ipaddr.isValid(address)) return undefined;
  return ipaddr.process(address).toString();
}

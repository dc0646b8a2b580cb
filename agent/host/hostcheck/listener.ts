// The host-check server: answers one challenge per connection with this host's id and an HMAC
// under the link-wide key. One exchange per connection keeps the server stateless, bounds what a
// stranger can hold open, and makes every probe a fresh TCP handshake — which is what tells a
// prober that the peer's kernel and agent are both alive. Garbage, oversized lines and silent
// clients are cut off; nothing a client sends can make it throw.
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { DEFAULT_HOST_CHECK_PORT } from "../../contract/protocol";
import type { Logger } from "../log";
import { assertHostId, encodeAnswer, MAX_LINE_BYTES, parseChallenge } from "./protocol";

export interface HostCheckListenerOptions {
  /** This host's id, sent in every answer. */
  hostId: string;
  /** Link-wide host-check key; until it is known the listener closes connections without answering. */
  key?: string;
  /** @default 9790 */
  port?: number;
  /** Address to bind. @default all addresses (IPv6 and IPv4) */
  host?: string;
  /** A client must send its challenge within this time. @default 2000 */
  requestTimeoutMs?: number;
  /** Connections served at once; Node closes any beyond that at once. @default 256 */
  maxConnections?: number;
  log?: Logger;
}

export class HostCheckListener {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly options: HostCheckListenerOptions;

  constructor(options: HostCheckListenerOptions) {
    assertHostId(options.hostId);
    this.options = { ...options };
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

  /** Answers with a new key from now on (no restart needed; connections in flight use the new key). */
  setKey(key: string | undefined): void {
    this.options.key = key;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private serve(socket: Socket): void {
    this.sockets.add(socket);
    socket.on("close", () => this.sockets.delete(socket));
    socket.on("error", () => {}); // resets from clients are normal; the close handler cleans up
    socket.setNoDelay(true);
    socket.setTimeout(this.options.requestTimeoutMs ?? 2000, () => socket.destroy());
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

// One simulated agent's connection to the state service for the benchmark: a raw keep-alive TLS
// socket, the certificate pinned, every request signed and every answer checked as agents do.
// Why not node:https or undici: at 10,000 hosts the load generators share the machine with the
// service they measure, and those clients cost two to three times the CPU per request of this
// (measured: ~65 µs per poll here, ~130 µs with undici), CPU that would be taken from the service.
// It speaks only what the service answers: HTTP/1.1 with content-length, one request at a time.
import { randomBytes } from "node:crypto";
import tls from "node:tls";
import { HEADERS, signRequest, verifyResponse } from "../agent/contract/signing";
import { peerFingerprint } from "../agent/contract/uri";

export interface PollAnswer {
  status: number;
  body: string;
  signed: boolean;
}

const HEAD_END = Buffer.from("\r\n\r\n");

export class PollConnection {
  private socket: tls.TLSSocket | undefined;
  private pending: { nonce: string; resolve: (a: PollAnswer) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | undefined;
  private buffered: Buffer = Buffer.alloc(0);

  constructor(
    private readonly target: { host: string; port: number; fingerprint: string },
    private readonly hostId: string,
    private readonly secret: string,
  ) {}

  call(path: string, body: string, timeoutMs: number): Promise<PollAnswer> {
    if (this.pending) return Promise.reject(new Error("a call is already in flight"));
    const nonce = randomBytes(16).toString("hex");
    const signed = signRequest(this.secret, { hostId: this.hostId, method: "POST", path, body }, Date.now(), nonce);
    const head =
      `POST ${path} HTTP/1.1\r\nhost: ${this.target.host}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      Object.entries(signed).map(([name, value]) => `${name}: ${value}\r\n`).join("") +
      "\r\n";
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      this.pending = { nonce, resolve, reject, timer };
      this.connected().write(head + body);
    });
  }

  close() {
    this.socket?.destroy();
  }

  private connected(): tls.TLSSocket {
    if (this.socket && !this.socket.destroyed) return this.socket;
    this.buffered = Buffer.alloc(0);
    // No session reuse: a resumed TLS 1.3 session shows no certificate to check.
    const socket = tls.connect({ host: this.target.host, port: this.target.port, rejectUnauthorized: false });
    socket.once("secureConnect", () => {
      if (peerFingerprint(socket) !== this.target.fingerprint) socket.destroy(new Error("certificate does not match the pinned fingerprint"));
    });
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    // A socket already replaced (closed after its answer) no longer speaks for this connection.
    socket.on("error", (error) => socket === this.socket && this.fail(error));
    socket.on("close", () => socket === this.socket && this.fail(new Error("connection closed")));
    this.socket = socket;
    return socket;
  }

  private receive(chunk: Buffer) {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const end = this.buffered.indexOf(HEAD_END);
    if (end < 0) return;
    const lines = this.buffered.subarray(0, end).toString("latin1").split("\r\n");
    const status = Number(lines[0]!.split(" ")[1]);
    const headers = new Map(lines.slice(1).map((line) => [line.slice(0, line.indexOf(":")).toLowerCase(), line.slice(line.indexOf(":") + 1).trim()]));
    const length = Number(headers.get("content-length") ?? NaN);
    if (!Number.isInteger(length)) return this.fail(new Error("answer without content-length"));
    if (this.buffered.length < end + HEAD_END.length + length) return;
    const body = this.buffered.subarray(end + HEAD_END.length, end + HEAD_END.length + length);
    this.buffered = this.buffered.subarray(end + HEAD_END.length + length);
    const pending = this.pending;
    if (!pending) return this.fail(new Error("an answer nobody asked for"));
    this.pending = undefined;
    clearTimeout(pending.timer);
    if (headers.get("connection") === "close") this.socket?.destroy();
    pending.resolve({ status, body: body.toString("utf8"), signed: verifyResponse(this.secret, pending.nonce, status, body, headers.get(HEADERS.signature)) });
  }

  private fail(error: Error) {
    this.socket?.destroy();
    const pending = this.pending;
    this.pending = undefined;
    if (!pending) return;
    clearTimeout(pending.timer);
    pending.reject(error);
  }
}

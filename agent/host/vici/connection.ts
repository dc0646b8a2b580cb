// One VICI connection over a unix socket. VICI has no sequence numbers, so one command (or event
// (un)registration) is outstanding at a time: operations queue and each takes the next reply.
// Events can arrive at any time, also in the middle of a command (that is how list-sas streams).
import { connect, type Socket } from "node:net";
import { decodeMessage, encodeMessage, type ViciInput, type ViciSection } from "./message";
import { PacketType, SegmentReader, decodePacket, encodePacket, type Packet } from "./packet";

/** How long an operation waits for its reply unless told otherwise. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** charon answered `success = no`. The message is charon's errmsg (never our request, which may hold secrets). */
export class ViciCommandError extends Error {
  constructor(
    readonly command: string,
    readonly errmsg: string,
  ) {
    super(`VICI ${command} failed: ${errmsg || "no reason given"}`);
    this.name = "ViciCommandError";
  }
}

/** The socket could not be used: not there, closed, timed out, or charon spoke garbage. */
export class ViciConnectionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ViciConnectionError";
  }
}

export type EventListener = (event: string, message: ViciSection) => void;

interface Waiter {
  resolve(packet: Packet): void;
  reject(error: Error): void;
}

export class ViciConnection {
  private readonly reader = new SegmentReader();
  private readonly eventListeners = new Set<EventListener>();
  private readonly closeListeners = new Set<(error?: Error) => void>();
  private queue: Promise<unknown> = Promise.resolve();
  private waiter: Waiter | undefined;
  private closedWith: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    readonly socketPath: string,
  ) {
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    socket.on("error", (error) => this.shutdown(new ViciConnectionError(`VICI socket ${socketPath}: ${error.message}`, { cause: error })));
    socket.on("close", () => this.shutdown(new ViciConnectionError(`VICI socket ${socketPath} closed`)));
  }

  /** Connects to charon's VICI socket (e.g. unix:///var/run/charon.vici → /var/run/charon.vici). */
  static connect(socketPath: string, timeoutMs: number = DEFAULT_TIMEOUT_MS): Promise<ViciConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect(socketPath);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ViciConnectionError(`VICI socket ${socketPath}: connect timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once("error", (error) => {
        clearTimeout(timer);
        reject(new ViciConnectionError(`VICI socket ${socketPath}: ${error.message}`, { cause: error }));
      });
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.removeAllListeners("error");
        resolve(new ViciConnection(socket, socketPath));
      });
    });
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  onEvent(listener: EventListener): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  onClose(listener: (error?: Error) => void): void {
    this.closeListeners.add(listener);
  }

  /** Sends a command and returns charon's response; throws ViciCommandError on `success = no`. */
  request(command: string, message: ViciInput = {}, timeoutMs: number = DEFAULT_TIMEOUT_MS): Promise<ViciSection> {
    const body = encodeMessage(message);
    return this.enqueue(async () => {
      return this.responseOf(command, await this.exchange({ type: PacketType.CMD_REQUEST, name: command, body }, timeoutMs, command));
    });
  }

  /**
   * A streamed command (list-sas → list-sa events, list-conns → list-conn events): registers the
   * event, sends the command, collects the events until the response, unregisters.
   */
  streamed(command: string, event: string, message: ViciInput = {}, timeoutMs: number = DEFAULT_TIMEOUT_MS): Promise<ViciSection[]> {
    const body = encodeMessage(message);
    return this.enqueue(async () => {
      const collected: ViciSection[] = [];
      const collect = (name: string, msg: ViciSection) => {
        if (name === event) collected.push(msg);
      };
      await this.registration(PacketType.EVENT_REGISTER, event, timeoutMs);
      this.eventListeners.add(collect);
      try {
        this.responseOf(command, await this.exchange({ type: PacketType.CMD_REQUEST, name: command, body }, timeoutMs, command));
      } catch (error) {
        // Keep the command's error; a failed unregistration only leaves events nobody listens to.
        if (!this.closed) await this.registration(PacketType.EVENT_UNREGISTER, event, timeoutMs).catch(() => undefined);
        throw error;
      } finally {
        this.eventListeners.delete(collect);
      }
      await this.registration(PacketType.EVENT_UNREGISTER, event, timeoutMs);
      return collected;
    });
  }

  /** Asks charon to send `event` messages on this connection (delivered to onEvent listeners). */
  register(event: string, timeoutMs: number = DEFAULT_TIMEOUT_MS): Promise<void> {
    return this.enqueue(() => this.registration(PacketType.EVENT_REGISTER, event, timeoutMs));
  }

  close(): void {
    this.socket.destroy();
    this.shutdown(new ViciConnectionError(`VICI connection to ${this.socketPath} closed by us`));
  }

  private enqueue<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.queue.then(operation);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async registration(type: typeof PacketType.EVENT_REGISTER | typeof PacketType.EVENT_UNREGISTER, event: string, timeoutMs: number) {
    const verb = type === PacketType.EVENT_REGISTER ? "register" : "unregister";
    const reply = await this.exchange({ type, name: event, body: Buffer.alloc(0) }, timeoutMs, `${verb} ${event}`);
    if (reply.type === PacketType.EVENT_UNKNOWN) throw new ViciCommandError(`${verb} ${event}`, "unknown event");
    if (reply.type !== PacketType.EVENT_CONFIRM) throw this.protocolError(`${verb} ${event}`, reply);
  }

  /** Writes one packet and waits for the next non-event packet. */
  private exchange(packet: Packet, timeoutMs: number, what: string): Promise<Packet> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise<Packet>((resolve, reject) => {
      const timer = setTimeout(() => {
        // A late reply could be taken for the next command's: this connection is unusable now.
        this.shutdown(new ViciConnectionError(`VICI ${what}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = {
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.socket.write(encodePacket(packet));
    });
  }

  private receive(chunk: Buffer): void {
    try {
      for (const segment of this.reader.push(chunk)) this.dispatch(decodePacket(segment));
    } catch (error) {
      this.shutdown(new ViciConnectionError(`VICI socket ${this.socketPath}: ${(error as Error).message}`, { cause: error }));
    }
  }

  private dispatch(packet: Packet): void {
    if (packet.type === PacketType.EVENT) {
      const message = decodeMessage(packet.body);
      for (const listener of [...this.eventListeners]) listener(packet.name!, message);
      return;
    }
    const waiter = this.waiter;
    this.waiter = undefined;
    if (!waiter) throw new Error(`unexpected packet type ${packet.type} with no command outstanding`);
    waiter.resolve(packet);
  }

  private protocolError(what: string, reply: Packet): ViciConnectionError {
    const error = new ViciConnectionError(`VICI ${what}: unexpected reply packet type ${reply.type}`);
    this.shutdown(error);
    return error;
  }

  private shutdown(error: Error): void {
    if (this.closedWith) return;
    this.closedWith = error;
    this.socket.destroy();
    this.waiter?.reject(error);
    this.waiter = undefined;
    for (const listener of this.closeListeners) listener(error);
  }

  private responseOf(command: string, reply: Packet): ViciSection {
    if (reply.type === PacketType.CMD_UNKNOWN) throw new ViciCommandError(command, "unknown command");
    if (reply.type !== PacketType.CMD_RESPONSE) throw this.protocolError(command, reply);
    const response = decodeMessage(reply.body);
    if (response.success === "no") {
      throw new ViciCommandError(command, typeof response.errmsg === "string" ? response.errmsg : "");
    }
    return response;
  }
}

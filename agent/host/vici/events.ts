// A standing event subscription on its own VICI connection (so a slow command never delays
// events), reconnected with backoff when charon goes away. Events are lost while disconnected,
// so `onConnect` runs after every (re)registration: the place to resync (e.g. list-sas).
import { ViciConnection, type EventListener } from "./connection";

export interface SubscriptionOptions {
  /** Runs after the events are registered, on the first connect and every reconnect. */
  onConnect?: () => void;
  /** Runs when the connection is lost (or cannot be made), with the reason. */
  onDisconnect?: (error: Error) => void;
  /** First and longest delay between reconnect attempts, ms. */
  retryMs?: { min: number; max: number };
}

export class ViciSubscription {
  private connection: ViciConnection | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private delay: number;
  private stopped = false;

  private constructor(
    readonly socketPath: string,
    private readonly events: string[],
    private readonly listener: EventListener,
    private readonly opts: SubscriptionOptions,
  ) {
    this.delay = this.retry.min;
  }

  /** Subscribes to `events`; keeps trying until close() when charon is not there yet. */
  static start(socketPath: string, events: string[], listener: EventListener, opts: SubscriptionOptions = {}): ViciSubscription {
    const subscription = new ViciSubscription(socketPath, events, listener, opts);
    void subscription.connect();
    return subscription;
  }

  close(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.connection?.close();
    this.connection = undefined;
  }

  private get retry(): { min: number; max: number } {
    return this.opts.retryMs ?? { min: 100, max: 2_000 };
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    let connection: ViciConnection | undefined;
    try {
      connection = await ViciConnection.connect(this.socketPath);
      if (this.stopped) return connection.close();
      connection.onEvent(this.listener);
      for (const event of this.events) await connection.register(event);
    } catch (error) {
      connection?.close();
      this.opts.onDisconnect?.(error as Error);
      return this.scheduleReconnect();
    }
    this.connection = connection;
    this.delay = this.retry.min;
    connection.onClose((error) => {
      if (this.stopped) return;
      this.connection = undefined;
      this.opts.onDisconnect?.(error ?? new Error("VICI event connection closed"));
      this.scheduleReconnect();
    });
    this.opts.onConnect?.();
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    this.retryTimer = setTimeout(() => void this.connect(), this.delay);
    this.delay = Math.min(this.delay * 2, this.retry.max);
  }
}

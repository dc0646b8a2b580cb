// Retry delays of the agent: the poll while the state service is unreachable, and each part of an
// apply (route provider, firewall, …) that keeps failing for the same desired state.

/** setTimeout's largest delay; Node fires anything larger after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** `initialMs` doubled per attempt up to `capMs`, ±20 % jitter so many hosts do not retry in lockstep. */
export function backoffDelay(attempt: number, initialMs: number, capMs: number): number {
  const delay = Math.min(capMs, initialMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  return Math.min(MAX_TIMER_MS, delay * (0.8 + Math.random() * 0.4));
}

/**
 * The failures of one part of an apply. Attempts for a desired key that failed wait a growing
 * delay; a new key (a new desired state) is attempted at once. Knows whether an error is new, so
 * the log gets one line per change of error rather than one per attempt.
 */
export class FailureBackoff {
  private failure: { key: string; message: string; count: number; retryAt: number } | undefined;

  constructor(
    private readonly delaysMs: { initial: number; max: number },
    private readonly now: () => number = Date.now,
  ) {}

  /** The last error, while failing. */
  get message(): string | undefined {
    return this.failure?.message;
  }

  /** Whether an attempt for `key` may run now. */
  due(key: string): boolean {
    return this.failure === undefined || this.failure.key !== key || this.now() >= this.failure.retryAt;
  }

  /** Records a failed attempt; returns the delay before the next one and whether the error is a new one. */
  failed(key: string, message: string): { retryInMs: number; fresh: boolean } {
    const count = this.failure?.key === key ? this.failure.count + 1 : 1;
    const fresh = this.failure?.message !== message;
    const retryInMs = Math.round(backoffDelay(count, this.delaysMs.initial, this.delaysMs.max));
    this.failure = { key, message, count, retryAt: this.now() + retryInMs };
    return { retryInMs, fresh };
  }

  succeeded(): void {
    this.failure = undefined;
  }

  /** The next attempt runs at once (the operator changed the config, e.g. after fixing the cause). */
  retryNow(): void {
    if (this.failure) this.failure.retryAt = 0;
  }
}

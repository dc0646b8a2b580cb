// A rendered value that is handed out only once the change that made it is stored: the service
// answers with `value` (durable) while a newer `pending` one waits for its generation to be written.
import { sha256Hex } from "../contract/signing";

export class Durable {
  /** The newest stored value; undefined until the first one is stored. */
  value: string | undefined;
  /** The generation at which `value` last changed. */
  changedAt: number;
  /** A digest of `value`, made when it changes: the answers' etags are built of these. */
  tag: string | undefined;
  pending: { value: string; at: number } | undefined;

  private constructor(value: string | undefined, changedAt: number, pending?: { value: string; at: number }) {
    this.value = value;
    this.tag = value === undefined ? undefined : digest(value);
    this.changedAt = changedAt;
    this.pending = pending;
  }

  /** A value that is already stored (at start, from the store's state). */
  static stored(value: string, at: number): Durable {
    return new Durable(value, at);
  }

  /** A value nothing was stored for yet (a host or link a reload added). */
  static unstored(value: string, at: number): Durable {
    return new Durable(undefined, 0, { value, at });
  }

  /** The value as it will be once everything is stored: what a new render is compared with. */
  get latest(): string {
    return this.pending?.value ?? this.value!;
  }

  /** Records a changed value for generation `at`; it is handed out once `at` is stored. */
  set(value: string, at: number): void {
    this.pending = { value, at };
  }

  /** The pending value becomes the handed-out one once its generation is stored. */
  settle(durable: number): void {
    if (!this.pending || this.pending.at > durable) return;
    this.value = this.pending.value;
    this.tag = digest(this.value);
    this.changedAt = this.pending.at;
    this.pending = undefined;
  }
}

/** 128 bits of SHA-256: names a value, nobody chooses the values. */
const digest = (value: string) => sha256Hex(value).slice(0, 32);

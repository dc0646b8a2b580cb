// A min-heap of timer entries, so the engine's evaluate() touches only the work that is due.
// Entries are never removed early: each one is re-checked against the current state when it pops
// (a heartbeat that moves a deadline later costs nothing, the stale entry is simply skipped).

export interface Deadline<T> {
  at: number;
  item: T;
}

export class DeadlineQueue<T> {
  private readonly heap: Deadline<T>[] = [];

  get size(): number {
    return this.heap.length;
  }

  push(at: number, item: T): void {
    const heap = this.heap;
    heap.push({ at, item });
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]!.at <= at) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = { at, item };
  }

  /** The earliest deadline, or undefined when nothing is queued. */
  peek(): number | undefined {
    return this.heap[0]?.at;
  }

  /** Removes and returns the earliest entry if it is due at `now`. */
  popDue(now: number): Deadline<T> | undefined {
    const heap = this.heap;
    const top = heap[0];
    if (!top || top.at > now) return undefined;
    const last = heap.pop()!;
    if (heap.length > 0) {
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= heap.length) break;
        const right = left + 1;
        const child = right < heap.length && heap[right]!.at < heap[left]!.at ? right : left;
        if (heap[child]!.at >= last.at) break;
        heap[i] = heap[child]!;
        i = child;
      }
      heap[i] = last;
    }
    return top;
  }

  clear(): void {
    this.heap.length = 0;
  }
}

// Prometheus metrics of the state service, on a registry of its own (several services may share
// a process in tests and benchmarks).
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { HostView } from "./engine";

export type RequestOutcome =
  | "ok"
  | "missing-headers"
  | "bad-signature"
  | "stale-timestamp"
  | "replayed-nonce"
  | "too-large"
  | "malformed"
  | "invalid"
  | "not-found"
  | "method-not-allowed"
  /** The client hung up before its request was read whole. */
  | "aborted"
  | "error";

export class ServiceMetrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: "sitelink_requests_total",
    help: "Agent API requests by endpoint and outcome",
    labelNames: ["endpoint", "outcome"] as const,
    registers: [this.registry],
  });
  readonly failovers = new Counter({
    name: "sitelink_failovers_total",
    help: "Decisions that took the active role away from a host (to another host or to none)",
    registers: [this.registry],
  });
  readonly renders = new Counter({
    name: "sitelink_renders_total",
    help: "Host desired states rendered (an event renders the hosts it concerns, not the whole link)",
    registers: [this.registry],
  });
  readonly decisions = new Counter({
    name: "sitelink_decisions_total",
    help: "Active-host decisions of the failover engine",
    registers: [this.registry],
  });
  readonly decisionLatency = new Histogram({
    name: "sitelink_decision_latency_seconds",
    help: "From the event that caused decisions to the affected hosts' answers being released (stored first)",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly generation = new Gauge({ name: "sitelink_generation", help: "Current desired-state generation", registers: [this.registry] });
  // Pre-bound children: the hot path increments without hashing label sets.
  private readonly children = new Map<string, Counter.Internal>();

  constructor(source: { hosts(): HostView[]; heldPolls(): number }) {
    new Gauge({
      name: "sitelink_hosts",
      help: "Link hosts by status",
      labelNames: ["status"] as const,
      registers: [this.registry],
      collect() {
        const counts: Record<HostView["status"], number> = { offline: 0, backoff: 0, partitioned: 0, silent: 0, available: 0, active: 0 };
        for (const h of source.hosts()) counts[h.status] += 1;
        for (const [status, count] of Object.entries(counts)) this.set({ status }, count);
      },
    });
    new Gauge({
      name: "sitelink_held_polls",
      help: "Long-polls currently held open",
      registers: [this.registry],
      collect() {
        this.set(source.heldPolls());
      },
    });
  }

  request(endpoint: string, outcome: RequestOutcome): void {
    const key = `${endpoint} ${outcome}`;
    let child = this.children.get(key);
    if (!child) {
      child = this.requests.labels({ endpoint, outcome });
      this.children.set(key, child);
    }
    child.inc();
  }
}

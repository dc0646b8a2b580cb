// Control-plane failover figures for the agent's reconcile loop: two hosts of one location, each a
// real ReconcileLoop with a real StateClient, against the real state service (HTTPS on loopback,
// SQLite in a temp dir). The seams below the loop record calls (tunnels and routes are the lab's job).
//   graceful: active host's loop.stop() (offline message) → standby has applied peers + routes
//   urgent:   a host-check flip on the standby → its report is in the service (held poll aborted)
// Run: npx tsx bench/agent.ts
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deriveHostSecret } from "../agent/contract/signing";
import { memoryLogger } from "../agent/state/log";
import { startStateService } from "../agent/state/service";
import { selfSignedCertificate } from "../agent/state/tls";
import { createLogger } from "../agent/host/log";
import { ReconcileLoop } from "../agent/host/reconcile";
import { StateClient } from "../agent/host/state-client";
import type { HostCheckResult } from "../agent/contract/protocol";

const ROUNDS = 20;
const masterKey = randomBytes(32);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function waitFor(check: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const tick = () => (check() ? resolve() : setImmediate(tick));
    tick();
  });
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), "sl-bench-agent-"));
  const host = (id: string, priority: number, last: number) => ({ id, name: id.slice(-1), priority, timeout: 120, backoff: 0, publicAddress: `198.18.1.${last}`, privateAddress: `10.1.0.${last}` });
  writeFileSync(
    join(dir, "topology.json"),
    JSON.stringify({
      version: 1,
      links: [
        {
          name: "corp",
          locations: [
            { name: "aws", routes: ["10.1.0.0/16"], hosts: [host("aws-a", 2, 10), host("aws-b", 1, 11)] },
            { name: "office", routes: ["10.2.0.0/16"], hosts: [{ id: "off-a", name: "a", publicAddress: "198.18.2.10" }] },
          ],
        },
      ],
    }),
  );
  const tls = selfSignedCertificate({ names: ["127.0.0.1"] });
  const service = await startStateService({
    topologyFile: join(dir, "topology.json"),
    dataDir: join(dir, "data"),
    tls: { cert: tls.certPem, key: tls.keyPem },
    masterKey,
    listen: { host: "127.0.0.1", port: 0 },
    logger: memoryLogger(),
    watchTopology: false,
  });
  const port = Number(new URL(service.url).port);

  const start = (hostId: string) => {
    let routes: string[] = [];
    let checks: HostCheckResult[] = [];
    const checkListeners: (() => void)[] = [];
    const state = new StateClient({ hostId, secret: deriveHostSecret(masterKey, hostId), endpoints: [{ host: "127.0.0.1", port }], fingerprints: [service.fingerprint] });
    const loop = new ReconcileLoop({
      state,
      ipsec: { validate: () => {}, apply: async () => {}, tunnels: () => [], onChange: () => {}, close: async () => {} },
      routes: { name: "lab", table: "shared", apply: async (cidrs) => void (routes = cidrs), applied: () => routes },
      firewall: { apply: async () => {}, inPlace: async () => true, remove: async () => {} },
      mss: { apply: async () => {}, inPlace: async () => true, remove: async () => {} },
      checker: { setTargets: () => {}, results: () => checks, onChange: (l) => void checkListeners.push(l), close: async () => {} },
      self: { hostId },
      options: { firewall: false, removeRoutes: false, hostCheck: true },
      agentVersion: "bench",
      log: createLogger("error", () => {}),
    });
    const done = loop.start();
    return {
      loop,
      done,
      state,
      routes: () => routes,
      active: () => loop.status().role === "active",
      flip(reachable: boolean) {
        checks = [{ target: "aws-a", reachable, failures: reachable ? 0 : 1, ageMs: 0 }];
        checkListeners.forEach((l) => l());
      },
    };
  };

  const b = start("aws-b");
  const graceful: number[] = [];
  const urgent: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const a = start("aws-a");
    await waitFor(() => a.active() && !b.active() && service.core.heldPolls() >= 2);

    // Urgent report: the standby's probe of the active host flips; time until the service has it.
    const reports = () => service.core.hosts().find((h) => h.hostId === "aws-b");
    const before = JSON.stringify(reports());
    const t0 = performance.now();
    b.flip(i % 2 === 0);
    await waitFor(() => JSON.stringify(reports()) !== before || performance.now() - t0 > 2000);
    urgent.push(performance.now() - t0);

    const t1 = performance.now();
    const stopped = a.loop.stop("bench");
    await waitFor(() => b.active() && b.routes().length > 0);
    graceful.push(performance.now() - t1);
    await stopped;
    a.state.close();
  }
  await b.loop.stop("bench over");
  b.state.close();
  await service.close();
  rmSync(dir, { recursive: true, force: true });

  for (const [name, values] of [["graceful failover (stop → standby applied routes)", graceful], ["urgent report (probe flip → service has it)", urgent]] as const) {
    const sorted = [...values].sort((x, y) => x - y);
    console.log(`${name}, ${ROUNDS} rounds: p50 ${percentile(sorted, 50).toFixed(1)} ms, p90 ${percentile(sorted, 90).toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(1)} ms`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

// Host-check figures on loopback: probe round-trip percentiles, and how long after a peer's
// listener dies the prober reports the flip (default timing: probe every 0.25 s, timeout 0.4 s).
// Run: npx tsx bench/hostcheck.ts
import { DEFAULTS } from "../agent/contract/topology";
import { HostCheckListener } from "../agent/host/hostcheck/listener";
import { HostCheckProber, probe } from "../agent/host/hostcheck/prober";

const KEY = "bench-key-".padEnd(43, "b");
const PROBES = 2000;
const DETECTIONS = 20;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main() {
  const listener = new HostCheckListener({ hostId: "peer", key: KEY, allow: ["127.0.0.1"], host: "127.0.0.1", port: 0 });
  const { port } = await listener.start();
  const rtts: number[] = [];
  const started = performance.now();
  for (let i = 0; i < PROBES; i++) {
    const outcome = await probe({ hostId: "peer", address: "127.0.0.1", port }, "bench", KEY, 1000);
    if (!outcome.ok) throw new Error(`probe ${i} failed: ${outcome.reason}`);
    rtts.push(outcome.rttMs);
  }
  const elapsed = (performance.now() - started) / 1000;
  rtts.sort((a, b) => a - b);
  console.log(`probe RTT over ${PROBES} sequential probes: p50 ${percentile(rtts, 50).toFixed(3)} ms, p99 ${percentile(rtts, 99).toFixed(3)} ms, max ${rtts.at(-1)!.toFixed(3)} ms; ${(PROBES / elapsed).toFixed(0)} probes/s`);

  const detections: number[] = [];
  // The prober's timers do not hold the process open (the agent's own loop does): hold it here.
  const keepAlive = setInterval(() => {}, 1000);
  await listener.close();
  for (let i = 0; i < DETECTIONS; i++) {
    const peer = new HostCheckListener({ hostId: "peer", key: KEY, allow: ["127.0.0.1"], host: "127.0.0.1", port });
    await peer.start();
    const prober = new HostCheckProber({ hostId: "bench" });
    const up = new Promise<void>((resolve) => prober.onChange(resolve));
    prober.setTargets([{ hostId: "peer", address: "127.0.0.1", port, scope: "location" }], KEY, DEFAULTS.timing);
    await up;
    // Stop at a random point of the probe cycle, like a crash would.
    await new Promise((resolve) => setTimeout(resolve, Math.random() * DEFAULTS.timing.probeInterval * 1000));
    const down = new Promise<void>((resolve) => prober.onChange(resolve));
    const stopped = performance.now();
    await peer.close();
    await down;
    detections.push(performance.now() - stopped);
    await prober.close();
  }
  clearInterval(keepAlive);
  detections.sort((a, b) => a - b);
  console.log(
    `listener stop → onChange (probeInterval ${DEFAULTS.timing.probeInterval}s, ${DETECTIONS} runs): p50 ${percentile(detections, 50).toFixed(1)} ms, max ${detections.at(-1)!.toFixed(1)} ms`,
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

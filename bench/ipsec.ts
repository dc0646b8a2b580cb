// IPsec timings on this machine, printed (never asserted): real charons in network namespaces,
// userspace ESP (kernel-libipsec). Needs root.  Run: npx tsx bench/ipsec.ts [rounds]
import { loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { StrongswanDriver } from "../agent/host/ipsec/driver";
import { createLogger } from "../agent/host/log";
import { ViciSession } from "../agent/host/vici/session";
import { startCharon } from "../test/support/charon";
import { NetnsSandbox, requireRoot } from "../test/support/netns";
import { createIpsecLab, eastSeenFromWest, pingSite, selfOf, westSeenFromEast, type IpsecLab, type LabHost } from "../test/ipsec/lab";

const rounds = Number(process.argv[2] ?? 10);

function summary(name: string, samples: number[]): void {
  const sorted = [...samples].sort((x, y) => x - y);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  console.log(
    `${name.padEnd(52)} n=${String(sorted.length).padStart(3)}  min ${sorted[0]!.toFixed(1).padStart(7)} ms  median ${at(0.5).toFixed(1).padStart(7)} ms  max ${sorted[sorted.length - 1]!.toFixed(1).padStart(7)} ms`,
  );
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** charon start to VICI ready, and the cost of merely spawning a process in a namespace (baseline). */
async function charonStart(): Promise<{ charon: number[]; spawn: number[] }> {
  const sandbox = await NetnsSandbox.create("bench-charon");
  try {
    const out = { charon: [] as number[], spawn: [] as number[] };
    for (let i = 0; i < rounds; i++) {
      const ns = await sandbox.addNamespace(`c${i}`);
      let t0 = performance.now();
      await sandbox.exec(ns, ["true"]);
      out.spawn.push(performance.now() - t0);
      t0 = performance.now();
      const charon = await startCharon(sandbox, ns);
      out.charon.push(performance.now() - t0);
      await charon.stop();
    }
    return out;
  } finally {
    await sandbox.cleanup();
  }
}

async function tunnels(lab: IpsecLab): Promise<Record<string, number[]>> {
  const log = createLogger("error");
  const driver = (host: LabHost) =>
    StrongswanDriver.start({ viciSocket: host.charon.viciSocket, log, isLocalAddress: (address) => address === host.publicAddress });
  const [a, b, c] = [driver(lab.a), driver(lab.b), driver(lab.c)];
  const vici = new ViciSession(lab.a.charon.viciSocket);
  const out: Record<string, number[]> = {
    "apply (new connection) -> tunnel reported up": [],
    "initiate -> CHILD_SA up (VICI returns)": [],
    "initiate -> first ping answered": [],
    "peer active host switch -> first ping via new host": [],
  };
  try {
    await b.apply([eastSeenFromWest(lab)], selfOf(lab.b));
    await c.apply([eastSeenFromWest(lab)], selfOf(lab.c));
    for (let i = 0; i < rounds; i++) {
      let t0 = performance.now();
      await a.apply([westSeenFromEast(lab, lab.b)], selfOf(lab.a));
      await until(() => a.tunnels()[0]?.state === "up");
      out["apply (new connection) -> tunnel reported up"]!.push(performance.now() - t0);

      await vici.terminate({ ike: "sitelink-west", timeout: 5_000 });
      t0 = performance.now();
      await vici.initiate({ child: "sitelink-west", ike: "sitelink-west", timeout: 5_000 });
      out["initiate -> CHILD_SA up (VICI returns)"]!.push(performance.now() - t0);

      await vici.terminate({ ike: "sitelink-west", timeout: 5_000 });
      t0 = performance.now();
      await vici.initiate({ child: "sitelink-west", ike: "sitelink-west", timeout: -1 });
      await until(() => pingSite(lab, lab.a, lab.b));
      out["initiate -> first ping answered"]!.push(performance.now() - t0);

      t0 = performance.now();
      await a.apply([westSeenFromEast(lab, lab.c)], selfOf(lab.a));
      await until(() => pingSite(lab, lab.a, lab.c));
      out["peer active host switch -> first ping via new host"]!.push(performance.now() - t0);

      await a.apply([], selfOf(lab.a));
    }

    // Dead peer detection by IKE alone (DPD every 2 s, the lab's retransmit settings), no state service.
    out["peer SIGKILL -> tunnel reported down (DPD)"] = [];
    for (let i = 0; i < Math.min(rounds, 3); i++) {
      await a.apply([westSeenFromEast(lab, lab.c)], selfOf(lab.a));
      await until(() => a.tunnels()[0]?.state === "up");
      await lab.c.charon.stop("SIGKILL");
      const t0 = performance.now();
      await until(() => a.tunnels()[0]?.state !== "up", 30_000);
      out["peer SIGKILL -> tunnel reported down (DPD)"]!.push(performance.now() - t0);
      await a.apply([], selfOf(lab.a));
      // c's driver puts its connection back by itself once its charon is back (a retries until then).
      lab.c.charon = await startCharon(lab.sandbox, lab.c.ns);
    }
  } finally {
    vici.close();
    await Promise.all([a.close(), b.close(), c.close()]);
  }
  return out;
}

async function main(): Promise<void> {
  if (!requireRoot()) {
    console.error("bench/ipsec.ts needs root (network namespaces)");
    process.exit(2);
  }
  console.log(`sitelink IPsec bench: ${rounds} rounds, userspace ESP (kernel-libipsec), load average ${loadavg()[0]!.toFixed(1)}`);
  const start = await charonStart();
  summary("baseline: run `true` in a namespace", start.spawn);
  summary("charon start -> VICI answers version", start.charon);
  const lab = await createIpsecLab("bench-ipsec");
  try {
    for (const [name, samples] of Object.entries(await tunnels(lab))) summary(name, samples);
  } finally {
    await lab.cleanup();
  }
}

void main();

// A real strongSwan charon inside a sandbox namespace, set up for this machine: its own
// strongswan.conf (userspace ESP through kernel-libipsec, since the test kernels lack kernel ESP),
// its own VICI socket, and a private /run (the pid file path is compiled in).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ViciSession } from "../../agent/host/vici/session";
import type { NetnsSandbox } from "./netns";

export const CHARON_BINARY = "/usr/lib/ipsec/charon";
/** How long startCharon waits for VICI to answer `version`. */
const READY_TIMEOUT_MS = 10_000;

export interface Charon {
  ns: string;
  /** This charon's directory: strongswan.conf, charon.log (file log), charon.out (stdout/stderr), run/. */
  dir: string;
  viciSocket: string;
  pid: number;
  /** Stops charon (SIGTERM: it sends DELETE to its peers first; SIGKILL: it vanishes) and waits for the exit. */
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
}

/** The strongswan.conf of a lab charon. */
export function renderStrongswanConf(opts: { viciSocket: string; logFile: string; logLevel: number; retransmitTries?: number }): string {
  return `charon {
  # kdf is required when plugins are listed explicitly; kernel-libipsec = userspace ESP over a TUN device.
  load = nonce random openssl kdf pem pkcs1 kernel-libipsec kernel-netlink socket-default vici
  install_routes = yes
  # Give up on a silent peer after ~3.5 s instead of ~165 s (the default: 5 tries from 4 s, x1.8):
  # DPD and failed initiations then resolve within a test's patience.
  retransmit_timeout = 0.5
  retransmit_base = 1.4
  retransmit_tries = ${opts.retransmitTries ?? 3}
  filelog {
    charon {
      path = ${opts.logFile}
      time_format = %H:%M:%S
      default = ${opts.logLevel}
      ike_name = yes
      flush_line = yes
    }
  }
  plugins {
    vici {
      socket = unix://${opts.viciSocket}
    }
  }
}
`;
}

/** Starts charon in `ns` and resolves once VICI answers `version`. */
/** `retransmitTries`: how often charon resends an unanswered IKE message (3: gives up after ~3.5 s). */
export async function startCharon(sandbox: NetnsSandbox, ns: string, opts: { name?: string; logLevel?: number; retransmitTries?: number } = {}): Promise<Charon> {
  const name = opts.name ?? ns.slice(sandbox.prefix.length + 1);
  const dir = join(sandbox.workDir, `charon-${name}`);
  const runDir = join(dir, "run");
  mkdirSync(runDir, { recursive: true });
  const viciSocket = join(dir, "charon.vici");
  const conf = join(dir, "strongswan.conf");
  writeFileSync(conf, renderStrongswanConf({ viciSocket, logFile: join(dir, "charon.log"), logLevel: opts.logLevel ?? 1, retransmitTries: opts.retransmitTries }));

  const child = sandbox.spawn(ns, [CHARON_BINARY], {
    env: { ...process.env, STRONGSWAN_CONF: conf },
    logFile: join(dir, "charon.out"),
    privateRun: runDir,
  });
  const pid = child.pid!;
  let exited = false;
  child.once("exit", () => (exited = true));

  const vici = new ViciSession(viciSocket, 1_000);
  try {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (exited) throw new Error(`charon in ${ns} exited during start; see ${join(dir, "charon.out")}`);
      try {
        await vici.version();
        break;
      } catch (error) {
        if (Date.now() > deadline) {
          await sandbox.kill(pid, "SIGKILL");
          throw new Error(`charon in ${ns}: VICI not ready after ${READY_TIMEOUT_MS} ms (${(error as Error).message})`);
        }
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
  } finally {
    vici.close();
  }
  return { ns, dir, viciSocket, pid, stop: (signal = "SIGTERM") => sandbox.kill(pid, signal) };
}

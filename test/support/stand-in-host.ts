// Plays a peer host's agent for tests that run one real agent: reports to the state service every
// 0.4 s, so the host stays online and in service (peers accept IKE only from hosts in service).
import { deriveHostSecret } from "../../agent/contract/signing";
import { StateClient } from "../../agent/host/state-client";
import type { StateService } from "../../agent/state/service";
import { report as hostReport } from "./state-testkit";

const EVERY_MS = 400;

/** Starts reporting as `hostId`; returns the stop. */
export function reportAs(service: StateService, masterKey: Buffer, hostId: string): () => void {
  const url = new URL(service.url);
  const client = new StateClient({ hostId, secret: deriveHostSecret(masterKey, hostId), endpoints: [{ host: url.hostname, port: Number(url.port) }], fingerprints: [service.fingerprint] });
  const report = hostReport({ agentVersion: "stand-in", role: "active" });
  const beat = () => void client.poll({ generation: 0, wait: false, report }, { timeoutMs: 2_000 }).catch(() => undefined);
  beat();
  const timer = setInterval(beat, EVERY_MS);
  return () => {
    clearInterval(timer);
    client.close();
  };
}

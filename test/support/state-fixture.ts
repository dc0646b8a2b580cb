// A real state service on loopback for tests: its own temp directory, certificate, master key and
// topology file; close() stops it and removes the directory.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deriveHostSecret, deriveOperatorKey } from "../../agent/contract/signing";
import { memoryLogger } from "../../agent/state/log";
import { startStateService, type StateService } from "../../agent/state/service";
import { selfSignedCertificate } from "../../agent/state/tls";

export interface TestStateService {
  service: StateService;
  masterKey: Buffer;
  operatorKey: string;
  secret(hostId: string): string;
  dir: string;
  /** Replaces the topology document and has the service load it. */
  setTopology(doc: unknown): Promise<void>;
  close(): Promise<void>;
}

/** Link corp: locations east and west, connected, one host each (corp.east.a, corp.west.a); long timeouts. */
export const EAST_WEST = {
  version: 1,
  links: [
    {
      name: "corp",
      locations: [
        { name: "east", routes: ["10.1.0.0/16"], hosts: [{ id: "corp.east.a", name: "a", timeout: 120 }] },
        { name: "west", routes: ["10.2.0.0/16"], hosts: [{ id: "corp.west.a", name: "a", timeout: 120 }] },
      ],
    },
  ],
};

const tls = selfSignedCertificate({ names: ["127.0.0.1"] });

export async function startTestStateService(topology: unknown): Promise<TestStateService> {
  const dir = mkdtempSync(join(tmpdir(), "sitelink-state-"));
  const topologyFile = join(dir, "topology.json");
  writeFileSync(topologyFile, JSON.stringify(topology));
  const masterKey = randomBytes(32);
  let service: StateService;
  try {
    service = await startStateService({
      topologyFile,
      dataDir: join(dir, "data"),
      tls: { cert: tls.certPem, key: tls.keyPem },
      masterKey,
      listen: { host: "127.0.0.1", port: 0 },
      logger: memoryLogger(),
      watchTopology: false,
    });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    service,
    masterKey,
    operatorKey: deriveOperatorKey(masterKey),
    secret: (hostId) => deriveHostSecret(masterKey, hostId),
    dir,
    async setTopology(doc) {
      writeFileSync(topologyFile, JSON.stringify(doc));
      if (!(await service.reloadTopology())) throw new Error("the state service refused the topology");
    },
    async close() {
      await service.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

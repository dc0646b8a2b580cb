// startStateService: the whole state service in one call (store, engine, HTTPS API, timers,
// topology reload). Used by `sitelink state serve`, the tests, the lab and the benchmark.
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { DEFAULT_STATE_PORT } from "../contract/uri";
import { createApiHandler } from "./api";
import { StateCore } from "./core";
import { jsonLogger, type Logger } from "./log";
import { ServiceMetrics } from "./metrics";
import { RETENTION, SqliteStore } from "./sqlite-store";
import type { StateStore } from "./store";
import { certificateFingerprint, keyMatchesCertificate } from "./tls";
import { capConnectionsPerAddress, connectionDefaults, type ConnectionLimits } from "./connection-limits";
import { loadTopologyFile, watchTopologyFile } from "./topology-source";

/** Pending connections the kernel queues (capped by net.core.somaxconn). */
const LISTEN_BACKLOG = 4096;

export interface StateServiceOptions {
  /** The topology document (JSON); reloaded on change and on SIGHUP. */
  topologyFile: string;
  /** Directory of the SQLite store (created 0700 when missing). Ignored when `store` is given. */
  dataDir: string;
  store?: StateStore;
  tls: { cert: string | Buffer; key: string | Buffer };
  /** Secret: host secrets and the host-check key derive from it. */
  masterKey: Buffer;
  /** @default { host: "0.0.0.0", port: 9443 } (port 0 picks a free one) */
  listen?: { host: string; port: number };
  /** @default JSON lines on stderr */
  logger?: Logger;
  /** How long hosts restored from the store have to report again before they can time out. Engine default when absent. */
  restartGraceMs?: number;
  /** Reload the topology when its file changes and on SIGHUP. @default true */
  watchTopology?: boolean;
  /** How often changed reports are stored (and the liveness snapshot, see snapshotIntervalMs). @default 2000 */
  flushIntervalMs?: number;
  /** Least time between liveness snapshots (decisions are stored at once regardless). @default 10000 */
  snapshotIntervalMs?: number;
  /** How often the store is checked for PSKs rotated by another process. @default 1000 */
  storePollMs?: number;
  /** Connection caps and timeouts (see connection-limits.ts for the defaults and why). */
  connections?: Partial<ConnectionLimits>;
}

/** Old events and decisions are pruned at start and then this often. */
const PRUNE_INTERVAL_MS = 3_600_000;

export interface StateService {
  /** https://host:port */
  url: string;
  /** SHA-256 fingerprint of the certificate (what host URIs pin). */
  fingerprint: string;
  core: StateCore;
  /** Reads the topology file again; false (and the old one kept) when it is invalid. */
  reloadTopology(): Promise<boolean>;
  close(): Promise<void>;
}

export async function startStateService(opts: StateServiceOptions): Promise<StateService> {
  const logger = opts.logger ?? jsonLogger();
  if (!keyMatchesCertificate(opts.tls.cert, opts.tls.key)) throw new Error("the TLS key does not belong to the TLS certificate");
  const fingerprint = certificateFingerprint(opts.tls.cert);
  const first = loadTopologyFile(opts.topologyFile);
  if (!first.ok) throw new Error(`invalid topology ${opts.topologyFile}:\n${first.issues.map((i) => `  ${i.path || "(document)"}: ${i.message}`).join("\n")}`);

  const store = opts.store ?? new SqliteStore(opts.dataDir);
  let core: StateCore | undefined;
  const metrics = new ServiceMetrics({ hosts: () => core?.hosts() ?? [], heldPolls: () => core?.heldPolls() ?? 0 });
  try {
    core = await StateCore.open(first.topology, { store, masterKey: opts.masterKey, logger, metrics, restartGraceMs: opts.restartGraceMs, snapshotIntervalMs: opts.snapshotIntervalMs });
  } catch (error) {
    await store.close();
    throw error;
  }
  const state = core;

  const limits: ConnectionLimits = { ...connectionDefaults(), ...opts.connections };
  const server: Server = createServer(
    {
      cert: opts.tls.cert,
      key: opts.tls.key,
      // Only agents connect, and they are Node: TLS 1.3 alone (no CBC suites, no renegotiation).
      minVersion: "TLSv1.3",
      handshakeTimeout: limits.handshakeTimeoutMs,
      // Header and request timeouts are enforced by a sweep this often (Node's default is 30 s).
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
    },
    createApiHandler(state, metrics, logger),
  );
  // The request timeout runs until the request is read whole; a held poll is held after that, so it
  // does not cut long-polls (held for up to timing.heartbeat, 30 s at most).
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  server.maxConnections = limits.maxConnections;
  capConnectionsPerAddress(server, limits.perAddress);
  server.on("tlsClientError", () => {}); // a failed handshake (scanner, wrong pin) is the client's problem
  const listen = opts.listen ?? { host: "0.0.0.0", port: DEFAULT_STATE_PORT };
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    // Every agent reconnects at once after a restart: a deep accept queue keeps their SYNs from being dropped.
    server.listen({ port: listen.port, host: listen.host, backlog: LISTEN_BACKLOG }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  logger.event("listening", { address: address.address, port: address.port, fingerprint, generation: state.generation });

  let reloading: Promise<boolean> = Promise.resolve(true);
  const reloadTopology = () => {
    reloading = reloading.then(async () => {
      const next = loadTopologyFile(opts.topologyFile);
      if (!next.ok) {
        logger.event("topology-rejected", { file: opts.topologyFile, issues: next.issues.map((i) => `${i.path || "(document)"}: ${i.message}`) });
        return false;
      }
      try {
        await state.setTopology(next.topology);
        return true;
      } catch (error) {
        logger.event("topology-rejected", { file: opts.topologyFile, issues: [(error as Error).message] });
        return false;
      }
    });
    return reloading;
  };
  const stopWatching = (opts.watchTopology ?? true) ? watchTopologyFile(opts.topologyFile, () => void reloadTopology()) : () => {};

  const background = (what: string, work: () => Promise<void>) => () =>
    work().catch((error: unknown) => logger.event("store-error", { during: what, message: (error as Error).message }));
  const flushTimer = setInterval(background("flush", () => state.flush()), opts.flushIntervalMs ?? 2000);
  const pollTimer = setInterval(
    background("psk-reload", async () => {
      if (await store.changedElsewhere()) await state.reloadPsks();
    }),
    opts.storePollMs ?? 1000,
  );
  const prune = background("prune", () => store.prune(Date.now() - RETENTION.days * 86_400_000, RETENTION.rows));
  prune();
  const pruneTimer = setInterval(prune, PRUNE_INTERVAL_MS);
  pruneTimer.unref();

  let closing: Promise<void> | undefined;
  return {
    url: `https://${host}:${address.port}`,
    fingerprint,
    core: state,
    reloadTopology,
    close() {
      closing ??= (async () => {
        stopWatching();
        clearInterval(flushTimer);
        clearInterval(pollTimer);
        clearInterval(pruneTimer);
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await closed;
        await reloading;
        await state.close();
        await store.close();
        logger.event("stopped", { generation: state.durable });
      })();
      return closing;
    },
  };
}

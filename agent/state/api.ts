// The agent API over HTTPS: signed POST /v1/poll (heartbeat + long-poll) and /v1/offline, plus
// GET /metrics and /healthz. Every rejection is a 4xx with an errorResponseSchema body and changes
// nothing; every answer to an authenticated request is signed.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { z } from "zod";
import { formatPath } from "../contract/topology";
import { API, MAX_BODY_BYTES, PROTOCOL_VERSION, offlineRequestSchema, pollRequestSchema, type ErrorResponse, type OfflineResponse } from "../contract/protocol";
import { HEADERS, NonceCache, signResponse, verifyRequest, type VerifyFailure } from "../contract/signing";
import type { HostEntry, StateCore } from "./core";
import type { ServiceMetrics, RequestOutcome } from "./metrics";
import { createOperatorHandler } from "./operator-api";

type Endpoint = "poll" | "offline";

interface Authenticated {
  host: HostEntry;
  nonce: string;
}

export function createApiHandler(core: StateCore, metrics: ServiceMetrics): (req: IncomingMessage, res: ServerResponse) => void {
  const nonces = new NonceCache();
  const operator = createOperatorHandler(core, metrics);

  function send(res: ServerResponse, status: number, body: string, auth?: Authenticated, extraHeaders: Record<string, string> = {}) {
    const headers: Record<string, string | number> = {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      ...extraHeaders,
    };
    if (auth) headers[HEADERS.signature] = signResponse(auth.host.secret, auth.nonce, status, body);
    res.writeHead(status, headers);
    res.end(body);
  }

  function reject(res: ServerResponse, endpoint: string, status: number, outcome: RequestOutcome, error: ErrorResponse, auth?: Authenticated, close = false) {
    metrics.request(endpoint, outcome);
    send(res, status, JSON.stringify(error), auth, close ? { connection: "close" } : {});
  }

  async function handleAgent(req: IncomingMessage, res: ServerResponse, endpoint: Endpoint) {
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > MAX_BODY_BYTES) {
      return reject(res, endpoint, 413, "too-large", { error: `body larger than ${MAX_BODY_BYTES} bytes` }, undefined, true);
    }
    const hostId = req.headers[HEADERS.host];
    if (typeof hostId !== "string") return reject(res, endpoint, 401, "missing-headers", { error: `missing ${HEADERS.host} header` });
    const host = core.host(hostId);
    if (!host) return reject(res, endpoint, 401, "unknown-host", { error: "unknown host" });

    const body = await readBody(req);
    if (body === undefined) {
      return reject(res, endpoint, 413, "too-large", { error: `body larger than ${MAX_BODY_BYTES} bytes` }, undefined, true);
    }
    // Wall-clock time: agents sign with theirs.
    const verified = verifyRequest(host.secret, { method: req.method!, path: req.url!, body, headers: req.headers }, nonces, Date.now());
    if (!verified.ok) return reject(res, endpoint, 401, verified.reason, { error: AUTH_ERRORS[verified.reason] });
    const auth: Authenticated = { host, nonce: req.headers[HEADERS.nonce] as string };

    let json: unknown;
    try {
      json = JSON.parse(body.toString("utf8"));
    } catch {
      return reject(res, endpoint, 400, "malformed", { error: "body is not JSON" }, auth);
    }
    const schema = endpoint === "poll" ? pollRequestSchema : offlineRequestSchema;
    const parsed = schema.safeParse(json) as z.ZodSafeParseResult<z.output<typeof pollRequestSchema> | z.output<typeof offlineRequestSchema>>;
    if (!parsed.success) {
      const fields = [...new Set(parsed.error.issues.map((i) => formatPath(i.path) || "(body)"))];
      return reject(res, endpoint, 400, "invalid", { error: `invalid ${endpoint} request`, fields }, auth);
    }
    if (parsed.data.hostId !== hostId) {
      return reject(res, endpoint, 400, "invalid", { error: `hostId does not match the ${HEADERS.host} header`, fields: ["hostId"] }, auth);
    }

    if (endpoint === "offline") {
      const reason = (parsed.data as z.output<typeof offlineRequestSchema>).reason;
      await core.offline(hostId, reason);
      metrics.request(endpoint, "ok");
      const answer: OfflineResponse = { protocol: PROTOCOL_VERSION, generation: core.durable };
      return send(res, 200, JSON.stringify(answer), auth);
    }

    const poll = parsed.data as z.output<typeof pollRequestSchema>;
    core.heartbeat(hostId, poll.report);
    metrics.request(endpoint, "ok");
    if (core.ready(hostId, poll.generation, poll.wait)) return answerPoll(res, auth, poll.etag);
    hold(res, auth, poll, host.link.timing.heartbeat * 1000);
  }

  /**
   * Holds a long-poll until the host's state changes (and is stored) or the heartbeat period ends.
   * At the end of the period the host gets its last stored state, never one still waiting for the
   * store; only a host with nothing stored yet (just added by a reload) waits on for its first.
   */
  function hold(res: ServerResponse, auth: Authenticated, poll: { generation: number; wait: boolean; etag?: string }, maxMs: number) {
    const hostId = auth.host.hostId;
    const { generation: seen, wait, etag } = poll;
    let expired = false;
    const finish = () => {
      unsubscribe();
      clearTimeout(timer);
      if (!res.destroyed) answerPoll(res, auth, etag);
    };
    const unsubscribe = core.subscribe(hostId, () => {
      if (core.ready(hostId, seen, wait) || !core.host(hostId) || (expired && core.answerable(hostId))) finish();
    });
    const timer = setTimeout(() => {
      expired = true;
      if (core.answerable(hostId)) finish();
    }, maxMs);
    // An agent that hangs up is forgotten; nothing is written to its socket.
    res.once("close", () => {
      unsubscribe();
      clearTimeout(timer);
    });
  }

  function answerPoll(res: ServerResponse, auth: Authenticated, etag: string | undefined) {
    const body = core.answerJson(auth.host.hostId, etag);
    if (body === undefined) return send(res, 401, JSON.stringify({ error: "unknown host (removed from the topology)" } satisfies ErrorResponse), auth);
    send(res, 200, body, auth);
  }

  return (req, res) => {
    if (operator(req, res)) return;
    const path = req.url ?? "";
    const endpoint = path === API.poll ? "poll" : path === API.offline ? "offline" : undefined;
    if (endpoint) {
      if (req.method !== "POST") return reject(res, endpoint, 405, "method-not-allowed", { error: `use POST for ${path}` }, undefined);
      handleAgent(req, res, endpoint).catch((error: unknown) => {
        // A bug must not take the service down: answer 500 (unsigned, nothing to vouch for).
        if (!res.headersSent) reject(res, endpoint, 500, "error", { error: "internal error" });
        else res.destroy(error as Error);
      });
      return;
    }
    if (path === "/metrics" || path === "/healthz") {
      if (req.method !== "GET") return reject(res, "other", 405, "method-not-allowed", { error: `use GET for ${path}` });
      if (path === "/healthz") return send(res, 200, JSON.stringify({ status: "ok", generation: core.durable }));
      metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": metrics.registry.contentType });
          res.end(text);
        },
        () => reject(res, "other", 500, "error", { error: "metrics unavailable" }),
      );
      return;
    }
    reject(res, "other", 404, "not-found", { error: `no such path ${path.slice(0, 100)}` });
  };
}

export const AUTH_ERRORS: Record<VerifyFailure, string> = {
  "missing-headers": `missing or malformed ${HEADERS.timestamp}, ${HEADERS.nonce} or ${HEADERS.signature} header`,
  "bad-signature": "signature does not match",
  "stale-timestamp": "timestamp outside the replay window (check the host clock)",
  "replayed-nonce": "nonce already used",
};

/** The request body, or undefined once it grows past MAX_BODY_BYTES (reading stops there). */
export function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        req.off("data", onData);
        req.pause();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    };
    req.on("data", onData);
    req.once("end", () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.once("error", reject);
  });
}

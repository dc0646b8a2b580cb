// The agent API over HTTPS: signed POST /v1/poll (heartbeat + long-poll) and /v1/offline, plus
// GET /metrics and /healthz. Every rejection is a 4xx with an errorResponseSchema body and changes
// nothing; every answer to an authenticated request is signed.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { z } from "zod";
import { formatPath } from "../contract/topology";
import { API, PROTOCOL_VERSION, offlineRequestSchema, pollRequestSchema, type ErrorResponse, type OfflineResponse } from "../contract/protocol";
import { HEADERS, NonceCache } from "../contract/signing";
import type { HostEntry, StateCore } from "./core";
import type { Logger } from "./log";
import type { ServiceMetrics, RequestOutcome } from "./metrics";
import { createOperatorHandler } from "./operator-api";
import { createAuthenticator, failRequest, Refusal, sendJson } from "./request";

type Endpoint = "poll" | "offline";

interface Authenticated {
  host: HostEntry;
  nonce: string;
}

export function createApiHandler(core: StateCore, metrics: ServiceMetrics, logger: Logger): (req: IncomingMessage, res: ServerResponse) => void {
  // Begins now: requests signed before this process started are refused (not replayable after a restart).
  const authenticate = createAuthenticator(new NonceCache());
  const operator = createOperatorHandler(core, metrics, logger, authenticate);

  function send(res: ServerResponse, status: number, body: string, auth?: Authenticated, close = false) {
    sendJson(res, status, body, auth && { key: auth.host.secret, nonce: auth.nonce }, close);
  }

  function reject(res: ServerResponse, endpoint: string, status: number, outcome: RequestOutcome, error: ErrorResponse, auth?: Authenticated, close = false) {
    metrics.request(endpoint, outcome);
    send(res, status, JSON.stringify(error), auth, close);
  }

  async function handleAgent(req: IncomingMessage, res: ServerResponse, endpoint: Endpoint) {
    let signed;
    try {
      signed = await authenticate(req, (id) => core.host(id)?.secret);
    } catch (error) {
      if (error instanceof Refusal) return reject(res, endpoint, error.status, error.outcome, error.error, undefined, error.close);
      throw error;
    }
    const hostId = signed.id;
    // Removed by a topology reload while its body was read: answered as any unknown host is.
    const host = core.host(hostId);
    if (!host) return reject(res, endpoint, 401, "bad-signature", { error: "unknown host or bad signature" });
    const auth: Authenticated = { host, nonce: signed.nonce };
    const body = signed.body;

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
      handleAgent(req, res, endpoint).catch((error: unknown) =>
        failRequest(req, res, endpoint, error, metrics, logger, () => reject(res, endpoint, 500, "error", { error: "internal error" })),
      );
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

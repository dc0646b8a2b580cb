// The routes beside the agents' long-poll: POST /v1/problem (a host without a working agent says
// why, signed with its host secret) and GET /v1/operator/status (read-only, signed with the operator
// key). Each takes only its own kind of signature; every answer to an authenticated request is signed.
import type { IncomingMessage, ServerResponse } from "node:http";
import { formatPath } from "../contract/topology";
import { API, MAX_BODY_BYTES, problemRequestSchema, type ErrorResponse } from "../contract/protocol";
import { HEADERS, NonceCache, OPERATOR_ID, signResponse, verifyRequest } from "../contract/signing";
import { AUTH_ERRORS, readBody } from "./api";
import type { StateCore } from "./core";
import type { RequestOutcome, ServiceMetrics } from "./metrics";

type Route = "problem" | "operator";

/** A request whose signature checked out: the key that answers it and the nonce the answer is bound to. */
interface Signed {
  key: string;
  nonce: string;
  body: Buffer;
}

class Refusal {
  constructor(
    readonly status: number,
    readonly outcome: RequestOutcome,
    readonly error: ErrorResponse,
    readonly signedBy?: Signed,
  ) {}
}

/** Answers a request to API.problem or API.operatorStatus and returns true; false for any other path (left to the caller). */
export function createOperatorHandler(core: StateCore, metrics: ServiceMetrics): (req: IncomingMessage, res: ServerResponse) => boolean {
  const nonces = new NonceCache();

  function send(res: ServerResponse, status: number, body: string, signed?: Signed) {
    const headers: Record<string, string | number> = { "content-type": "application/json", "content-length": Buffer.byteLength(body) };
    // The rest of a body too large was never read: the connection cannot carry another request.
    if (status === 413) headers.connection = "close";
    if (signed) headers[HEADERS.signature] = signResponse(signed.key, signed.nonce, status, body);
    res.writeHead(status, headers);
    res.end(body);
  }

  /** Checks the signature with the key of the identity the route admits; the operator key never opens a host route, nor a host secret the operator's. */
  async function authenticate(req: IncomingMessage, route: Route): Promise<Signed & { hostId: string }> {
    if (Number(req.headers["content-length"] ?? 0) > MAX_BODY_BYTES) throw new Refusal(413, "too-large", { error: `body larger than ${MAX_BODY_BYTES} bytes` });
    const hostId = req.headers[HEADERS.host];
    if (typeof hostId !== "string") throw new Refusal(401, "missing-headers", { error: `missing ${HEADERS.host} header` });
    const key = route === "operator" ? (hostId === OPERATOR_ID ? core.operatorKey : undefined) : core.host(hostId)?.secret;
    if (key === undefined) {
      const error = route === "operator" ? `only "${OPERATOR_ID}" may read ${API.operatorStatus}` : "unknown host";
      throw new Refusal(401, "unknown-host", { error });
    }
    const body = await readBody(req);
    if (body === undefined) throw new Refusal(413, "too-large", { error: `body larger than ${MAX_BODY_BYTES} bytes` });
    const verified = verifyRequest(key, { method: req.method!, path: req.url!, body, headers: req.headers }, nonces, Date.now());
    if (!verified.ok) throw new Refusal(401, verified.reason, { error: AUTH_ERRORS[verified.reason] });
    return { hostId, key, nonce: req.headers[HEADERS.nonce] as string, body };
  }

  async function problem(req: IncomingMessage, res: ServerResponse) {
    const signed = await authenticate(req, "problem");
    let json: unknown;
    try {
      json = JSON.parse(signed.body.toString("utf8"));
    } catch {
      throw new Refusal(400, "malformed", { error: "body is not JSON" }, signed);
    }
    const parsed = problemRequestSchema.safeParse(json);
    if (!parsed.success) {
      const fields = [...new Set(parsed.error.issues.map((i) => formatPath(i.path) || "(body)"))];
      throw new Refusal(400, "invalid", { error: "invalid problem request", fields }, signed);
    }
    if (parsed.data.hostId !== signed.hostId) {
      throw new Refusal(400, "invalid", { error: `hostId does not match the ${HEADERS.host} header`, fields: ["hostId"] }, signed);
    }
    core.recordProblem(signed.hostId, { kind: parsed.data.kind, message: parsed.data.message });
    send(res, 200, "{}", signed);
  }

  async function operatorStatus(req: IncomingMessage, res: ServerResponse) {
    const signed = await authenticate(req, "operator");
    send(res, 200, JSON.stringify(core.operatorStatus()), signed);
  }

  return (req, res) => {
    const path = req.url ?? "";
    const route: Route | undefined = path === API.problem ? "problem" : path === API.operatorStatus ? "operator" : undefined;
    if (!route) return false;
    const method = route === "problem" ? "POST" : "GET";
    const handle = async () => {
      if (req.method !== method) throw new Refusal(405, "method-not-allowed", { error: `use ${method} for ${path}` });
      await (route === "problem" ? problem(req, res) : operatorStatus(req, res));
      metrics.request(route, "ok");
    };
    handle().catch((error: unknown) => {
      if (res.headersSent) return res.destroy(error as Error);
      // A bug must not take the service down: answer 500 (unsigned, nothing to vouch for).
      const refusal = error instanceof Refusal ? error : new Refusal(500, "error", { error: "internal error" });
      metrics.request(route, refusal.outcome);
      send(res, refusal.status, JSON.stringify(refusal.error), refusal.signedBy);
    });
    return true;
  };
}

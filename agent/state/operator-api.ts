// The routes beside the agents' long-poll: POST /v1/problem (a host without a working agent says
// why, signed with its host secret) and GET /v1/operator/status (read-only, signed with the operator
// key). Each takes only its own kind of signature; every answer to an authenticated request is signed.
import type { IncomingMessage, ServerResponse } from "node:http";
import { formatPath } from "../contract/topology";
import { API, problemRequestSchema } from "../contract/protocol";
import { HEADERS, OPERATOR_ID } from "../contract/signing";
import type { StateCore } from "./core";
import type { Logger } from "./log";
import type { ServiceMetrics } from "./metrics";
import { failRequest, Refusal, sendJson, type Authenticate, type SignedRequest } from "./request";

type Route = "problem" | "operator";

/** Answers a request to API.problem or API.operatorStatus and returns true; false for any other path (left to the caller). */
export function createOperatorHandler(core: StateCore, metrics: ServiceMetrics, logger: Logger, authenticate: Authenticate): (req: IncomingMessage, res: ServerResponse) => boolean {
  /** A refusal after authentication: answered and signed with the key that signed the request. */
  class SignedRefusal extends Refusal {
    constructor(status: number, outcome: Refusal["outcome"], error: Refusal["error"], readonly signedBy: SignedRequest) {
      super(status, outcome, error);
    }
  }

  /** The operator key opens only the operator route, a host secret only the host routes. */
  const keyOf = (route: Route) => (id: string) => (route === "operator" ? (id === OPERATOR_ID ? core.operatorKey : undefined) : core.host(id)?.secret);

  async function problem(req: IncomingMessage, res: ServerResponse) {
    const signed = await authenticate(req, keyOf("problem"));
    let json: unknown;
    try {
      json = JSON.parse(signed.body.toString("utf8"));
    } catch {
      throw new SignedRefusal(400, "malformed", { error: "body is not JSON" }, signed);
    }
    const parsed = problemRequestSchema.safeParse(json);
    if (!parsed.success) {
      const fields = [...new Set(parsed.error.issues.map((i) => formatPath(i.path) || "(body)"))];
      throw new SignedRefusal(400, "invalid", { error: "invalid problem request", fields }, signed);
    }
    if (parsed.data.hostId !== signed.id) {
      throw new SignedRefusal(400, "invalid", { error: `hostId does not match the ${HEADERS.host} header`, fields: ["hostId"] }, signed);
    }
    core.recordProblem(signed.id, { kind: parsed.data.kind, message: parsed.data.message });
    sendJson(res, 200, "{}", signed);
  }

  async function operatorStatus(req: IncomingMessage, res: ServerResponse) {
    const signed = await authenticate(req, keyOf("operator"));
    sendJson(res, 200, JSON.stringify(core.operatorStatus()), signed);
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
      if (!(error instanceof Refusal)) {
        return failRequest(req, res, route, error, metrics, logger, () => {
          metrics.request(route, "error");
          sendJson(res, 500, JSON.stringify({ error: "internal error" }));
        });
      }
      metrics.request(route, error.outcome);
      sendJson(res, error.status, JSON.stringify(error.error), error instanceof SignedRefusal ? error.signedBy : undefined, error.close);
    });
    return true;
  };
}

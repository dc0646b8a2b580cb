// The agent's side of the wire: signed requests to the state service over pinned HTTPS, verified and
// validated answers. Several endpoints are tried in order, each with its own time budget (a
// black-holed one must not use up the next one's); the one that answered is tried first next time.
import https from "node:https";
import { isIP } from "node:net";
import {
  API,
  PROTOCOL_VERSION,
  errorResponseSchema,
  offlineResponseSchema,
  pollAnswerSchema,
  type DesiredState,
  type HostReport,
  type OfflineResponse,
} from "../contract/protocol";
import { HEADERS, signRequest, verifyResponse, type SignedHeaders } from "../contract/signing";
import type { HostUri, StateEndpoint } from "../contract/uri";
import { MAX_TIMER_MS } from "./backoff";
import { PinnedAgent } from "../contract/pinned-agent";
import type { z } from "zod";

/**
 * Why a call failed. `unreachable`: no endpoint answered; `rejected`: a signed error answer;
 * `bad-signature`: unsigned or mis-signed answer; `malformed`: signed, but not a valid message;
 * `aborted`: the caller aborted (urgent report, stop).
 */
export type StateErrorKind = "unreachable" | "rejected" | "bad-signature" | "malformed" | "aborted";

export class StateClientError extends Error {
  constructor(
    readonly kind: StateErrorKind,
    message: string,
  ) {
    super(message);
    this.name = "StateClientError";
  }
}

export interface PollInput {
  generation: number;
  wait: boolean;
  report: HostReport;
}

/** What the reconcile loop needs from the state service (the loop's tests fake this). */
export interface StateApi {
  readonly hostId: string;
  /** The endpoint tried first ("host:port"): the one that answered last. */
  readonly endpoint: string;
  /** `timeoutMs` is per endpoint tried. */
  poll(input: PollInput, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<DesiredState>;
  offline(reason: string, opts: { timeoutMs: number }): Promise<OfflineResponse>;
  close(): void;
}

/**
 * How long an endpoint may take to accept the connection and complete the pinned TLS handshake
 * when another endpoint is left to try: two round trips and some, even across continents.
 */
export const CONNECT_TIMEOUT_MS = 1_000;

interface Answer {
  status: number;
  body: Buffer;
  signature: string | undefined;
}

export class StateClient implements StateApi {
  private readonly agent: PinnedAgent;
  private preferred = 0;
  /** The last desired state answered: what an unchanged answer stands for, and whose etag each poll sends. */
  private held: DesiredState | undefined;

  constructor(private readonly uri: HostUri) {
    this.agent = new PinnedAgent(uri.fingerprints);
  }

  get hostId(): string {
    return this.uri.hostId;
  }

  /** The endpoint that answered last ("host:port"), for status and logs. */
  get endpoint(): string {
    const e = this.uri.endpoints[this.preferred]!;
    return `${e.host}:${e.port}`;
  }

  async poll(input: PollInput, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<DesiredState> {
    const etag = this.held?.etag;
    const body = { protocol: PROTOCOL_VERSION, hostId: this.uri.hostId, ...input, ...(etag !== undefined && { etag }) };
    const answer = await this.call(API.poll, body, pollAnswerSchema, opts);
    if (answer.hostId !== this.uri.hostId) {
      throw new StateClientError("malformed", `answer is for host "${answer.hostId}", not "${this.uri.hostId}"`);
    }
    if (!("unchanged" in answer)) return (this.held = answer);
    // Unchanged: the state held still is the service's, at the answer's generation and time.
    if (this.held?.etag !== answer.etag) throw new StateClientError("malformed", "answer says unchanged, but not of the state this agent holds");
    return (this.held = { ...this.held, generation: answer.generation, serverTime: answer.serverTime });
  }

  offline(reason: string, opts: { timeoutMs: number }): Promise<OfflineResponse> {
    return this.call(API.offline, { protocol: PROTOCOL_VERSION, hostId: this.uri.hostId, reason }, () => offlineResponseSchema, opts);
  }

  close(): void {
    this.agent.destroy();
  }

  private async call<T>(path: string, message: unknown, schema: (json: unknown) => z.ZodType<T>, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<T> {
    const body = JSON.stringify(message);
    const count = this.uri.endpoints.length;
    const failures: string[] = [];
    const kinds: StateErrorKind[] = [];
    for (let i = 0; i < count; i++) {
      const index = (this.preferred + i) % count;
      const endpoint = this.uri.endpoints[index]!;
      const name = `${endpoint.host}:${endpoint.port}`;
      // Each endpoint has its own budget; one with others still to try must connect quickly.
      const signal = withTimeout(opts.signal, opts.timeoutMs);
      const connectMs = i < count - 1 ? Math.min(CONNECT_TIMEOUT_MS, opts.timeoutMs) : opts.timeoutMs;
      try {
        const result = await this.callOne(endpoint, path, body, schema, signal, connectMs).catch((err: unknown) => {
          // A kept-alive connection the server closed meanwhile fails at once: retry on a fresh one.
          if (err instanceof StaleSocketError && !signal.aborted) return this.callOne(endpoint, path, body, schema, signal, connectMs);
          throw err;
        });
        this.preferred = index;
        return result;
      } catch (err) {
        if (opts.signal?.aborted) throw new StateClientError("aborted", "aborted");
        const failure = err instanceof StateClientError ? err : new StateClientError("unreachable", describeNetworkError(err, signal));
        kinds.push(failure.kind);
        failures.push(`${name}: ${failure.message}`);
      }
    }
    // A verification failure outranks "unreachable": someone answered, wrongly, and that needs attention.
    throw new StateClientError(kinds.find((k) => k !== "unreachable") ?? "unreachable", failures.join("; "));
  }

  private async callOne<T>(endpoint: StateEndpoint, path: string, body: string, schema: (json: unknown) => z.ZodType<T>, signal: AbortSignal, connectMs: number): Promise<T> {
    const headers = signRequest(this.uri.secret, { hostId: this.uri.hostId, method: "POST", path, body });
    const nonce = headers[HEADERS.nonce];
    const answer = await post(this.agent, endpoint, path, body, headers, signal, connectMs);
    if (!verifyResponse(this.uri.secret, nonce, answer.status, answer.body, answer.signature)) {
      throw new StateClientError("bad-signature", `${answer.signature ? "mis-signed" : "unsigned"} answer (HTTP ${answer.status})`);
    }
    let json: unknown;
    try {
      json = JSON.parse(answer.body.toString("utf8"));
    } catch {
      throw new StateClientError("malformed", `answer is not JSON (HTTP ${answer.status})`);
    }
    if (answer.status !== 200) {
      const error = errorResponseSchema.safeParse(json);
      throw new StateClientError("rejected", `HTTP ${answer.status}: ${error.success ? error.data.error : "no error message"}`);
    }
    const parsed = schema(json).safeParse(json);
    if (!parsed.success) {
      const fields = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
      throw new StateClientError("malformed", `invalid answer: ${fields.join("; ")}`);
    }
    return parsed.data;
  }
}

class StaleSocketError extends Error {
  constructor(readonly code: string) {
    super(`${code} on a kept-alive connection`);
  }
}

/** The caller's signal plus a timeout (never beyond what a timer can hold: a huge one would throw). */
function withTimeout(signal: AbortSignal | undefined, timeoutMs: number): AbortSignal {
  const timeout = AbortSignal.timeout(Math.min(timeoutMs, MAX_TIMER_MS));
  return signal ? AbortSignal.any([signal, timeout]) : timeout;
}

const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

/**
 * One request. `connectMs` bounds the wait for a connection: the pinned agent hands the request a
 * socket only once TCP, TLS and the pin check are done (a kept-alive one at once).
 */
function post(agent: PinnedAgent, endpoint: StateEndpoint, path: string, body: string, signed: SignedHeaders, signal: AbortSignal, connectMs: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        agent,
        host: endpoint.host,
        port: endpoint.port,
        // SNI only for names: an IP address in SNI is not allowed.
        servername: isIP(endpoint.host) ? "" : endpoint.host,
        method: "POST",
        path,
        signal,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...signed },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_ANSWER_BYTES) req.destroy(new StateClientError("malformed", "answer too large"));
          else chunks.push(chunk);
        });
        res.on("end", () => {
          const signature = res.headers[HEADERS.signature];
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), signature: Array.isArray(signature) ? undefined : signature });
        });
        res.on("error", reject);
      },
    );
    // A request destroyed before it has a socket reports nothing until the agent hands it one (the
    // handshake may hang for long): give up on it here, at once.
    const giveUp = (error: Error) => {
      reject(error);
      req.destroy(error);
    };
    const connectTimer = setTimeout(() => giveUp(new StateClientError("unreachable", `no TLS connection within ${connectMs} ms`)), Math.min(connectMs, MAX_TIMER_MS));
    const onAbort = () => giveUp(new Error("aborted"));
    signal.addEventListener("abort", onAbort, { once: true });
    req.once("socket", () => clearTimeout(connectTimer));
    req.once("close", () => {
      clearTimeout(connectTimer);
      signal.removeEventListener("abort", onAbort);
    });
    req.on("error", (err: NodeJS.ErrnoException) => {
      reject(req.reusedSocket && (err.code === "ECONNRESET" || err.code === "EPIPE") ? new StaleSocketError(err.code) : err);
    });
    req.end(body);
  });
}

function describeNetworkError(err: unknown, signal: AbortSignal): string {
  if (signal.aborted) return "timed out";
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code}${e.message && !e.message.includes(e.code) ? ` ${e.message}` : ""}` : e.message;
}

// The operator's side of the state service: reads GET /v1/operator/status over pinned HTTPS, signed
// with the operator key, and judges whether a link is ready (every host heard from and without a
// problem, every location with an active host, every connection's tunnel up). Used by the Link's
// readiness wait and by `sitelink state status --url`.
import { randomBytes } from "node:crypto";
import https from "node:https";
import { PinnedAgent } from "./pinned-agent";
import { API, operatorStatusSchema, type OperatorHost, type OperatorStatus } from "./protocol";
import { HEADERS, OPERATOR_ID, signRequest, verifyResponse } from "./signing";
import { formatPath } from "./topology";

/** How long one status request may take. */
const REQUEST_TIMEOUT_MS = 10_000;
/** Largest status answer read (a few hundred bytes per host). */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

/**
 * The state service's status as the operator sees it. Throws an Error in our words when the service
 * cannot be reached, shows another certificate, refuses the key or answers unsigned or malformed.
 * The operator key never appears in a message.
 */
export async function fetchOperatorStatus(
  url: string,
  fingerprint: string,
  operatorKey: string,
  opts: { agent?: https.Agent; timeoutMs?: number } = {},
): Promise<OperatorStatus> {
  const agent = opts.agent ?? new PinnedAgent([fingerprint]);
  try {
    const nonce = randomBytes(16).toString("hex");
    const headers = signRequest(operatorKey, { hostId: OPERATOR_ID, method: "GET", path: API.operatorStatus, body: "" }, Date.now(), nonce);
    const answer = await get(new URL(API.operatorStatus, url), agent, { ...headers }, opts.timeoutMs ?? REQUEST_TIMEOUT_MS).catch((error: Error) => {
      throw new Error(`state service ${url} did not answer: ${error.message}`);
    });
    const signed = verifyResponse(operatorKey, nonce, answer.status, answer.body, answer.signature);
    if (answer.status !== 200) {
      const detail = errorOf(answer.body);
      const hint = answer.status === 401 ? " (is the operator key derived from this service's master key?)" : "";
      throw new Error(`state service ${url} refused the status request: ${answer.status} ${detail}${hint}`);
    }
    if (!signed) throw new Error(`state service ${url} answered without the operator key's signature (not the service this key belongs to?)`);
    let json: unknown;
    try {
      json = JSON.parse(answer.body.toString("utf8"));
    } catch {
      throw new Error(`state service ${url} answered a status that is not JSON`);
    }
    const parsed = operatorStatusSchema.safeParse(json);
    if (!parsed.success) {
      const fields = [...new Set(parsed.error.issues.map((i) => formatPath(i.path) || "(body)"))].slice(0, 5);
      throw new Error(`state service ${url} answered a malformed status (${fields.join(", ")}); is it a different sitelink version?`);
    }
    return parsed.data;
  } finally {
    if (!opts.agent) agent.destroy();
  }
}

function get(url: URL, agent: https.Agent, headers: Record<string, string>, timeoutMs: number): Promise<{ status: number; body: Buffer; signature?: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: "GET", agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) req.destroy(new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`));
        else chunks.push(chunk);
      });
      res.on("end", () => {
        const signature = res.headers[HEADERS.signature];
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), signature: typeof signature === "string" ? signature : undefined });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.end();
  });
}

function errorOf(body: Buffer): string {
  try {
    const error = (JSON.parse(body.toString("utf8")) as { error?: unknown }).error;
    return typeof error === "string" ? error.slice(0, 200) : "";
  } catch {
    return "";
  }
}

export interface HostReadiness {
  id: string;
  ready: boolean;
  /** "ready", or why not, in words for a person. */
  reason: string;
}

export interface Readiness {
  ready: boolean;
  hosts: HostReadiness[];
}

export interface ReadinessExpectation {
  /** The host ids that must be ready (a Link's own hosts). @default every host the service knows */
  hosts?: readonly string[];
}

/**
 * Whether the link is ready: every expected host was heard from, is online and reports no install
 * problem; every location has an active host; and each active host reports its tunnel to every
 * connected location up.
 */
export function readiness(status: OperatorStatus, expect: ReadinessExpectation = {}): Readiness {
  const known = new Map<string, { host: OperatorHost; location: OperatorStatus["links"][number]["locations"][number] }>();
  for (const link of status.links) for (const location of link.locations) for (const host of location.hosts) known.set(host.id, { host, location });
  const ids = expect.hosts ?? [...known.keys()];
  const hosts = ids.map((id): HostReadiness => {
    const entry = known.get(id);
    const reason = entry ? hostProblem(entry.host, entry.location, status.serverTime) : "not in the state service's topology (deliver the link's topology to it)";
    return { id, ready: reason === undefined, reason: reason ?? "ready" };
  });
  return { ready: hosts.every((h) => h.ready), hosts };
}

function hostProblem(host: OperatorHost, location: { name: string; activeHost: string | null; connectedTo: string[] }, serverTime: number): string | undefined {
  const problem = host.lastProblem;
  if (problem) return problem.kind === "integrity" ? `agent refused: integrity mismatch (${problem.message})` : `bootstrap failed: ${problem.message}`;
  if (host.lastContactMsAgo === null) return "never heard from";
  switch (host.status) {
    case "offline":
      return host.offlineSince === null ? `offline (last contact ${seconds(host.lastContactMsAgo)} ago)` : `offline since ${iso(host.offlineSince)} (${seconds(serverTime - host.offlineSince)} ago)`;
    case "backoff":
      return "back online, but in backoff after going offline";
    case "partitioned":
      return "partitioned: it reaches fewer peers than another host of its location";
    case "silent":
      return `silent: no heartbeat for ${seconds(host.lastContactMsAgo)} (other hosts still reach it)`;
  }
  if (location.activeHost === null) return `location ${location.name} has no active host`;
  if (location.activeHost !== host.id) return undefined;
  const down = location.connectedTo.flatMap((peer) => {
    const state = host.tunnels.find((t) => t.location === peer)?.state;
    if (state === "up") return [];
    return [`tunnel to ${peer} ${state === "down" ? "down (IKE failing)" : state === "connecting" ? "connecting (IKE not established yet)" : "not set up yet"}`];
  });
  return down.length > 0 ? down.join("; ") : undefined;
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
const seconds = (ms: number) => {
  const s = Math.max(0, ms) / 1000;
  return `${s < 10 ? Number(s.toFixed(1)) : Math.round(s)} s`;
};

export interface WaitForReadinessOptions {
  /** `https://host[:port]` of the state service. */
  url: string;
  /** SHA-256 fingerprint of its certificate. */
  fingerprint: string;
  /** deriveOperatorKey(masterKey). Secret. */
  operatorKey: string;
  timeoutMs: number;
  /** Pause between two status reads. */
  intervalMs: number;
  /** The host ids that must be ready. @default every host the service knows */
  expectHosts?: readonly string[];
}

/**
 * Reads the status until the link is ready, and returns that verdict; at the timeout, throws an
 * Error naming every host that is not ready and why (or why the service could not be read).
 */
export async function waitForReadiness(opts: WaitForReadinessOptions): Promise<Readiness> {
  const deadline = Date.now() + opts.timeoutMs;
  const agent = new PinnedAgent([opts.fingerprint]);
  let last: Readiness | undefined;
  let lastError: Error | undefined;
  try {
    for (;;) {
      const remaining = deadline - Date.now();
      try {
        const status = await fetchOperatorStatus(opts.url, opts.fingerprint, opts.operatorKey, { agent, timeoutMs: Math.max(1, Math.min(REQUEST_TIMEOUT_MS, remaining)) });
        last = readiness(status, { hosts: opts.expectHosts });
        lastError = undefined;
        if (last.ready) return last;
      } catch (error) {
        // A read our own deadline cut short says nothing about the service: the verdict before it stands.
        const cutByDeadline = remaining < REQUEST_TIMEOUT_MS && Date.now() >= deadline;
        if (!(cutByDeadline && last)) lastError = error as Error;
      }
      const wait = Math.min(opts.intervalMs, deadline - Date.now());
      if (wait <= 0) break;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  } finally {
    agent.destroy();
  }
  throw new Error(notReadyMessage(opts, last, lastError));
}

function notReadyMessage(opts: WaitForReadinessOptions, last: Readiness | undefined, lastError: Error | undefined): string {
  const after = `not ready after ${seconds(opts.timeoutMs)}`;
  const lines = last?.hosts.filter((h) => !h.ready).map((h) => `  ${h.id}: ${h.reason}`) ?? [];
  if (lastError && !last) return `${after}: ${lastError.message}; no host could be checked`;
  const cause = lastError ? ` (the last status read failed: ${lastError.message})` : "";
  return `${after}${cause}:\n${lines.join("\n")}`;
}

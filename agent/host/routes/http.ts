// Small fetch helpers for the metadata servers and cloud REST APIs: a time limit on every call and
// errors that name the call but never carry request headers (tokens stay out of messages).
import { backoffDelay } from "../backoff";
import { errorMessage } from "../log";

export type Fetch = typeof fetch;

export const HTTP_TIMEOUT_MS = 10_000;

export class HttpError extends Error {
  constructor(
    readonly method: string,
    readonly url: string,
    readonly status: number,
    detail: string,
    /** The answer's Retry-After, when it gave one. */
    readonly retryAfterMs?: number,
  ) {
    super(`${method} ${url} → HTTP ${status}${detail ? `: ${detail}` : ""}`);
    this.name = "HttpError";
  }
}

export interface HttpAnswer {
  status: number;
  headers: Headers;
  text: string;
}

/** Performs the request; resolves with a 2xx answer (status, headers, body text), rejects with HttpError otherwise. */
export async function send(
  fetchImpl: Fetch,
  method: string,
  url: string,
  init: { headers?: Record<string, string>; body?: string; timeoutMs?: number } = {},
): Promise<HttpAnswer> {
  let response: Response;
  try {
    response = await fetchImpl(url, { method, headers: init.headers, body: init.body, signal: AbortSignal.timeout(init.timeoutMs ?? HTTP_TIMEOUT_MS) });
  } catch (error) {
    const cause = error instanceof Error && error.cause instanceof Error ? ` (${error.cause.message})` : "";
    throw new Error(`${method} ${url} failed: ${errorMessage(error)}${cause}`);
  }
  const text = await response.text();
  if (!response.ok) throw new HttpError(method, url, response.status, errorDetail(text), retryAfterMs(response.headers.get("retry-after")));
  return { status: response.status, headers: response.headers, text };
}

/** Performs the request; resolves with the body text of a 2xx answer, rejects with HttpError otherwise. */
export async function request(
  fetchImpl: Fetch,
  method: string,
  url: string,
  init: { headers?: Record<string, string>; body?: string; timeoutMs?: number } = {},
): Promise<string> {
  return (await send(fetchImpl, method, url, init)).text;
}

/** The message of a JSON error body (Google's `{error:{message}}`, Azure's `{error:{code,message}}`, OCI's `{code,message}`), else the first 200 characters. */
function errorDetail(text: string): string {
  try {
    const parsed = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
    if (typeof parsed.error === "string") return parsed.error;
    if (parsed.error && typeof parsed.error.message === "string") return parsed.error.message;
    if (typeof parsed.message === "string") return parsed.message;
  } catch {
    // not JSON
  }
  return text.slice(0, 200).trim();
}

/** Retry-After as seconds or an HTTP date, in ms; undefined when absent or unreadable. */
export function retryAfterMs(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** How a cloud call is repeated after throttling (429) or a server error (5xx). */
export interface RetryPolicy {
  /** Calls in all, the first included. */
  attempts: number;
  /** Backoff of the first retry, doubled per retry up to maxMs (±20 % jitter). */
  initialMs: number;
  /** Longest wait between two calls, a Retry-After included. */
  maxMs: number;
  sleep: (ms: number) => Promise<void>;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Enough to ride out a throttling burst, short enough that the agent's own retry takes over. */
export const CLOUD_RETRY: RetryPolicy = { attempts: 5, initialMs: 500, maxMs: 20_000, sleep };

/** Whether an error is worth the same call again: throttled, or the server's fault. */
export function isRetryable(error: unknown): error is HttpError {
  return error instanceof HttpError && (error.status === 429 || error.status >= 500);
}

/** Runs `call`, again after a 429 (waiting its Retry-After) or a 5xx (backoff), up to `policy.attempts` calls. */
export async function withRetries<T>(policy: RetryPolicy, call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (!isRetryable(error) || attempt >= policy.attempts) throw error;
      await policy.sleep(Math.min(policy.maxMs, error.retryAfterMs ?? Math.round(backoffDelay(attempt, policy.initialMs, policy.maxMs))));
    }
  }
}

/** `withRetries`, and that once more after a 401, with `renew` having dropped the credentials (revoked or expired early). */
export async function withAuthRetries<T>(policy: RetryPolicy, renew: () => void, call: () => Promise<T>): Promise<T> {
  try {
    return await withRetries(policy, call);
  } catch (error) {
    if (!(error instanceof HttpError && error.status === 401)) throw error;
    renew();
    return withRetries(policy, call);
  }
}

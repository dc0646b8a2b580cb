// Small fetch helpers for the metadata servers and cloud REST APIs: a time limit on every call and
// errors that name the call but never carry request headers (tokens stay out of messages).
import { errorMessage } from "../log";

export type Fetch = typeof fetch;

export const HTTP_TIMEOUT_MS = 10_000;

export class HttpError extends Error {
  constructor(
    readonly method: string,
    readonly url: string,
    readonly status: number,
    detail: string,
  ) {
    super(`${method} ${url} → HTTP ${status}${detail ? `: ${detail}` : ""}`);
    this.name = "HttpError";
  }
}

/** Performs the request; resolves with the body text of a 2xx answer, rejects with HttpError otherwise. */
export async function request(
  fetchImpl: Fetch,
  method: string,
  url: string,
  init: { headers?: Record<string, string>; body?: string; timeoutMs?: number } = {},
): Promise<string> {
  let response: Response;
  try {
    response = await fetchImpl(url, { method, headers: init.headers, body: init.body, signal: AbortSignal.timeout(init.timeoutMs ?? HTTP_TIMEOUT_MS) });
  } catch (error) {
    const cause = error instanceof Error && error.cause instanceof Error ? ` (${error.cause.message})` : "";
    throw new Error(`${method} ${url} failed: ${errorMessage(error)}${cause}`);
  }
  const text = await response.text();
  if (!response.ok) throw new HttpError(method, url, response.status, errorDetail(text));
  return text;
}

/** The message of a JSON error body (Google's `{error:{message}}`), else the first 200 characters. */
function errorDetail(text: string): string {
  try {
    const parsed = JSON.parse(text) as { error?: { message?: unknown } | string };
    if (typeof parsed.error === "string") return parsed.error;
    if (parsed.error && typeof parsed.error.message === "string") return parsed.error.message;
  } catch {
    // not JSON
  }
  return text.slice(0, 200).trim();
}

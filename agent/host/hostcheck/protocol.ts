// The host-check exchange, one request per TCP connection, one text line each way:
//   client → "SLHC1 <client host id> <nonce: 32 hex>\n"
//   server → "SLHC1 <server host id> <HMAC-SHA256 hex>\n"
// The HMAC covers both host ids and the nonce under the link-wide host-check key, so only a link
// host that knows the key and is the host the prober meant can answer; the "answer" tag keeps an
// answer from ever being valid as a challenge. Host ids never contain spaces (topology rule).
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { HOST_ID_PATTERN } from "../../contract/topology";

export const MAGIC = "SLHC1";
/** Longest line either side sends (128-char host id + nonce or MAC + framing), with room to spare. */
export const MAX_LINE_BYTES = 256;

const NONCE = /^[0-9a-f]{32}$/;
const MAC = /^[0-9a-f]{64}$/;

export interface Challenge {
  clientId: string;
  nonce: string;
}

/** Host ids travel space-separated on the wire: refuse anything the topology would not allow. */
export function assertHostId(hostId: string): void {
  if (!HOST_ID_PATTERN.test(hostId)) throw new Error(`host check: hostId "${hostId}" must be 1-128 of a-z 0-9 . _ - starting with a letter or digit`);
}

export function newChallenge(clientId: string): Challenge {
  return { clientId, nonce: randomBytes(16).toString("hex") };
}

export function encodeChallenge(challenge: Challenge): string {
  return `${MAGIC} ${challenge.clientId} ${challenge.nonce}\n`;
}

/** Parses a challenge line (without its newline); undefined when it is not one. */
export function parseChallenge(line: string): Challenge | undefined {
  const [magic, clientId, nonce, extra] = line.split(" ");
  if (magic !== MAGIC || extra !== undefined || !clientId || !HOST_ID_PATTERN.test(clientId) || !nonce || !NONCE.test(nonce)) return undefined;
  return { clientId, nonce };
}

export function answerMac(key: string, challenge: Challenge, serverId: string): string {
  return createHmac("sha256", key).update(["sitelink-hostcheck-answer", challenge.clientId, challenge.nonce, serverId].join("\n")).digest("hex");
}

export function encodeAnswer(key: string, challenge: Challenge, serverId: string): string {
  return `${MAGIC} ${serverId} ${answerMac(key, challenge, serverId)}\n`;
}

export type AnswerVerdict = "ok" | "malformed" | "wrong-host" | "bad-mac";

/** Checks an answer line (without its newline) from the host `expectedServerId`. */
export function verifyAnswer(key: string, challenge: Challenge, expectedServerId: string, line: string): AnswerVerdict {
  const [magic, serverId, mac, extra] = line.split(" ");
  if (magic !== MAGIC || extra !== undefined || !serverId || !mac || !MAC.test(mac)) return "malformed";
  if (serverId !== expectedServerId) return "wrong-host";
  const expected = Buffer.from(answerMac(key, challenge, serverId), "hex");
  return timingSafeEqual(expected, Buffer.from(mac, "hex")) ? "ok" : "bad-mac";
}

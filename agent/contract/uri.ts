// The host URI: everything an agent needs to reach its state service.
//   sitelink://hostId:secret@host[:port][,host2[:port]…]?fp=<sha256 of the server certificate>
import { X509Certificate } from "node:crypto";
import type { TLSSocket } from "node:tls";
import { isAddress } from "./net";
import { HOST_ID_PATTERN } from "./topology";

export const DEFAULT_STATE_PORT = 9443;

export interface StateEndpoint {
  host: string;
  port: number;
}

export interface HostUri {
  hostId: string;
  /** Secret: never log. */
  secret: string;
  endpoints: StateEndpoint[];
  /** SHA-256 fingerprints of the accepted server certificates, lower-case hex without colons. */
  fingerprints: string[];
}

export class UriError extends Error {
  constructor(message: string) {
    super(`invalid sitelink URI: ${message}`);
    this.name = "UriError";
  }
}

const HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** Parses a host URI. Error messages never contain the secret. */
export function parseHostUri(text: string): HostUri {
  // The secret runs to the last "@" (host names hold none), so no part of a malformed secret can
  // end up in the host list, whose errors quote it.
  const match = /^sitelink:\/\/([^:@/?]+):([^/?]*)@([^/?@]+)\/?(?:\?(.*))?$/.exec(text.trim());
  if (!match) throw new UriError("expected sitelink://hostId:secret@host[:port][,host…]?fp=<sha256>");
  const [, hostId, secret, hostList, query] = match as unknown as [string, string, string, string, string | undefined];
  if (!HOST_ID_PATTERN.test(hostId)) throw new UriError(`host id "${hostId}" is not valid`);
  if (!/^[A-Za-z0-9_-]{16,}$/.test(secret)) throw new UriError("secret must be at least 16 base64url characters");
  const endpoints = hostList.split(",").map(parseEndpoint);
  const params = new URLSearchParams(query ?? "");
  const fingerprints = params.getAll("fp").flatMap((v) => v.split(",")).map(normalizeFingerprint);
  if (fingerprints.length === 0) throw new UriError("fp (SHA-256 fingerprint of the state service certificate) is required");
  for (const key of params.keys()) {
    if (key !== "fp") throw new UriError(`unknown parameter "${key}"`);
  }
  return { hostId, secret, endpoints, fingerprints };
}

export function formatHostUri(uri: HostUri): string {
  const hosts = uri.endpoints.map((e) => `${e.host.includes(":") ? `[${e.host}]` : e.host}:${e.port}`).join(",");
  return `sitelink://${uri.hostId}:${uri.secret}@${hosts}?fp=${uri.fingerprints.join(",")}`;
}

/** The URI with its secret masked, for logs and `sitelink list`. */
export function redactHostUri(uri: HostUri): string {
  return formatHostUri({ ...uri, secret: "****" });
}

export function normalizeFingerprint(text: string): string {
  const hex = text.replace(/:/g, "").toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new UriError(`fingerprint "${text}" is not a SHA-256 hex digest`);
  return hex;
}

/** The SHA-256 fingerprint of a PEM certificate, as host URIs pin it (lowercase hex). */
export function certificateFingerprint(certPem: string | Buffer): string {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    throw new Error("not a PEM certificate");
  }
  return normalizeFingerprint(cert.fingerprint256);
}

/** True for a SHA-256 fingerprint in any form normalizeFingerprint takes. */
export function isFingerprint(text: string): boolean {
  try {
    normalizeFingerprint(text);
    return true;
  } catch {
    return false;
  }
}

/** The fingerprint of the certificate a connected TLS peer showed, as URIs pin it; "" when it showed none. */
export function peerFingerprint(socket: TLSSocket): string {
  const fingerprint = socket.getPeerCertificate()?.fingerprint256;
  return fingerprint ? normalizeFingerprint(fingerprint) : "";
}

function parseEndpoint(text: string): StateEndpoint {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  const [host, portText] = bracketed
    ? [bracketed[1]!, bracketed[2]]
    : text.split(":").length > 2
      ? [text, undefined] // bare IPv6 without a port
      : (text.split(":") as [string, string | undefined]);
  if (!host || !(isAddress(host) || HOSTNAME.test(host))) throw new UriError(`state service host "${text}" is not valid`);
  // Digits only: Number() would take "1e3" or "0x50".
  const port = portText === undefined ? DEFAULT_STATE_PORT : /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UriError(`port in "${text}" is not valid`);
  return { host, port };
}

// HTTPS keep-alive agent that trusts exactly the certificates whose SHA-256 fingerprints the host URI
// names. The state service uses a self-signed certificate, so CA verification is switched off
// (rejectUnauthorized: false) and REPLACED by the pin: a connection is handed to a request only after
// its peer certificate matched. The pin is checked here, on secureConnect, because Node does not call
// checkServerIdentity at all once chain verification failed (as it does for a self-signed certificate)
// and rejectUnauthorized is false; checking in createConnection also means nothing is ever written to
// an unpinned server.
import https from "node:https";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { normalizeFingerprint, peerFingerprint } from "./uri";

const HANDSHAKE_TIMEOUT_MS = 10_000;

export class PinMismatchError extends Error {
  readonly code = "ERR_SITELINK_PIN_MISMATCH";
  constructor(readonly endpoint: string) {
    super(`certificate of ${endpoint} does not match the pinned fingerprint`);
    this.name = "PinMismatchError";
  }
}

export class PinnedAgent extends https.Agent {
  private readonly pins: ReadonlySet<string>;

  constructor(fingerprints: string[]) {
    // No TLS session cache: every new connection shows its certificate (connections are kept alive anyway).
    super({ keepAlive: true, rejectUnauthorized: false, maxCachedSessions: 0 });
    this.pins = new Set(fingerprints.map(normalizeFingerprint));
  }

  override createConnection(options: https.RequestOptions, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    const socket = (https.Agent.prototype.createConnection as (o: https.RequestOptions) => TLSSocket).call(this, options);
    const endpoint = `${options.host ?? options.hostname}:${options.port}`;
    const onError = (err: Error) => callback?.(err, socket);
    socket.once("error", onError);
    // A black-holed endpoint never completes the handshake, and an aborted request does not close a
    // connection it was never handed: bound the handshake so such sockets do not pile up.
    socket.setTimeout(HANDSHAKE_TIMEOUT_MS, () => socket.destroy(new Error(`TLS handshake with ${endpoint} timed out`)));
    socket.once("secureConnect", () => {
      socket.setTimeout(0);
      socket.off("error", onError);
      if (!this.pins.has(peerFingerprint(socket))) {
        // destroy() without an error: nobody listens for 'error' on the socket any more.
        socket.destroy();
        callback?.(new PinMismatchError(endpoint), socket);
        return;
      }
      callback?.(null, socket);
    });
    return undefined;
  }
}

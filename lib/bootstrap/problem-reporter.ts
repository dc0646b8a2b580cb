// The host-side problem reporter: run with the host's own node where no agent runs (yet), e.g. when
// the installer refused an agent. Posts `{ hostId, kind, message }` to POST /v1/problem of the state
// service, signed like every host request (agent/contract/signing.ts) with the host secret, over
// HTTPS pinned to the certificate fingerprint of the host URI. The URI (secret inside) arrives on
// standard input, never in argv; nothing it prints holds the secret.
//   <host URI on stdin> node report-problem.js KIND MESSAGE
// Plain JavaScript on node's own modules only: it must run before any sitelink is installed.

import { DEFAULT_STATE_PORT } from "../../agent/contract/uri";

/** The path it posts to. */
export const PROBLEM_PATH = "/v1/problem";

export const PROBLEM_REPORTER_JS = String.raw`"use strict";
const crypto = require("node:crypto");
const https = require("node:https");
const tls = require("node:tls");
const [kind, message] = process.argv.slice(2);
const fail = (why) => { console.error("sitelink: problem not reported: " + why); process.exit(1); };
const uri = require("node:fs").readFileSync(0, "utf8").trim();
const m = /^sitelink:\/\/([^:@\/?]+):([^\/?]*)@([^\/?@]+)\/?\?fp=([0-9A-Fa-f:,]+)$/.exec(uri);
if (!m) fail("the host URI is malformed");
const [, hostId, secret, hosts, fps] = m;
const pinned = fps.split(",").map((f) => f.replace(/:/g, "").toLowerCase());
const endpoint = /^(\[[^\]]+\]|[^:,]+)(?::(\d+))?/.exec(hosts);
if (!endpoint) fail("the host URI names no state service");
const host = endpoint[1].replace(/^\[|\]$/g, "");
const port = Number(endpoint[2] || ${DEFAULT_STATE_PORT});
const body = JSON.stringify({ hostId, kind, message: String(message).slice(0, 500) });
const timestamp = String(Date.now());
const nonce = crypto.randomBytes(16).toString("hex");
const hash = crypto.createHash("sha256").update(body).digest("hex");
const signature = crypto.createHmac("sha256", secret).update(["POST", "${PROBLEM_PATH}", timestamp, nonce, hash].join("\n")).digest("hex");
// The certificate is pinned by fingerprint, as the agent does (no CA vouches for it), and checked
// before the request exists: nothing is written to a server that is not the pinned one.
const socket = tls.connect({ host, port, servername: require("node:net").isIP(host) ? undefined : host, rejectUnauthorized: false });
socket.setTimeout(10000, () => socket.destroy(new Error("timed out")));
socket.on("error", (err) => fail(err.message));
socket.once("secureConnect", () => {
  const cert = socket.getPeerCertificate();
  const fp = cert && cert.raw ? crypto.createHash("sha256").update(cert.raw).digest("hex") : "";
  if (!pinned.includes(fp)) { socket.destroy(); fail("the state service's certificate is not the pinned one"); }
  const req = https.request({
    host, port, method: "POST", path: "${PROBLEM_PATH}", createConnection: () => socket,
    headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body),
      "x-sitelink-host": hostId, "x-sitelink-timestamp": timestamp, "x-sitelink-nonce": nonce, "x-sitelink-signature": signature },
  });
  req.on("error", (err) => fail(err.message));
  req.on("response", (res) => {
    res.resume();
    res.on("end", () => {
      if (res.statusCode !== 200) fail("HTTP " + res.statusCode);
      console.error("sitelink: problem reported to the state service (HTTP 200)");
      socket.end();
    });
  });
  req.end(body);
});
`;

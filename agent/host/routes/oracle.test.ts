import { execFileSync } from "node:child_process";
import { createHash, createPublicKey, verify, X509Certificate, type KeyObject } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { agentConfigSchema } from "../../contract/agent-config";
import type { RetryPolicy } from "./http";
import { createRouteProvider } from "./index";
import { OracleRouteProvider, type OciRouteRule } from "./oracle";

const TENANCY = "ocid1.tenancy.oc1..aaaatenancy";
const VNIC = "ocid1.vnic.oc1.eu-frankfurt-1.vnic1";
const MY_IP = "ocid1.privateip.oc1.eu-frankfurt-1.me";
const PEER_IP = "ocid1.privateip.oc1.eu-frankfurt-1.peer";
const OTHER_IP = "ocid1.privateip.oc1.eu-frankfurt-1.firewall";
const TABLE_A = "ocid1.routetable.oc1.eu-frankfurt-1.aaaa";
const TABLE_B = "ocid1.routetable.oc1.eu-frankfurt-1.bbbb";
const T0 = 1_700_000_000_000;

/** The instance's certificate and key, made by openssl with the subject OCI gives instance certificates. */
function instanceIdentity(): { cert: string; key: string; intermediate: string } {
  const dir = mkdtempSync(join(tmpdir(), "sitelink-oci-"));
  try {
    const subject = `/CN=ocid1.instance.oc1.eu-frankfurt-1.inst/OU=opc-certtype:instance/OU=opc-tenant:${TENANCY}`;
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"), "-days", "2", "-subj", subject], { stdio: "ignore" });
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "ca.key"), "-out", join(dir, "ca.pem"), "-days", "2", "-subj", "/CN=PKISVC Identity Intermediate"], { stdio: "ignore" });
    return { cert: readFileSync(join(dir, "cert.pem"), "utf8"), key: readFileSync(join(dir, "key.pem"), "utf8"), intermediate: readFileSync(join(dir, "ca.pem"), "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Checks a draft-cavage signature the way OCI does: the named headers, in order, against `key`. */
function verifySignature(req: IncomingMessage, body: string, key: KeyObject, required: string[]): string | undefined {
  const auth = req.headers.authorization ?? "";
  const param = (name: string) => auth.match(new RegExp(`${name}="([^"]*)"`))?.[1];
  const names = (param("headers") ?? "").split(" ");
  if (names.join(" ") !== required.join(" ")) return `signed headers "${names.join(" ")}"`;
  if (param("algorithm") !== "rsa-sha256" || !auth.startsWith('Signature version="1",')) return "algorithm";
  if (names.includes("x-content-sha256") && req.headers["x-content-sha256"] !== createHash("sha256").update(body).digest("base64")) return "body hash";
  if (names.includes("content-length") && req.headers["content-length"] !== String(Buffer.byteLength(body))) return "content-length";
  const text = names.map((n) => (n === "(request-target)" ? `${n}: ${req.method!.toLowerCase()} ${req.url}` : `${n}: ${req.headers[n]}`)).join("\n");
  return verify("RSA-SHA256", Buffer.from(text), key, Buffer.from(param("signature") ?? "", "base64")) ? undefined : "signature";
}

const GET_HEADERS = ["date", "(request-target)", "host"];
const BODY_HEADERS = ["content-length", "content-type", "x-content-sha256"];

/** IMDS + federation + core API on loopback; every signature is verified with the real keys. */
class FakeOci {
  readonly calls: string[] = [];
  readonly identity = instanceIdentity();
  tables = new Map<string, { rules: OciRouteRule[]; etag: number }>();
  federations = 0;
  /** Session tokens issued, with the public key they are bound to and their expiry (ms). */
  private sessions = new Map<string, { key: KeyObject; exp: number }>();
  now = () => T0;
  faults: Array<{ match: string; status: number; headers?: Record<string, string>; before?: () => void }> = [];
  private server: Server | undefined;
  url = "";

  async start() {
    this.server = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk) => (body += chunk));
      req.on("end", () => {
        const [status, answer, headers] = this.handle(req, body);
        res.writeHead(status, { "content-type": "application/json", ...headers }).end(typeof answer === "string" ? answer : JSON.stringify(answer));
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stop() {
    return new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }

  reset() {
    this.calls.length = 0;
    this.tables = new Map([[TABLE_A, { rules: [], etag: 1 }], [TABLE_B, { rules: [], etag: 1 }]]);
    this.federations = 0;
    this.sessions.clear();
    this.faults = [];
  }

  revokeSessions() {
    this.sessions.clear();
  }

  private handle(req: IncomingMessage, body: string): [number, unknown, Record<string, string>?] {
    const path = req.url ?? "";
    if (path.startsWith("/opc/v2/")) {
      if (req.headers.authorization !== "Bearer Oracle") return [401, { code: "NotAuthenticated", message: "no Bearer Oracle" }];
      const data: Record<string, unknown> = {
        "identity/cert.pem": this.identity.cert,
        "identity/intermediate.pem": this.identity.intermediate,
        "identity/key.pem": this.identity.key,
        "vnics/": [{ vnicId: VNIC, privateIp: "10.1.0.4" }],
        "instance/regionInfo": { realmKey: "oc1", realmDomainComponent: "oraclecloud.com", regionKey: "FRA", regionIdentifier: "eu-frankfurt-1" },
      };
      const answer = data[path.slice("/opc/v2/".length)];
      return answer === undefined ? [404, { code: "NotFound", message: path }] : [200, answer];
    }
    const fault = this.faults.findIndex((f) => `${req.method} ${path}`.startsWith(f.match));
    if (fault !== -1) {
      const [f] = this.faults.splice(fault, 1);
      f!.before?.();
      this.calls.push(`${req.method} ${path} → ${f!.status}`);
      return [f!.status, { code: "Fault", message: `fault ${f!.status}` }, f!.headers];
    }
    if (req.method === "POST" && path === "/v1/x509") return this.federate(req, body);
    this.calls.push(`${req.method} ${path}${req.headers["if-match"] ? ` if-match ${req.headers["if-match"]}` : ""}${body ? ` ${body}` : ""}`);
    const keyId = (req.headers.authorization ?? "").match(/keyId="ST\$([^"]*)"/)?.[1];
    const session = keyId ? this.sessions.get(keyId) : undefined;
    if (!session || this.now() >= session.exp) return [401, { code: "NotAuthenticated", message: "The required information to complete authentication was not provided." }];
    const bad = verifySignature(req, body, session.key, req.method === "PUT" ? [...GET_HEADERS, ...BODY_HEADERS] : GET_HEADERS);
    if (bad) return [401, { code: "NotAuthenticated", message: `bad ${bad}` }];
    if (req.method === "GET" && path === `/20160918/privateIps?vnicId=${encodeURIComponent(VNIC)}`) {
      return [200, [{ id: "ocid1.privateip.oc1.eu-frankfurt-1.secondary", ipAddress: "10.1.0.40", isPrimary: false }, { id: MY_IP, ipAddress: "10.1.0.4", isPrimary: true }]];
    }
    const table = this.tables.get(path.slice("/20160918/routeTables/".length));
    if (!path.startsWith("/20160918/routeTables/") || !table) return [404, { code: "NotAuthorizedOrNotFound", message: path }];
    if (req.method === "GET") return [200, { id: path.split("/").pop(), routeRules: table.rules }, { etag: `etag-${table.etag}` }];
    if (req.method === "PUT") {
      if (req.headers["if-match"] !== `etag-${table.etag}`) return [412, { code: "NoEtagMatch", message: "The resource's etag does not match." }];
      table.rules = (JSON.parse(body) as { routeRules: OciRouteRule[] }).routeRules;
      table.etag++;
      return [200, { routeRules: table.rules }, { etag: `etag-${table.etag}` }];
    }
    return [405, { code: "MethodNotAllowed", message: path }];
  }

  /** The x509 federation: signed with the instance key as `<tenancy>/fed-x509/<SHA-1>`; answers a token bound to the body's public key. */
  private federate(req: IncomingMessage, body: string): [number, unknown] {
    this.federations++;
    this.calls.push("POST /v1/x509");
    const cert = new X509Certificate(this.identity.cert);
    if (!(req.headers.authorization ?? "").includes(`keyId="${TENANCY}/fed-x509/${cert.fingerprint}"`)) return [401, { code: "NotAuthenticated", message: "keyId" }];
    const bad = verifySignature(req, body, cert.publicKey, ["date", "(request-target)", ...BODY_HEADERS]);
    if (bad) return [401, { code: "NotAuthenticated", message: `bad ${bad}` }];
    const parsed = JSON.parse(body) as { certificate: string; publicKey: string; intermediateCertificates: string[] };
    const der = (pem: string) => pem.replace(/-----[A-Z ]+-----|\s/g, "");
    if (parsed.certificate !== der(this.identity.cert) || parsed.intermediateCertificates[0] !== der(this.identity.intermediate)) return [400, { code: "InvalidParameter", message: "certificate" }];
    const key = createPublicKey({ key: Buffer.from(parsed.publicKey, "base64"), format: "der", type: "spki" });
    const exp = this.now() + 20 * 60_000;
    const token = ["e30", Buffer.from(JSON.stringify({ exp: exp / 1000, sub: "instance", n: this.federations })).toString("base64url"), "sig"].join(".");
    this.sessions.set(token, { key, exp });
    return [200, { token }];
  }
}

const oci = new FakeOci();
let clock = T0;
let sleeps: number[] = [];
const retry: RetryPolicy = { attempts: 4, initialMs: 100, maxMs: 5_000, sleep: async (ms) => void sleeps.push(ms) };
beforeAll(() => oci.start());
afterAll(() => oci.stop());
beforeEach(() => {
  oci.reset();
  clock = T0;
  oci.now = () => clock;
  sleeps = [];
});

function provider(tables = [TABLE_A]) {
  return new OracleRouteProvider({ routeTableIds: tables, hostId: "h1", imdsUrl: `${oci.url}/opc/v2`, authUrl: oci.url, coreUrl: oci.url, retry, now: () => clock });
}

const rule = (cidr: string, target: string, description?: string): OciRouteRule => ({ destination: cidr, destinationType: "CIDR_BLOCK", networkEntityId: target, ...(description !== undefined && { description }) });
const mine = (cidr: string) => rule(cidr, MY_IP, "sitelink h1");
const PRIVATE_IPS = `GET /20160918/privateIps?vnicId=${encodeURIComponent(VNIC)}`;
const get = (table: string) => `GET /20160918/routeTables/${table}`;
const put = (table: string, etag: number, rules: OciRouteRule[]) => `PUT /20160918/routeTables/${table} if-match etag-${etag} ${JSON.stringify({ routeRules: rules })}`;

describe("oracle route provider", () => {
  it("federates as the instance principal, then adds a marked rule per CIDR to every table, each request signed", async () => {
    const p = provider([TABLE_A, TABLE_B]);
    await p.apply(["10.2.0.0/16", "fd00:2::/64"], { previous: [], removeRoutes: false });
    const rules = [mine("10.2.0.0/16"), mine("fd00:2::/64")];
    expect(oci.calls).toEqual(["POST /v1/x509", PRIVATE_IPS, get(TABLE_A), put(TABLE_A, 1, rules), get(TABLE_B), put(TABLE_B, 1, rules)]);
    expect(p.applied()).toEqual(["10.2.0.0/16", "fd00:2::/64"]);
    expect(await p.inPlace(["10.2.0.0/16", "fd00:2::/64"])).toBe(true);
    expect(oci.federations).toBe(1);
  });

  it("moves a sitelink rule of another link host here, keeps the rest of the list, and writes nothing when all point here", async () => {
    const operators = rule("0.0.0.0/0", "ocid1.internetgateway.oc1.eu-frankfurt-1.igw", "internet");
    oci.tables.get(TABLE_A)!.rules = [operators, rule("10.2.0.0/16", PEER_IP, "sitelink h2"), mine("10.3.0.0/16")];
    const p = provider();
    expect(await p.inPlace(["10.2.0.0/16", "10.3.0.0/16"])).toBe(false);
    oci.calls.length = 0;
    await p.apply(["10.2.0.0/16", "10.3.0.0/16"], { previous: [], removeRoutes: false });
    expect(oci.calls).toEqual([get(TABLE_A), put(TABLE_A, 1, [operators, mine("10.2.0.0/16"), mine("10.3.0.0/16")])]);
    oci.calls.length = 0;
    await p.apply(["10.2.0.0/16", "10.3.0.0/16"], { previous: [], removeRoutes: false });
    expect(oci.calls).toEqual([get(TABLE_A)]);
  });

  it("refuses a rule it did not write (no sitelink marker), and still applies the other CIDRs", async () => {
    const foreign = rule("10.2.0.0/16", OTHER_IP, "operator's firewall");
    oci.tables.get(TABLE_A)!.rules = [foreign];
    const p = provider();
    const error = (await p.apply(["10.2.0.0/16", "10.4.0.0/16"], { previous: [], removeRoutes: false }).catch((e: Error) => e)) as Error;
    expect(error.message).toBe(`route provider oracle: cannot point 10.2.0.0/16 in ${TABLE_A} at this host: its rule points at ${OTHER_IP} and was not written by sitelink; left alone`);
    expect(oci.tables.get(TABLE_A)!.rules).toEqual([foreign, mine("10.4.0.0/16")]);
    expect(p.applied()).toEqual(["10.4.0.0/16"]);
  });

  it("with removeRoutes, removes only its own marked rules that point here", async () => {
    const operatorsToUs = rule("10.7.0.0/16", MY_IP, "operator pointed it here");
    oci.tables.get(TABLE_A)!.rules = [mine("10.2.0.0/16"), mine("10.5.0.0/16"), rule("10.6.0.0/16", PEER_IP, "sitelink h2"), operatorsToUs];
    const p = provider();
    await p.apply(["10.2.0.0/16"], { previous: ["10.5.0.0/16", "10.6.0.0/16", "10.7.0.0/16"], removeRoutes: true });
    expect(oci.tables.get(TABLE_A)!.rules).toEqual([mine("10.2.0.0/16"), rule("10.6.0.0/16", PEER_IP, "sitelink h2"), operatorsToUs]);
    // Without removeRoutes nothing is written.
    oci.tables.get(TABLE_A)!.rules.push(mine("10.8.0.0/16"));
    oci.calls.length = 0;
    await p.apply(["10.2.0.0/16"], { previous: ["10.8.0.0/16"], removeRoutes: false });
    expect(oci.calls).toEqual([get(TABLE_A)]);
  });

  it("on 412 (another writer came first) reads again and writes on top of its change", async () => {
    const table = oci.tables.get(TABLE_A)!;
    const theirs = rule("10.9.0.0/16", OTHER_IP, "added meanwhile");
    oci.faults = [{ match: `PUT /20160918/routeTables/${TABLE_A}`, status: 412, before: () => ((table.rules = [theirs]), table.etag++) }];
    const p = provider();
    await p.apply(["10.2.0.0/16"], { previous: [], removeRoutes: false });
    expect(oci.calls.slice(2)).toEqual([get(TABLE_A), `PUT /20160918/routeTables/${TABLE_A} → 412`, get(TABLE_A), put(TABLE_A, 2, [theirs, mine("10.2.0.0/16")])]);
    expect(table.rules).toEqual([theirs, mine("10.2.0.0/16")]);
  });

  it("federates again before the session token expires, and when the API refuses the session", async () => {
    const p = provider();
    await p.inPlace([]);
    expect(oci.federations).toBe(1);
    clock = T0 + 14 * 60_000;
    await p.inPlace([]);
    expect(oci.federations).toBe(1);
    clock = T0 + 16 * 60_000;
    await p.inPlace([]);
    expect(oci.federations).toBe(2);
    oci.revokeSessions();
    await p.inPlace([]);
    expect(oci.federations).toBe(3);
    expect(oci.calls.slice(-3)).toEqual([get(TABLE_A), "POST /v1/x509", get(TABLE_A)]);
  });

  it("waits Retry-After on 429, backs off on 5xx (federation and API), and reports when attempts run out", async () => {
    oci.faults = [
      { match: "POST /v1/x509", status: 503 },
      { match: `GET /20160918/routeTables/${TABLE_A}`, status: 429, headers: { "retry-after": "2" } },
      { match: `PUT /20160918/routeTables/${TABLE_A}`, status: 500 },
    ];
    const p = provider();
    await p.apply(["10.2.0.0/16"], { previous: [], removeRoutes: false });
    expect(oci.tables.get(TABLE_A)!.rules).toEqual([mine("10.2.0.0/16")]);
    expect(sleeps[1]).toBe(2000);
    for (const backoff of [sleeps[0]!, sleeps[2]!]) {
      expect(backoff).toBeGreaterThanOrEqual(80);
      expect(backoff).toBeLessThanOrEqual(120);
    }
    oci.faults = Array.from({ length: 4 }, () => ({ match: `GET /20160918/routeTables/${TABLE_A}`, status: 500 }));
    const error = (await p.apply(["10.2.0.0/16"], { previous: [], removeRoutes: false }).catch((e: Error) => e)) as Error;
    expect(error.message).toBe(`route provider oracle: cannot update route table ${TABLE_A}: GET ${oci.url}/20160918/routeTables/${TABLE_A} → HTTP 500: fault 500`);
    expect(p.applied()).toEqual([]);
  });

  it("is built by the factory from the agent config; the private address override picks the next hop", async () => {
    const config = agentConfigSchema.parse({ provider: "oracle", oracle: { routeTableIds: [TABLE_A], region: "eu-frankfurt-1" }, privateAddress: "10.1.0.40" });
    const p = createRouteProvider(config, { hostId: "h1" }, { ociImdsUrl: `${oci.url}/opc/v2`, ociAuthUrl: oci.url, ociCoreUrl: oci.url, retry });
    await p.apply(["10.2.0.0/16"], { previous: [], removeRoutes: false });
    expect(oci.tables.get(TABLE_A)!.rules).toEqual([rule("10.2.0.0/16", "ocid1.privateip.oc1.eu-frankfurt-1.secondary", "sitelink h1")]);
  });

  it("the config refuses a route table that is not an OCID, naming the field", () => {
    const parsed = agentConfigSchema.safeParse({ provider: "oracle", oracle: { routeTableIds: ["rtb-0abc"] } });
    expect(parsed.error?.issues[0]).toMatchObject({ path: ["oracle", "routeTableIds", 0], message: expect.stringContaining("must be a route table OCID") });
  });
});

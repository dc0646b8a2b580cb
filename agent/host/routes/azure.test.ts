import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { agentConfigSchema } from "../../contract/agent-config";
import { AzureRouteProvider, azureRouteName } from "./azure";
import type { RetryPolicy } from "./http";
import { createRouteProvider } from "./index";

const TABLE_A = "/subscriptions/sub-1/resourceGroups/rg-link/providers/Microsoft.Network/routeTables/rt-a";
const TABLE_B = "/subscriptions/sub-1/resourceGroups/rg-link/providers/Microsoft.Network/routeTables/rt-b";
const ME = "10.1.0.4";
const PEER_HOST = "10.1.0.5";
const V = "api-version=2023-09-01";
const TOKEN_PATH = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/";
const T0 = 1_700_000_000_000;

interface Route {
  name: string;
  properties: { addressPrefix: string; nextHopType: string; nextHopIpAddress?: string };
}

/** IMDS + ARM on loopback: records ARM calls (method, path, body), checks the token, plays async operations. */
class FakeAzure {
  readonly calls: string[] = [];
  tables = new Map<string, Route[]>();
  tokensIssued = 0;
  /** Tokens ARM accepts (a refreshed one replaces the old). */
  validToken = "";
  /** Answers to play before the real one, per "METHOD path-prefix": status and headers. */
  faults: Array<{ match: string; status: number; headers?: Record<string, string> }> = [];
  private operations = new Map<string, () => void>();
  private server: Server | undefined;
  url = "";

  async start() {
    this.server = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk) => (body += chunk));
      req.on("end", () => {
        const [status, answer, headers] = this.handle(req, body);
        res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(answer));
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
    this.tables = new Map([[TABLE_A, []], [TABLE_B, []]]);
    this.tokensIssued = 0;
    this.validToken = "";
    this.faults = [];
    this.operations.clear();
  }

  private handle(req: IncomingMessage, body: string): [number, unknown, Record<string, string>?] {
    const path = req.url ?? "";
    if (path.startsWith("/metadata/")) {
      if (req.headers.metadata !== "true") return [400, { error: "missing Metadata header" }];
      if (path === TOKEN_PATH) {
        this.tokensIssued++;
        this.validToken = `arm-token-${this.tokensIssued}`;
        return [200, { access_token: this.validToken, expires_on: String((T0 + 3600_000) / 1000), resource: "https://management.azure.com/", token_type: "Bearer" }];
      }
      if (path === "/metadata/instance?api-version=2021-02-01") return [200, { network: { interface: [{ ipv4: { ipAddress: [{ privateIpAddress: ME }] }, ipv6: { ipAddress: [] } }] } }];
      return [404, { error: "not found" }];
    }
    this.calls.push(`${req.method} ${path}${body ? ` ${body}` : ""}`);
    const fault = this.faults.findIndex((f) => `${req.method} ${path}`.startsWith(f.match));
    if (fault !== -1) {
      const [f] = this.faults.splice(fault, 1);
      return [f!.status, { error: { code: "Throttled", message: `fault ${f!.status}` } }, f!.headers];
    }
    if (req.headers.authorization !== `Bearer ${this.validToken}`) return [401, { error: { code: "ExpiredAuthenticationToken", message: "The access token expiry has passed." } }];
    const op = path.match(/^\/ops\/(op-\d+)$/);
    if (req.method === "GET" && op) {
      this.operations.get(op[1]!)?.();
      return [200, { status: "Succeeded" }];
    }
    const [resource, query] = path.split("?");
    if (query !== V) return [400, { error: { code: "BadApiVersion", message: path } }];
    const table = [...this.tables.keys()].find((t) => resource === t || resource!.startsWith(`${t}/routes/`));
    if (!table) return [404, { error: { code: "NotFound", message: resource } }];
    const routes = this.tables.get(table)!;
    if (req.method === "GET" && resource === table) return [200, { id: table, properties: { routes } }];
    const name = resource!.slice(`${table}/routes/`.length);
    if (req.method === "PUT") {
      const route = { name, properties: (JSON.parse(body) as Route).properties };
      return [201, { ...route, properties: { ...route.properties, provisioningState: "Updating" } }, this.operation(() => this.tables.set(table, [...routes.filter((r) => r.name !== name), route]))];
    }
    if (req.method === "DELETE") {
      if (!routes.some((r) => r.name === name)) return [204, {}];
      return [202, {}, this.operation(() => this.tables.set(table, routes.filter((r) => r.name !== name)))];
    }
    return [404, { error: { code: "NotFound", message: `${req.method} ${path}` } }];
  }

  /** An operation that is done once polled: the Azure-AsyncOperation header to return. */
  private operation(done: () => void): Record<string, string> {
    const id = `op-${this.operations.size + 1}`;
    this.operations.set(id, done);
    return { "azure-asyncoperation": `${this.url}/ops/${id}`, "retry-after": "2" };
  }
}

const azure = new FakeAzure();
beforeAll(() => azure.start());
afterAll(() => azure.stop());
beforeEach(() => azure.reset());

let clock = T0;
let sleeps: number[] = [];
const retry: RetryPolicy = { attempts: 4, initialMs: 100, maxMs: 5_000, sleep: async (ms) => void sleeps.push(ms) };
beforeEach(() => {
  clock = T0;
  sleeps = [];
});

function provider(tables = [TABLE_A]) {
  return new AzureRouteProvider({ routeTables: tables, imdsUrl: `${azure.url}/metadata`, armUrl: azure.url, retry, now: () => clock });
}

const route = (cidr: string, hop: string, name = azureRouteName(cidr)): Route => ({ name, properties: { addressPrefix: cidr, nextHopType: "VirtualAppliance", nextHopIpAddress: hop } });
const putCall = (table: string, cidr: string, hop = ME) =>
  `PUT ${table}/routes/${azureRouteName(cidr)}?${V} ${JSON.stringify({ properties: { addressPrefix: cidr, nextHopType: "VirtualAppliance", nextHopIpAddress: hop } })}`;
const getCall = (table: string) => `GET ${table}?${V}`;
const poll = (n: number) => `GET /ops/op-${n}`;

describe("azure route names", () => {
  it("are one valid Azure name per CIDR, whatever its spelling", () => {
    expect(azureRouteName("10.2.0.0/16")).toBe("sitelink-10.2.0.0_16");
    expect(azureRouteName("fd00:0:0::/48")).toBe(azureRouteName("fd00::/48"));
    // `::64/128` and `:64::/128` must not meet in one name.
    expect(azureRouteName("fd00::64/128")).not.toBe(azureRouteName("fd00:64::/128"));
    for (const name of [azureRouteName("10.2.0.0/16"), azureRouteName("fd00:1234::/64")]) expect(name).toMatch(/^[A-Za-z0-9][A-Za-z0-9._-]{0,78}[A-Za-z0-9_]$/);
  });
});

describe("azure route provider", () => {
  it("creates a VirtualAppliance route per CIDR in every listed table and follows each operation to Succeeded", async () => {
    const p = provider([TABLE_A, TABLE_B]);
    await p.apply(["10.2.0.0/16", "10.3.0.0/16"], { previous: [], removeRoutes: false, linkHosts: [] });
    expect(azure.calls).toEqual([
      getCall(TABLE_A),
      putCall(TABLE_A, "10.2.0.0/16"),
      poll(1),
      putCall(TABLE_A, "10.3.0.0/16"),
      poll(2),
      getCall(TABLE_B),
      putCall(TABLE_B, "10.2.0.0/16"),
      poll(3),
      putCall(TABLE_B, "10.3.0.0/16"),
      poll(4),
    ]);
    // Each poll waited the operation's Retry-After.
    expect(sleeps).toEqual([2000, 2000, 2000, 2000]);
    expect(p.applied()).toEqual(["10.2.0.0/16", "10.3.0.0/16"]);
    expect(await p.inPlace(["10.2.0.0/16", "10.3.0.0/16"])).toBe(true);
  });

  it("takes over a route that points at another link host, in place; changes nothing when it already points here", async () => {
    azure.tables.set(TABLE_A, [route("10.2.0.0/16", PEER_HOST), route("10.3.0.0/16", ME)]);
    const p = provider();
    expect(await p.inPlace(["10.2.0.0/16", "10.3.0.0/16"])).toBe(false);
    azure.calls.length = 0;
    await p.apply(["10.2.0.0/16", "10.3.0.0/16"], { previous: [], removeRoutes: false, linkHosts: ["198.18.0.10", PEER_HOST] });
    expect(azure.calls).toEqual([getCall(TABLE_A), putCall(TABLE_A, "10.2.0.0/16"), poll(1)]);
    expect(azure.tables.get(TABLE_A)!.map((r) => r.properties.nextHopIpAddress)).toEqual([ME, ME]);
  });

  it("refuses a route of its name that points at a host outside the link, and another route for the CIDR", async () => {
    const foreign = route("10.2.0.0/16", "10.9.9.9");
    const operators = route("10.3.0.0/16", PEER_HOST, "office-vpn");
    azure.tables.set(TABLE_A, [foreign, operators]);
    const p = provider();
    const error = (await p.apply(["10.2.0.0/16", "10.3.0.0/16", "10.4.0.0/16"], { previous: [], removeRoutes: false, linkHosts: [PEER_HOST] }).catch((e: Error) => e)) as Error;
    expect(error.message).toBe(
      "route provider azure: cannot point 10.2.0.0/16 in rt-a at this host: route sitelink-10.2.0.0_16 points at 10.9.9.9, not a link host; left alone; " +
        "cannot point 10.3.0.0/16 in rt-a at this host: route office-vpn (not sitelink's) already covers it; left alone",
    );
    expect(azure.calls).toEqual([getCall(TABLE_A), putCall(TABLE_A, "10.4.0.0/16"), poll(1)]);
    expect(azure.tables.get(TABLE_A)!.slice(0, 2)).toEqual([foreign, operators]);
    expect(p.applied()).toEqual(["10.4.0.0/16"]);
  });

  it("without the link's host addresses, takes over nothing that points elsewhere", async () => {
    azure.tables.set(TABLE_A, [route("10.2.0.0/16", PEER_HOST)]);
    const p = provider();
    await expect(p.apply(["10.2.0.0/16"], { previous: [], removeRoutes: false })).rejects.toThrow("points at 10.1.0.5, not a link host");
    expect(azure.calls).toEqual([getCall(TABLE_A)]);
  });

  it("with removeRoutes, deletes only its own sitelink routes that point here", async () => {
    azure.tables.set(TABLE_A, [route("10.2.0.0/16", ME), route("10.5.0.0/16", ME), route("10.6.0.0/16", PEER_HOST), route("10.7.0.0/16", ME, "office-vpn")]);
    const p = provider();
    await p.apply(["10.2.0.0/16"], { previous: ["10.5.0.0/16", "10.6.0.0/16", "10.7.0.0/16"], removeRoutes: true, linkHosts: [PEER_HOST] });
    expect(azure.calls).toEqual([getCall(TABLE_A), `DELETE ${TABLE_A}/routes/${azureRouteName("10.5.0.0/16")}?${V}`, poll(1)]);
    expect(azure.tables.get(TABLE_A)!.map((r) => r.name)).toEqual([azureRouteName("10.2.0.0/16"), azureRouteName("10.6.0.0/16"), "office-vpn"]);
  });

  it("without removeRoutes, leaves its stale routes", async () => {
    azure.tables.set(TABLE_A, [route("10.5.0.0/16", ME)]);
    const p = provider();
    await p.apply([], { previous: ["10.5.0.0/16"], removeRoutes: false });
    expect(azure.calls).toEqual([getCall(TABLE_A)]);
  });

  it("renews the token five minutes before expires_on, and once more when ARM refuses it", async () => {
    const p = provider();
    await p.inPlace([]);
    expect(azure.tokensIssued).toBe(1);
    clock = T0 + 3600_000 - 6 * 60_000;
    await p.inPlace([]);
    expect(azure.tokensIssued).toBe(1);
    clock = T0 + 3600_000 - 4 * 60_000;
    await p.inPlace([]);
    expect(azure.tokensIssued).toBe(2);
    // Revoked early: the 401 brings a new token and the call is made again.
    azure.validToken = "revoked";
    await p.inPlace([]);
    expect(azure.tokensIssued).toBe(3);
    expect(azure.calls.slice(-2)).toEqual([getCall(TABLE_A), getCall(TABLE_A)]);
  });

  it("waits Retry-After on 429, backs off on 5xx, and gives up after the attempts with the error", async () => {
    azure.faults = [
      { match: `GET ${TABLE_A}`, status: 429, headers: { "retry-after": "3" } },
      { match: `PUT ${TABLE_A}`, status: 503 },
      { match: `PUT ${TABLE_A}`, status: 500 },
    ];
    const p = provider();
    await p.apply(["10.2.0.0/16"], { previous: [], removeRoutes: false });
    expect(azure.calls).toEqual([getCall(TABLE_A), getCall(TABLE_A), putCall(TABLE_A, "10.2.0.0/16"), putCall(TABLE_A, "10.2.0.0/16"), putCall(TABLE_A, "10.2.0.0/16"), poll(1)]);
    expect(sleeps[0]).toBe(3000);
    // Backoff 100 ms then 200 ms, ±20 %.
    expect(sleeps[1]).toBeGreaterThanOrEqual(80);
    expect(sleeps[1]).toBeLessThanOrEqual(120);
    expect(sleeps[2]).toBeGreaterThanOrEqual(160);
    expect(sleeps[2]).toBeLessThanOrEqual(240);

    azure.faults = Array.from({ length: 4 }, () => ({ match: `GET ${TABLE_A}`, status: 429 }));
    const error = (await p.apply(["10.2.0.0/16"], { previous: [], removeRoutes: false }).catch((e: Error) => e)) as Error;
    expect(error.message).toBe(`route provider azure: cannot read route table rt-a: GET ${azure.url}${TABLE_A}?${V} → HTTP 429: fault 429`);
    expect(p.applied()).toEqual([]);
  });

  it("never sends the token to an operation URL on another host, and never puts it in an error", async () => {
    const p = new AzureRouteProvider({ routeTables: [TABLE_A], imdsUrl: `${azure.url}/metadata`, armUrl: azure.url.replace("127.0.0.1", "localhost"), retry, now: () => clock });
    const error = (await p.apply(["10.2.0.0/16"], { previous: [], removeRoutes: false }).catch((e: Error) => e)) as Error;
    expect(error.message).toMatch(/Azure-AsyncOperation points outside http:\/\/localhost:\d+; the token is not sent there$/);
    expect(azure.calls.filter((c) => c.startsWith("GET /ops/"))).toEqual([]);
    expect(error.message).not.toContain("arm-token");
  });

  it("is built by the factory from the agent config; the private address override is the next hop", async () => {
    const config = agentConfigSchema.parse({ provider: "azure", azure: { routeTables: [TABLE_A] }, privateAddress: "10.1.0.44" });
    const p = createRouteProvider(config, { hostId: "h1" }, { azureImdsUrl: `${azure.url}/metadata`, azureArmUrl: azure.url, retry });
    await p.apply(["10.2.0.0/16"], { previous: [], removeRoutes: false });
    expect(azure.calls[1]).toBe(putCall(TABLE_A, "10.2.0.0/16", "10.1.0.44"));
  });

  it("the config refuses a route table that is not an ARM id, naming the field", () => {
    const parsed = agentConfigSchema.safeParse({ provider: "azure", azure: { routeTables: ["rt-a"] } });
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]).toMatchObject({ path: ["azure", "routeTables", 0], message: expect.stringContaining("must be a route table id") });
  });
});

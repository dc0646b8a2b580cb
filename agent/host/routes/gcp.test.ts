import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { agentConfigSchema } from "../../contract/agent-config";
import { GcpRouteProvider, gcpRouteName } from "./gcp";
import { createRouteProvider } from "./index";

const TOKEN = "ya29.secret-access-token";
const PROJECT = "proj-a";
const SELF = "https://www.googleapis.com/compute/v1/";
const NETWORK = `projects/${PROJECT}/global/networks/link-net`;
const INSTANCE = `projects/${PROJECT}/zones/europe-west1-b/instances/link-h1`;
const OTHER_INSTANCE = `projects/${PROJECT}/zones/europe-west1-c/instances/link-h2`;
const ROUTES = `/compute/v1/projects/${PROJECT}/global/routes`;
const LIST = `GET ${ROUTES}?maxResults=500`;

interface Route {
  name: string;
  network: string;
  destRange: string;
  nextHopInstance?: string;
  description?: string;
  priority?: number;
}

/** Metadata server + Compute API: records every call (method, path, body) and checks auth headers. */
class FakeGcp {
  readonly calls: string[] = [];
  routes: Route[] = [];
  /** Route names whose insert operation ends with an error. */
  failInsert = new Set<string>();
  /** While set, operations.wait calls are held until it resolves. */
  waitGate: Promise<void> | undefined;
  private operations = new Map<string, { error?: string; onDone?: () => void }>();
  private server: Server | undefined;
  url = "";

  async start() {
    this.server = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk) => (body += chunk));
      req.on("end", async () => {
        if (this.waitGate && req.url?.endsWith("/wait")) await this.waitGate;
        const [status, answer] = this.handle(req, body);
        res.writeHead(status, { "content-type": "application/json" }).end(typeof answer === "string" ? answer : JSON.stringify(answer));
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
    this.routes = [];
    this.failInsert.clear();
    this.operations.clear();
    this.waitGate = undefined;
  }

  private handle(req: IncomingMessage, body: string): [number, unknown] {
    const path = req.url ?? "";
    if (path.startsWith("/computeMetadata/v1/")) {
      if (req.headers["metadata-flavor"] !== "Google") return [403, "missing Metadata-Flavor"];
      const data: Record<string, string> = {
        "project/project-id": PROJECT,
        "instance/zone": "projects/123456789/zones/europe-west1-b",
        "instance/name": "link-h1",
        "instance/service-accounts/default/token": JSON.stringify({ access_token: TOKEN, expires_in: 3599, token_type: "Bearer" }),
      };
      const answer = data[path.slice("/computeMetadata/v1/".length)];
      return answer === undefined ? [404, "not found"] : [200, answer];
    }
    this.calls.push(`${req.method} ${path}${body ? ` ${body}` : ""}`);
    // Anything outside the Compute API path plays an endpoint that does not accept the token.
    if (req.headers.authorization !== `Bearer ${TOKEN}` || !path.startsWith("/compute/v1/")) return [401, { error: { code: 401, message: "Request had invalid authentication credentials." } }];
    if (req.method === "GET" && path.startsWith(`${ROUTES}?`)) {
      // Two routes per page, to exercise paging.
      const query = new URL(path, this.url).searchParams;
      const start = Number(query.get("pageToken") ?? "0");
      const items = this.routes.slice(start, start + 2).map((r) => ({ ...r, network: SELF + r.network, nextHopInstance: r.nextHopInstance && SELF + r.nextHopInstance }));
      return [200, { items, ...(start + 2 < this.routes.length ? { nextPageToken: String(start + 2) } : {}) }];
    }
    if (req.method === "POST" && path === ROUTES) {
      const route = JSON.parse(body) as Route;
      if (this.routes.some((r) => r.name === route.name)) return [409, { error: { code: 409, message: "already exists" } }];
      const stored = { ...route, network: route.network.replace(SELF, ""), nextHopInstance: route.nextHopInstance?.replace(SELF, "") };
      return [200, this.operation(this.failInsert.has(route.name) ? "QUOTA_EXCEEDED Quota 'ROUTES' exceeded." : undefined, () => this.routes.push(stored))];
    }
    const del = path.match(new RegExp(`^${ROUTES}/([a-z0-9-]+)$`));
    if (req.method === "DELETE" && del) {
      if (!this.routes.some((r) => r.name === del[1])) return [404, { error: { code: 404, message: "not found" } }];
      return [200, this.operation(undefined, () => (this.routes = this.routes.filter((r) => r.name !== del[1])))];
    }
    const wait = path.match(/^\/compute\/v1\/projects\/proj-a\/global\/operations\/(op-\d+)\/wait$/);
    if (req.method === "POST" && wait) {
      const op = this.operations.get(wait[1]!);
      if (!op) return [404, { error: { code: 404, message: "no such operation" } }];
      if (!op.error) op.onDone?.();
      const [code, ...message] = (op.error ?? "").split(" ");
      return [200, { name: wait[1], status: "DONE", ...(op.error ? { error: { errors: [{ code, message: message.join(" ") }] } } : {}) }];
    }
    return [404, { error: { code: 404, message: `unexpected ${req.method} ${path}` } }];
  }

  /** A RUNNING operation that completes (runs `onDone`) when waited for. */
  private operation(error: string | undefined, onDone: () => void) {
    const name = `op-${this.operations.size + 1}`;
    this.operations.set(name, { error, onDone });
    return { name, status: "RUNNING" };
  }
}

const gcp = new FakeGcp();
beforeAll(() => gcp.start());
afterAll(() => gcp.stop());
beforeEach(() => gcp.reset());

function provider() {
  return new GcpRouteProvider({
    network: "link-net",
    priority: 900,
    hostId: "h1",
    metadataUrl: `${gcp.url}/computeMetadata/v1`,
    computeUrl: `${gcp.url}/compute/v1`,
  });
}

const mine = (cidr: string) => gcpRouteName(cidr, NETWORK, INSTANCE);
const theirs = (cidr: string) => gcpRouteName(cidr, NETWORK, OTHER_INSTANCE);

function insertCall(cidr: string) {
  const body = { name: mine(cidr), network: SELF + NETWORK, destRange: cidr, priority: 900, nextHopInstance: SELF + INSTANCE, description: `sitelink: ${cidr} via host h1` };
  return `POST ${ROUTES} ${JSON.stringify(body)}`;
}
const waitCall = (op: number) => `POST /compute/v1/projects/${PROJECT}/global/operations/op-${op}/wait`;

function sitelinkRoute(cidr: string, instance: string, name = gcpRouteName(cidr, NETWORK, instance)): Route {
  return { name, network: NETWORK, destRange: cidr, nextHopInstance: instance, description: `sitelink: ${cidr} via host h2`, priority: 900 };
}

describe("gcp route names", () => {
  it("are valid GCP names, deterministic and distinct per CIDR and instance", () => {
    const names = [mine("10.2.0.0/16"), mine("fd00:1234:5678:9abc:def0:1234:5678:0/112"), theirs("10.2.0.0/16")];
    for (const name of names) expect(name).toMatch(/^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/);
    expect(mine("10.2.0.0/16")).toBe(mine("10.2.0.0/16"));
    expect(new Set(names).size).toBe(3);
  });
});

describe("gcp route provider", () => {
  it("creates a route per CIDR pointing at this instance, the CIDRs side by side, and waits for each operation", async () => {
    let release!: () => void;
    gcp.waitGate = new Promise((resolve) => (release = resolve));
    const p = provider();
    const applying = p.apply(["10.2.0.0/16", "10.3.0.0/16"], { previous: [], removeRoutes: false });
    // Both inserts go out while the first operation is still being waited for.
    await expect.poll(() => gcp.calls.filter((c) => c.startsWith(`POST ${ROUTES} `)).length).toBe(2);
    release();
    await applying;
    expect([...gcp.calls].sort()).toEqual([LIST, insertCall("10.2.0.0/16"), insertCall("10.3.0.0/16"), waitCall(1), waitCall(2)].sort());
    expect(gcp.calls[0]).toBe(LIST);
    expect(p.applied()).toEqual(["10.2.0.0/16", "10.3.0.0/16"]);
  });

  it("on failover, creates the new route before deleting the old sitelink route; other routes stay", async () => {
    const operatorRoute: Route = { name: "office-10-2", network: NETWORK, destRange: "10.2.0.0/16", nextHopInstance: OTHER_INSTANCE, description: "operator's", priority: 1000 };
    const disguised = { ...sitelinkRoute("10.2.0.0/16", OTHER_INSTANCE, "sitelink-lookalike"), description: "not ours" };
    const otherNetwork = { ...sitelinkRoute("10.2.0.0/16", OTHER_INSTANCE, "sitelink-other-net"), network: `projects/${PROJECT}/global/networks/other` };
    gcp.routes = [operatorRoute, sitelinkRoute("10.2.0.0/16", OTHER_INSTANCE), disguised, otherNetwork];
    const p = provider();
    await p.apply(["10.2.0.0/16"], { previous: [], removeRoutes: false });
    expect(gcp.calls).toEqual([
      LIST,
      `GET ${ROUTES}?maxResults=500&pageToken=2`,
      insertCall("10.2.0.0/16"),
      waitCall(1),
      `DELETE ${ROUTES}/${theirs("10.2.0.0/16")}`,
      waitCall(2),
    ]);
    expect(gcp.routes.map((r) => r.name).sort()).toEqual([mine("10.2.0.0/16"), "office-10-2", "sitelink-lookalike", "sitelink-other-net"].sort());
    expect(p.applied()).toEqual(["10.2.0.0/16"]);
  });

  it("is in place while each CIDR has this host's route and no other sitelink route", async () => {
    const operatorRoute: Route = { name: "office-10-2", network: NETWORK, destRange: "10.2.0.0/16", nextHopInstance: OTHER_INSTANCE, description: "operator's", priority: 1000 };
    const p = provider();
    gcp.routes = [sitelinkRoute("10.2.0.0/16", INSTANCE), operatorRoute];
    expect(await p.inPlace(["10.2.0.0/16"])).toBe(true);
    // Another host (active a moment ago) made its own route after ours, and deleted ours.
    gcp.routes = [sitelinkRoute("10.2.0.0/16", OTHER_INSTANCE), operatorRoute];
    expect(await p.inPlace(["10.2.0.0/16"])).toBe(false);
    // Both routes: traffic would be spread over both hosts.
    gcp.routes = [sitelinkRoute("10.2.0.0/16", INSTANCE), sitelinkRoute("10.2.0.0/16", OTHER_INSTANCE)];
    expect(await p.inPlace(["10.2.0.0/16"])).toBe(false);
    expect(gcp.calls.every((c) => c.startsWith("GET "))).toBe(true);
  });

  it("changes nothing when this host's route is already there", async () => {
    gcp.routes = [sitelinkRoute("10.2.0.0/16", INSTANCE)];
    const p = provider();
    await p.apply(["10.2.0.0/16"], { previous: ["10.2.0.0/16"], removeRoutes: true });
    expect(gcp.calls).toEqual([LIST]);
    expect(p.applied()).toEqual(["10.2.0.0/16"]);
  });

  it("keeps the old route when the new one fails, and names CIDR and route in the error", async () => {
    gcp.routes = [sitelinkRoute("10.2.0.0/16", OTHER_INSTANCE)];
    gcp.failInsert.add(mine("10.2.0.0/16"));
    const p = provider();
    const error = (await p.apply(["10.2.0.0/16", "10.3.0.0/16"], { previous: [], removeRoutes: false }).catch((e: Error) => e)) as Error;
    expect(error.message).toMatch(
      new RegExp(`^route provider gcp: cannot point 10\\.2\\.0\\.0/16 at link-h1 \\(route ${mine("10.2.0.0/16")}\\): operation op-\\d failed: QUOTA_EXCEEDED Quota 'ROUTES' exceeded\\.$`),
    );
    expect([...gcp.calls].sort()).toEqual([LIST, insertCall("10.2.0.0/16"), insertCall("10.3.0.0/16"), waitCall(1), waitCall(2)].sort());
    expect(gcp.routes.map((r) => r.name).sort()).toEqual([theirs("10.2.0.0/16"), mine("10.3.0.0/16")].sort());
    expect(p.applied()).toEqual(["10.3.0.0/16"]);
  });

  it("with removeRoutes, deletes only this host's own routes for CIDRs no longer desired", async () => {
    gcp.routes = [sitelinkRoute("10.2.0.0/16", INSTANCE), sitelinkRoute("10.5.0.0/16", INSTANCE), sitelinkRoute("10.6.0.0/16", OTHER_INSTANCE)];
    const p = provider();
    await p.apply(["10.2.0.0/16"], { previous: ["10.2.0.0/16", "10.5.0.0/16", "10.6.0.0/16"], removeRoutes: true });
    expect(gcp.calls).toEqual([LIST, `GET ${ROUTES}?maxResults=500&pageToken=2`, `DELETE ${ROUTES}/${mine("10.5.0.0/16")}`, waitCall(1)]);
    expect(gcp.routes.map((r) => r.destRange)).toEqual(["10.2.0.0/16", "10.6.0.0/16"]);
  });

  it("without removeRoutes, leaves this host's stale routes", async () => {
    gcp.routes = [sitelinkRoute("10.5.0.0/16", INSTANCE)];
    const p = provider();
    await p.apply([], { previous: ["10.5.0.0/16"], removeRoutes: false });
    expect(gcp.calls).toEqual([LIST]);
    expect(p.applied()).toEqual([]);
  });

  it("never puts the access token in an error", async () => {
    const p = new GcpRouteProvider({ network: "link-net", priority: 900, hostId: "h1", metadataUrl: `${gcp.url}/computeMetadata/v1`, computeUrl: `${gcp.url}/nowhere` });
    const error = (await p.apply(["10.2.0.0/16"], { previous: [], removeRoutes: false }).catch((e: Error) => e)) as Error;
    expect(error.message).toMatch(/^route provider gcp: cannot read this instance's identity or the network's routes: GET .*\/nowhere\/projects\/proj-a\/global\/routes\?maxResults=500 → HTTP 401: Request had invalid authentication credentials\.$/);
    expect(error.message).not.toContain(TOKEN);
  });

  it("is built by the factory with network and priority from the agent config", async () => {
    const config = agentConfigSchema.parse({ provider: "gcp", gcp: { network: `${SELF}${NETWORK}`, priority: 700 } });
    const p = createRouteProvider(config, { hostId: "h1" }, { gcpMetadataUrl: `${gcp.url}/computeMetadata/v1`, gcpComputeUrl: `${gcp.url}/compute/v1` });
    await p.apply(["10.2.0.0/16"], { previous: [], removeRoutes: false });
    expect(gcp.calls[1]).toBe(insertCall("10.2.0.0/16").replace('"priority":900', '"priority":700'));
  });
});

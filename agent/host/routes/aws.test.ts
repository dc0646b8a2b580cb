import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  CreateRouteCommand,
  DeleteRouteCommand,
  DescribeRouteTablesCommand,
  EC2Client,
  EC2ServiceException,
  ReplaceRouteCommand,
} from "@aws-sdk/client-ec2";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { agentConfigSchema } from "../../contract/agent-config";
import { AwsRouteProvider, readImdsIdentity } from "./aws";
import { createRouteProvider } from "./index";

const TOKEN = "imds-token-0123456789";
const ENI = "eni-0a1b2c3d4e5f";
const OTHER_ENI = "eni-0ffffffffff";
const TABLES = ["rtb-0aaa", "rtb-0bbb"];

/** A local IMDSv2: hands out TOKEN on PUT and answers GETs only with that token. */
class FakeImds {
  readonly requests: string[] = [];
  private server: Server | undefined;
  url = "";
  mac = "0a:1b:2c:3d:4e:5f";
  /** When set, the interface lookup answers 404. */
  interfaceMissing = false;

  async start() {
    this.server = createServer((req, res) => {
      this.requests.push(`${req.method} ${req.url}`);
      const answer = this.answer(req);
      res.writeHead(answer[0], { "content-type": "text/plain" }).end(answer[1]);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stop() {
    return new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }

  private answer(req: IncomingMessage): [number, string] {
    if (req.method === "PUT" && req.url === "/latest/api/token") {
      return req.headers["x-aws-ec2-metadata-token-ttl-seconds"] === "21600" ? [200, TOKEN] : [400, "missing ttl"];
    }
    if (req.method !== "GET" || req.headers["x-aws-ec2-metadata-token"] !== TOKEN) return [401, "unauthorized"];
    const data: Record<string, string> = {
      "/latest/meta-data/placement/region": "eu-central-1",
      "/latest/meta-data/instance-id": "i-0123456789abcdef0",
      "/latest/meta-data/mac": this.mac,
    };
    if (!this.interfaceMissing) data[`/latest/meta-data/network/interfaces/macs/${this.mac}/interface-id`] = ENI;
    const body = data[req.url ?? ""];
    return body === undefined ? [404, "not found"] : [200, body];
  }
}

function awsError(name: string, message: string) {
  return new EC2ServiceException({ name, message, $fault: "client", $metadata: { httpStatusCode: 400 } });
}

/** A route table whose `cidrs` point at network interface `eni`. */
function pointingAt(id: string, eni: string, ...cidrs: string[]) {
  return { RouteTableId: id, Routes: cidrs.map((cidr) => ({ ...(cidr.includes(":") ? { DestinationIpv6CidrBlock: cidr } : { DestinationCidrBlock: cidr }), NetworkInterfaceId: eni })) };
}

const imds = new FakeImds();
const ec2 = mockClient(EC2Client);

beforeAll(() => imds.start());
afterAll(() => imds.stop());
beforeEach(() => {
  ec2.reset();
  imds.requests.length = 0;
});
afterEach(() => ec2.reset());

function calls(): Array<[string, unknown]> {
  return ec2.calls().map((call) => {
    const command = call.args[0] as { constructor: { name: string }; input: unknown };
    return [command.constructor.name, command.input];
  });
}

function provider() {
  return new AwsRouteProvider({ routeTableIds: TABLES, imdsEndpoint: imds.url });
}

describe("IMDSv2 identity", () => {
  it("reads region, instance and interface with a session token", async () => {
    expect(await readImdsIdentity(imds.url)).toEqual({ region: "eu-central-1", instanceId: "i-0123456789abcdef0", networkInterfaceId: ENI });
    expect(imds.requests[0]).toBe("PUT /latest/api/token");
    expect(imds.requests).toContain(`GET /latest/meta-data/network/interfaces/macs/${imds.mac}/interface-id`);
  });

  it("fails clearly when the metadata service refuses, without the token in the message", async () => {
    imds.interfaceMissing = true;
    try {
      const error = await readImdsIdentity(imds.url).catch((e: Error) => e);
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toMatch(/interface-id → HTTP 404/);
      expect((error as Error).message).not.toContain(TOKEN);
    } finally {
      imds.interfaceMissing = false;
    }
  });
});

describe("aws route provider", () => {
  it("moves each CIDR in each configured table from another link host's interface to this host's", async () => {
    ec2.on(ReplaceRouteCommand).resolves({});
    ec2.on(DescribeRouteTablesCommand).resolves({ RouteTables: TABLES.map((id) => pointingAt(id, OTHER_ENI, "10.2.0.0/16", "fd00:2::/64")) });
    const p = provider();
    await p.apply(["10.2.0.0/16", "fd00:2::/64"], { previous: [], removeRoutes: false });
    expect(calls()).toEqual([
      ["DescribeRouteTablesCommand", { RouteTableIds: TABLES }],
      ["ReplaceRouteCommand", { RouteTableId: "rtb-0aaa", DestinationCidrBlock: "10.2.0.0/16", NetworkInterfaceId: ENI }],
      ["ReplaceRouteCommand", { RouteTableId: "rtb-0bbb", DestinationCidrBlock: "10.2.0.0/16", NetworkInterfaceId: ENI }],
      ["ReplaceRouteCommand", { RouteTableId: "rtb-0aaa", DestinationIpv6CidrBlock: "fd00:2::/64", NetworkInterfaceId: ENI }],
      ["ReplaceRouteCommand", { RouteTableId: "rtb-0bbb", DestinationIpv6CidrBlock: "fd00:2::/64", NetworkInterfaceId: ENI }],
    ]);
    expect(p.applied()).toEqual(["10.2.0.0/16", "fd00:2::/64"]);
  });

  it("creates the route when the table lacks it, and leaves one already pointing here alone", async () => {
    ec2.on(CreateRouteCommand).resolves({ Return: true });
    ec2.on(DescribeRouteTablesCommand).resolves({ RouteTables: [pointingAt("rtb-0aaa", ENI, "10.3.0.0/16"), pointingAt("rtb-0bbb", ENI)] });
    const p = provider();
    await p.apply(["10.2.0.0/16", "10.3.0.0/16"], { previous: [], removeRoutes: false });
    const input = (table: string, cidr: string) => ({ RouteTableId: table, DestinationCidrBlock: cidr, NetworkInterfaceId: ENI });
    expect(calls()).toEqual([
      ["DescribeRouteTablesCommand", { RouteTableIds: TABLES }],
      ["CreateRouteCommand", input("rtb-0aaa", "10.2.0.0/16")],
      ["CreateRouteCommand", input("rtb-0bbb", "10.2.0.0/16")],
      ["CreateRouteCommand", input("rtb-0bbb", "10.3.0.0/16")],
    ]);
    expect(p.applied()).toEqual(["10.2.0.0/16", "10.3.0.0/16"]);
  });

  it("does not create on other errors, names provider, CIDR and table, and applies the rest", async () => {
    ec2.on(ReplaceRouteCommand).resolves({});
    ec2.on(ReplaceRouteCommand, { RouteTableId: "rtb-0bbb", DestinationCidrBlock: "10.3.0.0/16" }).rejects(awsError("UnauthorizedOperation", "You are not authorized to perform this operation."));
    ec2.on(DescribeRouteTablesCommand).resolves({ RouteTables: TABLES.map((id) => pointingAt(id, OTHER_ENI, "10.2.0.0/16", "10.3.0.0/16")) });
    const p = provider();
    await expect(p.apply(["10.2.0.0/16", "10.3.0.0/16", "10.4.0.1/16"], { previous: [], removeRoutes: false })).rejects.toThrow(
      'route provider aws: "10.4.0.1/16" has host bits set (did you mean 10.4.0.0/16?); cannot point 10.3.0.0/16 in rtb-0bbb at eni-0a1b2c3d4e5f: You are not authorized to perform this operation.',
    );
    expect(calls().filter(([name]) => name === "CreateRouteCommand")).toEqual([]);
    expect(p.applied()).toEqual(["10.2.0.0/16"]);
  });

  it("with removeRoutes, deletes stale CIDRs only where they still point at this host, only in its tables", async () => {
    ec2.on(ReplaceRouteCommand).resolves({});
    ec2.on(DeleteRouteCommand).resolves({});
    ec2.on(DescribeRouteTablesCommand).resolves({
      RouteTables: [
        {
          RouteTableId: "rtb-0aaa",
          Routes: [
            { DestinationCidrBlock: "10.2.0.0/16", NetworkInterfaceId: ENI },
            { DestinationCidrBlock: "10.5.0.0/16", NetworkInterfaceId: ENI },
            { DestinationCidrBlock: "10.6.0.0/16", NetworkInterfaceId: OTHER_ENI },
            { DestinationIpv6CidrBlock: "fd00:7::/64", NetworkInterfaceId: ENI },
          ],
        },
        { RouteTableId: "rtb-0bbb", Routes: [{ DestinationCidrBlock: "10.2.0.0/16", NetworkInterfaceId: ENI }, { DestinationCidrBlock: "10.5.0.0/16", NetworkInterfaceId: OTHER_ENI }] },
        // A table the API should not have returned: never touched.
        { RouteTableId: "rtb-0ccc", Routes: [{ DestinationCidrBlock: "10.5.0.0/16", NetworkInterfaceId: ENI }] },
      ],
    });
    const p = provider();
    await p.apply(["10.2.0.0/16"], { previous: ["10.2.0.0/16", "10.5.0.0/16", "10.6.0.0/16", "fd00:7:0::/64"], removeRoutes: true });
    expect(calls()).toEqual([
      ["DescribeRouteTablesCommand", { RouteTableIds: TABLES }],
      ["DeleteRouteCommand", { RouteTableId: "rtb-0aaa", DestinationCidrBlock: "10.5.0.0/16" }],
      ["DeleteRouteCommand", { RouteTableId: "rtb-0aaa", DestinationIpv6CidrBlock: "fd00:7::/64" }],
    ]);
    expect(p.applied()).toEqual(["10.2.0.0/16"]);
  });

  it("checks that every CIDR still points at this host in every table, with one DescribeRouteTables", async () => {
    const tables = (bTarget: string) => ({
      RouteTables: [
        { RouteTableId: "rtb-0aaa", Routes: [{ DestinationCidrBlock: "10.2.0.0/16", NetworkInterfaceId: ENI }, { DestinationIpv6CidrBlock: "fd00:2::/64", NetworkInterfaceId: ENI }] },
        { RouteTableId: "rtb-0bbb", Routes: [{ DestinationCidrBlock: "10.2.0.0/16", NetworkInterfaceId: bTarget }, { DestinationIpv6CidrBlock: "fd00:2:0::/64", NetworkInterfaceId: ENI }] },
      ],
    });
    const p = provider();
    ec2.on(DescribeRouteTablesCommand).resolves(tables(ENI));
    expect(await p.inPlace(["10.2.0.0/16", "fd00:2::/64"])).toBe(true);
    expect(calls()).toEqual([["DescribeRouteTablesCommand", { RouteTableIds: TABLES }]]);
    // Another host (active a moment ago) wrote last; a table lacking a CIDR is not in place either.
    ec2.on(DescribeRouteTablesCommand).resolves(tables(OTHER_ENI));
    expect(await p.inPlace(["10.2.0.0/16"])).toBe(false);
    ec2.on(DescribeRouteTablesCommand).resolves(tables(ENI));
    expect(await p.inPlace(["10.9.0.0/16"])).toBe(false);
    ec2.on(DescribeRouteTablesCommand).rejects(awsError("RequestLimitExceeded", "Request limit exceeded."));
    await expect(p.inPlace(["10.2.0.0/16"])).rejects.toThrow("Request limit exceeded.");
  });

  it("S4: never moves a route from a gateway, a peering or (when the link's interfaces are listed) another interface, nor deletes it", async () => {
    ec2.on(ReplaceRouteCommand).resolves({});
    ec2.on(DescribeRouteTablesCommand).resolves({
      RouteTables: [
        {
          RouteTableId: "rtb-0aaa",
          Routes: [
            { DestinationCidrBlock: "10.80.0.0/16", GatewayId: "igw-0123" },
            { DestinationCidrBlock: "10.81.0.0/16", VpcPeeringConnectionId: "pcx-0456" },
            { DestinationCidrBlock: "10.82.0.0/16", NetworkInterfaceId: "eni-0operator" },
            { DestinationCidrBlock: "10.83.0.0/16", NetworkInterfaceId: OTHER_ENI },
          ],
        },
      ],
    });
    const p = new AwsRouteProvider({ routeTableIds: ["rtb-0aaa"], linkInterfaceIds: [ENI, OTHER_ENI], imdsEndpoint: imds.url });
    const cidrs = ["10.80.0.0/16", "10.81.0.0/16", "10.82.0.0/16", "10.83.0.0/16"];
    const error = (await p.apply(cidrs, { previous: [], removeRoutes: true }).catch((e: Error) => e)) as Error;
    expect(error.message).toBe(
      "route provider aws: " +
        [
          "cannot point 10.80.0.0/16 in rtb-0aaa at eni-0a1b2c3d4e5f: its target (igw-0123) is not a link host's interface; it is left alone",
          "cannot point 10.81.0.0/16 in rtb-0aaa at eni-0a1b2c3d4e5f: its target (pcx-0456) is not a link host's interface; it is left alone",
          "cannot point 10.82.0.0/16 in rtb-0aaa at eni-0a1b2c3d4e5f: its target (eni-0operator) is not a link host's interface; it is left alone",
        ].join("; "),
    );
    expect(calls()).toEqual([
      ["DescribeRouteTablesCommand", { RouteTableIds: ["rtb-0aaa"] }],
      ["ReplaceRouteCommand", { RouteTableId: "rtb-0aaa", DestinationCidrBlock: "10.83.0.0/16", NetworkInterfaceId: ENI }],
    ]);
    expect(p.applied()).toEqual(["10.83.0.0/16"]);
    // Withdrawn with removeRoutes on: none of those routes points here, so none is deleted.
    ec2.resetHistory();
    await p.apply([], { previous: cidrs, removeRoutes: true });
    expect(calls()).toEqual([["DescribeRouteTablesCommand", { RouteTableIds: ["rtb-0aaa"] }]]);
  });

  it("S4: the factory holds the service's CIDRs to allowedRoutes and keeps the link's interfaces", async () => {
    ec2.on(DescribeRouteTablesCommand).resolves({ RouteTables: [pointingAt("rtb-0aaa", "eni-0operator", "10.90.0.0/16")] });
    const config = agentConfigSchema.parse({ provider: "aws", aws: { routeTableIds: ["rtb-0aaa"], linkInterfaceIds: [ENI] } });
    const p = createRouteProvider(config, { hostId: "h1" }, { imdsEndpoint: imds.url });
    await expect(p.apply(["0.0.0.0/0", "10.90.0.0/16"], { previous: [], removeRoutes: false })).rejects.toThrow(
      "route provider aws: 0.0.0.0/0 refused: a default route is taken over only when allowedRoutes lists it; cannot point 10.90.0.0/16 in rtb-0aaa at eni-0a1b2c3d4e5f: its target (eni-0operator) is not a link host's interface; it is left alone",
    );
    expect(calls()).toEqual([["DescribeRouteTablesCommand", { RouteTableIds: ["rtb-0aaa"] }]]);
  });

  it("without removeRoutes, never reads or deletes routes", async () => {
    ec2.on(ReplaceRouteCommand).resolves({});
    const p = provider();
    await p.apply([], { previous: ["10.5.0.0/16"], removeRoutes: false });
    expect(calls()).toEqual([]);
    expect(p.applied()).toEqual([]);
  });

  it("reports an unreadable identity and changes nothing", async () => {
    const p = new AwsRouteProvider({ routeTableIds: TABLES, imdsEndpoint: `${imds.url}/broken` });
    await expect(p.apply(["10.2.0.0/16"], { previous: [], removeRoutes: false })).rejects.toThrow(/^route provider aws: cannot read this instance's identity from IMDSv2: PUT .*\/broken\/latest\/api\/token → HTTP 401/);
    expect(calls()).toEqual([]);
    expect(p.applied()).toEqual([]);
  });

  it("is built by the factory from the agent config", async () => {
    ec2.on(CreateRouteCommand).resolves({});
    ec2.on(DescribeRouteTablesCommand).resolves({ RouteTables: [pointingAt("rtb-0aaa", ENI)] });
    const config = agentConfigSchema.parse({ provider: "aws", aws: { routeTableIds: ["rtb-0aaa"] } });
    const p = createRouteProvider(config, { hostId: "h1" }, { imdsEndpoint: imds.url });
    expect(p.name).toBe("aws");
    await p.apply(["10.9.0.0/16"], { previous: [], removeRoutes: false });
    expect(calls()).toEqual([
      ["DescribeRouteTablesCommand", { RouteTableIds: ["rtb-0aaa"] }],
      ["CreateRouteCommand", { RouteTableId: "rtb-0aaa", DestinationCidrBlock: "10.9.0.0/16", NetworkInterfaceId: ENI }],
    ]);
    expect(() => createRouteProvider(agentConfigSchema.parse({ provider: "aws" }), { hostId: "h1" })).toThrow('route provider aws: the agent config has no "aws" section');
  });
});

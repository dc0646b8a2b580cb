// The cloud an instance of the boot lab talks to, played by one HTTP server on the lab's bridge
// address: EC2 instance metadata (IMDSv2 only, as the components launch instances with
// httpTokens "required"), SSM GetParameter and S3 GetObject (path-style). What it answers is data
// the caller sets (instances, parameters, objects); every request is recorded for assertions.
//
// Reaching it from an instance: IMDS at http://169.254.169.254/ (a DNAT rule in the instance's
// own namespace leads there, see network.ts); SSM, S3 and EC2 at this server's url, or — with
// listenTls() — at their real names (ssm.<region>.amazonaws.com, …) on port 443, which the
// instance's /etc/hosts maps to the bridge address (the boot lab's seam, seam.ts). Request
// signatures are not checked. Paths under /latest/ are IMDS, so no bucket may be called "latest".
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo } from "node:net";

export interface FakeEc2Instance {
  instanceId: string;
  localIpv4: string;
  publicIpv4?: string;
  /** @default derived from the local address */
  mac?: string;
  /** @default "eu-west-1" */
  region?: string;
  /** @default `${region}a` */
  availabilityZone?: string;
  /** @default an eni- id derived from the instance id */
  interfaceId?: string;
  /** An IAM role: iam/security-credentials/<role> then returns fake credentials. */
  role?: string;
  /** Further meta-data paths (relative to /latest/meta-data/), or overrides of the ones above. */
  metadata?: Record<string, string>;
}

export type FakeService = "imds" | "ssm" | "s3" | "ec2" | "unknown";

export interface RecordedRequest {
  /** Date.now() when it arrived. */
  at: number;
  remote: string;
  method: string;
  path: string;
  service: FakeService;
  /** The SSM operation (X-Amz-Target without its prefix) or EC2 Action, if any. */
  operation?: string;
  status: number;
  /** The request's parameters: SSM's JSON body, EC2's form fields (no secrets travel in either). */
  params?: Record<string, unknown>;
}

/** One route of a fake route table: a destination and the interface it points at. */
export interface FakeRoute {
  destination: string;
  networkInterfaceId: string;
}

interface Reply {
  status: number;
  body?: string | Buffer;
  type?: string;
  operation?: string;
}

const TOKEN_HEADER = "x-aws-ec2-metadata-token";
const TOKEN_TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds";
const SSM_PREFIX = "AmazonSSM.";

export class FakeCloud {
  readonly requests: RecordedRequest[] = [];
  /** Keyed by the instance's address: IMDS answers whoever asks about itself, as on EC2. */
  private readonly instances = new Map<string, FakeEc2Instance>();
  private readonly parameters = new Map<string, { value: string; type: "String" | "SecureString" | "StringList"; version: number }>();
  private readonly objects = new Map<string, Buffer>();
  private readonly tokens = new Map<string, { remote: string; expires: number }>();
  /** EC2 route tables by id: what the aws route provider of an active host reads and moves. */
  readonly routeTables = new Map<string, FakeRoute[]>();
  private tlsServer: Server | undefined;

  private constructor(
    private readonly server: Server,
    readonly url: string,
    readonly port: number,
  ) {}

  /**
   * A second listener for the same API over HTTPS on `host`:`port` (443: where the AWS CLI and SDKs
   * go for ssm./s3./ec2.<region>.amazonaws.com), with a certificate the instances trust.
   */
  async listenTls(host: string, tls: { key: string; cert: string }, port = 443): Promise<void> {
    const server = createTlsServer(tls, (req, res) => this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    this.tlsServer = server;
  }

  addRouteTable(id: string, routes: FakeRoute[] = []): void {
    this.routeTables.set(id, routes);
  }

  /** Listens on `host` (the lab's bridge address; never 0.0.0.0), an ephemeral port. */
  static async start(host: string): Promise<FakeCloud> {
    let cloud: FakeCloud | undefined;
    const server = createServer((req, res) => cloud!.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, host, () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    cloud = new FakeCloud(server, `http://${host}:${port}`, port);
    return cloud;
  }

  addInstance(instance: FakeEc2Instance): void {
    this.instances.set(instance.localIpv4, instance);
  }

  setParameter(name: string, value: string, type: "String" | "SecureString" | "StringList" = "String"): void {
    const version = (this.parameters.get(name)?.version ?? 0) + 1;
    this.parameters.set(name, { value, type, version });
  }

  putObject(bucket: string, key: string, body: string | Buffer): void {
    if (bucket === "latest") throw new Error('bucket "latest" would be taken for IMDS');
    this.objects.set(`${bucket}/${key}`, Buffer.from(body));
  }

  /** The requests of one service, optionally from one address. */
  requestsOf(service: FakeService, remote?: string): RecordedRequest[] {
    return this.requests.filter((r) => r.service === service && (remote === undefined || r.remote === remote));
  }

  async close(): Promise<void> {
    await Promise.all(
      [this.server, this.tlsServer].map((server) =>
        server
          ? new Promise<void>((resolve) => {
              server.closeAllConnections();
              server.close(() => resolve());
            })
          : undefined,
      ),
    );
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const remote = (req.socket.remoteAddress ?? "").replace(/^::ffff:/, "");
      const path = (req.url ?? "/").split("?")[0]!;
      const method = req.method ?? "GET";
      const target = req.headers["x-amz-target"];
      const body = Buffer.concat(chunks).toString("utf8");
      const service: FakeService = path.startsWith("/latest/")
        ? "imds"
        : typeof target === "string" && target.startsWith(SSM_PREFIX)
          ? "ssm"
          : method === "POST" && /(^|&)Action=/.test(body)
            ? "ec2"
            : method === "GET" || method === "HEAD"
              ? "s3"
              : "unknown";
      let reply: Reply;
      let params: Record<string, unknown> | undefined;
      try {
        if (service === "ssm") params = JSON.parse(body || "{}") as Record<string, unknown>;
        if (service === "ec2") params = Object.fromEntries(new URLSearchParams(body));
        reply =
          service === "imds" ? this.imds(req, remote, method, path)
          : service === "ssm" ? this.ssm(String(target).slice(SSM_PREFIX.length), params!)
          : service === "ec2" ? this.ec2(params as Record<string, string>)
          : service === "s3" ? this.s3(path)
          : { status: 400, body: "unknown request\n" };
      } catch (error) {
        reply = { status: 500, body: `${error instanceof Error ? error.message : String(error)}\n` };
      }
      this.requests.push({ at: Date.now(), remote, method, path, service, operation: reply.operation, status: reply.status, ...(params && { params }) });
      const answer = reply.body ?? "";
      res.writeHead(reply.status, { "content-type": reply.type ?? "text/plain", "content-length": Buffer.byteLength(answer) });
      res.end(method === "HEAD" ? undefined : answer);
    });
  }

  private imds(req: IncomingMessage, remote: string, method: string, path: string): Reply {
    if (path === "/latest/api/token") {
      if (method !== "PUT") return { status: 405 };
      const ttl = Number(req.headers[TOKEN_TTL_HEADER]);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return { status: 400, body: `missing or bad ${TOKEN_TTL_HEADER}\n` };
      const token = randomBytes(24).toString("base64url");
      this.tokens.set(token, { remote, expires: Date.now() + ttl * 1000 });
      return { status: 200, body: token };
    }
    // IMDSv2 only: no token, an expired one or one issued to another instance is a 401.
    const token = this.tokens.get(String(req.headers[TOKEN_HEADER] ?? ""));
    if (!token || token.remote !== remote || token.expires < Date.now()) return { status: 401 };
    if (method !== "GET") return { status: 405 };
    const instance = this.instances.get(remote);
    if (!instance) return { status: 404, body: `no instance at ${remote}\n` };
    if (path === "/latest/dynamic/instance-identity/document") return { status: 200, type: "application/json", body: JSON.stringify(identityDocument(instance)) };
    if (!path.startsWith("/latest/meta-data/")) return { status: 404 };
    return lookup(metadataTree(instance), path.slice("/latest/meta-data/".length));
  }

  private ssm(operation: string, params: Record<string, unknown>): Reply {
    if (operation !== "GetParameter") return { status: 400, operation, type: "application/x-amz-json-1.1", body: JSON.stringify({ __type: "UnknownOperationException", message: operation }) };
    const name = params.Name;
    const parameter = typeof name === "string" ? this.parameters.get(name) : undefined;
    if (typeof name !== "string" || !parameter) {
      return { status: 400, operation, type: "application/x-amz-json-1.1", body: JSON.stringify({ __type: "ParameterNotFound", message: `${String(name)} not found` }) };
    }
    // As SSM: a SecureString read without decryption gives the ciphertext, never the value.
    if (parameter.type === "SecureString" && params.WithDecryption !== true) {
      return { status: 400, operation, type: "application/x-amz-json-1.1", body: JSON.stringify({ __type: "ValidationException", message: `${name} is a SecureString: the boot lab answers only WithDecryption` }) };
    }
    return {
      status: 200,
      operation,
      type: "application/x-amz-json-1.1",
      body: JSON.stringify({
        Parameter: {
          Name: name, Type: parameter.type, Value: parameter.value, Version: parameter.version, DataType: "text",
          LastModifiedDate: Math.floor(Date.now() / 1000),
          ARN: `arn:aws:ssm:eu-west-1:123456789012:parameter/${name.replace(/^\//, "")}`,
        },
      }),
    };
  }

  /** EC2's query API, the calls of the aws route provider: DescribeRouteTables, ReplaceRoute, CreateRoute, DeleteRoute. */
  private ec2(params: Record<string, string>): Reply {
    const operation = params.Action ?? "";
    const ok = (inner: string): Reply => ({ status: 200, operation, type: "text/xml", body: `<?xml version="1.0" encoding="UTF-8"?>\n<${operation}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>${randomBytes(8).toString("hex")}</requestId>${inner}</${operation}Response>` });
    const error = (code: string, message: string): Reply => ({ status: 400, operation, type: "text/xml", body: `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${code}</Code><Message>${message}</Message></Error></Errors><RequestID>${randomBytes(8).toString("hex")}</RequestID></Response>` });
    if (operation === "DescribeRouteTables") {
      const ids = Object.entries(params).filter(([k]) => /^RouteTableId\.\d+$/.test(k)).map(([, v]) => v);
      const missing = ids.find((id) => !this.routeTables.has(id));
      if (missing) return error("InvalidRouteTableID.NotFound", `The routeTable ID '${missing}' does not exist`);
      const tables = (ids.length > 0 ? ids : [...this.routeTables.keys()]).map((id) => {
        const routes = this.routeTables.get(id)!.map((r) => `<item><destinationCidrBlock>${r.destination}</destinationCidrBlock><networkInterfaceId>${r.networkInterfaceId}</networkInterfaceId><origin>CreateRoute</origin><state>active</state></item>`);
        return `<item><routeTableId>${id}</routeTableId><routeSet>${routes.join("")}</routeSet></item>`;
      });
      return ok(`<routeTableSet>${tables.join("")}</routeTableSet>`);
    }
    if (operation === "ReplaceRoute" || operation === "CreateRoute" || operation === "DeleteRoute") {
      const table = this.routeTables.get(params.RouteTableId ?? "");
      if (!table) return error("InvalidRouteTableID.NotFound", `The routeTable ID '${params.RouteTableId}' does not exist`);
      const destination = params.DestinationCidrBlock ?? "";
      const index = table.findIndex((r) => r.destination === destination);
      if (operation !== "CreateRoute" && index < 0) return error("InvalidRoute.NotFound", `no route with destination-cidr-block ${destination} in ${params.RouteTableId}`);
      if (operation === "CreateRoute" && index >= 0) return error("RouteAlreadyExists", `The route identified by ${destination} already exists.`);
      if (operation === "DeleteRoute") table.splice(index, 1);
      else if (index >= 0) table[index] = { destination, networkInterfaceId: params.NetworkInterfaceId ?? "" };
      else table.push({ destination, networkInterfaceId: params.NetworkInterfaceId ?? "" });
      return ok("<return>true</return>");
    }
    return error("InvalidAction", `The action ${operation} is not valid for the boot lab`);
  }

  private s3(path: string): Reply {
    const key = decodeURIComponent(path.replace(/^\/+/, ""));
    const object = this.objects.get(key);
    if (!object) return { status: 404, type: "application/xml", body: `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code><Key>${key}</Key></Error>\n` };
    return { status: 200, type: "application/octet-stream", body: object };
  }
}

function region(instance: FakeEc2Instance): string {
  return instance.region ?? "eu-west-1";
}

/** Every meta-data path the instance has, relative to /latest/meta-data/. */
function metadataTree(instance: FakeEc2Instance): Map<string, string> {
  const mac = instance.mac ?? macOf(instance.localIpv4);
  const interfaceId = instance.interfaceId ?? `eni-${instance.instanceId.replace(/^i-/, "").padEnd(17, "0").slice(0, 17)}`;
  const tree = new Map<string, string>([
    ["instance-id", instance.instanceId],
    ["local-ipv4", instance.localIpv4],
    ["mac", mac],
    ["placement/region", region(instance)],
    ["placement/availability-zone", instance.availabilityZone ?? `${region(instance)}a`],
    [`network/interfaces/macs/${mac}/interface-id`, interfaceId],
    [`network/interfaces/macs/${mac}/local-ipv4s`, instance.localIpv4],
  ]);
  if (instance.publicIpv4) {
    tree.set("public-ipv4", instance.publicIpv4);
    tree.set(`network/interfaces/macs/${mac}/public-ipv4s`, instance.publicIpv4);
  }
  if (instance.role) tree.set(`iam/security-credentials/${instance.role}`, JSON.stringify(fakeCredentials()));
  for (const [path, value] of Object.entries(instance.metadata ?? {})) tree.set(path, value);
  return tree;
}

/** A value, or a directory listing (children one a line, sub-directories with a trailing '/'), as IMDS answers. */
function lookup(tree: Map<string, string>, path: string): Reply {
  const value = tree.get(path);
  if (value !== undefined) return { status: 200, body: value };
  const prefix = path === "" || path.endsWith("/") ? path : `${path}/`;
  const children = new Set<string>();
  for (const key of tree.keys()) {
    if (!key.startsWith(prefix)) continue;
    const rest = key.slice(prefix.length);
    children.add(rest.includes("/") ? `${rest.split("/")[0]}/` : rest);
  }
  return children.size > 0 ? { status: 200, body: [...children].sort().join("\n") } : { status: 404 };
}

function macOf(address: string): string {
  return `02:00:${address.split(".").map((octet) => Number(octet).toString(16).padStart(2, "0")).join(":")}`;
}

function identityDocument(instance: FakeEc2Instance) {
  return {
    accountId: "123456789012", architecture: "x86_64", imageId: "ami-0000000000000000", instanceType: "t3.micro",
    instanceId: instance.instanceId, privateIp: instance.localIpv4, region: region(instance),
    availabilityZone: instance.availabilityZone ?? `${region(instance)}a`, version: "2017-09-30",
  };
}

/** Obviously fake credentials in the shape IMDS gives them. */
function fakeCredentials() {
  return {
    Code: "Success", LastUpdated: new Date().toISOString(), Type: "AWS-HMAC",
    AccessKeyId: "ASIAFAKEBOOTLAB00000", SecretAccessKey: "fake-secret-access-key-of-the-boot-lab",
    Token: "fake-session-token-of-the-boot-lab", Expiration: new Date(Date.now() + 6 * 3600_000).toISOString(),
  };
}

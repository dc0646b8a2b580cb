import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { mockClient } from "aws-sdk-client-mock";
import { GetParameterCommand, ParameterNotFound, SSMClient } from "@aws-sdk/client-ssm";
import { readUriSource, resolveHostUri, type UriSourceOptions } from "./uri-sources";
import { UriSourceError } from "./uri-source-names";

const SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQ";
const URI = `sitelink://a1:${SECRET}@198.18.0.1:9443?fp=${"cd".repeat(32)}`;
const SECRET_NAME = "projects/p1/secrets/sitelink-a1/versions/latest";
const TOKEN = "ya29.test-token";

const ssm = mockClient(SSMClient);
afterEach(() => ssm.reset());

// A local stand-in for the GCE metadata server and Secret Manager, recording every request.
interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}
const seen: Seen[] = [];
let gcpPayload: string | undefined = Buffer.from(`${URI}\n`).toString("base64");
let secretStatus = 200;
let server: http.Server;
let base: string;
beforeAll(async () => {
  server = http.createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers });
    if (req.url === "/computeMetadata/v1/instance/service-accounts/default/token" && req.headers["metadata-flavor"] === "Google") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ access_token: TOKEN, expires_in: 3599, token_type: "Bearer" }));
    } else if (req.url === `/v1/${SECRET_NAME}:access` && req.headers.authorization === `Bearer ${TOKEN}`) {
      res.writeHead(secretStatus, { "content-type": "application/json" });
      res.end(JSON.stringify(secretStatus === 200 ? { name: SECRET_NAME, payload: { data: gcpPayload } } : { error: { code: secretStatus, message: "Permission denied on secret" } }));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise((r) => server.close(r)));

const gcp: UriSourceOptions = {};
beforeAll(() => {
  gcp.gcpMetadataUrl = base;
  gcp.gcpSecretManagerUrl = base;
});

async function sourceError(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UriSourceError);
  return (err as Error).message;
}

describe("AWS SSM Parameter Store", () => {
  it("reads the SecureString with decryption, in the configured region", async () => {
    ssm.on(GetParameterCommand, { Name: "/sitelink/a1/uri", WithDecryption: true }).resolves({ Parameter: { Name: "/sitelink/a1/uri", Type: "SecureString", Value: `${URI}\n` } });
    const regions: (string | undefined)[] = [];
    const uri = await readUriSource(
      { kind: "aws-ssm", parameter: "/sitelink/a1/uri", region: "eu-central-1" },
      { ssmClient: (region) => (regions.push(region), new SSMClient({ region })) },
    );
    expect(uri).toBe(URI);
    expect(regions).toEqual(["eu-central-1"]);
    expect(ssm.commandCalls(GetParameterCommand)).toHaveLength(1);
    expect(ssm.commandCalls(GetParameterCommand)[0]!.args[0].input).toEqual({ Name: "/sitelink/a1/uri", WithDecryption: true });
  });

  it("a missing parameter is a clear error naming the parameter", async () => {
    ssm.on(GetParameterCommand).rejects(new ParameterNotFound({ message: "", $metadata: {} }));
    const message = await sourceError(readUriSource({ kind: "aws-ssm", parameter: "/sitelink/zz/uri" }, { ssmClient: () => new SSMClient({ region: "us-east-1" }) }));
    expect(message).toMatch(/^aws-ssm:\/sitelink\/zz\/uri: ParameterNotFound/);
  });
});

describe("GCP Secret Manager", () => {
  it("gets a token from the metadata server, then accesses the secret version", async () => {
    seen.length = 0;
    expect(await readUriSource({ kind: "gcp-secret-manager", name: SECRET_NAME }, gcp)).toBe(URI);
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual([
      "GET /computeMetadata/v1/instance/service-accounts/default/token",
      `GET /v1/${SECRET_NAME}:access`,
    ]);
    expect(seen[0]!.headers["metadata-flavor"]).toBe("Google");
    expect(seen[1]!.headers.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it("a refused access names the secret and the status, not the body", async () => {
    secretStatus = 403;
    try {
      const message = await sourceError(readUriSource({ kind: "gcp-secret-manager", name: SECRET_NAME }, gcp));
      expect(message).toBe(`gcp-secret-manager:${SECRET_NAME}: HTTP 403`);
    } finally {
      secretStatus = 200;
    }
  });

  it("an empty secret is refused", async () => {
    gcpPayload = Buffer.from("  \n").toString("base64");
    try {
      expect(await sourceError(readUriSource({ kind: "gcp-secret-manager", name: SECRET_NAME }, gcp))).toContain("the secret is empty");
    } finally {
      gcpPayload = Buffer.from(`${URI}\n`).toString("base64");
    }
  });
});

describe("resolveHostUri", () => {
  it("parses the one URI from the config or a source", async () => {
    expect((await resolveHostUri({ uris: [URI], uriSources: [] })).hostId).toBe("a1");
    expect((await resolveHostUri({ uris: [], uriSources: [{ kind: "gcp-secret-manager", name: SECRET_NAME }] }, gcp)).endpoints).toEqual([{ host: "198.18.0.1", port: 9443 }]);
  });

  it("no URI, several hosts, or a bad URI are clear errors without the secret", async () => {
    expect(await sourceError(resolveHostUri({ uris: [], uriSources: [] }))).toContain("no host URI");
    expect(await sourceError(resolveHostUri({ uris: [URI, URI.replace("a1:", "b1:")], uriSources: [] }))).toContain("several host URIs (a1, b1)");
    const bad = await sourceError(resolveHostUri({ uris: [URI.replace(/\?fp=.*/, "")], uriSources: [] }));
    expect(bad).toMatch(/^uris\.0: invalid sitelink URI/);
    expect(bad).not.toContain(SECRET);
  });
});

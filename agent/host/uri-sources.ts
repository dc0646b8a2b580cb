// Host URIs kept outside agent.json: an AWS SSM SecureString parameter or a GCP Secret Manager
// secret, each readable only by the host's own cloud identity. Errors never contain the secret.
import type { SSMClient } from "@aws-sdk/client-ssm";
import type { AgentConfig, UriSource } from "../contract/agent-config";
import { parseHostUri, type HostUri } from "../contract/uri";
import { UriSourceError, describeUriSource } from "./uri-source-names";

export const GCP_METADATA_URL = "http://metadata.google.internal";
export const GCP_SECRET_MANAGER_URL = "https://secretmanager.googleapis.com";

export interface UriSourceOptions {
  /** Builds the SSM client (tests inject a mocked one). */
  ssmClient?: (region: string | undefined) => SSMClient;
  /** Base URL of the GCE metadata server (token). */
  gcpMetadataUrl?: string;
  /** Base URL of the Secret Manager REST API. */
  gcpSecretManagerUrl?: string;
  /** Per-request timeout. */
  timeoutMs?: number;
}

export async function readUriSource(source: UriSource, opts: UriSourceOptions = {}): Promise<string> {
  const text = source.kind === "aws-ssm" ? await readSsm(source.parameter, source.region, opts) : await readGcpSecret(source.name, opts);
  const uri = text.trim();
  if (!uri) throw new UriSourceError(`${describeUriSource(source)}: the secret is empty`);
  return uri;
}

async function readSsm(parameter: string, region: string | undefined, opts: UriSourceOptions): Promise<string> {
  // Loaded on use: the AWS SDK costs ~0.5 s of start-up on hosts that never read Parameter Store.
  const { GetParameterCommand, SSMClient } = require("@aws-sdk/client-ssm") as typeof import("@aws-sdk/client-ssm");
  const client = opts.ssmClient ? opts.ssmClient(region) : new SSMClient(region ? { region } : {});
  try {
    const out = await client.send(new GetParameterCommand({ Name: parameter, WithDecryption: true }), {
      abortSignal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
    });
    const value = out.Parameter?.Value;
    if (value === undefined) throw new UriSourceError(`aws-ssm:${parameter}: the parameter has no value`);
    return value;
  } catch (err) {
    if (err instanceof UriSourceError) throw err;
    throw new UriSourceError(`aws-ssm:${parameter}: ${(err as Error).name}: ${(err as Error).message}`);
  } finally {
    if (!opts.ssmClient) client.destroy();
  }
}

async function readGcpSecret(name: string, opts: UriSourceOptions): Promise<string> {
  const what = `gcp-secret-manager:${name}`;
  const timeout = opts.timeoutMs ?? 10_000;
  const metadata = opts.gcpMetadataUrl ?? GCP_METADATA_URL;
  const tokenBody = await getJson(
    `${metadata}/computeMetadata/v1/instance/service-accounts/default/token`,
    { "metadata-flavor": "Google" },
    timeout,
    `${what}: metadata token`,
  );
  const token = (tokenBody as { access_token?: unknown }).access_token;
  if (typeof token !== "string" || !token) throw new UriSourceError(`${what}: the metadata server returned no access_token`);
  const api = opts.gcpSecretManagerUrl ?? GCP_SECRET_MANAGER_URL;
  const secret = await getJson(`${api}/v1/${name}:access`, { authorization: `Bearer ${token}` }, timeout, what);
  const data = (secret as { payload?: { data?: unknown } }).payload?.data;
  if (typeof data !== "string") throw new UriSourceError(`${what}: the answer has no payload.data`);
  return Buffer.from(data, "base64").toString("utf8");
}

async function getJson(url: string, headers: Record<string, string>, timeoutMs: number, what: string): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new UriSourceError(`${what}: request failed: ${(err as Error).message}`);
  }
  // The body of a failed call is not echoed: it is not needed to act, and we do not control what it holds.
  if (!res.ok) throw new UriSourceError(`${what}: HTTP ${res.status}`);
  try {
    return await res.json();
  } catch {
    throw new UriSourceError(`${what}: the answer is not JSON`);
  }
}

/**
 * The one host URI this agent runs with: from agent.json (`add-uri`) or a cloud secret store.
 * One agent serves one host; several URIs are refused rather than silently picking one.
 */
export async function resolveHostUri(config: Pick<AgentConfig, "uris" | "uriSources">, opts: UriSourceOptions = {}): Promise<HostUri> {
  const texts = [...config.uris];
  for (const source of config.uriSources) texts.push(await readUriSource(source, opts));
  if (texts.length === 0) throw new UriSourceError("no host URI: run `sitelink add-uri URI` or configure uriSources");
  const uris = texts.map((text, i) => {
    try {
      return parseHostUri(text);
    } catch (err) {
      const where = i < config.uris.length ? `uris.${i}` : describeUriSource(config.uriSources[i - config.uris.length]!);
      throw new UriSourceError(`${where}: ${(err as Error).message}`);
    }
  });
  const ids = [...new Set(uris.map((u) => u.hostId))];
  if (ids.length > 1) throw new UriSourceError(`several host URIs (${ids.join(", ")}): one agent serves one host; remove the others`);
  return uris[0]!;
}

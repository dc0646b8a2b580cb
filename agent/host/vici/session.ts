// The commands the agent uses, typed, over a VICI connection that is (re)opened on demand: after
// charon restarts, the next command simply connects again.
import { ViciConnection, DEFAULT_TIMEOUT_MS } from "./connection";
import type { ViciInput, ViciSection } from "./message";

export interface SharedSecret {
  /** Unique id of the secret in charon (so it can be replaced and unloaded). */
  id: string;
  type: "IKE" | "EAP" | "XAUTH" | "NTLM" | "PPK";
  /** The key itself. Secret: never log. */
  data: string;
  /** Identities the secret belongs to. */
  owners: string[];
}

export interface InitiateOptions {
  child: string;
  ike?: string;
  /** ms to wait for the result; 0 waits indefinitely, -1 returns at once. */
  timeout?: number;
  initLimits?: boolean;
}

export interface TerminateOptions {
  ike?: string;
  ikeId?: string;
  child?: string;
  childId?: string;
  /** Delete without waiting for the peer (it may be gone). */
  force?: boolean;
  /** ms to wait for the result; -1 returns at once. */
  timeout?: number;
}

export interface VersionInfo {
  daemon: string;
  version: string;
  sysname: string;
  release: string;
  machine: string;
}

/** Extra ms the socket waits beyond a command's own charon-side timeout. */
const TIMEOUT_SLACK_MS = 2_000;

export class ViciSession {
  private connection: ViciConnection | undefined;
  private connecting: Promise<ViciConnection> | undefined;

  constructor(
    readonly socketPath: string,
    private readonly timeoutMs: number = DEFAULT_TIMEOUT_MS,
  ) {}

  async version(): Promise<VersionInfo> {
    const r = await this.request("version");
    return { daemon: str(r.daemon), version: str(r.version), sysname: str(r.sysname), release: str(r.release), machine: str(r.machine) };
  }

  /** Loads (or replaces) connection `name`; `config` is the swanctl.conf connection section. */
  async loadConn(name: string, config: ViciInput): Promise<void> {
    await this.request("load-conn", { [name]: config });
  }

  async unloadConn(name: string): Promise<void> {
    await this.request("unload-conn", { name });
  }

  /** Names of the connections loaded over VICI (by anyone: swanctl too). */
  async getConns(): Promise<string[]> {
    return list((await this.request("get-conns")).conns);
  }

  /** Every loaded connection, one `{ name: details }` section each. */
  async listConns(filter: { ike?: string } = {}): Promise<ViciSection[]> {
    return (await this.use()).streamed("list-conns", "list-conn", { ike: filter.ike }, this.timeoutMs);
  }

  async loadShared(secret: SharedSecret): Promise<void> {
    await this.request("load-shared", { id: secret.id, type: secret.type, data: secret.data, owners: secret.owners });
  }

  async unloadShared(id: string): Promise<void> {
    await this.request("unload-shared", { id });
  }

  /** Ids of the shared secrets loaded over VICI with an id. */
  async getShared(): Promise<string[]> {
    return list((await this.request("get-shared")).keys);
  }

  async initiate(opts: InitiateOptions): Promise<void> {
    await this.request(
      "initiate",
      { child: opts.child, ike: opts.ike, timeout: opts.timeout, "init-limits": opts.initLimits },
      waitFor(opts.timeout, this.timeoutMs),
    );
  }

  async terminate(opts: TerminateOptions): Promise<void> {
    await this.request(
      "terminate",
      { ike: opts.ike, "ike-id": opts.ikeId, child: opts.child, "child-id": opts.childId, force: opts.force, timeout: opts.timeout },
      waitFor(opts.timeout, this.timeoutMs),
    );
  }

  /** Active IKE SAs, one `{ name: details }` section each (noblock: never wait on busy SAs). */
  async listSas(filter: { ike?: string; ikeId?: string } = {}): Promise<ViciSection[]> {
    return (await this.use()).streamed("list-sas", "list-sa", { noblock: true, ike: filter.ike, "ike-id": filter.ikeId }, this.timeoutMs);
  }

  close(): void {
    this.connection?.close();
    this.connection = undefined;
  }

  private async request(command: string, message: ViciInput = {}, timeoutMs: number = this.timeoutMs): Promise<ViciSection> {
    return (await this.use()).request(command, message, timeoutMs);
  }

  private async use(): Promise<ViciConnection> {
    if (this.connection && !this.connection.closed) return this.connection;
    this.connecting ??= ViciConnection.connect(this.socketPath, this.timeoutMs).finally(() => {
      this.connecting = undefined;
    });
    this.connection = await this.connecting;
    return this.connection;
  }
}

/** The socket timeout for a command that has its own charon-side timeout (0 = forever). */
function waitFor(charonTimeout: number | undefined, fallback: number): number {
  if (charonTimeout === undefined || charonTimeout < 0) return fallback;
  if (charonTimeout === 0) return 2 ** 31 - 1;
  return charonTimeout + TIMEOUT_SLACK_MS;
}

function str(value: unknown): string {
  return typeof value === "string" ? value : "";
}

function list(value: unknown): string[] {
  return Array.isArray(value) ? value : [];
}

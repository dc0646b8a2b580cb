// `sitelink …` agent commands, modeled on pritunl-link: edit /etc/sitelink/agent.json, show status,
// run the daemon. Exit codes: 0 done, 1 failed (bad config, not found, daemon error), 2 usage error.
// A running agent picks up edits on SIGHUP (`systemctl reload sitelink-agent`).
import { dirname } from "node:path";
import { DEFAULT_CONFIG_PATH, ROUTE_PROVIDERS, type AgentConfig, type RouteProviderName } from "../contract/agent-config";
import { ConfigError, loadConfig, saveConfig } from "./config-file";
import { DEFAULT_STATUS_PATH } from "../contract/status";
import { StatusError, formatStatus, readStatus } from "./status";
import { agentVersion } from "../contract/version";
import { UriSourceError, describeUriSource } from "./uri-source-names";
import { parseHostUri, redactHostUri, UriError } from "../contract/uri";
import { ROUTE_PROVIDER_REGISTRY } from "./routes";

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /** All of standard input (`add-uri -`). @default process.stdin */
  readStdin?(): Promise<string>;
}

const processIo: CliIo = {
  out: (t) => process.stdout.write(`${t}\n`),
  err: (t) => process.stderr.write(`${t}\n`),
};

async function readProcessStdin(): Promise<string> {
  let text = "";
  for await (const chunk of process.stdin) text += String(chunk);
  return text;
}

/** A URI in argv is readable by every user (ps, /proc) and lands in shell history; stdin is neither. */
const ARGV_URI_WARNING =
  "sitelink: warning: a host URI on the command line is visible to other users (ps) and kept in shell history; give it on standard input instead: sitelink add-uri -";

export const USAGE = `usage: sitelink [--config PATH] COMMAND [ARGS]

commands:
  add-uri -                   add (or replace) the host URI sitelink://hostId:secret@host[:port]…?fp=…,
                              read as one line from standard input (keeps the secret out of argv and history)
  add-uri URI                 the same from the command line (warns: other users and shell history see it)
  remove-uri URI|HOST_ID      remove a host URI
  list                        list host URIs (secrets masked) and URI sources
  set-provider NAME [FLAGS]   route provider: ${ROUTE_PROVIDERS.join("|")}
${providerUsage()}
  firewall-on | firewall-off          manage the agent's own firewall chain
  remove-routes-on | remove-routes-off delete own routes that are no longer desired
  host-check-on | host-check-off      serve and run host checks
  set-mtu N | set-mtu off     clamp TCP MSS of tunnel traffic to fit MTU N (576..9000)
  status [--status PATH] [--json]     state of the running agent
  run [--status PATH]         run the agent (the daemon)
  teardown                    after stopping the agent: unload its tunnels from charon and remove its
                              iptables chains (what an uninstall runs; other tunnels stay)
  version                     print the version
  state …                     state service commands (sitelink state --help)

options:
  --config PATH               agent config (default ${DEFAULT_CONFIG_PATH})

A running agent applies config changes on SIGHUP: systemctl reload sitelink-agent`;

/** One usage line per route provider that takes flags. */
function providerUsage(): string {
  return ROUTE_PROVIDERS.map((name) => ROUTE_PROVIDER_REGISTRY[name])
    .filter((d) => d.usage)
    .map((d) => `      ${`${d.name}:`.padEnd(8)}${d.usage}`)
    .join("\n");
}

class UsageError extends Error {}

interface Args {
  command: string | undefined;
  positionals: string[];
  flags: Map<string, string[]>;
}

/** Flags that take no value. */
const SWITCHES = new Set(["json", "help"]);
/** Every flag that takes a value, of any command (which command accepts which is checked after parsing). */
const VALUE_FLAGS = new Set(["config", "status", ...Object.values(ROUTE_PROVIDER_REGISTRY).flatMap((d) => d.flags)]);

function parseArgs(argv: string[]): Args {
  const args: Args = { command: undefined, positionals: [], flags: new Map() };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      let value: string;
      if (!SWITCHES.has(name) && !VALUE_FLAGS.has(name)) throw new UsageError(`unknown flag --${name}`);
      if (SWITCHES.has(name)) {
        if (eq !== -1) throw new UsageError(`--${name} takes no value`);
        value = "true";
      } else if (eq !== -1) {
        value = arg.slice(eq + 1);
      } else {
        const next = argv[++i];
        if (next === undefined) throw new UsageError(`--${name} needs a value`);
        value = next;
      }
      args.flags.set(name, [...(args.flags.get(name) ?? []), value]);
    } else if (args.command === undefined) {
      args.command = arg;
    } else {
      args.positionals.push(arg);
    }
  }
  return args;
}

/** Flags each command accepts (besides --config and --help). */
function allowedFlags(command: string, positionals: string[]): readonly string[] {
  if (command === "status") return ["status", "json"];
  if (command === "run") return ["status"];
  if (command === "set-provider") return ROUTE_PROVIDER_REGISTRY[providerName(positionals[0])].flags;
  return [];
}

/** The provider a `set-provider` names: checked before its flags, which depend on it. */
function providerName(name: string | undefined): RouteProviderName {
  if (name === undefined) throw new UsageError("set-provider needs NAME");
  if (!(ROUTE_PROVIDERS as readonly string[]).includes(name)) throw new UsageError(`unknown provider "${name}" (expected ${ROUTE_PROVIDERS.join("|")})`);
  return name as RouteProviderName;
}

/** Where the packaged unit (sitelink-agent.service) lets the agent write: ReadWritePaths=/run /etc/sitelink. */
const UNIT_WRITABLE = ["/etc/sitelink/", "/run/"];

function expectPositionals(args: Args, names: string[]): string[] {
  if (args.positionals.length < names.length) throw new UsageError(`${args.command} needs ${names.join(" ")}`);
  if (args.positionals.length > names.length) throw new UsageError(`unexpected argument to ${args.command}: "${args.positionals[names.length]}"`);
  return args.positionals;
}

function flag(args: Args, name: string): string | undefined {
  const values = args.flags.get(name);
  if (values && values.length > 1) throw new UsageError(`--${name} given more than once`);
  return values?.[0];
}

export async function runAgentCli(argv: string[], io: CliIo = processIo): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(argv);
    if (args.flags.has("help") || args.command === "help" || args.command === undefined) {
      (args.command === undefined && !args.flags.has("help") ? io.err : io.out)(USAGE);
      return args.command === undefined && !args.flags.has("help") ? 2 : 0;
    }
    const allowed = new Set(["config", "help", ...allowedFlags(args.command, args.positionals)]);
    for (const name of args.flags.keys()) {
      if (!allowed.has(name)) throw new UsageError(`unknown flag --${name} for ${args.command}`);
    }
    return await dispatch(args, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`sitelink: ${err.message}`);
      io.err(`run "sitelink --help" for usage`);
      return 2;
    }
    if (err instanceof ConfigError || err instanceof UriError || err instanceof StatusError || err instanceof UriSourceError || err instanceof CommandError) {
      io.err(`sitelink: ${err.message}`);
      return 1;
    }
    throw err;
  }
}

class CommandError extends Error {}

async function dispatch(args: Args, io: CliIo): Promise<number> {
  const configPath = flag(args, "config") ?? DEFAULT_CONFIG_PATH;
  const command = args.command!;
  const edit = async (change: (config: AgentConfig) => AgentConfig, done: string) => {
    await saveConfig(configPath, change(await loadConfig(configPath)));
    io.out(done);
    return 0;
  };
  const toggle = (key: "firewall" | "removeRoutes" | "hostCheck", on: boolean, what: string) => {
    expectPositionals(args, []);
    return edit((c) => ({ ...c, [key]: on }), `${what} ${on ? "on" : "off"}`);
  };

  switch (command) {
    case "version":
      expectPositionals(args, []);
      io.out(agentVersion());
      return 0;
    case "add-uri": {
      const [given] = expectPositionals(args, ["URI"]);
      if (given !== "-") io.err(ARGV_URI_WARNING);
      const text = given === "-" ? ((await (io.readStdin ?? readProcessStdin)()).split(/\r?\n/)[0] ?? "") : given!;
      if (given === "-" && !text.trim()) throw new CommandError("add-uri -: no host URI on standard input");
      const uri = parseHostUri(text);
      return edit((c) => {
        const others = c.uris.filter((u) => safeHostId(u) !== uri.hostId);
        return { ...c, uris: [...others, text.trim()] };
      }, `added ${redactHostUri(uri)}`);
    }
    case "remove-uri": {
      const [text] = expectPositionals(args, ["URI|HOST_ID"]);
      const hostId = text!.startsWith("sitelink://") ? parseHostUri(text!).hostId : text!;
      const config = await loadConfig(configPath);
      const kept = config.uris.filter((u) => safeHostId(u) !== hostId);
      if (kept.length === config.uris.length) throw new CommandError(`no host URI for host "${hostId}"`);
      await saveConfig(configPath, { ...config, uris: kept });
      io.out(`removed the host URI of "${hostId}"`);
      return 0;
    }
    case "list": {
      expectPositionals(args, []);
      const config = await loadConfig(configPath);
      if (config.uris.length === 0 && config.uriSources.length === 0) io.out("no host URIs");
      for (const text of config.uris) io.out(safeRedact(text));
      for (const source of config.uriSources) io.out(`${describeUriSource(source)} (read at start)`);
      return 0;
    }
    case "set-provider": {
      const [name] = expectPositionals(args, ["NAME"]);
      const config = setProvider(await loadConfig(configPath), providerName(name), args);
      await saveConfig(configPath, config);
      io.out(`provider ${name}`);
      // Warned, not refused: a unit of one's own (or a drop-in) may allow more.
      const path = config.provider === "file" ? config.file?.path : undefined;
      if (path && !UNIT_WRITABLE.some((dir) => path.startsWith(dir))) {
        io.err(`sitelink: warning: the packaged unit lets the agent write only under ${UNIT_WRITABLE.join(" and ")}: for ${path}, add ReadWritePaths=${dirname(path)} (systemctl edit sitelink-agent)`);
      }
      return 0;
    }
    case "firewall-on":
    case "firewall-off":
      return toggle("firewall", command === "firewall-on", "firewall");
    case "remove-routes-on":
    case "remove-routes-off":
      return toggle("removeRoutes", command === "remove-routes-on", "remove-routes");
    case "host-check-on":
    case "host-check-off":
      return toggle("hostCheck", command === "host-check-on", "host-check");
    case "set-mtu": {
      const [value] = expectPositionals(args, ["N|off"]);
      if (value === "off") return edit(({ mtu: _, ...c }) => c as AgentConfig, "mtu off (no TCP MSS clamp)");
      if (!/^\d+$/.test(value!)) throw new UsageError(`set-mtu: "${value}" is not a number (or "off")`);
      return edit((c) => ({ ...c, mtu: Number(value) }), `mtu ${value}`);
    }
    case "status": {
      expectPositionals(args, []);
      const status = await readStatus(flag(args, "status") ?? DEFAULT_STATUS_PATH);
      io.out(args.flags.has("json") ? JSON.stringify(status, null, 2) : formatStatus(status).trimEnd());
      if (!isRunning(status.pid)) io.err(`sitelink: the agent (pid ${status.pid}) is not running: this status is stale`);
      return 0;
    }
    case "run": {
      expectPositionals(args, []);
      // Loaded only here: the daemon's wiring (VICI, cloud SDKs) is not needed to edit the config.
      // require(), not import(): this is a CommonJS module, and esbuild keeps a required module lazy.
      const { runAgent } = require("./agent") as typeof import("./agent");
      return runAgent({ configPath, statusPath: flag(args, "status") ?? DEFAULT_STATUS_PATH });
    }
    case "teardown": {
      expectPositionals(args, []);
      const { teardown } = require("./teardown") as typeof import("./teardown");
      const done = await teardown(await loadConfig(configPath));
      io.out(`unloaded ${done.conns.length} connection(s) and ${done.secrets.length} secret(s)`);
      for (const failure of done.failures) io.err(`sitelink: ${failure}`);
      return done.failures.length ? 1 : 0;
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

function setProvider(config: AgentConfig, name: RouteProviderName, args: Args): AgentConfig {
  return ROUTE_PROVIDER_REGISTRY[name].configure(config, {
    get: (f) => flag(args, f),
    all: (f) => args.flags.get(f) ?? [],
    has: (f) => args.flags.has(f),
    usage: (message) => {
      throw new UsageError(message);
    },
  });
}

/** Signal 0 only checks that the process exists. EPERM: it exists, owned by someone else. */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Host id of a stored URI; a stored URI that no longer parses matches nothing (and is listed as invalid). */
function safeHostId(text: string): string | undefined {
  try {
    return parseHostUri(text).hostId;
  } catch {
    return undefined;
  }
}

function safeRedact(text: string): string {
  try {
    return redactHostUri(parseHostUri(text));
  } catch (err) {
    return `(invalid URI: ${(err as Error).message})`;
  }
}

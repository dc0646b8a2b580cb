// Loads, validates and saves agent.json. The file holds host URIs (secrets), so it is kept at
// mode 0600: written that way, and tightened on load when someone loosened it.
import { chmod, readFile, stat } from "node:fs/promises";
import { agentConfigSchema, type AgentConfig, type AgentConfigInput } from "../contract/agent-config";
import { writeFileAtomic } from "./atomic-file";

export const CONFIG_MODE = 0o600;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Validates a parsed document; the error names every bad field by its path. Values are never echoed (URIs are secret). */
export function parseConfig(value: unknown, source: string): AgentConfig {
  const result = agentConfigSchema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `${issue.path.length ? issue.path.join(".") : "(root)"}: ${issue.message}`);
  throw new ConfigError(`${source}: invalid config: ${problems.join("; ")}`);
}

/** The config at `path`; a missing file is an empty config (defaults), so `add-uri` works on a fresh host. */
export async function loadConfig(path: string): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return agentConfigSchema.parse({});
    throw new ConfigError(`${path}: cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const mode = (await stat(path)).mode & 0o777;
  if (mode & ~CONFIG_MODE) await chmod(path, CONFIG_MODE);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    // JSON.parse messages quote the offending text, which may be part of a secret: give the position only.
    const position = /position (\d+)/.exec(String(err))?.[1];
    throw new ConfigError(`${path}: not valid JSON${position ? ` (at character ${position})` : ""}`);
  }
  return parseConfig(value, path);
}

/** What the usual reasons a config cannot be written mean for the one who typed the command. */
const WRITE_FAILURES: Record<string, string> = {
  EACCES: "permission denied (run it as root)",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  ENOTDIR: "a part of the path is not a directory",
  ENOSPC: "no space left on the device",
};

/** Validates and writes the config atomically with mode 0600. */
export async function saveConfig(path: string, config: AgentConfigInput): Promise<AgentConfig> {
  const valid = parseConfig(config, path);
  try {
    await writeFileAtomic(path, `${JSON.stringify(valid, null, 2)}\n`, CONFIG_MODE);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(`${path}: cannot write: ${code ? `${code}${WRITE_FAILURES[code] ? ` (${WRITE_FAILURES[code]})` : ""}` : String(err)}`);
  }
  return valid;
}

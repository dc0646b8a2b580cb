// The status file: the running agent writes it atomically after every round; `sitelink status`
// reads it and prints tables. It holds no secrets (no PSK, no key, no URI), so it is 0644.
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { installProblemSchema } from "../contract/install-status";
import { hostCheckResultSchema, routeReportSchema, tunnelReportSchema } from "../contract/protocol";
import { writeFileAtomic } from "./atomic-file";

export const agentStatusSchema = z.object({
  pid: z.int(),
  hostId: z.string(),
  agentVersion: z.string(),
  /** ms since epoch of this snapshot. */
  updatedAt: z.number(),
  stateService: z.object({
    endpoint: z.string().optional(),
    reachable: z.boolean(),
    /** ms since epoch of the last valid answer. */
    lastContact: z.number().optional(),
    lastError: z.string().optional(),
  }),
  link: z.string().optional(),
  location: z.string().optional(),
  role: z.enum(["active", "standby"]),
  activeHost: z.string().nullable().optional(),
  generation: z.int(),
  appliedGeneration: z.int(),
  peers: z.array(z.object({ location: z.string(), activeHost: z.string().nullable() })),
  tunnels: z.array(tunnelReportSchema),
  hostChecks: z.array(hostCheckResultSchema),
  routes: routeReportSchema,
  /** The installer refused a new agent (install-status.json): this one is the old agent, kept. */
  installProblem: installProblemSchema.optional(),
});

export type AgentStatus = z.infer<typeof agentStatusSchema>;

export function writeStatus(path: string, status: AgentStatus): Promise<void> {
  return writeFileAtomic(path, `${JSON.stringify(status, null, 2)}\n`, 0o644);
}

export class StatusError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StatusError";
  }
}

export async function readStatus(path: string): Promise<AgentStatus> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new StatusError(`no status at ${path}: is the agent running (sitelink run)?`);
    throw new StatusError(`${path}: cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new StatusError(`${path}: not valid JSON`);
  }
  const parsed = agentStatusSchema.safeParse(value);
  if (!parsed.success) throw new StatusError(`${path}: not a status file (${parsed.error.issues[0]?.path.join(".") ?? ""})`);
  return parsed.data;
}

/** Human-readable status: a summary, then one table each for peers/tunnels, host checks and routes. */
export function formatStatus(s: AgentStatus, now: number = Date.now()): string {
  const contact = s.stateService.lastContact === undefined ? "never" : `${ago(now - s.stateService.lastContact)} ago`;
  const summary = table(
    ["", ""],
    [
      ["host", s.hostId],
      ["link / location", `${s.link ?? "-"} / ${s.location ?? "-"}`],
      ["role", s.role],
      ["active host", s.activeHost ?? "-"],
      ["generation", `${s.appliedGeneration} applied / ${s.generation} seen`],
      ["state service", `${s.stateService.reachable ? "reachable" : "UNREACHABLE"} ${s.stateService.endpoint ?? ""}`.trim()],
      ["last state contact", contact],
      ...(s.stateService.lastError ? [["last error", s.stateService.lastError]] : []),
      ["agent", `${s.agentVersion} (pid ${s.pid}, status ${ago(now - s.updatedAt)} old)`],
      ...(s.installProblem ? [["install", `REFUSED (${s.installProblem.kind}): ${s.installProblem.message}`]] : []),
    ],
    false,
  );
  const tunnelsByLocation = new Map(s.tunnels.map((t) => [t.location, t]));
  const locations = [...new Set([...s.peers.map((p) => p.location), ...s.tunnels.map((t) => t.location)])].sort();
  const peers = table(
    ["PEER LOCATION", "ACTIVE HOST", "TUNNEL", "PEER", "SINCE"],
    locations.map((location) => {
      const t = tunnelsByLocation.get(location);
      const peer = s.peers.find((p) => p.location === location);
      return [location, peer?.activeHost ?? "-", t?.state ?? "-", t ? (t.peerHost ?? t.peerAddress ?? "-") : "-", t?.since ? `${ago(now - t.since)} ago` : "-"];
    }),
  );
  const checks = table(
    ["HOST CHECK", "REACHABLE", "RTT", "FAILURES"],
    s.hostChecks.map((c) => [c.target, c.reachable ? "yes" : "NO", c.rttMs === undefined ? "-" : `${c.rttMs.toFixed(1)} ms`, String(c.failures)]),
  );
  const routes = table(["ROUTE", "PROVIDER"], s.routes.applied.map((r) => [r, s.routes.provider]));
  const routeError = s.routes.error ? `route error: ${s.routes.error}\n` : "";
  return [summary, peers, checks, routes + routeError].join("\n");
}

function ago(ms: number): string {
  const sec = Math.max(0, ms) / 1000;
  if (sec < 10) return `${sec.toFixed(1)}s`;
  if (sec < 3600) return `${Math.round(sec)}s`;
  return `${(sec / 3600).toFixed(1)}h`;
}

function table(head: string[], rows: string[][], showHead = true): string {
  if (rows.length === 0) return showHead ? `${head[0]}: none\n` : "";
  const all = showHead ? [head, ...rows] : rows;
  const widths = head.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return `${all.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ")).join("\n")}\n`;
}

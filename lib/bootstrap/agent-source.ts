// Which agent the hosts install, and how they are told: by default the bundle of this installed
// library (agentBundle), published by each location where its hosts fetch it with their own
// identity; or a package the user names, always with its SHA-256.
import { z } from "zod";
import { agentSourceSchema, sha256Schema } from "../../agent/contract/agent-config";

/**
 * An agent the user names instead of the bundle of this library (a private registry, a mirror):
 * - `{ url, sha256 }`: a URL of the bundle (`sitelink.js`) or of a package tarball (`npm pack`);
 * - `{ npmSpec, sha256 }`: an npm spec the hosts `npm pack`; `sha256` is the tarball's.
 * The hosts verify `sha256` before installing; a spec without it is refused.
 */
export type AgentPackage = { url: string; sha256: string } | { npmSpec: string; sha256: string };

/** What a host's config carries: where it fetches the agent and what that must hash to. */
export interface AgentDelivery {
  agentSource: string;
  agentSha256: string;
}

const noShell = /^[^\s'"`$\\]+$/;
const urlPackageSchema = z.strictObject({
  url: z
    .string()
    .regex(/^https?:\/\//, "must be an http(s) URL")
    .regex(noShell, "must have no spaces or quotes")
    // It lands in plain host config, logs and the installer's messages: never a secret.
    .refine((url) => !/^https?:\/\/[^/]*@/.test(url), "must carry no credentials (user:password@): it is stored in the hosts' plain config"),
  sha256: sha256Schema,
});
const npmPackageSchema = z.strictObject({ npmSpec: z.string().regex(noShell, "must be an npm spec without spaces or quotes"), sha256: sha256Schema });

/** `{ url, sha256 }` or `{ npmSpec, sha256 }`, checked as the one its key names, so a problem names its field (agentPackage.sha256). */
export const agentPackageSchema = z.custom<AgentPackage>().superRefine((value, ctx) => {
  const kind = typeof value === "object" && value !== null ? ("url" in value ? urlPackageSchema : "npmSpec" in value ? npmPackageSchema : undefined) : undefined;
  if (!kind) {
    const why = typeof value === "string" ? ": a package given without its SHA-256 cannot be verified on the hosts" : "";
    ctx.addIssue({ code: "custom", message: `must be { url, sha256 } or { npmSpec, sha256 }${why}` });
    return;
  }
  for (const issue of kind.safeParse(value).error?.issues ?? []) ctx.addIssue({ code: "custom", message: issue.message, path: issue.path });
});

/** How the hosts are told about a package the user named. */
export function userAgentDelivery(p: AgentPackage): AgentDelivery {
  const agentSource = "url" in p ? p.url : `npm:${p.npmSpec}`;
  return { agentSource: agentSourceSchema.parse(agentSource), agentSha256: p.sha256 };
}

/** The object key of a bundle: by its SHA-256, so a new version is a new object and hosts keep theirs until their config moves. */
export function agentObjectKey(sha256: string): string {
  return `sitelink/agent/${sha256}/sitelink.js`;
}

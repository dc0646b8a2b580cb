// Validators of the on-prem locations' arguments (SshLocation, ManualLocation): every problem at
// once, each naming the field; the topology rules come from the shared location check. Pure but for
// one look at the disk: that a given agentTarball is a file.
import { statSync } from "node:fs";
import { z } from "zod";
import { isAddress } from "../../agent/contract/net";
import { inputString, isRecord, locationTopologyIssues, uniqueIssues, zodIssues, type ArgIssue } from "../link/args";

/** Where the agent of an SSH host may write its routes file: the packaged unit only lets it write there. */
export const ROUTES_FILE_DIRS = ["/etc/sitelink/", "/run/sitelink/"] as const;

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

const address = (what: string) => inputString(undefined, what).refine((v) => typeof v !== "string" || isAddress(v), { message: `must be ${what}` });

const hostFields = {
  name: z.unknown(),
  priority: z.unknown().optional(),
  timeout: z.unknown().optional(),
  backoff: z.unknown().optional(),
  publicAddress: address("an IP address (where peers reach the host; behind NAT, the router's public address)"),
  privateAddress: address("an IP address (the host's address on the site network)"),
};

const manualArgsSchema = z.object({
  routes: z.array(z.unknown()),
  hosts: z.array(z.object(hostFields)),
});

/** An OpenSSH public key line: `<type> <base64>`, optionally a comment. */
export const SSH_PUBLIC_KEY = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,2}( [^\n]*)?\n?$/;

const sshEndpoint = {
  user: inputString(/^[a-z_][a-z0-9_-]*\$?$/, "a user name"),
  privateKey: inputString(undefined, "a private key (PEM or OpenSSH format, a secret)"),
  hostKey: inputString(SSH_PUBLIC_KEY, "the host's SSH public key, `<type> <base64>` as in /etc/ssh/ssh_host_ed25519_key.pub (required: it stops a man in the middle)"),
  port: z.custom<unknown>((v) => typeof v !== "number" || (Number.isInteger(v) && v >= 1 && v <= 65535), { message: "must be a port (1-65535)" }).optional(),
};

const sshArgsSchema = z.object({
  routes: z.array(z.unknown()),
  hosts: z.array(
    z.object({
      ...hostFields,
      connection: z.object({
        host: inputString(undefined, "a host name or address").optional(),
        ...sshEndpoint,
        proxy: z.object({ host: inputString(undefined, "a host name or address"), ...sshEndpoint }).optional(),
      }),
    }),
  ),
  routeMode: z.enum(["kernel", "file"]).optional(),
  kernel: z
    .strictObject({
      device: z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, "must be a network interface name (1-15 characters)").optional(),
      via: z.string().refine(isAddress, "must be an IP address").optional(),
    })
    .optional(),
  routesFile: z
    .string()
    .refine((p) => ROUTES_FILE_DIRS.some((d) => p.startsWith(d) && p.length > d.length && !p.includes("/..")), {
      message: `must be a file under ${ROUTES_FILE_DIRS.join(" or ")} (the only places the agent's unit may write)`,
    })
    .optional(),
  sudo: z.boolean().optional(),
  firewall: z.boolean().optional(),
  agentTarball: z.string().refine(isFile, "must be the path of a local file (a package tarball made by `npm pack`)").optional(),
});

/** Checks ManualLocation arguments on their own (the Link checks what spans locations). */
export function validateManualLocationArgs(name: string, args: unknown): ArgIssue[] {
  return uniqueIssues([...zodIssues(manualArgsSchema, args), ...topologyIssues(name, args)]);
}

/** Checks SshLocation arguments on their own (the Link checks what spans locations). */
export function validateSshLocationArgs(name: string, args: unknown): ArgIssue[] {
  const issues = zodIssues(sshArgsSchema, args);
  if (isRecord(args) && args.routesFile !== undefined && args.routeMode !== "file") {
    issues.push({ path: "routesFile", message: 'is only used with routeMode "file"' });
  }
  const mode = isRecord(args) ? (args.routeMode ?? "kernel") : undefined;
  const kernel = isRecord(args) && isRecord(args.kernel) ? args.kernel : undefined;
  if (mode === "kernel" && kernel?.device === undefined && kernel?.via === undefined) {
    issues.push({ path: "kernel", message: 'routeMode "kernel" needs kernel.device or kernel.via (where the routes of the remote networks point, e.g. the internet-facing interface)' });
  }
  if (mode === "file" && isRecord(args) && args.kernel !== undefined) issues.push({ path: "kernel", message: 'is only used with routeMode "kernel"' });
  return uniqueIssues([...issues, ...topologyIssues(name, args)]);
}

const TOPOLOGY_HOST_FIELDS = ["name", "priority", "timeout", "backoff"];
const ADDRESS_FIELDS = ["publicAddress", "privateAddress"];

/**
 * The topology rules on the fields the topology knows, addresses among them when they are plain
 * strings (so a private address used twice is refused now); Outputs are checked once they resolve.
 */
function topologyIssues(name: string, args: unknown): ArgIssue[] {
  if (!isRecord(args)) return locationTopologyIssues(name, args);
  const known = ([k, v]: [string, unknown]) => TOPOLOGY_HOST_FIELDS.includes(k) || (ADDRESS_FIELDS.includes(k) && typeof v === "string" && isAddress(v));
  const hosts = Array.isArray(args.hosts) ? args.hosts.map((h: unknown) => (isRecord(h) ? Object.fromEntries(Object.entries(h).filter(known)) : h)) : args.hosts;
  return locationTopologyIssues(name, { routes: args.routes, hosts });
}

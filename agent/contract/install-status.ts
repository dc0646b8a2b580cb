// What the installer on a host last did with the agent it was told to install, written to
// /etc/sitelink/install-status.json: the running agent reads it and carries a refusal in its reports
// (`installProblem`), so an agent kept because its replacement failed verification says so.
import { z } from "zod";

export const INSTALL_STATUS_PATH = "/etc/sitelink/install-status.json";

/** Longest problem message a host sends (POST /v1/problem, `installProblem`). */
export const PROBLEM_MESSAGE_MAX = 500;

export const PROBLEM_KINDS = ["bootstrap", "integrity"] as const;

export const installProblemSchema = z.strictObject({
  kind: z.enum(PROBLEM_KINDS),
  message: z.string().max(PROBLEM_MESSAGE_MAX),
});
export type InstallProblem = z.output<typeof installProblemSchema>;

export const installStatusSchema = z.union([
  z.strictObject({ ok: z.literal(true) }),
  z.strictObject({ ok: z.literal(false), kind: z.enum(PROBLEM_KINDS), message: z.string() }),
]);

/** The problem an install-status file records, if any; a missing or unreadable file records none (a host installed before this file existed). */
export function installProblemOf(text: string | undefined): InstallProblem | undefined {
  if (text === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { kind: "bootstrap", message: `${INSTALL_STATUS_PATH} is not JSON` };
  }
  const status = installStatusSchema.safeParse(parsed);
  if (!status.success) return { kind: "bootstrap", message: `${INSTALL_STATUS_PATH} is not an install status` };
  return status.data.ok ? undefined : { kind: status.data.kind, message: status.data.message.slice(0, PROBLEM_MESSAGE_MAX) };
}

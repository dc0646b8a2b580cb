// What the installer on a host last did with the agent it was told to install, written to
// /etc/sitelink/install-status.json: the running agent reads it and carries a refusal in its reports
// (`installProblem`), so an agent kept because its replacement failed verification says so.
import { z } from "zod";
import { installProblemSchema, PROBLEM_MESSAGE_MAX, problemKindSchema, type InstallProblem } from "./protocol";

export const INSTALL_STATUS_PATH = "/etc/sitelink/install-status.json";

export { installProblemSchema, type InstallProblem };

export const installStatusSchema = z.union([
  z.strictObject({ ok: z.literal(true) }),
  z.strictObject({ ok: z.literal(false), kind: problemKindSchema, message: z.string() }),
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
  if (status.data.ok) return undefined;
  // The wire takes one printable line: a message the installer wrote otherwise must not cost the report.
  const message = status.data.message.replace(/[\u0000-\u001f\u007f]+/g, " ").trim().slice(0, PROBLEM_MESSAGE_MAX);
  return { kind: status.data.kind, message: message || "(no message)" };
}

// Reads what the installer last did (/etc/sitelink/install-status.json): a refused agent is carried
// in every report and the status file until an install succeeds, and logged once when it appears.
import { readFileSync } from "node:fs";
import { INSTALL_STATUS_PATH, installProblemOf, type InstallProblem } from "../contract/install-status";
import type { Logger } from "./log";

export function installProblemReader(log: Logger, path: string = INSTALL_STATUS_PATH): () => InstallProblem | undefined {
  let logged: string | undefined;
  return () => {
    let text: string | undefined;
    try {
      text = readFileSync(path, "utf8");
    } catch {
      text = undefined; // No file: installed before the installer wrote one, or by hand.
    }
    const problem = installProblemOf(text);
    if (problem && problem.message !== logged) log.error("the installer refused a new agent; this one keeps running", { kind: problem.kind, problem: problem.message });
    logged = problem?.message;
    return problem;
  };
}

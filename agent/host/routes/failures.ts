// One error for everything that went wrong in one apply, naming the provider and each CIDR/table,
// so the agent can report it (routes.error) and the rest of the CIDRs still get applied.
import { cidrProblem, parseCidr } from "../../contract/net";
import { errorMessage } from "../log";

export class RouteApplyError extends Error {
  constructor(
    readonly provider: string,
    readonly failures: string[],
  ) {
    super(`route provider ${provider}: ${failures.join("; ")}`);
    this.name = "RouteApplyError";
  }
}

export class Failures {
  private readonly list: string[] = [];
  constructor(private readonly provider: string) {}

  add(what: string, error: unknown): void {
    this.list.push(`${what}: ${errorMessage(error)}`);
  }

  /** Splits `cidrs` into valid ones (deduplicated, as written) and records the invalid ones. */
  validCidrs(cidrs: string[]): string[] {
    const valid: string[] = [];
    for (const cidr of cidrs) {
      const problem = cidrProblem(cidr);
      if (problem) this.list.push(problem);
      else if (!valid.includes(cidr)) valid.push(cidr);
    }
    return valid;
  }

  throwIfAny(): void {
    if (this.list.length > 0) throw new RouteApplyError(this.provider, this.list);
  }
}

/** The canonical form of a CIDR (IPv6 spellings vary), or the text itself when it is not one. */
export function normalizeCidr(cidr: string): string {
  return cidrProblem(cidr) ? cidr : parseCidr(cidr).text;
}

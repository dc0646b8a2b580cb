// `file`: Pritunl's IPsec-router mode. The active host writes the CIDRs the site router must send
// to it, one per line, under a header naming the address to send them to; the router (a script or
// config management) reads the file. The file is wholly ours and always holds exactly the desired
// set, so a standby host's file is empty.
import { writeFileAtomic } from "../atomic-file";
import type { RouteProvider } from "../types";
import { Failures } from "./failures";

export class FileRouteProvider implements RouteProvider {
  readonly name = "file" as const;
  private current: string[] = [];

  constructor(
    private readonly path: string,
    private readonly self: { hostId: string; privateAddress?: string },
  ) {}

  async apply(cidrs: string[]): Promise<void> {
    const failures = new Failures(this.name);
    const via = this.self.privateAddress;
    if (!via) failures.add(`cannot write ${this.path}`, new Error("this host's private address is unknown (set privateAddress in the agent config)"));
    const valid = failures.validCidrs(cidrs);
    if (via) {
      const text = [`# sitelink routes of host ${this.self.hostId}: send these networks via ${via}`, ...valid, ""].join("\n");
      try {
        await writeFileAtomic(this.path, text, 0o644);
        this.current = valid;
      } catch (error) {
        failures.add(`cannot write ${this.path}`, error);
      }
    }
    failures.throwIfAny();
  }

  applied(): string[] {
    return [...this.current];
  }
}

// `file`: Pritunl's IPsec-router mode. The active host writes the CIDRs the site router must send
// to it, one per line, under a header naming the address to send them to; the router (a script or
// config management) reads the file. The file is wholly ours and always holds exactly the desired
// set, so a standby host's file is empty (header only): it withdraws its routes on demotion.
import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "../atomic-file";
import type { RouteProvider } from "../types";
import type { AgentConfig } from "../../contract/agent-config";
import { missingSection, type ProviderFlags, type RouteProviderDescriptor } from "./descriptor";
import { Failures } from "./failures";

export class FileRouteProvider implements RouteProvider {
  readonly name = "file" as const;
  readonly table = "own" as const;
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
      try {
        await writeFileAtomic(this.path, this.render(via, valid), 0o644);
        this.current = valid;
      } catch (error) {
        // The packaged unit may write only under /etc/sitelink and /run (ReadWritePaths).
        const hint = (error as NodeJS.ErrnoException).code === "EROFS" ? " (outside the agent unit's ReadWritePaths=/run /etc/sitelink?)" : "";
        failures.add(`cannot write ${this.path}${hint}`, error);
      }
    }
    failures.throwIfAny();
  }

  applied(): string[] {
    return [...this.current];
  }

  async inPlace(cidrs: string[]): Promise<boolean> {
    const via = this.self.privateAddress;
    const text = await readFile(this.path, "utf8").catch(() => undefined);
    return via !== undefined && text === this.render(via, cidrs);
  }

  private render(via: string, cidrs: string[]): string {
    return [`# sitelink routes of host ${this.self.hostId}: send these networks via ${via}`, ...cidrs, ""].join("\n");
  }
}

export const fileRoutes: RouteProviderDescriptor = {
  name: "file",
  section: "file",
  flags: ["path"],
  usage: "--path FILE (absolute; the packaged unit writes only under /etc/sitelink and /run)",
  configure(config: AgentConfig, flags: ProviderFlags): AgentConfig {
    const path = flags.get("path") ?? config.file?.path;
    if (!path) flags.usage("set-provider file needs --path");
    return { ...config, provider: "file", file: { path } };
  },
  create(config, self) {
    if (!config.file) throw missingSection("file", "file", "file.path is where the routes file is written");
    return new FileRouteProvider(config.file.path, self);
  },
};

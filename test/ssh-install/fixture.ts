// A stand-in for an existing host: a temporary root, stubbed apt-get/systemctl/sysctl/sudo, and an
// npm stub that "installs" the real bundled agent (built once) under that root, as `npm -g` would.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { remoteCommand } from "../../lib/ssh-install";

export const REPO = resolve(__dirname, "../..");

export interface Stubs {
  bin: string;
  /** Every stubbed call, one line of argv each. */
  log: string;
}

export class HostFixture {
  private count = 0;

  private constructor(
    readonly work: string,
    /** A global npm root holding a `sitelink` package made of the real bundle and the packaged unit. */
    readonly npmRoot: string,
  ) {}

  static create(): HostFixture {
    const work = mkdtempSync(join(tmpdir(), "sl-sshinst-"));
    const pkg = join(work, "npm-root", "sitelink");
    mkdirSync(join(pkg, "dist"), { recursive: true });
    mkdirSync(join(pkg, "agent/host"), { recursive: true });
    execFileSync(process.execPath, [join(REPO, "scripts", "bundle.mjs"), "--outfile", join(pkg, "dist/sitelink.js")], { cwd: REPO, stdio: "pipe" });
    writeFileSync(join(pkg, "agent/host/sitelink-agent.service"), readFileSync(join(REPO, "agent/host/sitelink-agent.service")));
    return new HostFixture(work, join(work, "npm-root"));
  }

  cleanup(): void {
    rmSync(this.work, { recursive: true, force: true });
  }

  fresh(name: string): string {
    this.count += 1;
    const dir = join(this.work, `${name}-${this.count}`);
    mkdirSync(dir, { recursive: true });
    return dir;
  }

  /** An empty host root with the directories a Debian host has. */
  hostRoot(): string {
    const root = this.fresh("root");
    for (const d of ["etc/sysctl.d", "etc/systemd/system"]) mkdirSync(join(root, d), { recursive: true });
    return root;
  }

  /** Stub commands logging their argv; `overrides` gives some a behaviour. */
  stubs(root: string, overrides: Record<string, string> = {}): Stubs {
    const dir = this.fresh("stubs");
    const bin = join(dir, "bin");
    mkdirSync(bin);
    const log = join(dir, "calls.log");
    writeFileSync(log, "");
    const npm = [
      `case "$1" in`,
      `  root) echo ${this.npmRoot} ;;`,
      `  install) mkdir -p "${root}/usr/local/bin" && ln -sf ${this.npmRoot}/sitelink/dist/sitelink.js "${root}/usr/local/bin/sitelink" ;;`,
      `  uninstall) rm -f "${root}/usr/local/bin/sitelink" ;;`,
      `esac`,
    ].join("\n");
    for (const [name, body] of Object.entries({ "apt-get": "", sysctl: "", systemctl: "", npm, ...overrides })) {
      writeFileSync(join(bin, name), `#!/bin/bash\necho "${name} $*" >> "$STUB_LOG"\n${body}\n`, { mode: 0o755 });
    }
    writeFileSync(join(bin, "sudo"), `#!/bin/bash\nif [ "$1" != -n ]; then echo "sudo: would prompt" >&2; exit 1; fi\nshift\nexec "$@"\n`, { mode: 0o755 });
    return { bin, log };
  }

  /** Runs a script by the SshLocation's command line for it (see runCommand). */
  run(script: string, root: string, s: Stubs, stdin: string, name = "sitelink-install") {
    return this.runCommand(remoteCommand(script, name, true), root, s, stdin);
  }

  /**
   * Runs a command line as sshd runs it: through the user's shell (`sh -c`), `stdin` on its standard
   * input; `sudo -n` is a stub that checks its flag and runs the rest.
   */
  runCommand(command: string, root: string, s: Stubs, stdin: string) {
    const result = spawnSync("sh", ["-c", command], {
      input: stdin,
      // HOME of its own: bash run with a socket on stdin (as sshd runs it) reads ~/.bashrc.
      env: { PATH: `${s.bin}:/usr/bin:/bin:/usr/sbin:/sbin`, SITELINK_ROOT: root, STUB_LOG: s.log, HOME: this.fresh("home") },
      encoding: "utf8",
    });
    return { ...result, calls: readFileSync(s.log, "utf8").trim().split("\n").filter(Boolean) };
  }
}

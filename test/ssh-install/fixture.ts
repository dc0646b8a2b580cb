// A stand-in for an existing host: a temporary root with the SSH user's home inside it, stubbed
// apt-get/systemctl/sysctl/ip/iptables/sudo, and an npm stub whose `npm pack` gives a package
// tarball of the real bundled agent (built once) and the packaged units. Files reach the home as CopyToRemote puts them
// there (SFTP starts in the home directory); commands run as sshd runs them.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { PACKAGED_BUNDLE, PACKAGED_UNITS, SITELINK_DIR } from "../../lib/bootstrap/host";
import { SSH_STAGED_FILES, sshInstallCommand, sshUninstallCommand } from "../../lib/onprem/install";

export const REPO = resolve(__dirname, "../..");

export interface Stubs {
  bin: string;
  /** Every stubbed call, one line of argv each. */
  log: string;
}

/** A host root: `home` is the SSH user's home directory inside it. */
export interface HostRoot {
  root: string;
  home: string;
}

export class HostFixture {
  private count = 0;

  private constructor(
    readonly work: string,
    /** The sitelink package tarball `npm pack` gives: the real bundle and the packaged units. */
    readonly packageTarball: string,
  ) {}

  static create(): HostFixture {
    const work = mkdtempSync(join(tmpdir(), "sl-sshinst-"));
    const pkg = join(work, "pack", "package");
    execFileSync(process.execPath, [join(REPO, "scripts", "bundle.mjs"), "--outfile", join(pkg, PACKAGED_BUNDLE)], { cwd: REPO, stdio: "pipe" });
    for (const unit of Object.values(PACKAGED_UNITS)) {
      mkdirSync(dirname(join(pkg, unit)), { recursive: true });
      writeFileSync(join(pkg, unit), readFileSync(join(REPO, unit)));
    }
    const tarball = join(work, "sitelink-0.0.0-test.tgz");
    execFileSync("tar", ["-czf", tarball, "-C", join(work, "pack"), "package"]);
    return new HostFixture(work, tarball);
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

  /** An empty host root with the directories a Debian host has, and the SSH user's home. */
  hostRoot(): HostRoot {
    const root = this.fresh("root");
    for (const d of ["etc/sysctl.d", "etc/systemd/system", "home/admin"]) mkdirSync(join(root, d), { recursive: true });
    return { root, home: join(root, "home/admin") };
  }

  /**
   * Stub commands logging their argv; `overrides` gives some a behaviour. `npm pack SPEC` leaves
   * the package tarball in the current directory, as the real one does, but only for a spec it can
   * use: a path spec must name a file under the root (as it would on the host).
   */
  stubs(root: string, overrides: Record<string, string> = {}): Stubs {
    const dir = this.fresh("stubs");
    const bin = join(dir, "bin");
    mkdirSync(bin);
    const log = join(dir, "calls.log");
    writeFileSync(log, "");
    const npm = [
      `spec="\${@: -1}"`,
      `if [ "$1" != pack ]; then echo "npm stub: unexpected npm $1" >&2; exit 1; fi`,
      `if [[ "$spec" == /* && ! -f "${root}$spec" ]]; then echo "npm stub: no package file $spec" >&2; exit 1; fi`,
      `cp ${this.packageTarball} .`,
    ].join("\n");
    const tools = { "apt-get": "", sysctl: "", systemctl: "", ip: "", iptables: "", ip6tables: "", npm };
    for (const [name, body] of Object.entries({ ...tools, ...overrides })) {
      writeFileSync(join(bin, name), `#!/bin/bash\necho "${name} $*" >> "$STUB_LOG"\n${body}\n`, { mode: 0o755 });
    }
    writeFileSync(join(bin, "sudo"), `#!/bin/bash\nif [ "$1" != -n ]; then echo "sudo: would prompt" >&2; exit 1; fi\nshift\nexec "$@"\n`, { mode: 0o755 });
    return { bin, log };
  }

  /** The real bundle inside the package tarball (what an SshLocation copies by default). */
  get bundle(): Buffer {
    return readFileSync(join(this.work, "pack", "package", PACKAGED_BUNDLE));
  }

  /** The package tarball's bytes. */
  get tarball(): Buffer {
    return readFileSync(this.packageTarball);
  }

  /** The installed agent (the bundle the installer put in place). */
  sitelink(host: HostRoot): string {
    return join(host.root, SITELINK_DIR, "sitelink.js");
  }
  /** Puts what CopyToRemote copies into the home: the install script, and the agent (bundle or package tarball) if given. */
  stage(host: HostRoot, script: string, tarball?: Buffer): void {
    writeFileSync(join(host.home, SSH_STAGED_FILES.script), script, { mode: 0o644 });
    if (tarball) writeFileSync(join(host.home, SSH_STAGED_FILES.agent), tarball, { mode: 0o644 });
  }

  /** Stages `script` and runs the install as SshLocation does (through sudo), `stdin` the config. */
  install(host: HostRoot, script: string, s: Stubs, stdin: string, tarball?: Buffer) {
    this.stage(host, script, tarball);
    return this.runCommand(sshInstallCommand(true), host, s, stdin);
  }

  uninstall(host: HostRoot, script: string, s: Stubs) {
    return this.runCommand(sshUninstallCommand(script, true), host, s, "");
  }

  /**
   * Runs a command line as sshd runs it: through the user's shell (`sh -c`) in its home, `stdin`
   * on its standard input; `sudo -n` is a stub that checks its flag and runs the rest.
   */
  runCommand(command: string, host: HostRoot, s: Stubs, stdin: string) {
    const result = spawnSync("sh", ["-c", command], {
      input: stdin,
      cwd: host.home,
      env: { PATH: `${s.bin}:/usr/bin:/bin:/usr/sbin:/sbin`, SITELINK_ROOT: host.root, STUB_LOG: s.log, HOME: host.home },
      encoding: "utf8",
    });
    return { ...result, calls: readFileSync(s.log, "utf8").trim().split("\n").filter(Boolean) };
  }
}

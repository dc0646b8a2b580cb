// A cgroup of its own for every instance's launcher. With no systemd on the host, systemd-nspawn
// puts every container at the same place (`payload` and `supervisor` beside its own cgroup), so two
// instances launched from one process would share one tree and their systemds would fight over it.
// The launcher moves itself into `<its cgroup>/sitelink-boot/<lab>/<instance>` in every mounted
// hierarchy (cgroup v1 ones and the unified one) before it execs nspawn. Below the lab process's own
// cgroup, so whatever limits or accounting the host set on it still apply.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

interface Hierarchy {
  /** Where it is mounted, e.g. /sys/fs/cgroup/memory or /sys/fs/cgroup/unified. */
  mount: string;
  /** The lab process's cgroup in it, e.g. / or /process_api/abc. */
  own: string;
}

/** Every mounted hierarchy this process belongs to, with its cgroup in each. */
function hierarchies(): Hierarchy[] {
  const mounts = readFileSync("/proc/self/mountinfo", "utf8").split("\n").flatMap((line) => {
    const [before, after] = line.split(" - ");
    const point = before?.split(" ")[4];
    const [fstype, , superOptions] = (after ?? "").split(" ");
    if (!point || (fstype !== "cgroup" && fstype !== "cgroup2")) return [];
    const controllers = fstype === "cgroup2" ? "" : (superOptions ?? "").split(",").filter((o) => o !== "rw" && o !== "ro").sort().join(",");
    return [{ point, fstype, controllers }];
  });
  return readFileSync("/proc/self/cgroup", "utf8").split("\n").flatMap((line) => {
    const match = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!match) return [];
    const controllers = match[2]!.split(",").filter(Boolean).sort().join(",");
    const mount = mounts.find((m) => (controllers === "" ? m.fstype === "cgroup2" : m.fstype === "cgroup" && m.controllers === controllers));
    // A hierarchy that is not mounted here cannot be entered (nor does nspawn use it).
    return mount ? [{ mount: mount.point, own: match[3]! }] : [];
  });
}

/** Creates `relative` below the lab process's cgroup in every hierarchy; returns their cgroup.procs files. */
export function createCgroup(relative: string): string[] {
  return hierarchies().map(({ mount, own }) => {
    let dir = join(mount, own);
    for (const part of relative.split("/")) {
      const parent = dir;
      dir = join(dir, part);
      if (!existsSync(dir)) mkdirSync(dir);
      inheritCpuset(parent, dir);
    }
    return join(dir, "cgroup.procs");
  });
}

/** A new v1 cpuset cgroup has no CPUs and no memory nodes, and refuses tasks until it is given some. */
function inheritCpuset(parent: string, dir: string): void {
  for (const file of ["cpuset.cpus", "cpuset.mems"]) {
    const path = join(dir, file);
    if (existsSync(path) && readFileSync(path, "utf8").trim() === "") writeFileSync(path, readFileSync(join(parent, file)));
  }
}

/** Pids in `relative` or below in any hierarchy (the container's processes left behind, if any). */
export function cgroupPids(relative: string): number[] {
  const pids = new Set<number>();
  for (const { mount, own } of hierarchies()) {
    for (const dir of walk(join(mount, own, relative))) {
      for (const line of readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n")) if (/^\d+$/.test(line)) pids.add(Number(line));
    }
  }
  return [...pids];
}

/** Removes `relative` and every cgroup below it (deepest first), then up to `removeEmptyParents` of its parents that are left empty. Sync for exit handlers. */
export function removeCgroupSync(relative: string, removeEmptyParents: number): void {
  for (const { mount, own } of hierarchies()) {
    for (const dir of walk(join(mount, own, relative)).reverse()) tryRmdir(dir);
    const parts = relative.split("/");
    for (let i = 1; i <= removeEmptyParents && i < parts.length; i++) tryRmdir(join(mount, own, ...parts.slice(0, -i)));
  }
}

function tryRmdir(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // still has processes or children, or already gone
  }
}

/** `dir` and every cgroup below it, parents before children. */
function walk(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const dirs = [dir];
  for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) dirs.push(...walk(join(dir, entry.name)));
  return dirs;
}

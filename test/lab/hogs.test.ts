// The bench's CPU hogs: they load the CPU, stop() ends them, and a bench killed without a word
// leaves none behind.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CpuHogs } from "./hogs";
import { isAlive as alive } from "../support/process";

/** CPU ticks (user + system) a process has used, from /proc. */
const cpuTicks = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /, "").split(" ");
  return Number(fields[11]) + Number(fields[12]);
};

describe("CpuHogs", () => {
  it("keeps the CPU busy until stopped, then every hog is gone", async () => {
    const hogs = CpuHogs.start(2);
    try {
      await expect.poll(() => hogs.pids.map(cpuTicks).every((ticks) => ticks >= 20), { timeout: 10_000 }).toBe(true);
    } finally {
      await hogs.stop();
    }
    expect(hogs.pids.filter(alive)).toEqual([]);
  });

  it("ends by itself when the process that started it is killed", async () => {
    const parent = spawn(process.execPath, ["--import", "tsx", "-e", `require(${JSON.stringify(join(__dirname, "hogs.ts"))}).CpuHogs.start(2).pids.forEach((p) => console.log(p)); setInterval(() => {}, 1000);`], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const pids = await new Promise<number[]>((resolve) => {
      let out = "";
      parent.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const lines = out.split("\n").filter(Boolean);
        if (lines.length === 2) resolve(lines.map(Number));
      });
    });
    expect(pids.filter(alive)).toHaveLength(2);
    parent.kill("SIGKILL");
    await expect.poll(() => pids.filter(alive), { timeout: 5_000 }).toEqual([]);
  });
});

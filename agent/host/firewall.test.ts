// Runs iptables only inside a fresh network namespace: the host's own firewall is never touched.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { NetnsSandbox, requireRoot } from "../../test/support/netns";
import { FIREWALL_CHAIN, IptablesFirewall } from "./firewall";
import { inNetns } from "./routes/command";

const SERVER = `require("net").createServer((s) => s.end("hi")).listen(9790, "::", () => console.log("listening"));`;
const CLIENT = `
const [host, localAddress] = process.argv.slice(1);
const s = require("net").connect({ host, port: 9790, localAddress });
s.setTimeout(1500, () => { console.log("silent"); process.exit(0); });
s.on("data", () => { console.log("open"); process.exit(0); });
s.on("error", (e) => { console.log(e.code); process.exit(0); });`;

describe.skipIf(!requireRoot())("iptables firewall in a network namespace", () => {
  let sandbox: NetnsSandbox;
  let fw: string;
  let client: string;
  let firewall: IptablesFirewall;

  beforeAll(async () => {
    sandbox = await NetnsSandbox.create("firewall");
    fw = await sandbox.addNamespace("fw");
    client = await sandbox.addNamespace("cl");
    await sandbox.veth({ ns: fw, ifname: "fw0", addr: "198.18.7.1/24" }, { ns: client, ifname: "cl0", addr: "198.18.7.2/24" });
    await sandbox.exec(client, ["ip", "addr", "add", "198.18.7.3/24", "dev", "cl0"]);
    await sandbox.exec(fw, ["ip", "addr", "add", "2001:2::1/64", "dev", "fw0", "nodad"]);
    for (const a of ["2001:2::2/64", "2001:2::3/64"]) await sandbox.exec(client, ["ip", "addr", "add", a, "dev", "cl0", "nodad"]);
    // The operator's own rules, which must survive everything we do.
    await sandbox.exec(fw, ["iptables", "-A", "INPUT", "-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "ACCEPT"]);
    await sandbox.exec(fw, ["ip6tables", "-A", "INPUT", "-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "ACCEPT"]);
    const log = join(sandbox.workDir, "server.log");
    sandbox.spawn(fw, [process.execPath, "-e", SERVER], { logFile: log });
    await vi.waitFor(() => expect(readFileSync(log, "utf8")).toContain("listening"), { timeout: 20_000, interval: 20 });
    firewall = new IptablesFirewall({ run: inNetns(fw) });
  });

  afterAll(async () => {
    await sandbox?.cleanup();
  });

  async function rules(tool: "iptables" | "ip6tables"): Promise<string[]> {
    const { stdout } = await sandbox.exec(fw, [tool, "-S"]);
    return stdout.trim().split("\n");
  }

  async function connectFrom(source: string, destination: string): Promise<string> {
    const { stdout } = await sandbox.exec(client, [process.execPath, "-e", CLIENT, destination, source]);
    return stdout.trim();
  }

  const operatorOnly = ["-P INPUT ACCEPT", "-P FORWARD ACCEPT", "-P OUTPUT ACCEPT", "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"];

  function chain(sources: string[], prefix: 32 | 128): string[] {
    const ports = ["-p udp -m udp --dport 500", "-p udp -m udp --dport 4500", "-p tcp -m tcp --dport 9790"];
    return [
      `-N ${FIREWALL_CHAIN}`,
      `-A INPUT -j ${FIREWALL_CHAIN}`,
      "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
      ...sources.flatMap((s) => ports.map((p) => `-A ${FIREWALL_CHAIN} -s ${s}/${prefix} ${p} -j ACCEPT`)),
      ...ports.map((p) => `-A ${FIREWALL_CHAIN} ${p} -j DROP`),
    ];
  }

  it("admits every source before the firewall is on", async () => {
    expect(await connectFrom("198.18.7.2", "198.18.7.1")).toBe("open");
    expect(await connectFrom("198.18.7.3", "198.18.7.1")).toBe("open");
  });

  it("apply installs exactly our chain and one jump, in both families", async () => {
    await firewall.apply(["198.18.7.2", "2001:2::2", "198.18.7.2"]);
    await firewall.apply(["198.18.7.2", "2001:2::2"]); // idempotent: still one jump
    expect(await rules("iptables")).toEqual([...operatorOnly.slice(0, 3), ...chain(["198.18.7.2"], 32)]);
    expect(await rules("ip6tables")).toEqual([...operatorOnly.slice(0, 3), ...chain(["2001:2::2"], 128)]);
  });

  it("admits host-check traffic from allowed sources only", async () => {
    expect(await connectFrom("198.18.7.2", "198.18.7.1")).toBe("open");
    expect(await connectFrom("198.18.7.3", "198.18.7.1")).toBe("silent");
    expect(await connectFrom("2001:2::2", "2001:2::1")).toBe("open");
    expect(await connectFrom("2001:2::3", "2001:2::1")).toBe("silent");
  });

  it("inPlace notices a removed jump or a flushed chain; apply restores both", async () => {
    const allow = ["198.18.7.2", "2001:2::2"];
    expect(await firewall.inPlace(allow)).toBe(true);
    expect(await firewall.inPlace(["198.18.7.3", "2001:2::2"])).toBe(false);
    await sandbox.exec(fw, ["iptables", "-D", "INPUT", "-j", FIREWALL_CHAIN]); // e.g. `iptables -F INPUT`
    expect(await firewall.inPlace(allow)).toBe(false);
    await firewall.apply(allow);
    expect(await firewall.inPlace(allow)).toBe(true);
    await sandbox.exec(fw, ["ip6tables", "-F", FIREWALL_CHAIN]);
    expect(await firewall.inPlace(allow)).toBe(false);
    await firewall.apply(allow);
    expect(await firewall.inPlace(allow)).toBe(true);
    expect(await rules("iptables")).toEqual([...operatorOnly.slice(0, 3), ...chain(["198.18.7.2"], 32)]);
    expect(await rules("ip6tables")).toEqual([...operatorOnly.slice(0, 3), ...chain(["2001:2::2"], 128)]);
  });

  it("an update swaps the allowed sources", async () => {
    await firewall.apply(["198.18.7.3", "2001:2::3"]);
    expect(await rules("iptables")).toEqual([...operatorOnly.slice(0, 3), ...chain(["198.18.7.3"], 32)]);
    expect(await connectFrom("198.18.7.2", "198.18.7.1")).toBe("silent");
    expect(await connectFrom("198.18.7.3", "198.18.7.1")).toBe("open");
    expect(await connectFrom("2001:2::3", "2001:2::1")).toBe("open");
  });

  it("an empty allowlist closes the ports to everyone", async () => {
    await firewall.apply([]);
    expect(await rules("ip6tables")).toEqual([...operatorOnly.slice(0, 3), ...chain([], 128)]);
    expect(await connectFrom("198.18.7.3", "198.18.7.1")).toBe("silent");
  });

  it("refuses a bad address, naming it, and leaves the rules as they were", async () => {
    await firewall.apply(["198.18.7.2"]);
    const before = await rules("iptables");
    await expect(firewall.apply(["198.18.7.3", "10.0.0.0/8"])).rejects.toThrow('firewall: allow[1] "10.0.0.0/8" is not an IPv4 or IPv6 address');
    expect(await rules("iptables")).toEqual(before);
  });

  it("remove leaves the operator's rules and nothing of ours, and may run twice", async () => {
    await firewall.remove();
    await firewall.remove();
    expect(await rules("iptables")).toEqual(operatorOnly);
    expect(await rules("ip6tables")).toEqual(operatorOnly);
    expect(await connectFrom("198.18.7.3", "198.18.7.1")).toBe("open");
  });
});

// Runs iptables only inside a fresh network namespace: the host's own rules are never touched.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { NetnsSandbox, requireRoot } from "../../test/support/netns";
import { IptablesMssClamp, MSS_CHAIN } from "./mss-clamp";
import { inNetns } from "./routes/command";

describe.skipIf(!requireRoot())("iptables MSS clamp in a network namespace", () => {
  let sandbox: NetnsSandbox;
  let ns: string;
  let clamp: IptablesMssClamp;

  beforeAll(async () => {
    sandbox = await NetnsSandbox.create("mss");
    ns = await sandbox.addNamespace("gw");
    // The operator's own mangle rules, which must survive everything we do.
    for (const tool of ["iptables", "ip6tables"]) {
      await sandbox.exec(ns, [tool, "-t", "mangle", "-A", "FORWARD", "-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "MARK", "--set-mark", "1"]);
    }
    clamp = new IptablesMssClamp({ run: inNetns(ns) });
  });

  afterAll(async () => {
    await sandbox?.cleanup();
  });

  async function rules(tool: "iptables" | "ip6tables"): Promise<string[]> {
    const { stdout, code, stderr } = await sandbox.exec(ns, [tool, "-t", "mangle", "-S"]);
    expect(code, stderr).toBe(0);
    return stdout.trim().split("\n");
  }

  const policies = ["-P PREROUTING ACCEPT", "-P INPUT ACCEPT", "-P FORWARD ACCEPT", "-P OUTPUT ACCEPT", "-P POSTROUTING ACCEPT"];
  const operator = "-A FORWARD -p tcp -m tcp --dport 22 -j MARK --set-xmark 0x1/0xffffffff";
  const operatorOnly = [...policies, operator];

  function withChain(cidrs: string[], mss: number): string[] {
    return [
      ...policies,
      `-N ${MSS_CHAIN}`,
      `-A FORWARD -j ${MSS_CHAIN}`,
      operator,
      `-A OUTPUT -j ${MSS_CHAIN}`,
      ...cidrs.flatMap((c) => [
        `-A ${MSS_CHAIN} -d ${c} -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss ${mss}`,
        `-A ${MSS_CHAIN} -s ${c} -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss ${mss}`,
      ]),
    ];
  }

  it("apply installs exactly our chain and one jump from FORWARD and OUTPUT, per family", async () => {
    await clamp.apply(1400, ["10.2.0.0/16", "fd00:2::/64", "10.3.0.0/24", "10.2.0.0/16"]);
    expect(await rules("iptables")).toEqual(withChain(["10.2.0.0/16", "10.3.0.0/24"], 1360));
    expect(await rules("ip6tables")).toEqual(withChain(["fd00:2::/64"], 1340));
  });

  it("re-applying the same is idempotent: still one jump each, same rules", async () => {
    const v4 = await rules("iptables");
    const v6 = await rules("ip6tables");
    await clamp.apply(1400, ["10.2.0.0/16", "fd00:2::/64", "10.3.0.0/24"]);
    await clamp.apply(1400, ["10.2.0.0/16", "fd00:2::/64", "10.3.0.0/24"]);
    expect(await rules("iptables")).toEqual(v4);
    expect(await rules("ip6tables")).toEqual(v6);
  });

  it("inPlace notices a removed jump or a flushed chain; apply restores both", async () => {
    const cidrs = ["10.2.0.0/16", "fd00:2::/64", "10.3.0.0/24"];
    expect(await clamp.inPlace(1400, cidrs)).toBe(true);
    expect(await clamp.inPlace(1300, cidrs)).toBe(false);
    expect(await clamp.inPlace(1400, cidrs.slice(1))).toBe(false);
    await sandbox.exec(ns, ["iptables", "-t", "mangle", "-D", "OUTPUT", "-j", MSS_CHAIN]);
    expect(await clamp.inPlace(1400, cidrs)).toBe(false);
    await clamp.apply(1400, cidrs);
    expect(await clamp.inPlace(1400, cidrs)).toBe(true);
    await sandbox.exec(ns, ["ip6tables", "-t", "mangle", "-F", MSS_CHAIN]);
    expect(await clamp.inPlace(1400, cidrs)).toBe(false);
    await clamp.apply(1400, cidrs);
    expect(await clamp.inPlace(1400, cidrs)).toBe(true);
    expect(await rules("ip6tables")).toEqual(withChain(["fd00:2::/64"], 1340));
  });

  it("an update replaces subnets and MSS", async () => {
    await clamp.apply(1300, ["10.4.0.0/16"]);
    expect(await rules("iptables")).toEqual(withChain(["10.4.0.0/16"], 1260));
    expect(await rules("ip6tables")).toEqual(withChain([], 1240));
  });

  it("refuses a bad CIDR or MTU, naming it, and leaves the rules as they were", async () => {
    const before = await rules("iptables");
    await expect(clamp.apply(1400, ["10.5.0.0/16", "10.6.0.1/16"])).rejects.toThrow('mss clamp: cidrs[1]: "10.6.0.1/16" has host bits set');
    await expect(clamp.apply(100, ["10.5.0.0/16"])).rejects.toThrow("mss clamp: mtu 100 is not an integer in 576..9000");
    expect(await rules("iptables")).toEqual(before);
  });

  it("remove leaves the operator's rule and nothing of ours, and may run twice", async () => {
    await clamp.remove();
    await clamp.remove();
    expect(await rules("iptables")).toEqual(operatorOnly);
    expect(await rules("ip6tables")).toEqual(operatorOnly);
  });

  it("apply after remove installs the chain again", async () => {
    await clamp.apply(1500, ["10.2.0.0/16"]);
    expect(await rules("iptables")).toEqual(withChain(["10.2.0.0/16"], 1460));
    await clamp.remove();
    expect(await rules("iptables")).toEqual(operatorOnly);
  });
});

// The server tells each client the MSS it may send with (ss, inside its own namespace): the MSS the
// client advertised in its SYN, less TCP options (timestamps).
const SERVER = `
const { execFileSync } = require("child_process");
require("net").createServer((s) => s.end(execFileSync("ss", ["-tniH", "state", "established", "( sport = :9000 )"]).toString()))
  .listen(9000, "0.0.0.0", () => console.log("listening"));`;
const CLIENT = `
let out = "";
require("net").connect({ host: process.argv[1], port: 9000 }).on("data", (d) => (out += d)).on("end", () => console.log(out));`;

describe.skipIf(!requireRoot())("the MSS clamp on routed traffic", () => {
  let sandbox: NetnsSandbox;
  let client: string;
  let gw: string;

  beforeAll(async () => {
    sandbox = await NetnsSandbox.create("mssfw");
    client = await sandbox.addNamespace("cl");
    gw = await sandbox.addNamespace("gw");
    const server = await sandbox.addNamespace("sv");
    await sandbox.veth({ ns: client, ifname: "cl0", addr: "198.18.8.2/24" }, { ns: gw, ifname: "gw0", addr: "198.18.8.1/24" });
    await sandbox.veth({ ns: gw, ifname: "gw1", addr: "198.18.9.1/24" }, { ns: server, ifname: "sv0", addr: "198.18.9.2/24" });
    await sandbox.exec(client, ["ip", "route", "add", "default", "via", "198.18.8.1"]);
    await sandbox.exec(server, ["ip", "route", "add", "default", "via", "198.18.9.1"]);
    await sandbox.exec(gw, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    const log = join(sandbox.workDir, "server.log");
    sandbox.spawn(server, [process.execPath, "-e", SERVER], { logFile: log });
    await vi.waitFor(() => expect(readFileSync(log, "utf8")).toContain("listening"), { timeout: 20_000, interval: 20 });
  });

  afterAll(async () => {
    await sandbox?.cleanup();
  });

  async function serverSendMss(): Promise<number> {
    const { stdout } = await sandbox.exec(client, [process.execPath, "-e", CLIENT, "198.18.9.2"]);
    const mss = /\bmss:(\d+)/.exec(stdout)?.[1];
    if (mss === undefined) throw new Error(`no mss in ss output: ${stdout}`);
    return Number(mss);
  }

  it("SYNs through the gateway carry the clamped MSS, and not without the clamp", async () => {
    const clamp = new IptablesMssClamp({ run: inNetns(gw) });
    expect(await serverSendMss()).toBeGreaterThan(1400); // 1500-byte veths: 1460 less options
    await clamp.apply(1400, ["198.18.9.0/24"]);
    const clamped = await serverSendMss();
    expect(clamped).toBeLessThanOrEqual(1360);
    expect(clamped).toBeGreaterThan(1300);
    await clamp.remove();
    expect(await serverSendMss()).toBeGreaterThan(1400);
  });
});

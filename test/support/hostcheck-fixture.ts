// Test fixture: runs the real listener or one prober round inside a network namespace
// (used by agent/host/hostcheck/netns.test.ts). The key comes from the environment, never from argv.
import { HostCheckListener } from "../../agent/host/hostcheck/listener";
import { HostCheckProber } from "../../agent/host/hostcheck/prober";

const [mode, selfId, ...rest] = process.argv.slice(2);
const key = process.env.SITELINK_TEST_HOSTCHECK_KEY ?? "";

if (mode === "listen") {
  const [host, port] = rest;
  const listener = new HostCheckListener({ hostId: selfId!, key, host, port: Number(port) });
  listener.start().then(() => console.log("listening"));
} else if (mode === "probe") {
  const [targetId, address, port] = rest;
  const prober = new HostCheckProber({ hostId: selfId! });
  prober.onChange(() => {
    console.log(JSON.stringify(prober.results()));
    void prober.close();
  });
  prober.setTargets([{ hostId: targetId!, address: address!, port: Number(port), scope: "peer" }], key, { heartbeat: 1, probeInterval: 0.1, probeTimeout: 2 });
} else {
  console.error("usage: netns-fixture listen|probe …");
  process.exit(2);
}

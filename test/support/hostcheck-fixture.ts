// Test fixture: runs the real listener, one prober round, a series of probes or a flood of idle
// sockets inside a network namespace (used by agent/host/hostcheck/netns.test.ts and
// test/security/agent-hostcheck-flood.test.ts). The key comes from the environment, never from argv.
import { connect } from "node:net";
import { HostCheckListener } from "../../agent/host/hostcheck/listener";
import { HostCheckProber, probe } from "../../agent/host/hostcheck/prober";

const [mode, selfId, ...rest] = process.argv.slice(2);
const key = process.env.SITELINK_TEST_HOSTCHECK_KEY ?? "";

if (mode === "listen") {
  // SITELINK_TEST_HOSTCHECK_ALLOW: the link's host addresses, comma-separated.
  const [host, port] = rest;
  const allow = (process.env.SITELINK_TEST_HOSTCHECK_ALLOW ?? "").split(",").filter(Boolean);
  const listener = new HostCheckListener({ hostId: selfId!, key, allow, host, port: Number(port) });
  listener.start().then(() => console.log("listening"));
} else if (mode === "probe") {
  const [targetId, address, port] = rest;
  const prober = new HostCheckProber({ hostId: selfId! });
  prober.onChange(() => {
    console.log(JSON.stringify(prober.results()));
    void prober.close();
  });
  prober.setTargets([{ hostId: targetId!, address: address!, port: Number(port), scope: "peer" }], key, { heartbeat: 1, probeInterval: 0.1, probeTimeout: 2 });
} else if (mode === "probes") {
  // `count` probes one after the other, 100 ms apart; prints the outcomes as one JSON line.
  const [targetId, address, port, count] = rest;
  void (async () => {
    const outcomes: string[] = [];
    for (let i = 0; i < Number(count); i++) {
      const outcome = await probe({ hostId: targetId!, address: address!, port: Number(port) }, selfId!, key, 1000);
      outcomes.push(outcome.ok ? "ok" : outcome.reason);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    console.log(JSON.stringify(outcomes));
  })();
} else if (mode === "flood") {
  // Keeps `count` idle connections open (reconnecting 50 ms after each is cut); prints "flooding"
  // once every one of them has been tried.
  const [address, port, count] = rest;
  let tried = 0;
  const hold = () => {
    let counted = false;
    const tick = () => {
      if (counted) return;
      counted = true;
      if (++tried === Number(count)) console.log("flooding");
    };
    const socket = connect({ host: address!, port: Number(port) });
    socket.on("connect", tick);
    socket.on("error", () => {});
    socket.on("close", () => {
      tick();
      setTimeout(hold, 50);
    });
  };
  for (let i = 0; i < Number(count); i++) hold();
} else {
  console.error("usage: hostcheck-fixture listen|probe|probes|flood …");
  process.exit(2);
}

// The slow hand-overs, reproduced on demand against real charons.
//
// 1. The peer location's active host is gone without a word on the wire (a planned stop whose charon
// exits before the initiator's DELETE arrives, or a crash): told the new active host, the initiator's
// charon replaces the connection, deletes the old IKE_SA — a DELETE nobody answers, retransmitted for
// seconds — and initiates to the new host, which refuses because its own agent has not loaded the
// connection yet. The driver must close the old IKE_SA at once (forced) and initiate again within its
// quick retries: were the deleting IKE_SA left to charon, it would count as an initiation under way
// until its DELETE gave up, and hold the tunnel back for that long.
//
// 2. The stopped host was the initiator, and its charon outlives its agent (systemd stops the agent
// first; the host may stay up for maintenance). When the peer closes its IKE_SA with that host, the
// host's charon initiates again at once (close_action = start), and a peer that still accepts it
// moves the traffic onto the newer CHILD_SA, to the host that left, until DPD gives it up seconds
// later. The state service lists only the hosts in service, so the peer refuses it.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { StrongswanDriver } from "../../agent/host/ipsec/driver";
import { createLogger } from "../../agent/host/log";
import { ViciSession } from "../../agent/host/vici/session";
import { startCharon } from "../support/charon";
import { requireRoot } from "../support/netns";
import { createIpsecLab, eastSeenFromWest, pingSite, selfOf, westSeenFromEast, type IpsecLab, type LabHost } from "./lab";

/**
 * The initiator's charon resends an unanswered IKE message this often: the stale attempt to the
 * stopped host then lasts ~25 s (0.5 s × (1 + 1.4 + … + 1.4⁸)), so a driver that waits for it is
 * told apart from one that does not by a wide margin, not by a timer.
 */
const INITIATOR_RETRANSMIT_TRIES = 8;
/** How long the tunnel may take to reach the new host: far below the stale attempt's ~25 s. */
const PATIENCE_MS = 10_000;

const logLines: string[] = [];
const log = createLogger("debug", (line) => logLines.push(line));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function driverFor(host: LabHost): StrongswanDriver {
  return StrongswanDriver.start({ viciSocket: host.charon.viciSocket, log, isLocalAddress: (address) => address === host.publicAddress });
}

describe.skipIf(!requireRoot())("hand-over to a new active host that is not ready yet (needs root: network namespaces)", () => {
  let lab: IpsecLab;
  const drivers: StrongswanDriver[] = [];

  beforeAll(async () => {
    lab = await createIpsecLab("ipsec-handover");
    await lab.a.charon.stop("SIGKILL");
    lab.a.charon = await startCharon(lab.sandbox, lab.a.ns, { retransmitTries: INITIATOR_RETRANSMIT_TRIES });
  });

  afterAll(async () => {
    await Promise.all(drivers.map((d) => d.close()));
    await lab?.cleanup();
  });

  it("closes the old IKE_SA at once and initiates to the new active host again until it accepts", async () => {
    const [a, b, c] = [lab.a, lab.b, lab.c].map(driverFor) as [StrongswanDriver, StrongswanDriver, StrongswanDriver];
    drivers.push(a, b, c);
    await b.apply([eastSeenFromWest(lab)], selfOf(lab.b));
    await a.apply([westSeenFromEast(lab, lab.b)], selfOf(lab.a));
    await expect.poll(() => a.tunnels()[0], { timeout: PATIENCE_MS }).toMatchObject({ state: "up", peerHost: "b" });

    const vici = new ViciSession(lab.a.charon.viciSocket);
    const sas = async () => (await vici.listSas()).map((entry) => entry["sitelink-west"] as { "remote-host": string; state: string });
    try {
      // b is gone: its agent left, its charon exited without a DELETE reaching a.
      await b.close();
      await lab.b.charon.stop("SIGKILL");

      // West's new active host is c; a is told first, c's agent loads its connection a moment later.
      const logged = logLines.length;
      const told = Date.now();
      await a.apply([westSeenFromEast(lab, lab.c)], selfOf(lab.a));
      await sleep(500);
      await c.apply([eastSeenFromWest(lab)], selfOf(lab.c));

      await expect.poll(() => a.tunnels()[0], { timeout: PATIENCE_MS }).toMatchObject({ state: "up", peerHost: "c" });
      const tookMs = Date.now() - told;
      expect(await sas()).toEqual([expect.objectContaining({ "remote-host": lab.c.publicAddress, state: "ESTABLISHED" })]);
      // The old IKE_SA went at once (forced), not after its unanswered DELETE's retransmits.
      expect(logLines.slice(logged).some((line) => line.includes("closing IKE_SA with a peer host that is no longer active"))).toBe(true);
      await expect.poll(() => pingSite(lab, lab.a, lab.c), { timeout: 5_000 }).toBe(true);
      console.log(`[handover] tunnel up with the new active host ${(tookMs / 1000).toFixed(2)} s after the initiator was told`);
    } finally {
      vici.close();
    }
  });
});

/** How long the peer is watched after the tunnel reached the new active host: the stopped host's charon comes back within milliseconds. */
const WATCH_MS = 3_000;

describe.skipIf(!requireRoot())("hand-over from an initiator whose charon outlives its stopped agent (needs root: network namespaces)", () => {
  let lab: IpsecLab;
  let drivers: StrongswanDriver[] = [];

  beforeAll(async () => {
    lab = await createIpsecLab("ipsec-stopped-initiator");
  });

  afterEach(async () => {
    await Promise.all(drivers.map((d) => d.close()));
    drivers = [];
    // Every case starts from charons with nothing loaded.
    for (const host of [lab.a, lab.b, lab.c]) {
      await host.charon.stop("SIGKILL");
      host.charon = await startCharon(lab.sandbox, host.ns);
    }
  });

  afterAll(async () => {
    await lab?.cleanup();
  });

  /**
   * West (b active, c standby) initiates to east (a). b's agent stops gracefully; c takes over, and a
   * is told so with `listed` as west's hosts. True when a accepted b again after c's tunnel was up.
   */
  async function stopInitiator(listed: LabHost[]): Promise<boolean> {
    const [a, b, c] = [lab.a, lab.b, lab.c].map(driverFor) as [StrongswanDriver, StrongswanDriver, StrongswanDriver];
    drivers.push(a, b, c);
    await a.apply([westSeenFromEast(lab, lab.b, { initiator: false })], selfOf(lab.a));
    await b.apply([eastSeenFromWest(lab, { initiator: true })], selfOf(lab.b));
    await expect.poll(() => a.tunnels()[0], { timeout: PATIENCE_MS }).toMatchObject({ state: "up", peerHost: "b" });

    // b's agent is gone; its charon, its connection and its IKE_SA with a stay.
    await b.close();
    await c.apply([eastSeenFromWest(lab, { initiator: true })], selfOf(lab.c));
    await a.apply([westSeenFromEast(lab, lab.c, { initiator: false, inService: listed })], selfOf(lab.a));
    await expect.poll(() => a.tunnels()[0], { timeout: PATIENCE_MS }).toMatchObject({ state: "up", peerHost: "c" });

    const vici = new ViciSession(lab.a.charon.viciSocket);
    try {
      const deadline = Date.now() + WATCH_MS;
      while (Date.now() < deadline) {
        // Every IKE_SA, named or not yet (one being set up has no connection name yet).
        const sas = (await vici.listSas()).flatMap((entry) => Object.values(entry) as { "remote-host"?: string; state?: string }[]);
        if (sas.some((sa) => sa["remote-host"] === lab.b.publicAddress && sa.state === "ESTABLISHED")) return true;
        await sleep(50);
      }
      await expect.poll(() => pingSite(lab, lab.a, lab.c), { timeout: 5_000 }).toBe(true);
      return false;
    } finally {
      vici.close();
    }
  }

  it("reproduces the slow case: a peer that still accepts the stopped host lets its charon take the tunnel back", async () => {
    expect(await stopInitiator([lab.b, lab.c])).toBe(true);
  });

  it("keeps the tunnel with the new active host when the stopped host is no longer listed in service", async () => {
    const logged = logLines.length;
    expect(await stopInitiator([lab.c])).toBe(false);
    expect(logLines.slice(logged).some((line) => line.includes("closing IKE_SA with a peer host that is no longer active"))).toBe(true);
  });
});

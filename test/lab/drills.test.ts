// The failover drills end to end: real state service, real agents, real charons, real tunnels,
// in network namespaces. Bounds are generous (CI machines are slow and shared); the precise
// figures come from `npm run bench:failover`.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULTS } from "../../agent/contract/topology";
import { requireRoot } from "../support/netns";
import { startCapture } from "./capture";
import { agentStartDrill, controlPlaneCutDrill, failoverDrill, flapDrill, lossDrill, preferredHost, stateOutageDrill, waitForSteady, type FailoverResult, type UnchangedResult } from "./drills";
import { Lab } from "./lab";
import { locationPairs, type LocationPlan } from "./plan";

const BACKOFF = DEFAULTS.backoff;
const MINUTE = 60_000;

const s = (ms: number | undefined) => (ms === undefined ? "never" : `${(ms / 1000).toFixed(2)} s`);

/** One line per drill in the test output: the figure behind the assertion. */
function report(name: string, r: FailoverResult) {
  console.log(`${name}: traffic back ${s(r.failover.outageMs)} after the fault (${r.failover.lost} probes lost); ` +
    `preferred host back after ${s(r.takeBackAfterMs)}, traffic stood still ${s(r.takeBack.gapMs)} then`);
}

/** The standby carried the traffic again within `withinMs` of the fault. */
function expectStandbyTookOver(r: FailoverResult, withinMs: number) {
  expect(r.standbyTookOver).toBe(true);
  expect(r.failover.outageMs).toBeDefined();
  expect(r.failover.outageMs!).toBeLessThan(withinMs);
}

describe.skipIf(!requireRoot())("failover drills (namespace lab)", () => {
  let lab: Lab;
  let site1: LocationPlan;

  beforeAll(async () => {
    lab = await Lab.create({ label: "drills" });
    site1 = lab.plan.locations[0]!;
  }, MINUTE);
  afterAll(async () => {
    await lab?.destroy();
  });

  it("carries traffic through the tunnels within seconds of the agents starting", async () => {
    const start = await agentStartDrill(lab, site1);
    console.log(`agents started: first packet through after ${s(start.firstPacketMs)} (node start-up and config load: ${s(start.processStartMs)})`);
    expect(start.firstPacketMs).toBeDefined();
    // Generous: on a shared 2-core CI machine starting four node processes at once can take long.
    expect(start.firstPacketMs!).toBeLessThan(45_000);
    await waitForSteady(lab);
  }, MINUTE);

  it("carries client traffic between every location pair as ESP in UDP only", async () => {
    const capture = await startCapture(lab.sandbox, lab.plan.internetNs, "drills-proof");
    for (const [from, to] of locationPairs(lab.plan)) expect(await lab.ping(from, to)).toBe(true);
    const counts = await capture.stop();
    expect(counts.esp).toBeGreaterThanOrEqual(2 * locationPairs(lab.plan).length);
    expect(counts.clear).toBe(0);
  }, MINUTE);

  it("fails over to the standby when the active host crashes (kill -9, cables cut), and takes the role back after the backoff", async () => {
    const result = await failoverDrill(lab, site1, "crash", BACKOFF);
    report("crash", result);
    expectStandbyTookOver(result, 10_000);
    // The preferred host may not return before its backoff (counted from its going offline) has run out.
    expect(result.takeBackAfterMs).toBeGreaterThanOrEqual(BACKOFF * 1000 * 0.9);
    expect(result.takeBack.gapMs).toBeDefined();
    expect(result.takeBack.gapMs!).toBeLessThan(5_000);
  }, 3 * MINUTE);

  it("fails over on a graceful stop (SIGTERM)", async () => {
    const result = await failoverDrill(lab, site1, "graceful", BACKOFF);
    report("graceful", result);
    expectStandbyTookOver(result, 5_000);
    expect(result.takeBack.gapMs).toBeDefined();
  }, 3 * MINUTE);

  it("fails over when the active host can reach the state service but not the peer location", async () => {
    const result = await failoverDrill(lab, site1, "partition", BACKOFF);
    report("partition", result);
    expectStandbyTookOver(result, 15_000);
    expect(result.takeBack.gapMs).toBeDefined();
  }, 3 * MINUTE);

  /** Drills 5 and 7: a control-plane fault during which not one packet may be lost and nothing may move. */
  function expectNothingChanged(result: UnchangedResult) {
    expect(result.traffic.sent).toBeGreaterThan(((result.downSeconds + 10) * 1000 * 0.8) / 10); // 10 ms probes
    expect(result.traffic.lost).toBe(0);
    expect(result.routesAfter).toEqual(result.routesBefore);
    expect(result.sasAfter).toEqual(result.sasBefore);
    expect(result.sasBefore.length).toBeGreaterThan(0);
    expect(result.generationAfter).toBe(result.generationBefore);
  }

  it("loses not one packet and changes nothing while the state service is down for 60 s", async () => {
    const result = await stateOutageDrill(lab, 60, "SIGKILL");
    console.log(`state service down 60 s: ${result.traffic.lost}/${result.traffic.sent} probes lost, generation ${result.generationBefore} -> ${result.generationAfter}`);
    expectNothingChanged(result);
  }, 3 * MINUTE);

  it("keeps a location's active host while the location cannot reach the state service for three heartbeat timeouts", async () => {
    const seconds = 3 * DEFAULTS.timeout;
    const result = await controlPlaneCutDrill(lab, site1, seconds);
    console.log(`${site1.name} cut from the state service ${seconds} s: ${result.traffic.lost}/${result.traffic.sent} probes lost, generation ${result.generationBefore} -> ${result.generationAfter}`);
    expectNothingChanged(result);
  }, 2 * MINUTE);

  it("bounds the role changes of a host flapping every 2 s for 60 s by its backoff", async () => {
    const result = await flapDrill(lab, site1, 60, 2);
    console.log(`flapping: ${result.flaps} flaps, ${result.roleChanges} role changes (${result.otherRoleChanges} in the other location), ${result.traffic.lost}/${result.traffic.sent} probes lost`);
    // Each return to the preferred host needs a full backoff after it went offline: two changes per backoff at most.
    expect(result.roleChanges).toBeLessThanOrEqual(2 * (Math.ceil(60 / BACKOFF) + 1));
    // The other location's hosts never flapped: their roles must not move.
    expect(result.otherRoleChanges).toBe(0);
    await waitForSteady(lab, BACKOFF * 1000 + MINUTE / 2);
    expect((await lab.routeTarget(site1))?.id).toBe(preferredHost(site1).id);
  }, 4 * MINUTE);
});

describe.skipIf(!requireRoot())("the fast timing preset (namespace lab)", () => {
  let lab: Lab;
  let site1: LocationPlan;

  beforeAll(async () => {
    lab = await Lab.create({ label: "drills-fast", timing: { preset: "fast" } });
    site1 = lab.plan.locations[0]!;
    await agentStartDrill(lab, site1);
    await waitForSteady(lab);
  }, 2 * MINUTE);
  afterAll(async () => {
    await lab?.destroy();
  });

  it("fails over when the active host crashes", async () => {
    const result = await failoverDrill(lab, site1, "crash", BACKOFF);
    report("fast crash", result);
    expectStandbyTookOver(result, 5_000);
  }, 3 * MINUTE);

  it("decides no failover while 2 % of the packets on the internet are lost at random for 60 s", async () => {
    const result = await lossDrill(lab, 60, 0.02);
    console.log(`fast, 2 % loss 60 s: ${result.traffic.lost}/${result.traffic.sent} probes lost, generation ${result.generationBefore} -> ${result.generationAfter}`);
    // The loss is real: tunnel traffic crossing the internet twice loses about 4 %.
    expect(result.traffic.lost).toBeGreaterThan(0);
    expect(result.generationAfter).toBe(result.generationBefore);
    expect(result.routesAfter).toEqual(result.routesBefore);
  }, 3 * MINUTE);
});
